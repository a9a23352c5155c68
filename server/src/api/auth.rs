use crate::auth::{TokenResponse, issue_token};
use crate::error::ApiResult;
use crate::extract::{ClientAddress, Json};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use holdfast_core::cards::CardNumber;
use holdfast_core::ids::ChallengeId;
use holdfast_core::login;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login_with_password))
        .routes(routes!(start_card_login))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct PasswordLogin {
    pub username: holdfast_core::text::Username,
    pub password: holdfast_core::text::Password,
}

/// Log in with a username and password (operators, institutions, suppliers, carriers, staff).
/// Wrong passwords are throttled per username and client address (after 5, a wait that doubles
/// from 15 s up to 15 min) and per client address (50 per 10 min); no account is ever locked.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = PasswordLogin,
    responses((status = 200, description = "logged in", body = TokenResponse),
        (status = 401, description = "bad_credentials: wrong username or password", body = crate::error::ErrorBody),
        (status = 429, description = "too_many_attempts: too many wrong passwords from this address; see Retry-After", body = crate::error::ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait")))))]
pub async fn login_with_password(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    Json(body): Json<PasswordLogin>,
) -> ApiResult<axum::Json<TokenResponse>> {
    let party = login::password_login(
        &state.db,
        &state.core,
        &state.login_throttle,
        client,
        &body.username,
        &body.password,
    )
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
/// mistyped number fails its check digit before any look-up. A number that cannot log in
/// (unknown, blocked or replaced) gets the same answer, but no code goes anywhere; so this does
/// not tell which cards exist.
#[utoipa::path(post, path = "/v1/auth/card-login", tag = "auth", request_body = CardLogin,
    responses((status = 202, description = "a code is on its way to the card's phone, if the card can log in", body = LoginStarted),
        (status = 400, description = "not a card number (check digit)", body = crate::error::ErrorBody),
        (status = 429, description = "too_many_attempts: too many codes or wrong codes for this card within an hour", body = crate::error::ErrorBody)))]
pub async fn start_card_login(
    State(state): State<AppState>,
    Json(body): Json<CardLogin>,
) -> ApiResult<(StatusCode, axum::Json<LoginStarted>)> {
    let challenge = state
        .in_write_txn(async move |txn, core| {
            login::start_card_login_in_txn(txn, core, &body.card_number).await
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(LoginStarted {
            challenge_id: challenge.id,
            expires_at: challenge.expires_at,
        }),
    ))
}
