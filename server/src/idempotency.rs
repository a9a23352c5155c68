//! `Idempotency-Key`: a client names a money-moving request so that retrying it is safe. The
//! key is claimed (a unique row) in the same transaction as the request's effect and stores
//! the first answer: the same key with the same body replays that answer; with another body it
//! is refused with 409. Concurrent requests with one key wait for the first to finish (the
//! unique index holds them) and then replay it.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use holdfast_core::db;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, DatabaseTransaction, TryInsertResult};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::pin::Pin;

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

/// A use case's result inside the idempotent transaction: done, or refused after changing
/// something that must be kept (a wrong code counted). Both are committed and remembered.
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    Refused(ApiError),
}

pub type TxnFuture<'t, T> = Pin<Box<dyn Future<Output = ApiResult<Outcome<T>>> + Send + 't>>;

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

/// Runs `operation` in one write transaction together with the idempotency claim, commits,
/// and answers `success` with its JSON. Without a key it is simply a transaction.
pub async fn run<T, F>(
    state: &AppState,
    scope: String,
    key: IdempotencyKey,
    fingerprint: String,
    success: StatusCode,
    operation: F,
) -> ApiResult<Response>
where
    T: Serialize,
    F: for<'t> FnOnce(&'t DatabaseTransaction) -> TxnFuture<'t, T>,
{
    let txn = db::begin_write(&state.db).await?;
    if let Some(key) = &key.0 {
        let claimed = record::Entity::insert(record::ActiveModel {
            scope: Set(scope.clone()),
            key: Set(key.clone()),
            fingerprint: Set(fingerprint.clone()),
            status_code: Set(0),
            response_body: Set(String::new()),
            created_at: Set(state.core.clock.now()),
        })
        .on_conflict_do_nothing()
        .exec_without_returning(&txn)
        .await?;
        if !matches!(claimed, TryInsertResult::Inserted(n) if n > 0) {
            let existing = record::Entity::find_by_id((scope, key.clone()))
                .one(&txn)
                .await?
                .ok_or_else(|| ApiError::internal(&"idempotency record vanished"))?;
            txn.rollback().await?;
            if existing.fingerprint != fingerprint {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request",
                ));
            }
            return Ok(replay(&existing));
        }
    }

    let outcome = operation(&txn).await?;
    let (status, body, error) = match outcome {
        Outcome::Done(value) => (
            success,
            serde_json::to_string(&value).map_err(|e| ApiError::internal(&e))?,
            None,
        ),
        Outcome::Refused(error) => (
            error.status,
            serde_json::to_string(&error.body()).map_err(|e| ApiError::internal(&e))?,
            Some(error),
        ),
    };
    if let Some(key) = key.0 {
        record::ActiveModel {
            scope: Set(scope),
            key: Set(key),
            status_code: Set(i32::from(status.as_u16())),
            response_body: Set(body.clone()),
            ..Default::default()
        }
        .update(&txn)
        .await?;
    }
    txn.commit().await?;
    state.core.wake_outbox();
    match error {
        Some(error) => Err(error),
        None => Ok((
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()),
    }
}
