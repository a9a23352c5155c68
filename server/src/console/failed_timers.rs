//! The operator's failed timers: the timers the worker gave up on, newest first, each with a
//! form that puts it back (pending, due now) through `holdfast_core::timers::retry_failed_in_txn`
//! — the API's `POST /v1/operator/timers/{timer_id}/retry` in a page.

use super::forms::{label, when};
use super::page::{self, Layout, PageError, PageResult, Posted};
use super::session::SignedIn;
use super::txn;
use super::views;
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use holdfast_core::ids::TimerId;
use holdfast_core::paging::ListKind;
use holdfast_core::parties::Role;
use holdfast_core::timers::{self, FailedTimer};
use serde::{Deserialize, Serialize};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/operator/timers", get(failed_timers_page))
        .route("/operator/timers/{timer_id}/retry", post(retry))
}

struct FailedTimerRow {
    id: String,
    kind: String,
    subject: String,
    attempts: i32,
    last_error: String,
    due_at: String,
}

impl From<FailedTimer> for FailedTimerRow {
    fn from(timer: FailedTimer) -> Self {
        FailedTimerRow {
            id: timer.id.to_string(),
            kind: label(&timer.kind),
            subject: timer.subject.to_string(),
            attempts: timer.attempts,
            last_error: timer.last_error.unwrap_or_default(),
            due_at: when(&timer.due_at),
        }
    }
}

/// What a retry did; recorded with the form's claim, so the same form sent again shows it again.
#[derive(Serialize, Deserialize)]
struct Retried {
    id: String,
    kind: String,
}

#[derive(Template)]
#[template(path = "console/operator/failed_timers.html")]
struct FailedTimersPage {
    layout: Layout,
    timers: Vec<FailedTimerRow>,
    nav: views::ListNav,
    retried: Option<Retried>,
}

async fn render(
    state: &AppState,
    layout: Layout,
    params: &views::ListParams,
    retried: Option<Retried>,
) -> PageResult {
    let page = params.page(ListKind::FailedTimers)?;
    let failed = timers::failed(&state.db, &page).await?;
    page::render(&FailedTimersPage {
        layout,
        nav: params.pager("/operator/timers", failed.next_cursor),
        timers: failed.items.into_iter().map(FailedTimerRow::from).collect(),
        retried,
    })
}

async fn failed_timers_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(params): Query<views::ListParams>,
) -> PageResult {
    PageError::require(&principal, &[Role::Operator])?;
    let layout = Layout::signed_in("Failed timers", &session, "/operator/timers");
    render(&state, layout, &params, None).await
}

/// The retry form carries nothing but its keys (CSRF token and nonce).
#[derive(Deserialize)]
struct RetryForm {}

async fn retry(
    State(state): State<AppState>,
    Path(id): Path<TimerId>,
    posted: Posted<RetryForm>,
) -> PageResult {
    let Posted {
        session,
        form: RetryForm {},
        claim,
    } = posted;
    let principal = session.principal()?;
    PageError::require(&principal, &[Role::Operator])?;
    let by = principal.party;
    let retried = txn::write(&state, claim, async |txn, core| {
        let timer = timers::retry_failed_in_txn(txn, &core.clock, by, id).await?;
        Ok(Retried {
            id: timer.id.to_string(),
            kind: label(&timer.kind),
        })
    })
    .await?;
    let layout = Layout::signed_in("Failed timers", &session, "/operator/timers");
    render(&state, layout, &views::ListParams::default(), Some(retried)).await
}
