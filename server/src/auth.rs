//! Bearer tokens: HS256 JWTs naming the party and its role. A handler takes a [`Principal`]
//! and checks the role it needs with [`Principal::require`].

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use holdfast_core::cards::CardId;
use holdfast_core::ids::PartyId;
use holdfast_core::parties::{Party, Role};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const ISSUER: &str = "holdfast";

#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub ttl_secs: i64,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    pub fn new(signing_key: &[u8], ttl_secs: i64) -> JwtKeys {
        JwtKeys {
            encoding: EncodingKey::from_secret(signing_key),
            decoding: DecodingKey::from_secret(signing_key),
            ttl_secs,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: PartyId,
    role: Role,
    /// For shoppers: the card they logged in with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    card: Option<CardId>,
    iss: String,
    iat: i64,
    exp: i64,
}

/// A token and what it grants.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub party_id: PartyId,
    pub role: Role,
}

/// Signs a token for `party`. Token lifetimes are real-world time, whatever the service's
/// (possibly simulated) clock says.
pub fn issue_token(
    keys: &JwtKeys,
    party: &Party,
    card: Option<CardId>,
) -> Result<TokenResponse, ApiError> {
    let now_unix = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: party.id,
        role: party.role,
        card,
        iss: ISSUER.to_owned(),
        iat: now_unix,
        exp: now_unix + keys.ttl_secs,
    };
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding)
        .map_err(|e| ApiError::internal(&e))?;
    Ok(TokenResponse {
        access_token: token,
        token_type: "Bearer",
        expires_in: keys.ttl_secs,
        party_id: party.id,
        role: party.role,
    })
}

/// Who is calling, from a verified bearer token.
#[derive(Debug, Clone, Copy)]
pub struct Principal {
    pub party: PartyId,
    pub role: Role,
    /// The card a shopper logged in with.
    pub card: Option<CardId>,
}

impl Principal {
    /// Refuses the call unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the role {}",
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    }

    /// The card of a shopper's session.
    pub fn shopper_card(&self) -> Result<CardId, ApiError> {
        self.require(&[Role::Shopper])?;
        self.card
            .ok_or_else(|| ApiError::unauthenticated("log in with an EC card number"))
    }

    /// A name for this caller's idempotency keys.
    pub fn scope(&self) -> String {
        format!("party:{}", self.party)
    }
}

impl Principal {
    /// The caller named by the bearer token in `headers`.
    pub fn from_headers(
        headers: &axum::http::HeaderMap,
        keys: &JwtKeys,
    ) -> Result<Principal, ApiError> {
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| ApiError::unauthenticated("a bearer token is required"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthenticated("use 'Authorization: Bearer <token>'"))?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 5;
        let claims = jsonwebtoken::decode::<Claims>(token, &keys.decoding, &validation)
            .map_err(|_| ApiError::unauthenticated("the token is invalid or expired"))?
            .claims;
        Ok(Principal {
            party: claims.sub,
            role: claims.role,
            card: claims.card,
        })
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Principal::from_headers(&parts.headers, &state.jwt)
    }
}
