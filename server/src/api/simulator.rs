//! The phone simulator's inbox: what a phone number has received. Development and tests
//! only; off when a real phone gateway is configured. Its texts hold codes, so reading it takes
//! an operator's token or the simulator key printed at start.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use holdfast_core::ids::ChallengeId;
use holdfast_core::parties::Role;
use holdfast_core::phone::{self, InboxMessage};
use holdfast_core::phone_number::PhoneNumber;
use serde::Deserialize;
use std::time::Duration;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(messages))
}

#[derive(Deserialize, IntoParams)]
pub struct InboxQuery {
    /// How many messages, newest first (1–100, default 20).
    pub limit: Option<u64>,
    /// Only the message that asks to answer this challenge.
    pub challenge_id: Option<ChallengeId>,
    /// With `challenge_id`: wait up to this many milliseconds (at most 30000) for the message
    /// to arrive instead of answering at once — a phone is told, it does not poll.
    pub wait_ms: Option<u64>,
}

/// The longest a reader may wait for a message.
const MAX_WAIT_MS: u64 = 30_000;

/// How much earlier than the request timeout a long poll gives up (half the timeout when that
/// is shorter): room for the look itself on a busy machine.
const LONG_POLL_MARGIN: Duration = Duration::from_secs(5);

/// The header that carries the simulator key.
pub const SIMULATOR_KEY_HEADER: &str = "x-simulator-key";

/// Lets the caller read the inbox: the simulator key, or else an operator's bearer token.
fn authorise_reader(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let Some(key) = &state.simulator_key else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "simulator_disabled",
            "the phone simulator is off: a real phone gateway is configured",
        ));
    };
    if let Some(presented) = headers.get(SIMULATOR_KEY_HEADER) {
        return if key.matches(presented.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::unauthenticated("the simulator key is wrong"))
        };
    }
    if !headers.contains_key(axum::http::header::AUTHORIZATION) {
        return Err(ApiError::unauthenticated(
            "the inbox needs an operator's bearer token or the header x-simulator-key",
        ));
    }
    Principal::from_headers(headers, &state.jwt)?.require(&[Role::Operator])
}

/// Messages received by a simulated phone, newest first. Needs the simulator key printed at
/// start (header `x-simulator-key`) or an operator's bearer token.
#[utoipa::path(get, path = "/v1/phone-simulator/{phone}/messages", tag = "phone",
    params(("phone" = String, Path, description = "E.164, e.g. +821012345678"), InboxQuery),
    security(("simulator_key" = []), ("bearer" = [])),
    responses((status = 200, description = "the messages", body = [InboxMessage]),
        (status = 400, description = "not a phone number", body = crate::error::ErrorBody),
        (status = 401, description = "no credential, a wrong simulator key, or an invalid token", body = crate::error::ErrorBody),
        (status = 403, description = "the token is not an operator's", body = crate::error::ErrorBody),
        (status = 404, description = "simulator_disabled: a real phone gateway is configured", body = crate::error::ErrorBody)))]
pub async fn messages(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(phone): Path<String>,
    Query(query): Query<InboxQuery>,
) -> ApiResult<axum::Json<Vec<InboxMessage>>> {
    authorise_reader(&state, &headers)?;
    let phone = PhoneNumber::parse(&phone).map_err(|e| ApiError::invalid(e.to_string()))?;
    match (query.challenge_id, query.wait_ms) {
        (Some(challenge), wait) => {
            // The wait ends before the request timeout would cut it off, and when a shutdown
            // begins (with one last look), so neither leaves the reader without its answer.
            let timeout = state.lifecycle.request_timeout();
            let ceiling = timeout.saturating_sub(LONG_POLL_MARGIN.min(timeout / 2));
            let wait = Duration::from_millis(wait.unwrap_or(0).min(MAX_WAIT_MS)).min(ceiling);
            let look = |wait| {
                phone::wait_for_challenge_message(
                    &state.db,
                    &state.inbox_arrivals,
                    &phone,
                    challenge,
                    wait,
                )
            };
            let found = tokio::select! {
                found = look(wait) => found?,
                () = state.lifecycle.stopping() => look(Duration::ZERO).await?,
            };
            Ok(axum::Json(found.into_iter().collect()))
        }
        (None, Some(_)) => Err(ApiError::invalid(
            "wait_ms needs a challenge_id to wait for",
        )),
        (None, None) => {
            let limit = query.limit.unwrap_or(20);
            Ok(axum::Json(phone::inbox(&state.db, &phone, limit).await?))
        }
    }
}
