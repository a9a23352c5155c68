//! Pages of a member drugstore (its own login or a pharmacist): look up the medical card the
//! patient presents (only that prescriptions exist: numbers, item counts, validity), ask to
//! open one (the patient's phone decides; the page waits for it by itself), read it once
//! allowed (each read is in the patient's access log), price it, follow the patient's payment
//! confirmation, dispense, ask to be paid, or hand it back. The same use cases as
//! `/v1/pharmacy/lookups`, `…/claim`, `…/price`, `…/dispense`, `…/payment-request` and
//! `…/hand-back`.
//!
//! The claim secret, which the API hands to the client once and every later request must
//! send, is kept by the drugstore's browser in an `HttpOnly; SameSite=Strict` cookie whose
//! path is the prescription's pages, so it never appears on a page and the server still keeps
//! only its hash. Another browser claims again (the use case re-issues the secret to the
//! drugstore that holds the prescription, and the old one stops working).

use super::page::{self, FormClaim, Layout, PageError, PageResult, Posted};
use super::rx::{self, ListQuery, ListShown, ReceiptShown, Shown};
use super::session::SignedIn;
use super::txn;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use axum::routing::{get, post};
use holdfast_core::cards::CardNumber;
use holdfast_core::order_number::OrderNumber;
use holdfast_core::parties::Role;
use holdfast_core::{CoreError, Currency, Money, ledger};
use holdfast_pharmacy::PharmacyError;
use holdfast_pharmacy::claims::{self, Availability};
use holdfast_pharmacy::number::PrescriptionNumber;
use holdfast_pharmacy::parties::Actor;
use holdfast_pharmacy::payment::{self, Dispensing};
use holdfast_pharmacy::prescriptions::{self, Handover, ItemView, PrescriptionReceipt};
use holdfast_pharmacy::state::PrescriptionState;
use serde::Deserialize;
use std::str::FromStr;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/drugstore", get(home))
        .route("/drugstore/lookup", post(lookup))
        .route("/drugstore/prescriptions/{number}", get(show))
        .route("/drugstore/prescriptions/{number}/status", get(status))
        .route("/drugstore/prescriptions/{number}/content", get(content))
        .route("/drugstore/prescriptions/{number}/claim", post(claim))
        .route("/drugstore/prescriptions/{number}/price", post(price))
        .route("/drugstore/prescriptions/{number}/dispense", post(dispense))
        .route(
            "/drugstore/prescriptions/{number}/payment-request",
            post(request_payment),
        )
        .route(
            "/drugstore/prescriptions/{number}/hand-back",
            post(hand_back),
        )
}

async fn drugstore(state: &AppState, principal: &Principal) -> Result<Actor, PageError> {
    PageError::require(principal, &[Role::Drugstore])?;
    rx::actor(state, principal).await
}

// ---- the claim secret cookie ----

const SECRET_COOKIE: &str = "holdfast_claim";
/// How long the browser keeps a claim secret; after that, claiming again re-issues it.
const SECRET_MAX_AGE_SECS: i64 = 7 * 24 * 3600;

fn prescription_path(number: &PrescriptionNumber) -> String {
    format!("/drugstore/prescriptions/{number}")
}

/// The claim secret this browser holds for the prescription whose page was asked for (the
/// cookie's path limits it to that prescription's pages).
fn secret_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SECRET_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` that gives (or, with `None`, takes back) the claim secret.
fn secret_cookie(
    headers: &HeaderMap,
    number: &PrescriptionNumber,
    secret: Option<&str>,
) -> Option<HeaderValue> {
    let secure = if super::session::is_loopback_host(headers) {
        ""
    } else {
        "; Secure"
    };
    let (value, max_age) = secret.map_or(("", 0), |s| (s, SECRET_MAX_AGE_SECS));
    HeaderValue::from_str(&format!(
        "{SECRET_COOKIE}={value}; HttpOnly; SameSite=Strict; Path={}; Max-Age={max_age}{secure}",
        prescription_path(number)
    ))
    .ok()
}

fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

// ---- home: look-up and the prescriptions the drugstore holds ----

struct AccountShown {
    kind: String,
    balance: String,
}

#[derive(Template)]
#[template(path = "console/pharmacy/drugstore_home.html")]
struct HomePage {
    layout: Layout,
    drugstore: String,
    list: ListShown,
    list_path: &'static str,
    item_path: &'static str,
    list_caption: &'static str,
    accounts: Vec<AccountShown>,
}

async fn home(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let actor = drugstore(&state, &signed_in.principal).await?;
    let store = actor.drugstore()?.clone();
    let (filter, page) = rx::filter(&query)?;
    let found = prescriptions::list_page(&state.db, &state.core, &actor, &filter, &page).await?;
    let accounts = ledger::accounts_of(&state.db, store.drugstore_id)
        .await?
        .into_iter()
        .map(|a| AccountShown {
            kind: format!("{:?}", a.kind).to_lowercase(),
            balance: Money::from_minor(a.balance.max(0), a.currency)
                .map_or_else(|_| "–".to_owned(), |m| m.to_string()),
        })
        .collect();
    page::render(&HomePage {
        layout: Layout::signed_in("Drugstore", &signed_in.session, "/drugstore"),
        drugstore: store.name,
        list: rx::list_shown("/drugstore", &query, &filter, &found),
        list_path: "/drugstore",
        item_path: "/drugstore/prescriptions",
        list_caption: "Prescriptions you hold or were sent, newest first",
        accounts,
    })
}

#[derive(Deserialize)]
struct LookupForm {
    card_number: String,
}

struct FoundShown {
    number: String,
    item_count: u64,
    valid_until: String,
    /// "ask" (in the pool), "claim" (the patient chose this drugstore), "" (someone is asked).
    action: &'static str,
    availability: &'static str,
}

#[derive(Template)]
#[template(path = "console/pharmacy/drugstore_lookup.html")]
struct LookupPage {
    layout: Layout,
    card_number: String,
    found: Vec<FoundShown>,
}

/// The look-up answers on the page of the post itself: the card number stays out of URLs
/// and browser history, and a reload asks before repeating a look-up the patient sees logged.
async fn lookup(State(state): State<AppState>, posted: Posted<LookupForm>) -> PageResult {
    let actor = drugstore(&state, &posted.session.principal()?).await?;
    let card = CardNumber::parse(posted.form.card_number.trim()).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_card_number",
            e.to_string(),
        )
    })?;
    let found = state
        .in_write_txn(async |txn, core| claims::lookup_in_txn(txn, core, &actor, &card).await)
        .await?
        .into_iter()
        .map(|e| {
            let (action, availability) = match e.availability {
                Availability::Available => ("ask", "in the pool: ask the patient to open it"),
                Availability::RoutedToYou => ("claim", "the patient chose your drugstore"),
                Availability::AwaitingConsent => {
                    ("", "a drugstore is waiting for the patient's answer")
                }
            };
            FoundShown {
                number: e.prescription_number.to_string(),
                item_count: e.item_count,
                valid_until: rx::time(e.valid_until),
                action,
                availability,
            }
        })
        .collect();
    page::render(&LookupPage {
        layout: Layout::signed_in("Prescriptions for a card", &posted.session, "/drugstore"),
        card_number: card.to_string(),
        found,
    })
}

// ---- one prescription ----

#[derive(Deserialize, Default)]
struct ClaimForm {
    #[serde(default)]
    card_number: String,
}

async fn claim(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    posted: Posted<ClaimForm>,
) -> PageResult {
    let actor = drugstore(&state, &posted.session.principal()?).await?;
    let number = rx::number(&raw)?;
    let card = match posted.form.card_number.trim() {
        "" => None,
        raw => Some(CardNumber::parse(raw).map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_card_number",
                e.to_string(),
            )
        })?),
    };
    // The claim's secret goes to this browser's cookie and is not recorded with the form's
    // claim: the same form sent again lands on the prescription's page, which offers to claim
    // again if this browser never got the secret.
    let mut secret = None;
    txn::write(&state, posted.claim, async |txn, core| {
        let claim = claims::claim_in_txn(txn, core, &actor, &number, card).await?;
        secret = Some(claim.claim_secret);
        Ok(())
    })
    .await?;
    let page = page::see_other(&prescription_path(&number));
    Ok(match secret {
        Some(secret) => with_cookie(page, secret_cookie(&headers, &number, Some(&secret))),
        None => page,
    })
}

#[derive(Template)]
#[template(path = "console/pharmacy/drugstore_show.html")]
struct ShowPage {
    layout: Layout,
    number: String,
    receipt: Option<ReceiptShown>,
    /// Why this browser sees no receipt (the API's code and message).
    refused: Option<page::Notice>,
    /// The secret is missing or stale here, but the drugstore may claim again.
    can_claim_again: bool,
    live: Option<String>,
    can_read: bool,
    can_claim: bool,
    can_price: bool,
    can_dispense: bool,
    needs_order_number: bool,
    can_request_payment: bool,
    can_hand_back: bool,
    currency: String,
    settled_amount: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    signed_in: SignedIn,
    Path(raw): Path<String>,
) -> PageResult {
    let actor = drugstore(&state, &signed_in.principal).await?;
    let number = rx::number(&raw)?;
    let secret = secret_of(&headers);
    let layout = Layout::signed_in(
        format!("Prescription {number}"),
        &signed_in.session,
        "/drugstore",
    );
    let found =
        prescriptions::receipt(&state.db, &state.core, &actor, &number, secret.as_deref()).await;
    let receipt = match found {
        Ok(receipt) => receipt,
        Err(error @ (PharmacyError::ClaimSecret | PharmacyError::NotHeld)) => {
            // Held, but this browser lacks the secret: claiming again re-issues it.
            let can_claim_again = matches!(error, PharmacyError::ClaimSecret);
            let error = ApiError::from(error);
            let mut response = page::render(&ShowPage {
                layout,
                number: number.to_string(),
                receipt: None,
                refused: Some(page::Notice::from(&error)),
                can_claim_again,
                live: None,
                can_read: false,
                can_claim: false,
                can_price: false,
                can_dispense: false,
                needs_order_number: false,
                can_request_payment: false,
                can_hand_back: false,
                currency: String::new(),
                settled_amount: None,
            })?;
            *response.status_mut() = error.status;
            return Ok(response);
        }
        Err(error) => return Err(error.into()),
    };
    let state_now = receipt.state;
    let card_payment = receipt
        .payment
        .as_ref()
        .is_some_and(|p| p.method != holdfast_pharmacy::prescriptions::PaymentMethod::Cash);
    let live = rx::is_waiting(&receipt).then(|| {
        format!(
            "{}/status?v={}",
            prescription_path(&number),
            rx::fingerprint(&receipt)
        )
    });
    page::render(&ShowPage {
        layout,
        number: number.to_string(),
        refused: None,
        can_claim_again: false,
        live,
        can_read: state_now.is_claimed() || state_now == PrescriptionState::Routed,
        can_claim: state_now == PrescriptionState::Routed,
        can_price: matches!(
            state_now,
            PrescriptionState::Claimed | PrescriptionState::Priced
        ),
        can_dispense: state_now == PrescriptionState::Paid,
        needs_order_number: card_payment,
        can_request_payment: state_now == PrescriptionState::Dispensed
            && card_payment
            && receipt
                .payment
                .as_ref()
                .and_then(|p| p.escrow_state)
                .is_some_and(|s| s == holdfast_core::escrow::CaseState::Delivered),
        can_hand_back: state_now.is_claimed() && state_now.is_undispensed(),
        currency: receipt
            .price
            .map_or_else(|| "USD".to_owned(), |p| p.currency().to_string()),
        settled_amount: (state_now == PrescriptionState::Settled)
            .then_some(receipt.price)
            .flatten()
            .map(|p| p.to_string()),
        receipt: Some(ReceiptShown::from(&receipt)),
    })
}

async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
    signed_in: SignedIn,
    Path(raw): Path<String>,
    Query(shown): Query<Shown>,
) -> PageResult {
    let actor = drugstore(&state, &signed_in.principal).await?;
    let number = rx::number(&raw)?;
    let secret = secret_of(&headers);
    match prescriptions::receipt(&state.db, &state.core, &actor, &number, secret.as_deref()).await {
        Ok(receipt) => Ok(rx::live_answer(&receipt, shown.v.as_deref())),
        // The patient denied, or did not answer: the page reloads and says so.
        Err(PharmacyError::ClaimSecret | PharmacyError::NotHeld) => Ok(rx::live_answer_changed()),
        Err(error) => Err(error.into()),
    }
}

struct ItemShown {
    name: String,
    drug_code: String,
    strength: String,
    dose: String,
    quantity: String,
    days: i32,
    class: &'static str,
}

impl From<ItemView> for ItemShown {
    fn from(item: ItemView) -> Self {
        ItemShown {
            quantity: format!("{} {}", item.quantity, item.unit).trim().to_owned(),
            name: item.name,
            drug_code: item.drug_code,
            strength: item.strength,
            dose: item.dose,
            days: item.days,
            class: match item.class {
                holdfast_pharmacy::prescriptions::DrugClass::Standard => "standard",
                holdfast_pharmacy::prescriptions::DrugClass::Controlled => "controlled",
            },
        }
    }
}

#[derive(Template)]
#[template(path = "console/pharmacy/content.html")]
struct ContentPage {
    layout: Layout,
    back: String,
    hospital: String,
    prescriber: String,
    patient_card: String,
    items: Vec<ItemShown>,
    notes: String,
    logged_as: &'static str,
}

/// The prescription's content: a read the patient sees in the access log.
async fn content(
    State(state): State<AppState>,
    headers: HeaderMap,
    signed_in: SignedIn,
    Path(raw): Path<String>,
) -> PageResult {
    let actor = drugstore(&state, &signed_in.principal).await?;
    let number = rx::number(&raw)?;
    let secret = secret_of(&headers);
    let view = state
        .in_write_txn(async |txn, core| {
            prescriptions::read_view_in_txn(txn, core, &actor, &number, secret.as_deref()).await
        })
        .await?;
    page::render(&ContentPage {
        layout: Layout::signed_in(
            format!("What prescription {number} says"),
            &signed_in.session,
            "/drugstore",
        ),
        back: prescription_path(&number),
        hospital: view.hospital.name,
        prescriber: view.prescriber.name,
        patient_card: view.patient_card,
        items: view.items.into_iter().map(ItemShown::from).collect(),
        notes: view.notes.unwrap_or_default(),
        logged_as: "This read is in the patient's access log, under your name and drugstore.",
    })
}

/// What a holder's step is given: the drugstore acting, the prescription, and the secret this
/// browser holds.
struct Holder {
    actor: Actor,
    number: PrescriptionNumber,
    secret: Option<String>,
}

/// Runs one of the holder's use cases (with the secret this browser holds), claimed by the
/// form's nonce, and goes back to the prescription's page.
async fn as_holder<F>(
    state: &AppState,
    headers: &HeaderMap,
    posted_by: &Principal,
    claim: FormClaim,
    raw: &str,
    step: F,
) -> PageResult
where
    F: AsyncFnOnce(
        &sea_orm::DatabaseTransaction,
        &holdfast_core::Core,
        &Holder,
    ) -> ApiResult<PrescriptionReceipt>,
{
    let holder = Holder {
        actor: drugstore(state, posted_by).await?,
        number: rx::number(raw)?,
        secret: secret_of(headers),
    };
    txn::write(state, claim, async |txn, core| {
        step(txn, core, &holder).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other(&prescription_path(&holder.number)))
}

#[derive(Deserialize)]
struct PriceForm {
    amount: String,
    currency: String,
}

async fn price(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    posted: Posted<PriceForm>,
) -> PageResult {
    let currency = Currency::from_str(posted.form.currency.trim()).map_err(CoreError::from)?;
    let amount = Money::parse(posted.form.amount.trim(), currency).map_err(CoreError::from)?;
    let principal = posted.session.principal()?;
    as_holder(
        &state,
        &headers,
        &principal,
        posted.claim,
        &raw,
        async |txn, core, h| {
            let secret = h.secret.as_deref();
            Ok(payment::price_in_txn(txn, core, &h.actor, &h.number, secret, amount).await?)
        },
    )
    .await
}

#[derive(Deserialize)]
struct DispenseForm {
    #[serde(default)]
    order_number: String,
    handover: Handover,
}

fn order_number(raw: &str) -> Result<OrderNumber, PageError> {
    OrderNumber::parse(raw.trim()).map_err(|e| PageError::Api(ApiError::invalid(e.to_string())))
}

async fn dispense(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    posted: Posted<DispenseForm>,
) -> PageResult {
    let dispensing = Dispensing {
        order_number: match posted.form.order_number.trim() {
            "" => None,
            raw => Some(order_number(raw)?),
        },
        handover: posted.form.handover,
    };
    let principal = posted.session.principal()?;
    as_holder(
        &state,
        &headers,
        &principal,
        posted.claim,
        &raw,
        async |txn, core, h| {
            let secret = h.secret.as_deref();
            Ok(
                payment::dispense_in_txn(txn, core, &h.actor, &h.number, secret, dispensing)
                    .await?,
            )
        },
    )
    .await
}

#[derive(Deserialize)]
struct PaymentRequestForm {
    order_number: String,
}

async fn request_payment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    posted: Posted<PaymentRequestForm>,
) -> PageResult {
    let quoted = order_number(&posted.form.order_number)?;
    let principal = posted.session.principal()?;
    as_holder(
        &state,
        &headers,
        &principal,
        posted.claim,
        &raw,
        async |txn, core, h| {
            let secret = h.secret.as_deref();
            let quoted = &quoted;
            Ok(
                payment::request_payment_in_txn(txn, core, &h.actor, &h.number, secret, quoted)
                    .await?,
            )
        },
    )
    .await
}

async fn hand_back(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    posted: Posted<page::NoFields>,
) -> PageResult {
    let actor = drugstore(&state, &posted.session.principal()?).await?;
    let number = rx::number(&raw)?;
    let secret = secret_of(&headers);
    txn::write(&state, posted.claim, async |txn, core| {
        claims::hand_back_in_txn(txn, core, &actor, &number, secret.as_deref()).await?;
        Ok(())
    })
    .await?;
    // The secret is dead: the browser forgets it too.
    Ok(with_cookie(
        page::see_other("/drugstore"),
        secret_cookie(&headers, &number, None),
    ))
}
