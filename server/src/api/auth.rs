use crate::auth::{TokenResponse, issue_token};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use chrono::{DateTime, Utc};
use holdfast_core::ids::{ChallengeId, PartyId};
use holdfast_core::{login, parties};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login_with_password))
        .route("/auth/phone-login", post(start_phone_login))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct PasswordLogin {
    pub username: String,
    pub password: String,
}

/// Log in with a username and password (operators, suppliers, and other staff).
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = PasswordLogin,
    responses((status = 200, body = TokenResponse), (status = 401, body = crate::error::ErrorBody)))]
pub async fn login_with_password(
    State(state): State<AppState>,
    Json(body): Json<PasswordLogin>,
) -> ApiResult<axum::Json<TokenResponse>> {
    if body.password.len() > parties::MAX_PASSWORD_CHARS * 4 {
        return Err(ApiError::unauthenticated("wrong username or password"));
    }
    let party = parties::verify_password(&state.db, &body.username, &body.password).await?;
    Ok(axum::Json(issue_token(&state.jwt, &party)?))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct PhoneLogin {
    pub shopper_id: PartyId,
}

#[derive(Serialize, ToSchema)]
pub struct PhoneLoginStarted {
    /// Answer it with the code sent to the phone: `POST /v1/challenges/{id}/answer`.
    pub challenge_id: ChallengeId,
    pub expires_at: DateTime<Utc>,
}

/// Start a shopper's login: a code goes to the shopper's phone.
#[utoipa::path(post, path = "/v1/auth/phone-login", tag = "auth", request_body = PhoneLogin,
    responses((status = 202, body = PhoneLoginStarted), (status = 404, body = crate::error::ErrorBody)))]
pub async fn start_phone_login(
    State(state): State<AppState>,
    Json(body): Json<PhoneLogin>,
) -> ApiResult<(StatusCode, axum::Json<PhoneLoginStarted>)> {
    let challenge = login::start_phone_login(&state.db, &state.core, body.shopper_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(PhoneLoginStarted {
            challenge_id: challenge.id,
            expires_at: challenge.expires_at,
        }),
    ))
}
