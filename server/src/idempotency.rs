//! `Idempotency-Key`: a client names a money-moving request so that retrying it is safe. The
//! key is claimed (a unique row) in the same transaction as the request's effect and stores
//! the first answer: the same key with the same body replays that answer; with another body it
//! is refused with 409. Concurrent requests with one key wait for the first to finish (the
//! unique index holds them) and then replay it. The transaction is the runner's
//! ([`crate::txn`]); this module claims and records inside it.

use crate::error::{ApiError, ApiResult};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, DatabaseTransaction, TryInsertResult};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub const HEADER: &str = "idempotency-key";
pub const MAX_KEY_CHARS: usize = 255;

pub mod record {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_records")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub scope: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub fingerprint: String,
        pub status_code: i32,
        pub response_body: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The request's `Idempotency-Key`, if it sent one.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(HEADER) else {
            return Ok(IdempotencyKey(None));
        };
        let key = value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_CHARS && k.is_ascii())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_idempotency_key",
                    format!("an Idempotency-Key is 1 to {MAX_KEY_CHARS} ASCII characters"),
                )
            })?;
        Ok(IdempotencyKey(Some(key.to_owned())))
    }
}

impl IdempotencyKey {
    /// Refuses a money-moving request sent without a key: a client that retries after a
    /// timeout must not pay twice.
    pub fn required(self) -> Result<IdempotencyKey, ApiError> {
        if self.0.is_some() {
            Ok(self)
        } else {
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "idempotency_key_required",
                "this request moves money: send an Idempotency-Key header (any unique string)",
            ))
        }
    }
}

/// A use case's result inside the runner's transaction: done, or refused after changing
/// something that must be kept (a wrong code counted). Both are committed and remembered.
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    Refused(ApiError),
}

/// What the runner needs to know of a request to make retrying it safe: whose keys it is
/// among (`scope`: the caller, or the challenge for an answer), its `Idempotency-Key` if it
/// sent one, and what it asked (the operation and its parsed body, as a fingerprint).
#[derive(Debug, Clone)]
pub struct Idempotent {
    pub(crate) scope: String,
    pub(crate) key: IdempotencyKey,
    pub(crate) fingerprint: String,
}

impl Idempotent {
    pub fn new(
        scope: String,
        key: IdempotencyKey,
        operation: &str,
        body: &impl Serialize,
    ) -> Idempotent {
        Idempotent {
            scope,
            key,
            fingerprint: fingerprint(operation, body),
        }
    }

    /// The key the request sent, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.0.as_deref()
    }
}

/// Identifies a request's content: the operation and its parsed body.
pub fn fingerprint(operation: &str, body: &impl Serialize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(operation.as_bytes());
    hasher.update([0]);
    hasher.update(serde_json::to_vec(body).unwrap_or_default());
    hex::encode(hasher.finalize())
}

fn replay(record: &record::Model) -> Response {
    let status = u16::try_from(record.status_code)
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        record.response_body.clone(),
    )
        .into_response();
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// Claims `key` for this request in `txn`. `None`: claimed, the request runs and its answer is
/// recorded with [`record_in_txn`] before the commit. `Some`: the key was used before; its
/// stored answer is to be replayed (the same request) or it is refused with 409 (another one).
/// A concurrent request with the same key waits here (the unique index holds it) until the
/// first commits.
pub(crate) async fn claim_in_txn(
    txn: &DatabaseTransaction,
    now: chrono::DateTime<chrono::Utc>,
    scope: &str,
    key: &str,
    fingerprint: &str,
) -> ApiResult<Option<Response>> {
    let claimed = record::Entity::insert(record::ActiveModel {
        scope: Set(scope.to_owned()),
        key: Set(key.to_owned()),
        fingerprint: Set(fingerprint.to_owned()),
        status_code: Set(0),
        response_body: Set(String::new()),
        created_at: Set(now),
    })
    .on_conflict_do_nothing()
    .exec_without_returning(txn)
    .await?;
    if matches!(claimed, TryInsertResult::Inserted(n) if n > 0) {
        return Ok(None);
    }
    let existing = record::Entity::find_by_id((scope.to_owned(), key.to_owned()))
        .one(txn)
        .await?
        .ok_or_else(|| ApiError::internal(&"idempotency record vanished"))?;
    if existing.fingerprint != fingerprint {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        ));
    }
    Ok(Some(replay(&existing)))
}

/// Stores the answer of the request that claimed `key`, for its replays.
pub(crate) async fn record_in_txn(
    txn: &DatabaseTransaction,
    scope: String,
    key: String,
    status: StatusCode,
    body: String,
) -> ApiResult<()> {
    record::ActiveModel {
        scope: Set(scope),
        key: Set(key),
        status_code: Set(i32::from(status.as_u16())),
        response_body: Set(body),
        ..Default::default()
    }
    .update(txn)
    .await?;
    Ok(())
}
