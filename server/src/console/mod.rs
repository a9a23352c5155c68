//! The console: server-rendered pages for the people who use Holdfast, served at `/` by the
//! same router as the API (which stays under `/v1`). Pages are thin adapters over the same use
//! cases the API handlers call (core, the verticals, [`crate::app`]); no business rule lives
//! in a page handler.
//!
//! # Layout of the module
//! - [`session`]: the `holdfast_session` cookie, the `console_sessions` table, the
//!   [`session::SignedIn`] and [`session::MaybeSession`] extractors. A session resolves to the
//!   API's own [`crate::auth::Principal`], so role checks are the API's
//!   (`principal.require(&[Role::…])`).
//! - [`page`]: [`page::Layout`] (title, the role's navigation, the CSRF token), [`page::render`],
//!   [`page::PageError`] (every use-case error shows the API's stable code and message; a 500
//!   shows nothing of its cause), and [`page::Posted`], the only way a page accepts a form.
//! - [`txn`]: runs a page's `_in_txn` use case in the runner's write transaction, claimed by
//!   the form's nonce (the same rendered form sent twice runs it once).
//! - [`views`]: presentation helpers (enum labels, times, balances lines, timelines, lists:
//!   `ListParams` (state and date filter, keyset cursor) and `ListNav` (the filter form
//!   `list_filter.html` and the "Next page" link `list_pager.html`), `money_field` for an amount typed in a form, and the fingerprint
//!   that lets a polled fragment answer 204 while unchanged); [`orders_view`]: the live status
//!   of an order shared by the shopper's and the supplier's pages.
//! - one file per audience: [`sign_in`], [`phone`], [`shopper`], [`supplier`], [`carrier`],
//!   [`home`] (landing pages; `/home` serves the roles whose pages are still to come).
//! - templates in `server/templates/console/` (askama, compiled in; `base.html` is the layout:
//!   skip link, navigation by role, `<main id="main">` with the page's `<h1>`), one stylesheet
//!   `server/static/console.css`, and htmx (`server/static/`, served from the binary) for
//!   live updates only.
//!
//! # How to add a page
//! 1. **Template**: `server/templates/console/<area>/<page>.html`, starting with
//!    `{% extends "console/base.html" %}` and filling `{% block content %}`. The layout prints
//!    the `<h1>` from `layout.title`; use `<h2>` and below inside. Every input has a `<label>`;
//!    every money amount is printed whole (`Money`'s `Display` is "24.00 USD", never a bare
//!    number); lists are tables with a `<caption>` or lists with a heading, paged with a "Next
//!    page" link carrying the list's cursor (`views::ListParams::nav`, form-encoded) and
//!    filtered by state and creation date (`{% include "console/list_filter.html" %}`).
//! 2. **Handler**: a struct `#[derive(Template)] #[template(path = "console/…")]` with a
//!    `layout: Layout` field and the page's own fields (views from the use case, not entity
//!    rows). A GET handler takes `SignedIn { session, principal }` (or `MaybeSession` for a
//!    public page), checks the role with `PageError::require(&principal, &[Role::…])?`, calls
//!    the use case's query, and returns `page::render(&MyPage { layout:
//!    Layout::signed_in("Title", &session, "/path"), … })`.
//! 3. **Forms**: every `<form method="post">` carries `{% include "console/form_keys.html" %}`:
//!    the session's CSRF token and a fresh nonce for this form. Its handler takes
//!    `Posted<MyForm>` as its last argument: that checks the session's CSRF token and the
//!    Origin header (403 page otherwise) and parses the urlencoded body into `MyForm` (use the
//!    API's field types, e.g. `holdfast_core::text::Reason`, `Money` via `money_field`, so that
//!    bad input gets the API's codes). Get the principal with `posted.session.principal()?`,
//!    check the role, call ONE use case, and answer `page::see_other("/where/the/result/is")`
//!    (post/redirect/get). The use case runs in [`txn::write`] with its `_in_txn` form and the
//!    form's claim (`posted.claim`), exactly as the API handler's closure does with its
//!    `Idempotency-Key`; the closure's value (serializable: an order's number, the lines a page
//!    shows) is recorded, and the page lands by it, so the same form sent again lands in the
//!    same place without running the use case twice. Only the sign-in forms, the phone
//!    simulator's key and the drugstore's look-up (a query) post without a claim.
//! 4. **Route**: add it to the area's `routes()` (paths are axum 0.8's `/{param}`); a new area's
//!    `routes()` is merged in [`router`].
//! 5. **Navigation**: add the page to its role's arm in [`nav_for`], and if it is the role's
//!    main page, to [`landing_for`].
//! 6. **Live updates** (optional): a fragment route returning a small template without the
//!    layout, and in the page `<div hx-get="/…/fragment" hx-trigger="every 2s"
//!    hx-swap="outerHTML">` around the same markup, so the page still works by reloading.
//! 7. **Test**: drive it in `tests/tests/browser.rs` with `holdfast_tests::browser`
//!    (`ConsoleServer::start()` seeds the demo cast; `driver.browser(..)` is one person;
//!    `fill`/`choose`/`press`/`follow` find fields by label and buttons by text;
//!    `server.phone(..)` and `answer_text(..)` play the phone). Pages only, no API calls;
//!    assert on what the page says (states, amounts to the cent), not on its HTML; every page
//!    visited is checked by axe-core, and `screenshot("<role>")` saves the role's main page.
//!
//! # Cast and principals
//! `--demo` (`server/src/demo.rs`) seeds one sign-in per role and prints them; a new role's
//! pages add its party there. Roles and what they may see are the API's (README, DESIGN.md):
//! a page takes the same `Principal` and calls the same use case with `principal.party`, so a
//! page can never show more than the API would.

pub mod carrier;
pub mod drugstore;
pub mod failed_timers;
pub mod forms;
pub mod home;
pub mod institution;
pub mod insurer;
pub mod operator;
pub mod orders_view;
pub mod page;
pub mod patient;
pub mod payouts;
pub mod phone;
pub mod policies;
pub mod prescriber;
pub mod reconciliation;
pub mod rx;
pub mod service_company;
pub mod session;
pub mod shopper;
pub mod sign_in;
pub mod supplier;
pub mod txn;
pub mod views;

use crate::state::AppState;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use holdfast_core::parties::Role;
use page::NavLink;

/// The console's pages, merged into the application router beside `/v1`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home::landing))
        .route("/home", get(home::home))
        .merge(sign_in::routes())
        .merge(phone::routes())
        .merge(shopper::routes())
        .merge(supplier::routes())
        .merge(carrier::routes())
        .merge(insurer::routes())
        .merge(service_company::routes())
        .merge(policies::routes())
        .merge(institution::routes())
        .merge(operator::routes())
        .merge(failed_timers::routes())
        .merge(reconciliation::routes())
        .merge(prescriber::routes())
        .merge(drugstore::routes())
        .merge(patient::routes())
        .merge(payouts::routes())
        .layer(axum::middleware::from_fn(page_headers))
        .route("/static/console.css", get(stylesheet))
        .route("/static/htmx.min.js", get(htmx))
}

/// Where a role lands after signing in.
pub fn landing_for(role: Role) -> &'static str {
    match role {
        Role::Shopper => "/shop",
        Role::Supplier => "/supplier",
        Role::Distributor => "/carrier",
        Role::Insurer => "/insurer/applications",
        Role::Institution => "/institution/cards",
        Role::Operator => "/operator",
        Role::Prescriber => "/prescriber",
        Role::Drugstore => "/drugstore",
        Role::Terminal | Role::Platform => "/home",
    }
}

/// The navigation a role sees.
pub fn nav_for(role: Role) -> Vec<NavLink> {
    let links: &[(&'static str, &'static str)] = match role {
        Role::Shopper => &[
            ("/shop", "Shop"),
            ("/shop/orders", "Orders"),
            ("/shop/account", "Balances and cards"),
            ("/shop/approvals", "Card-present approvals"),
            ("/policies", "Insurance"),
            ("/patient", "Prescriptions"),
        ],
        Role::Supplier => &[
            ("/supplier", "Settlement status"),
            ("/supplier/goods", "Supplied goods"),
            ("/supplier/check", "Order-number check"),
            ("/supplier/profile", "Information change"),
            ("/supplier/webhooks", "Webhooks"),
            ("/payee/payouts", "Payouts"),
        ],
        Role::Distributor => &[("/carrier", "Parcels"), ("/certificates", "Certificates")],
        Role::Operator => &[
            ("/operator", "Desk"),
            ("/operator/onboarding", "Onboarding"),
            ("/operator/disputes", "Disputes"),
            ("/operator/audit", "Ledger audit"),
            ("/operator/timers", "Failed timers"),
            ("/operator/reconciliation", "Reconciliation"),
            ("/phone", "Phones"),
        ],
        Role::Insurer => &[
            ("/insurer/applications", "Applications"),
            ("/insurer/premiums", "Premiums"),
            ("/insurer/products", "Products"),
            ("/payee/payouts", "Payouts"),
        ],
        Role::Institution => &[
            ("/institution/cards", "Cards"),
            ("/institution/holds", "Holds"),
            ("/institution/accounts", "Freezing account"),
            ("/institution/bank", "Statements & reconciliation"),
        ],
        Role::Prescriber => &[
            ("/prescriber", "Prescriptions"),
            ("/prescriber/new", "New prescription"),
        ],
        Role::Drugstore => &[("/drugstore", "Drugstore"), ("/payee/payouts", "Payouts")],
        Role::Terminal | Role::Platform => &[("/home", "Home")],
    };
    links
        .iter()
        .map(|(href, label)| NavLink { href, label })
        .collect()
}

const STYLESHEET: &[u8] = include_bytes!("../../static/console.css");
const HTMX: &[u8] = include_bytes!("../../static/htmx-2.0.11.min.js");

async fn stylesheet() -> Response {
    static_file("text/css; charset=utf-8", STYLESHEET)
}

async fn htmx() -> Response {
    static_file("text/javascript; charset=utf-8", HTMX)
}

fn static_file(content_type: &'static str, bytes: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response()
}

/// Headers every page gets: scripts and styles from this site only (htmx's inline indicator
/// styles are turned off in the layout), no framing, no caching of personal pages, and no
/// referrer leaking a path (a phone number, an order number) to another site.
async fn page_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// The 404 page, for a browser asking for a page that does not exist.
pub fn not_found_page() -> Response {
    page::error_page(&crate::error::ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "route_not_found",
        "there is no such page",
    ))
}

/// Request headers for the console's unit tests.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&'static str, &str)]) -> axum::http::HeaderMap {
    let mut map = axum::http::HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(value) {
            map.append(*name, value);
        }
    }
    map
}
