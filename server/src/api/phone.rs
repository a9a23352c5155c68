//! The phone provider's inbound webhook: a person's answer to a confirmation, relayed by the
//! SMS or ARS provider. It is accepted only with a valid signature over a fresh timestamp:
//! `Holdfast-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`, within five minutes
//! of our clock. The answer must come from the phone the confirmation went to.

use crate::api::challenges::{self, ChallengeAnswer};
use crate::app::answers::{self, AnswerRoute};
use crate::error::{ApiError, ApiResult};
use crate::idempotency::IdempotencyKey;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hmac::Mac;
use holdfast_core::challenge::{self, Decision, keyed_mac};
use holdfast_core::ids::ChallengeId;
use holdfast_core::phone_number::PhoneNumber;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub const SIGNATURE_HEADER: &str = "holdfast-signature";
/// How far a signature's timestamp may be from our clock.
pub const TOLERANCE_SECS: i64 = 300;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(inbound))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct InboundReply {
    /// The `reference` the provider received with the outbound message.
    pub challenge_id: ChallengeId,
    /// The number the answer came from (E.164).
    #[schema(value_type = String, example = "+821012345678")]
    pub from: PhoneNumber,
    /// The 6-digit code (white space around it is ignored).
    #[schema(value_type = String, example = "123456", max_length = 16,
        pattern = r"^[ \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[0-9]{6}[ \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$")]
    pub code: holdfast_core::text::ChallengeCode,
    pub decision: Decision,
}

/// Checks `t=…,v1=…` against `body`: the timestamp must be within the tolerance of `now`, and
/// one of the `v1` signatures must match (several are allowed while a secret is rotated).
pub fn verify_signature(secret: &[u8], header: &str, body: &[u8], now_unix: i64) -> bool {
    let mut timestamp: Option<&str> = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = Some(value),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return false;
    };
    let Ok(seconds) = timestamp.parse::<i64>() else {
        return false;
    };
    if (now_unix - seconds).abs() > TOLERANCE_SECS {
        return false;
    }
    signatures.into_iter().any(|signature| {
        let Ok(expected) = hex::decode(signature) else {
            return false;
        };
        let mut mac = keyed_mac(secret);
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    })
}

/// The signature header value a provider sends for `body` at `unix_seconds`.
pub fn sign(secret: &[u8], body: &[u8], unix_seconds: i64) -> String {
    let mut mac = keyed_mac(secret);
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={unix_seconds},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// An answer relayed by the phone provider.
#[utoipa::path(post, path = "/v1/phone/inbound", tag = "phone",
    params(("Holdfast-Signature" = String, Header, description = "t=<unix>,v1=<hex HMAC-SHA256 of t.body>")),
    request_body = InboundReply,
    responses((status = 200, body = challenges::ChallengeAnswered),
        (status = 401, description = "missing, forged or stale signature", body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn inbound(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let Some(secret) = &state.webhook_secret else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "webhook_disabled",
            "no phone provider webhook is configured",
        ));
    };
    let header = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "signature_missing",
                "the Holdfast-Signature header is missing",
            )
        })?;
    let now = state.core.clock.now().timestamp();
    if !verify_signature(&secret.0, header, &body, now) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "signature_invalid",
            "the signature is invalid or its timestamp is not within five minutes",
        ));
    }
    let reply: InboundReply = crate::extract::parse_json(&body)?;
    let found = challenge::get_challenge(&state.db, reply.challenge_id).await?;
    // Only the phone the confirmation went to can answer it; anyone else learns nothing.
    if found.phone != reply.from {
        return Err(ApiError::not_found("challenge"));
    }
    let answer = ChallengeAnswer {
        code: reply.code,
        decision: reply.decision,
    };
    let key = IdempotencyKey(None);
    match answers::route_of(found.purpose) {
        // A login proves the phone to a browser session: it is answered there, not by a text.
        AnswerRoute::Login => Err(holdfast_core::CoreError::ChallengeNotAnswerable.into()),
        AnswerRoute::Vertical => {
            challenges::answer_vertical(&state, reply.challenge_id, found.purpose, answer, key)
                .await
        }
        AnswerRoute::Case => challenges::answer_case(&state, found, answer, key).await,
    }
}
