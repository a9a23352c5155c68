//! The phone simulator's inbox: what a phone number has received. Development and tests
//! only; off when a real phone gateway is configured.

use crate::error::{ApiError, ApiResult};
use crate::extract::{Path, Query};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use holdfast_core::phone::{self, InboxMessage};
use holdfast_core::phone_number::PhoneNumber;
use serde::Deserialize;
use utoipa::IntoParams;

pub fn routes() -> Router<AppState> {
    Router::new().route("/phone-simulator/{phone}/messages", get(messages))
}

#[derive(Deserialize, IntoParams)]
pub struct InboxQuery {
    /// How many messages, newest first (1–100, default 20).
    pub limit: Option<u64>,
}

/// Messages received by a simulated phone, newest first.
#[utoipa::path(get, path = "/v1/phone-simulator/{phone}/messages", tag = "phone",
    params(("phone" = String, Path, description = "E.164, e.g. +821012345678"), InboxQuery),
    responses((status = 200, body = [InboxMessage]), (status = 404, body = crate::error::ErrorBody)))]
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
    let limit = query.limit.unwrap_or(20);
    Ok(axum::Json(phone::inbox(&state.db, &phone, limit).await?))
}
