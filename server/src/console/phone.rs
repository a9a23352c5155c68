//! The phone page: while the built-in phone simulator is the gateway, `/phone/{phone}` shows
//! what a phone number received, newest first, updating by itself (htmx polls the texts every
//! 2 s; a reload does the same without JavaScript), and answers a challenge with its code as
//! the real phone would (the same [`crate::app::answers`] use cases as
//! `POST /v1/challenges/{id}/answer`). It is how a demo is driven and how the browser suite
//! plays the phone.
//!
//! Behind the simulator inbox's credential: an operator's session, or the simulator key printed
//! at start, asked for once and remembered in the session. Off (404) with a real gateway.

use super::page::{self, FormClaim, Layout, Notice, PageError, PageResult, Posted};
use super::session::{self, MaybeSession, NewSession, Session};
use super::txn;
use crate::app::answers::{self, AnswerRoute, VerticalAnswer};
use crate::error::ApiError;
use crate::idempotency::Outcome;
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use holdfast_core::challenge::{self, ChallengePurpose, ChallengeStatus, Decision};
use holdfast_core::escrow::AnswerEffect;
use holdfast_core::ids::ChallengeId;
use holdfast_core::phone::{self as inbox, InboxMessage};
use holdfast_core::phone_number::PhoneNumber;
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/phone", get(choose_phone))
        .route("/phone/key", post(give_key))
        .route("/phone/{phone}", get(phone_page))
        .route("/phone/{phone}/texts", get(texts_fragment))
        .route("/phone/{phone}/answer", post(answer))
}

/// How many texts the phone shows.
const SHOWN_TEXTS: u64 = 20;

fn simulator_on(state: &AppState) -> Result<(), PageError> {
    if state.simulator_key.is_some() {
        Ok(())
    } else {
        Err(PageError::Api(ApiError::new(
            StatusCode::NOT_FOUND,
            "simulator_disabled",
            "the phone simulator is off: a real phone gateway is configured",
        )))
    }
}

fn parse_phone(raw: &str) -> Result<PhoneNumber, PageError> {
    PhoneNumber::parse(raw.trim()).map_err(|e| PageError::Api(ApiError::invalid(e.to_string())))
}

/// One text on the phone, with what can still be done about its challenge.
struct Text {
    received_at: String,
    body: String,
    challenge_id: Option<ChallengeId>,
    code: String,
    /// `pending`, `approved`, … for a text that asks for an answer.
    status: Option<&'static str>,
    /// The phone can answer it here (a sign-in code is typed on the sign-in page instead).
    answerable: bool,
    is_login: bool,
}

/// What the phone shows, and a fingerprint of it: the polling fragment answers 204 (htmx then
/// swaps nothing, so a code being typed is not wiped) while the fingerprint is unchanged.
async fn texts_of(state: &AppState, phone: &PhoneNumber) -> Result<(Vec<Text>, String), PageError> {
    let messages = inbox::inbox(&state.db, phone, SHOWN_TEXTS).await?;
    let mut texts = Vec::with_capacity(messages.len());
    for InboxMessage {
        challenge_id,
        code,
        body,
        received_at,
        ..
    } in messages
    {
        let found = match challenge_id {
            Some(id) => Some(challenge::get_challenge(&state.db, id).await?),
            None => None,
        };
        let is_login = found
            .as_ref()
            .is_some_and(|c| c.purpose == ChallengePurpose::Login);
        let pending = found
            .as_ref()
            .is_some_and(|c| c.status == ChallengeStatus::Pending);
        texts.push(Text {
            received_at: received_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            body,
            challenge_id,
            code: code.unwrap_or_default(),
            status: found.as_ref().map(|c| c.status.as_str()),
            answerable: pending && !is_login,
            is_login,
        });
    }
    let mut hasher = Sha256::new();
    for text in &texts {
        hasher.update(text.received_at.as_bytes());
        hasher.update(text.body.as_bytes());
        hasher.update(text.status.unwrap_or("-").as_bytes());
    }
    let version = hex::encode(&hasher.finalize()[..8]);
    Ok((texts, version))
}

#[derive(Template)]
#[template(path = "console/phone/choose.html")]
struct ChoosePage {
    layout: Layout,
    needs_key: bool,
}

/// Lets the phone page be reached by typing a number (and the key, once).
async fn choose_phone(
    State(state): State<AppState>,
    headers: HeaderMap,
    MaybeSession(existing): MaybeSession,
) -> PageResult {
    simulator_on(&state)?;
    let (session, cookie) = match existing {
        Some(session) => (session, None),
        None => session::create(&state, &headers, None, NewSession::default()).await?,
    };
    let mut response = page::render(&ChoosePage {
        layout: Layout::new("Phone simulator", Some(&session), "/phone"),
        needs_key: !session.can_use_phone(),
    })?;
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

#[derive(Deserialize)]
struct KeyForm {
    phone: String,
    #[serde(default)]
    simulator_key: String,
}

/// Checks the simulator key once and remembers it in the session; then shows the phone.
async fn give_key(State(state): State<AppState>, posted: Posted<KeyForm>) -> PageResult {
    simulator_on(&state)?;
    let Posted { session, form, .. } = posted;
    let phone = parse_phone(&form.phone)?;
    if !session.can_use_phone() {
        let key = state.simulator_key.as_ref().ok_or(PageError::SignIn)?;
        if !key.matches(form.simulator_key.trim().as_bytes()) {
            return Err(PageError::Api(ApiError::unauthenticated(
                "the simulator key is wrong: it is printed when the server starts",
            )));
        }
        session::grant_phone_access(&state, &session).await?;
    }
    Ok(page::see_other(&format!("/phone/{}", phone.e164())))
}

#[derive(Template)]
#[template(path = "console/phone/phone.html")]
struct PhonePage {
    layout: Layout,
    phone: String,
    texts: Vec<Text>,
    version: String,
    csrf: String,
    notice: Option<Notice>,
}

#[derive(Template)]
#[template(path = "console/phone/texts.html")]
struct TextsFragment {
    phone: String,
    texts: Vec<Text>,
    version: String,
    csrf: String,
}

#[derive(Deserialize)]
struct Shown {
    /// The fingerprint of what the page shows now.
    v: Option<String>,
}

/// The session, if it may use the phone; otherwise the page that asks for the key.
async fn phone_session(
    state: &AppState,
    headers: &HeaderMap,
    existing: Option<Session>,
) -> Result<Result<Session, Response>, PageError> {
    simulator_on(state)?;
    if let Some(session) = existing.filter(Session::can_use_phone) {
        return Ok(Ok(session));
    }
    Ok(Err(choose_phone(
        State(state.clone()),
        headers.clone(),
        MaybeSession(session::load(state, headers).await?),
    )
    .await?))
}

async fn phone_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    MaybeSession(existing): MaybeSession,
    Path(raw): Path<String>,
) -> PageResult {
    let session = match phone_session(&state, &headers, existing).await? {
        Ok(session) => session,
        Err(ask_for_key) => return Ok(ask_for_key),
    };
    let phone = parse_phone(&raw)?;
    let (texts, version) = texts_of(&state, &phone).await?;
    page::render(&PhonePage {
        layout: Layout::new(format!("Phone {}", phone.e164()), Some(&session), "/phone"),
        phone: phone.e164().to_owned(),
        texts,
        version,
        csrf: session.csrf.clone(),
        notice: None,
    })
}

/// The texts alone, for htmx to swap in every 2 s.
async fn texts_fragment(
    State(state): State<AppState>,
    MaybeSession(existing): MaybeSession,
    Path(raw): Path<String>,
    Query(shown): Query<Shown>,
) -> PageResult {
    simulator_on(&state)?;
    let Some(session) = existing.filter(Session::can_use_phone) else {
        return Err(PageError::forbidden("the phone needs the simulator key"));
    };
    let phone = parse_phone(&raw)?;
    let (texts, version) = texts_of(&state, &phone).await?;
    if shown.v.as_deref() == Some(version.as_str()) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    page::render(&TextsFragment {
        phone: phone.e164().to_owned(),
        texts,
        version,
        csrf: session.csrf.clone(),
    })
}

#[derive(Deserialize)]
struct AnswerForm {
    challenge_id: ChallengeId,
    code: String,
    decision: Decision,
}

async fn answer(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    posted: Posted<AnswerForm>,
) -> PageResult {
    simulator_on(&state)?;
    let Posted {
        session,
        form,
        claim,
    } = posted;
    if !session.can_use_phone() {
        return Err(PageError::forbidden("the phone needs the simulator key"));
    }
    let phone = parse_phone(&raw)?;
    match answer_challenge(&state, &phone, &form, claim).await {
        Ok(()) => Ok(page::see_other(&format!("/phone/{}", phone.e164()))),
        Err(refused @ (PageError::Api(_) | PageError::Recorded(..))) => {
            let (status, notice) = match refused {
                PageError::Api(error) => (error.status, Notice::from(&error)),
                PageError::Recorded(status, notice) => (status, notice),
                PageError::SignIn => return Err(PageError::SignIn),
            };
            let (texts, version) = texts_of(&state, &phone).await?;
            let mut response = page::render(&PhonePage {
                layout: Layout::new(format!("Phone {}", phone.e164()), Some(&session), "/phone"),
                phone: phone.e164().to_owned(),
                texts,
                version,
                csrf: session.csrf.clone(),
                notice: Some(notice),
            })?;
            *response.status_mut() = status;
            Ok(response.into_response())
        }
        Err(other) => Err(other),
    }
}

/// Answers the challenge as `POST /v1/challenges/{id}/answer` does, for a text this phone
/// received.
async fn answer_challenge(
    state: &AppState,
    phone: &PhoneNumber,
    form: &AnswerForm,
    claim: FormClaim,
) -> Result<(), PageError> {
    challenge::parse_code(&form.code)?;
    let found = challenge::get_challenge(&state.db, form.challenge_id).await?;
    if found.phone.e164() != phone.e164() {
        return Err(PageError::Api(ApiError::not_found("challenge")));
    }
    let (challenge_id, purpose, decision) = (form.challenge_id, found.purpose, form.decision);
    let code = form.code.trim();
    match answers::route_of(purpose) {
        AnswerRoute::Login => Err(PageError::Api(ApiError::invalid(
            "a sign-in code is typed on the sign-in page, not answered from the phone",
        ))),
        AnswerRoute::Case => {
            txn::write_outcome(state, claim, async |txn, core| {
                Ok(
                    match answers::answer_case_in_txn(txn, core, challenge_id, code, decision)
                        .await?
                    {
                        AnswerEffect::Applied(..) => Outcome::Done(()),
                        AnswerEffect::Refused(error) => Outcome::Refused(error.into()),
                    },
                )
            })
            .await
        }
        AnswerRoute::Vertical => {
            txn::write_outcome(state, claim, async |txn, core| {
                Ok(
                    match answers::answer_vertical_in_txn(
                        txn,
                        core,
                        purpose,
                        challenge_id,
                        code,
                        decision,
                    )
                    .await?
                    {
                        VerticalAnswer::Applied(_) => Outcome::Done(()),
                        VerticalAnswer::Refused(error) => Outcome::Refused(error.into()),
                    },
                )
            })
            .await
        }
    }
}
