//! The phone simulator's inbox: what a phone number has received. Development and tests
//! only; off when a real phone gateway is configured.

use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use holdfast_core::ids::ChallengeId;
use holdfast_core::phone::{self, InboxMessage};
use holdfast_core::phone_number::PhoneNumber;
use serde::Deserialize;
use std::time::Duration;
use utoipa::IntoParams;

pub fn routes() -> Router<AppState> {
    Router::new().route("/phone-simulator/{phone}/messages", get(messages))
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

/// Messages received by a simulated phone, newest first.
#[utoipa::path(get, path = "/v1/phone-simulator/{phone}/messages", tag = "phone",
    params(("phone" = String, Path, description = "E.164, e.g. +821012345678"), InboxQuery),
    responses((status = 200, body = [InboxMessage]), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn messages(
    State(state): State<AppState>,
    Path(phone): Path<String>,
    Query(query): Query<InboxQuery>,
) -> ApiResult<axum::Json<Vec<InboxMessage>>> {
    if !state.simulator_inbox {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "simulator_disabled",
            "the phone simulator is off: a real phone gateway is configured",
        ));
    }
    let phone = PhoneNumber::parse(&phone).map_err(|e| ApiError::invalid(e.to_string()))?;
    match (query.challenge_id, query.wait_ms) {
        (Some(challenge), wait) => {
            let wait = Duration::from_millis(wait.unwrap_or(0).min(MAX_WAIT_MS));
            let found = phone::wait_for_challenge_message(
                &state.db,
                &state.inbox_arrivals,
                &phone,
                challenge,
                wait,
            )
            .await?;
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
