//! The transaction runner: the one place a request's (or a worker's, or the demo's) write
//! transaction is opened.
//!
//! Who owns the transaction: the runner. It begins the write transaction, claims the
//! request's `Idempotency-Key` in it when there is one ([`crate::idempotency`]: a replay or a
//! 409 ends there), hands the transaction to the use case, records the answer for replays,
//! commits, and wakes the outbox dispatcher for the messages the use case wrote. An error
//! from the use case drops the transaction, which rolls everything back (the claim too).
//!
//! Use cases, in core, the verticals and [`crate::app`], are `_in_txn` functions: they take
//! the transaction, check their rules, lock before they change, write, and never commit. A
//! handler is then a few lines:
//!
//! ```ignore
//! let request = Idempotent::new(principal.scope(), key, "place_order", &(card, &body));
//! state
//!     .write(request, StatusCode::CREATED, async move |txn, core| {
//!         Ok(orders::place_order_in_txn(txn, core, principal.party, card, body).await?)
//!     })
//!     .await
//! ```
//!
//! [`AppState::write`] answers with the use case's value as JSON; [`AppState::write_outcome`]
//! lets it commit a refusal that must be kept (a wrong code counted) and answer with the
//! error; [`AppState::write_recorded`] is `write_outcome` for a caller that answers in its own
//! form (a console page keyed by its form's nonce), handing back the value, or on a replay the
//! value recorded the first time; [`AppState::in_write_txn`] is the same transaction without the HTTP answer, for
//! handlers that shape their own response and for callers outside a request (the demo, the
//! bootstrap command, tests).
//!
//! Work that owns its transaction for a reason of its own stays where it is and says why:
//! the timer worker's claim and finish (`holdfast_core::timers`), the outbox dispatcher
//! (`holdfast_core::outbox`), and the bootstrap at start (migrations, the platform's parties,
//! the service secret).

use crate::error::{ApiError, ApiResult};
use crate::idempotency::{self, Idempotent, Outcome};
use crate::state::AppState;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use holdfast_core::{Core, db};
use sea_orm::{DatabaseTransaction, DbErr};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a keyed write answered, for a caller that shapes its own answer
/// ([`AppState::write_recorded`]).
#[derive(Debug)]
pub enum Recorded<T> {
    /// The use case's value: from this run, or as the first run of the same request recorded it.
    Value(T),
    /// The refusal the first run of the same request committed and recorded: its status and
    /// the error's JSON body.
    Refused { status: StatusCode, body: Bytes },
}

/// Why the idempotent transaction stopped early: either way nothing is committed.
enum Stop {
    /// The key was used before for the same request: its stored answer.
    Replay(Response),
    Failed(ApiError),
}

impl From<DbErr> for Stop {
    fn from(error: DbErr) -> Self {
        Stop::Failed(error.into())
    }
}

impl From<ApiError> for Stop {
    fn from(error: ApiError) -> Self {
        Stop::Failed(error)
    }
}

/// A committed answer: its status and JSON body, and the error when it was a refusal.
struct Answer {
    status: StatusCode,
    body: String,
    refusal: Option<ApiError>,
}

impl Answer {
    fn of<T: Serialize>(outcome: Outcome<T>, success: StatusCode) -> ApiResult<Answer> {
        Ok(match outcome {
            Outcome::Done(value) => Answer {
                status: success,
                body: serde_json::to_string(&value).map_err(|e| ApiError::internal(&e))?,
                refusal: None,
            },
            Outcome::Refused(error) => Answer {
                status: error.status,
                body: serde_json::to_string(&error.body()).map_err(|e| ApiError::internal(&e))?,
                refusal: Some(error),
            },
        })
    }

    fn respond(self) -> ApiResult<Response> {
        match self.refusal {
            Some(error) => Err(error),
            None => Ok((
                self.status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                self.body,
            )
                .into_response()),
        }
    }
}

impl AppState {
    /// Runs `use_case` in a write transaction of its own: begins, runs, commits, and wakes the
    /// outbox. An error rolls back. A refusal that must be kept is an `Ok` value the caller
    /// turns into its error after the commit (see [`AppState::write_outcome`]).
    pub async fn in_write_txn<T, E, F>(&self, use_case: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&DatabaseTransaction, &Core) -> Result<T, E>,
        E: From<DbErr>,
    {
        // What the use case counts (holds placed, challenges answered…) is recorded only if
        // this commits.
        let value = holdfast_core::outcomes::after_commit(async {
            let txn = db::begin_write(&self.db).await?;
            // Events and outbox rows are written together just before the commit.
            let value =
                holdfast_core::write_buffer::buffered(&txn, Box::pin(use_case(&txn, &self.core)))
                    .await?;
            txn.commit().await?;
            Ok::<T, E>(value)
        })
        .await?;
        self.core.wake_outbox();
        Ok(value)
    }

    /// A request's write: `use_case` runs in the runner's transaction together with the claim
    /// of the request's key (when it sent one), and its value is the answer, as JSON with
    /// `success`. Without a key it is simply the transaction.
    pub async fn write<T, F>(
        &self,
        request: Idempotent,
        success: StatusCode,
        use_case: F,
    ) -> ApiResult<Response>
    where
        T: Serialize,
        F: AsyncFnOnce(&DatabaseTransaction, &Core) -> ApiResult<T>,
    {
        self.write_outcome(request, success, async move |txn, core| {
            use_case(txn, core).await.map(Outcome::Done)
        })
        .await
    }

    /// [`AppState::write`] for a use case that may refuse after changing something that must
    /// be kept: an [`Outcome::Refused`] is committed and recorded like an answer, then returned
    /// as the error.
    pub async fn write_outcome<T, F>(
        &self,
        request: Idempotent,
        success: StatusCode,
        use_case: F,
    ) -> ApiResult<Response>
    where
        T: Serialize,
        F: AsyncFnOnce(&DatabaseTransaction, &Core) -> ApiResult<Outcome<T>>,
    {
        let Idempotent {
            scope,
            key,
            fingerprint,
        } = request;
        let ran = self
            .in_write_txn(async move |txn, core| {
                if let Some(key) = &key.0
                    && let Some(replay) =
                        idempotency::claim_in_txn(txn, core.clock.now(), &scope, key, &fingerprint)
                            .await?
                {
                    return Err(Stop::Replay(replay));
                }
                let answer = Answer::of(use_case(txn, core).await?, success)?;
                if let Some(key) = key.0 {
                    idempotency::record_in_txn(txn, scope, key, answer.status, answer.body.clone())
                        .await?;
                }
                Ok(answer)
            })
            .await;
        match ran {
            Ok(answer) => answer.respond(),
            Err(Stop::Replay(response)) => Ok(response),
            Err(Stop::Failed(error)) => Err(error),
        }
    }

    /// [`AppState::write_outcome`] for a caller that answers in its own form (a console page
    /// answers with a redirect or a page, not JSON): the use case's value is recorded as the
    /// answer's JSON and handed back; the same request again (its key claimed before) hands
    /// back the value recorded then, or the refusal recorded then, without running the use
    /// case. A refusal of this run, and the 409 of a key reused for another request, are the
    /// error.
    pub async fn write_recorded<T, F>(
        &self,
        request: Idempotent,
        use_case: F,
    ) -> ApiResult<Recorded<T>>
    where
        T: Serialize + DeserializeOwned,
        F: AsyncFnOnce(&DatabaseTransaction, &Core) -> ApiResult<Outcome<T>>,
    {
        let answer = self
            .write_outcome(request, StatusCode::OK, use_case)
            .await?;
        let status = answer.status();
        // The answer is the JSON the runner wrote (or read back) in memory: no limit is needed
        // beyond its own.
        let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        if !status.is_success() {
            return Ok(Recorded::Refused { status, body });
        }
        serde_json::from_slice(&body)
            .map(Recorded::Value)
            .map_err(|e| ApiError::internal(&e))
    }
}
