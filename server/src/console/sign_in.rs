//! Signing in and out. By username and password (the same use case and throttling as
//! `POST /v1/auth/login`), or by EC card number: a code goes to the card's phone, and the
//! person enters it here to approve the sign-in (the same use cases as
//! `POST /v1/auth/card-login` and answering the login challenge). Either way the visitor's
//! session is replaced by a new one naming the principal; the role decides where it lands.

use super::page::{self, Layout, Notice, PageError, PageResult, Posted};
use super::session::{self, MaybeSession, NewSession, Session};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::ClientAddress;
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use holdfast_core::cards::CardNumber;
use holdfast_core::login;
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sign-in", get(sign_in_page))
        .route("/sign-in/password", post(sign_in_with_password))
        .route("/sign-in/card", post(start_card_sign_in))
        .route("/sign-in/code", get(code_page).post(answer_code))
        .route("/sign-out", post(sign_out))
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    layout: Layout,
    notice: Option<Notice>,
    username: String,
    card_number: String,
}

/// Adds the `Set-Cookie` of a new session to a response.
fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// The visitor's session, created if it has none (the sign-in forms need its CSRF token).
async fn visitor_session(
    state: &AppState,
    headers: &HeaderMap,
    existing: Option<Session>,
) -> Result<(Session, Option<HeaderValue>), PageError> {
    match existing {
        Some(session) => Ok((session, None)),
        None => session::create(state, headers, None, NewSession::default()).await,
    }
}

async fn sign_in_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    MaybeSession(existing): MaybeSession,
) -> PageResult {
    if let Some(principal) = existing.as_ref().and_then(|s| s.principal) {
        return Ok(page::see_other(super::landing_for(principal.role)));
    }
    let (session, cookie) = visitor_session(&state, &headers, existing).await?;
    let page = SignInPage {
        layout: Layout::new("Sign in", Some(&session), "/sign-in"),
        notice: None,
        username: String::new(),
        card_number: String::new(),
    };
    Ok(with_cookie(page::render(&page)?, cookie))
}

/// The sign-in page again, with what went wrong, under the error's own status.
fn refused(session: &Session, error: &ApiError, username: String, card: String) -> PageResult {
    let page = SignInPage {
        layout: Layout::new("Sign in", Some(session), "/sign-in"),
        notice: Some(Notice::from(error)),
        username,
        card_number: card,
    };
    let mut response = page::render(&page)?;
    *response.status_mut() = error.status;
    crate::error::ensure_retry_after(&mut response, error.retry_after_secs);
    Ok(response)
}

/// Signs `principal` in: a new session replaces the visitor's, keeping its phone access.
async fn establish(
    state: &AppState,
    headers: &HeaderMap,
    visitor: &Session,
    principal: Principal,
) -> PageResult {
    let (_, cookie) = session::create(
        state,
        headers,
        Some(visitor),
        NewSession {
            principal: Some(principal),
            phone_access: visitor.phone_access,
            pending_login: None,
        },
    )
    .await?;
    Ok(with_cookie(
        page::see_other(super::landing_for(principal.role)),
        cookie,
    ))
}

#[derive(Deserialize)]
struct PasswordForm {
    username: String,
    password: String,
}

async fn sign_in_with_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientAddress(client): ClientAddress,
    posted: Posted<PasswordForm>,
) -> PageResult {
    let Posted { session, form, .. } = posted;
    let party = match password_login(&state, client, &form).await {
        Ok(party) => party,
        Err(error) => return refused(&session, &error, form.username, String::new()),
    };
    let principal = Principal {
        party: party.id,
        role: party.role,
        card: None,
    };
    establish(&state, &headers, &session, principal).await
}

/// The API's password login, with its own input types' checks.
async fn password_login(
    state: &AppState,
    client: holdfast_core::login_throttle::ClientKey,
    form: &PasswordForm,
) -> Result<holdfast_core::parties::Party, ApiError> {
    let username = holdfast_core::text::Username::parse(form.username.trim().to_owned())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    let password = holdfast_core::text::Password::parse(form.password.clone())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    Ok(login::password_login(
        &state.db,
        &state.core,
        &state.login_throttle,
        client,
        &username,
        &password,
    )
    .await?)
}

#[derive(Deserialize)]
struct CardForm {
    card_number: String,
}

async fn start_card_sign_in(State(state): State<AppState>, posted: Posted<CardForm>) -> PageResult {
    let Posted { session, form, .. } = posted;
    let started = match CardNumber::parse(form.card_number.trim()) {
        Ok(number) => state
            .in_write_txn(async |txn, core| {
                login::start_card_login_in_txn(txn, core, &number).await
            })
            .await
            .map_err(ApiError::from),
        Err(error) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_card_number",
            error.to_string(),
        )),
    };
    match started {
        Ok(challenge) => {
            session::set_pending_login(&state, &session, Some(challenge.id)).await?;
            Ok(page::see_other("/sign-in/code"))
        }
        Err(error) => refused(&session, &error, String::new(), form.card_number),
    }
}

#[derive(Template)]
#[template(path = "console/sign_in_code.html")]
struct CodePage {
    layout: Layout,
    notice: Option<Notice>,
}

async fn code_page(MaybeSession(existing): MaybeSession) -> PageResult {
    let Some(session) = existing.filter(|s| s.pending_login.is_some()) else {
        return Ok(page::see_other("/sign-in"));
    };
    page::render(&CodePage {
        layout: Layout::new("Enter the code from your phone", Some(&session), "/sign-in"),
        notice: None,
    })
}

#[derive(Deserialize)]
struct CodeForm {
    code: String,
}

async fn answer_code(
    State(state): State<AppState>,
    headers: HeaderMap,
    posted: Posted<CodeForm>,
) -> PageResult {
    let Posted { session, form, .. } = posted;
    let Some(challenge) = session.pending_login else {
        return Ok(page::see_other("/sign-in"));
    };
    let answered = match holdfast_core::text::ChallengeCode::parse(form.code.trim().to_owned()) {
        Ok(code) => match holdfast_core::challenge::parse_code(&code) {
            Ok(_) => state
                .in_write_txn(async |txn, core| {
                    login::answer_login_in_txn(txn, core, challenge, &code).await
                })
                .await
                .map_err(ApiError::from)
                .and_then(|effect| match effect {
                    // A refusal was committed (the wrong code counts) before it is shown.
                    login::LoginEffect::LoggedIn(party, card) => Ok((party, card)),
                    login::LoginEffect::Refused(error) => Err(ApiError::from(error)),
                }),
            Err(error) => Err(ApiError::from(error)),
        },
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            e.code(),
            e.to_string(),
        )),
    };
    match answered {
        Ok((party, card)) => {
            let principal = Principal {
                party: party.id,
                role: party.role,
                card: Some(card.id),
            };
            establish(&state, &headers, &session, principal).await
        }
        Err(error) => {
            let page = CodePage {
                layout: Layout::new("Enter the code from your phone", Some(&session), "/sign-in"),
                notice: Some(Notice::from(&error)),
            };
            let mut response = page::render(&page)?;
            *response.status_mut() = error.status;
            Ok(response)
        }
    }
}

async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    posted: Posted<page::NoFields>,
) -> PageResult {
    let cookie = session::end(&state, &headers, &posted.session).await?;
    Ok(with_cookie(page::see_other("/sign-in"), cookie).into_response())
}
