//! Answering phone challenges. The phone is not a role: whoever holds the code the phone
//! received may answer (in production through the SMS/ARS provider's signed webhook; in
//! development straight from the simulator's inbox).

use crate::app::answers::{self, AnswerRoute, VerticalAnswer};
use crate::auth::{TokenResponse, issue_token};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::idempotency::{IdempotencyKey, Idempotent, Outcome};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use holdfast_core::challenge::{self, Challenge, ChallengePurpose, Decision};
use holdfast_core::escrow::{AnswerEffect, CaseOutcome, CaseState};
use holdfast_core::ids::ChallengeId;
use holdfast_core::login::{self, LoginEffect};
use holdfast_core::order_number::OrderNumber;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(answer))
        .routes(routes!(resend))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct ChallengeAnswer {
    /// The 6-digit code the phone received (white space around it is ignored).
    #[schema(value_type = String, example = "123456", max_length = 16,
        pattern = r"^[ \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[0-9]{6}[ \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$")]
    pub code: holdfast_core::text::ChallengeCode,
    pub decision: Decision,
}

#[derive(Serialize, ToSchema)]
pub struct ChallengeAnswered {
    pub challenge_id: ChallengeId,
    pub purpose: ChallengePurpose,
    /// For order and settlement confirmations: what the answer did to the order.
    pub outcome: Option<CaseOutcome>,
    pub order_number: Option<OrderNumber>,
    pub state: Option<CaseState>,
    /// For a `login` challenge: the shopper's token.
    pub token: Option<TokenResponse>,
}

/// Answer a challenge with the code from the phone: approve or deny.
#[utoipa::path(post, path = "/v1/challenges/{challenge_id}/answer", tag = "phone",
    params(("challenge_id" = ChallengeId, Path), crate::openapi::OptionalIdempotencyKey),
    request_body = ChallengeAnswer,
    responses((status = 200, body = ChallengeAnswered),
        (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "already answered", body = crate::error::ErrorBody),
        (status = 422, description = "wrong code, expired, locked, or what it confirms changed", body = crate::error::ErrorBody)))]
pub async fn answer(
    State(state): State<AppState>,
    Path(challenge_id): Path<ChallengeId>,
    key: IdempotencyKey,
    Json(body): Json<ChallengeAnswer>,
) -> ApiResult<Response> {
    challenge::parse_code(&body.code)?;
    let found = challenge::get_challenge(&state.db, challenge_id).await?;
    match answers::route_of(found.purpose) {
        AnswerRoute::Login => answer_login(&state, challenge_id, &body).await,
        AnswerRoute::Vertical => {
            answer_vertical(&state, challenge_id, found.purpose, body, key).await
        }
        AnswerRoute::Case => answer_case(&state, found, body, key).await,
    }
}

/// Answers a challenge that belongs to a vertical rather than to an escrow case: opening a
/// prescription, a card-present authorisation.
pub async fn answer_vertical(
    state: &AppState,
    challenge_id: ChallengeId,
    purpose: ChallengePurpose,
    body: ChallengeAnswer,
    key: IdempotencyKey,
) -> ApiResult<Response> {
    state
        .write_outcome(
            Idempotent::new(
                format!("challenge:{challenge_id}"),
                key,
                "answer_challenge",
                &(challenge_id, &body),
            ),
            StatusCode::OK,
            async move |txn, core| {
                let answered = answers::answer_vertical_in_txn(
                    txn,
                    core,
                    purpose,
                    challenge_id,
                    &body.code,
                    body.decision,
                )
                .await?;
                Ok(match answered {
                    VerticalAnswer::Applied(summary) => Outcome::Done(VerticalAnswered {
                        challenge_id,
                        purpose,
                        result: summary,
                    }),
                    VerticalAnswer::Refused(error) => Outcome::Refused(error.into()),
                })
            },
        )
        .await
}

/// The answer to a vertical's own challenge.
#[derive(Serialize, ToSchema)]
pub struct VerticalAnswered {
    pub challenge_id: ChallengeId,
    pub purpose: ChallengePurpose,
    /// What the answer did, as the vertical describes it.
    #[schema(value_type = Object)]
    pub result: serde_json::Value,
}

/// Answers an order or settlement confirmation, from the API or the phone provider's webhook.
/// `found` is the challenge as read (without a lock) to route the answer: the use case locks
/// and reads it again, and uses the first read only to find its case.
pub async fn answer_case(
    state: &AppState,
    found: Challenge,
    body: ChallengeAnswer,
    key: IdempotencyKey,
) -> ApiResult<Response> {
    let (challenge_id, purpose) = (found.id, found.purpose);
    state
        .write_outcome(
            Idempotent::new(
                format!("challenge:{challenge_id}"),
                key,
                "answer_challenge",
                &(challenge_id, &body),
            ),
            StatusCode::OK,
            async move |txn, core| {
                let effect =
                    answers::answer_read_case_in_txn(txn, core, &found, &body.code, body.decision)
                        .await?;
                Ok(match effect {
                    AnswerEffect::Applied(case, outcome) => Outcome::Done(ChallengeAnswered {
                        challenge_id,
                        purpose,
                        outcome: Some(outcome),
                        order_number: Some(case.order_number),
                        state: Some(case.state),
                        token: None,
                    }),
                    AnswerEffect::Refused(error) => Outcome::Refused(error.into()),
                })
            },
        )
        .await
}

/// A login answer is never stored for replay: its response carries a token.
async fn answer_login(
    state: &AppState,
    challenge_id: ChallengeId,
    body: &ChallengeAnswer,
) -> ApiResult<Response> {
    if body.decision == Decision::Deny {
        return Err(ApiError::invalid(
            "a login is answered with 'approve' or not at all",
        ));
    }
    let effect = state
        .in_write_txn(async |txn, core| {
            login::answer_login_in_txn(txn, core, challenge_id, &body.code).await
        })
        .await?;
    // A refusal was committed (the wrong code counts) before it is answered.
    let (party, card) = match effect {
        LoginEffect::LoggedIn(party, card) => (party, card),
        LoginEffect::Refused(error) => return Err(error.into()),
    };
    let answered = ChallengeAnswered {
        challenge_id,
        purpose: ChallengePurpose::Login,
        outcome: None,
        order_number: None,
        state: None,
        token: Some(issue_token(&state.jwt, &party, Some(card.id))?),
    };
    Ok(axum::response::IntoResponse::into_response(axum::Json(
        answered,
    )))
}

#[derive(Serialize, ToSchema)]
pub struct ChallengeResent {
    pub challenge_id: ChallengeId,
    pub expires_at: DateTime<Utc>,
    pub sends_left: i32,
}

/// Send a fresh code for a pending challenge (the old one stops working; wrong tries still
/// count).
#[utoipa::path(post, path = "/v1/challenges/{challenge_id}/resend", tag = "phone",
    params(("challenge_id" = ChallengeId, Path)),
    responses((status = 202, body = ChallengeResent), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn resend(
    State(state): State<AppState>,
    Path(challenge_id): Path<ChallengeId>,
) -> ApiResult<(StatusCode, axum::Json<ChallengeResent>)> {
    let challenge = state
        .in_write_txn(async move |txn, core| {
            challenge::resend_in_txn(txn, &core.clock, &core.keys, challenge_id).await
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(ChallengeResent {
            challenge_id,
            expires_at: challenge.expires_at,
            sends_left: challenge::MAX_SENDS - challenge.sends,
        }),
    ))
}
