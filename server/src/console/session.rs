//! Console sessions: a cookie `holdfast_session` holding 32 random bytes (hex); the
//! `console_sessions` table keeps only their SHA-256, the principal, the CSRF token and the
//! expiry, all timed by the service clock.
//!
//! The cookie is `HttpOnly; SameSite=Strict; Path=/`, and `Secure` unless the browser reached
//! the server by a loopback name (`localhost`, `127.0.0.1`, `[::1]`): the server itself speaks
//! plain HTTP and is put behind TLS in production, where every other Host gets `Secure`; on a
//! developer's machine browsers talk to it over `http://127.0.0.1`, where a `Secure` cookie
//! would not be sent back. A remote attacker cannot make a victim's browser name a loopback
//! host for a remote server, so this only ever relaxes the flag on the user's own machine.
//!
//! A session without a party is a visitor's: it holds the CSRF token of the sign-in forms, a
//! card login waiting for its code, or the phone simulator's key having been given. Signing in
//! always issues a new session id (no fixation) and deletes the visitor's row.
//!
//! An expired session is never honoured ([`load`] compares with the clock); its row is deleted
//! by the periodic sweep ([`sweep_expired`], run by [`crate::workers`]), so the table holds the
//! live sessions only, however rarely anyone signs in.

use super::page::PageError;
use crate::auth::Principal;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use chrono::{DateTime, Duration, Utc};
use holdfast_core::cards::CardId;
use holdfast_core::ids::{ChallengeId, PartyId};
use holdfast_core::parties::Role;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, QueryFilter};
use sha2::{Digest, Sha256};

pub const COOKIE: &str = "holdfast_session";

/// How long a signed-in session lasts (service clock).
pub const SIGNED_IN_TTL_HOURS: i64 = 8;
/// How long a visitor's session (sign-in forms, a card login waiting for its code) lasts.
pub const VISITOR_TTL_MINUTES: i64 = 30;

pub mod row {
    use holdfast_core::parties::Role;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "console_sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id_hash: String,
        pub party_id: Option<Uuid>,
        pub role: Option<Role>,
        pub card_id: Option<Uuid>,
        pub csrf_token: String,
        pub phone_access: bool,
        pub pending_login: Option<Uuid>,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A live session, as read for one request.
#[derive(Clone)]
pub struct Session {
    id_hash: String,
    pub principal: Option<Principal>,
    pub csrf: String,
    pub phone_access: bool,
    pub pending_login: Option<ChallengeId>,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The signed-in principal, or a redirect to the sign-in page.
    pub fn principal(&self) -> Result<Principal, PageError> {
        self.principal.ok_or(PageError::SignIn)
    }

    /// Whose idempotency keys this session's forms claim theirs among: the signed-in
    /// principal's (as its API calls do), or a visitor's session's own (the phone simulator).
    pub fn claim_scope(&self) -> String {
        match self.principal {
            Some(principal) => principal.scope(),
            None => format!("console-session:{}", self.id_hash),
        }
    }

    /// May this session read the phone simulator's inbox and answer from it?
    pub fn can_use_phone(&self) -> bool {
        self.phone_access || self.principal.is_some_and(|p| p.role == Role::Operator)
    }
}

fn random_hex() -> String {
    use rand::TryRngCore;
    let mut bytes = [0u8; 32];
    // The OS source failing is not recoverable; ThreadRng (seeded from it) is the fallback.
    if rand::rngs::OsRng.try_fill_bytes(&mut bytes).is_err() {
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    }
    hex::encode(bytes)
}

fn hash_of(cookie_value: &str) -> String {
    hex::encode(Sha256::digest(cookie_value.as_bytes()))
}

/// The session cookie's value in `headers`, if it is well formed.
fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Is the browser talking to this server by a loopback name?
pub(super) fn is_loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = if host.starts_with('[') {
        host.split_once(']').map_or(host, |(name, _)| name)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    matches!(name, "localhost" | "127.0.0.1" | "[::1")
}

/// The `Set-Cookie` value that gives the browser `value` for `max_age_secs` (0 removes it).
fn set_cookie(headers: &HeaderMap, value: &str, max_age_secs: i64) -> Option<HeaderValue> {
    let secure = if is_loopback_host(headers) {
        ""
    } else {
        "; Secure"
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}{secure}"
    ))
    .ok()
}

/// Reads the session named by the request's cookie, if it exists and has not expired.
pub async fn load(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, PageError> {
    let Some(value) = cookie_value(headers) else {
        return Ok(None);
    };
    let found = row::Entity::find_by_id(hash_of(&value))
        .one(&state.db)
        .await?;
    Ok(found
        .filter(|row| row.expires_at > state.core.clock.now())
        .map(session_of))
}

fn session_of(row: row::Model) -> Session {
    let principal = match (row.party_id, row.role) {
        (Some(party), Some(role)) => Some(Principal {
            party: PartyId::from_uuid(party),
            role,
            card: row.card_id.map(CardId::from_uuid),
        }),
        _ => None,
    };
    Session {
        id_hash: row.id_hash,
        principal,
        csrf: row.csrf_token,
        phone_access: row.phone_access,
        pending_login: row.pending_login.map(ChallengeId::from_uuid),
        expires_at: row.expires_at,
    }
}

/// What a new session carries.
#[derive(Debug, Default, Clone, Copy)]
pub struct NewSession {
    pub principal: Option<Principal>,
    pub phone_access: bool,
    pub pending_login: Option<ChallengeId>,
}

/// Creates a session, replacing `previous` (deleted) if given, and returns it with the
/// `Set-Cookie` header value for the response.
pub async fn create(
    state: &AppState,
    headers: &HeaderMap,
    previous: Option<&Session>,
    new: NewSession,
) -> Result<(Session, Option<HeaderValue>), PageError> {
    let now = state.core.clock.now();
    let ttl = if new.principal.is_some() {
        Duration::hours(SIGNED_IN_TTL_HOURS)
    } else {
        Duration::minutes(VISITOR_TTL_MINUTES)
    };
    let value = random_hex();
    let model = row::ActiveModel {
        id_hash: Set(hash_of(&value)),
        party_id: Set(new.principal.map(|p| p.party.uuid())),
        role: Set(new.principal.map(|p| p.role)),
        card_id: Set(new.principal.and_then(|p| p.card).map(|c| c.uuid())),
        csrf_token: Set(random_hex()),
        phone_access: Set(new.phone_access),
        pending_login: Set(new.pending_login.map(|c| c.uuid())),
        created_at: Set(now),
        expires_at: Set(now + ttl),
    };
    let inserted = state
        .in_write_txn(async |txn, _| {
            if let Some(previous) = previous {
                row::Entity::delete_by_id(previous.id_hash.clone())
                    .exec(txn)
                    .await?;
            }
            row::Entity::insert(model).exec_with_returning(txn).await
        })
        .await?;
    let cookie = set_cookie(headers, &value, ttl.num_seconds());
    Ok((session_of(inserted), cookie))
}

/// Deletes every session that has expired by the service clock; returns how many. A session
/// is never revived, so a row that expires while it runs is simply left for the next sweep.
/// Like every write to the sessions table, it goes through the runner's write transaction (on
/// SQLite, the one writer; a write beside it would wait on the file lock).
pub async fn sweep_expired(state: &AppState) -> Result<u64, sea_orm::DbErr> {
    let now = state.core.clock.now();
    state
        .in_write_txn(async |txn, _| {
            let swept = row::Entity::delete_many()
                .filter(row::Column::ExpiresAt.lte(now))
                .exec(txn)
                .await?;
            Ok(swept.rows_affected)
        })
        .await
}

/// Ends a session (sign-out): its row is deleted; returns the header that clears the cookie.
pub async fn end(
    state: &AppState,
    headers: &HeaderMap,
    session: &Session,
) -> Result<Option<HeaderValue>, PageError> {
    let id_hash = session.id_hash.clone();
    state
        .in_write_txn(async |txn, _| row::Entity::delete_by_id(id_hash).exec(txn).await)
        .await?;
    Ok(set_cookie(headers, "", 0))
}

/// Records that this session was given the phone simulator's key.
pub async fn grant_phone_access(state: &AppState, session: &Session) -> Result<(), PageError> {
    update_session(state, session, row::Column::PhoneAccess, Expr::value(true)).await
}

/// Records (or clears) the card login waiting for its code.
pub async fn set_pending_login(
    state: &AppState,
    session: &Session,
    challenge: Option<ChallengeId>,
) -> Result<(), PageError> {
    update_session(
        state,
        session,
        row::Column::PendingLogin,
        Expr::value(challenge.map(|c| c.uuid())),
    )
    .await
}

/// Sets one column of the session's row, in the runner's write transaction.
async fn update_session(
    state: &AppState,
    session: &Session,
    column: row::Column,
    value: sea_orm::sea_query::SimpleExpr,
) -> Result<(), PageError> {
    let id_hash = session.id_hash.clone();
    state
        .in_write_txn(async |txn, _| {
            row::Entity::update_many()
                .col_expr(column, value)
                .filter(row::Column::IdHash.eq(id_hash))
                .exec(txn)
                .await
        })
        .await?;
    Ok(())
}

/// The session of the request, if any (a visitor without one is not an error).
#[derive(Debug, Clone)]
pub struct MaybeSession(pub Option<Session>);

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        Ok(MaybeSession(load(state, &parts.headers).await?))
    }
}

/// A signed-in session; anyone else is sent to the sign-in page.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub session: Session,
    pub principal: Principal,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let session = load(state, &parts.headers)
            .await?
            .ok_or(PageError::SignIn)?;
        let principal = session.principal()?;
        Ok(SignedIn { session, principal })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::console::test_headers as headers;

    #[test]
    fn the_cookie_is_found_among_others_and_a_malformed_one_is_ignored() {
        let good = "ab".repeat(32);
        let found = cookie_value(&headers(&[(
            "cookie",
            &format!("theme=dark; {COOKIE}={good}; x=1"),
        )]));
        assert_eq!(found.as_deref(), Some(good.as_str()));
        assert!(cookie_value(&headers(&[("cookie", &format!("{COOKIE}=short"))])).is_none());
        assert!(
            cookie_value(&headers(&[(
                "cookie",
                &format!("{COOKIE}={}", "zz".repeat(32))
            )]))
            .is_none()
        );
    }

    #[test]
    fn the_cookie_is_secure_except_on_a_loopback_host() {
        let local = set_cookie(&headers(&[("host", "127.0.0.1:8080")]), "v", 60).unwrap();
        let local = local.to_str().unwrap();
        assert!(local.contains("HttpOnly") && local.contains("SameSite=Strict"));
        assert!(!local.contains("Secure"));
        let named = set_cookie(&headers(&[("host", "localhost")]), "v", 60).unwrap();
        assert!(!named.to_str().unwrap().contains("Secure"));
        let v6 = set_cookie(&headers(&[("host", "[::1]:80")]), "v", 60).unwrap();
        assert!(!v6.to_str().unwrap().contains("Secure"));
        let public = set_cookie(&headers(&[("host", "holdfast.example")]), "v", 60).unwrap();
        assert!(public.to_str().unwrap().ends_with("; Secure"));
        let tricky = set_cookie(&headers(&[("host", "localhost.example.com")]), "v", 60).unwrap();
        assert!(tricky.to_str().unwrap().ends_with("; Secure"));
    }

    #[test]
    fn only_the_hash_of_the_cookie_is_stored() {
        let value = random_hex();
        assert_eq!(value.len(), 64);
        assert_ne!(hash_of(&value), value);
        assert_eq!(hash_of(&value), hash_of(&value));
        assert_ne!(random_hex(), value);
    }
}
