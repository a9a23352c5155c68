use crate::auth::{TokenResponse, issue_token};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use chrono::{DateTime, Utc};
use holdfast_core::cards::CardNumber;
use holdfast_core::ids::ChallengeId;
use holdfast_core::{login, parties};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login_with_password))
        .route("/auth/card-login", post(start_card_login))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct PasswordLogin {
    pub username: holdfast_core::text::Username,
    pub password: holdfast_core::text::Password,
}

/// Log in with a username and password (operators, institutions, suppliers, carriers, staff).
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = PasswordLogin,
    responses((status = 200, body = TokenResponse), (status = 401, body = crate::error::ErrorBody)))]
pub async fn login_with_password(
    State(state): State<AppState>,
    Json(body): Json<PasswordLogin>,
) -> ApiResult<axum::Json<TokenResponse>> {
    if body.password.len() > parties::MAX_PASSWORD_CHARS * 4 {
        return Err(ApiError::unauthenticated("wrong username or password"));
    }
    let party =
        parties::verify_password(&state.db, &state.core.clock, &body.username, &body.password)
            .await?;
    Ok(axum::Json(issue_token(&state.jwt, &party, None)?))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct CardLogin {
    /// The EC card number, with or without dashes.
    pub card_number: CardNumber,
}

#[derive(Serialize, ToSchema)]
pub struct LoginStarted {
    /// Answer it with the code sent to the phone: `POST /v1/challenges/{id}/answer`; the
    /// answer carries the token.
    pub challenge_id: ChallengeId,
    pub expires_at: DateTime<Utc>,
}

/// Start a shopper's login with an EC card number: a code goes to the phone mapped to it. A
/// mistyped number fails its check digit before any look-up.
#[utoipa::path(post, path = "/v1/auth/card-login", tag = "auth", request_body = CardLogin,
    responses((status = 202, body = LoginStarted), (status = 400, body = crate::error::ErrorBody),
        (status = 403, description = "the card is blocked or replaced", body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn start_card_login(
    State(state): State<AppState>,
    Json(body): Json<CardLogin>,
) -> ApiResult<(StatusCode, axum::Json<LoginStarted>)> {
    let challenge = login::start_card_login(&state.db, &state.core, &body.card_number).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(LoginStarted {
            challenge_id: challenge.id,
            expires_at: challenge.expires_at,
        }),
    ))
}
