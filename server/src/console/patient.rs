//! Pages of the patient (a shopper signed in with the medical card, an EC card): their
//! prescriptions, each with what was prescribed and how to pay for it, the payment
//! confirmations their phone is asked for, and the access log — who read their prescriptions,
//! for which organisation, and when. The same use cases as `GET /v1/pharmacy/prescriptions`,
//! `GET …/{number}` (a read, logged like any other), `POST …/payment` and
//! `GET /v1/pharmacy/me/access-log`. Confirming happens on the phone, never here.

use super::page::{self, Layout, PageError, PageResult, Posted};
use super::rx::{self, ListQuery, ListShown, ReceiptShown, Shown};
use super::session::SignedIn;
use super::txn;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use holdfast_core::parties::Role;
use holdfast_pharmacy::audit;
use holdfast_pharmacy::parties::Actor;
use holdfast_pharmacy::payment::{self, PaymentChoice};
use holdfast_pharmacy::prescriptions::{self, PaymentMethod};
use holdfast_pharmacy::state::PrescriptionState;
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/patient", get(list_page))
        .route("/patient/prescriptions/{number}", get(show))
        .route("/patient/prescriptions/{number}/status", get(status))
        .route("/patient/prescriptions/{number}/payment", post(pay))
        .route("/patient/payments", get(payments))
        .route("/patient/access-log", get(access_log))
}

async fn patient(state: &AppState, principal: &Principal) -> Result<Actor, PageError> {
    PageError::require(principal, &[Role::Shopper])?;
    rx::actor(state, principal).await
}

#[derive(Template)]
#[template(path = "console/pharmacy/patient_list.html")]
struct ListPage {
    layout: Layout,
    list: ListShown,
    list_path: &'static str,
    item_path: &'static str,
    list_caption: &'static str,
}

async fn list_page(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let actor = patient(&state, &signed_in.principal).await?;
    let (filter, page) = rx::filter(&query)?;
    let found = prescriptions::list_page(&state.db, &state.core, &actor, &filter, &page).await?;
    page::render(&ListPage {
        layout: Layout::signed_in("Your prescriptions", &signed_in.session, "/patient"),
        list: rx::list_shown("/patient", &query, &filter, &found),
        list_path: "/patient",
        item_path: "/patient/prescriptions",
        list_caption: "Prescriptions for your medical card, newest first",
    })
}

struct ItemShown {
    name: String,
    strength: String,
    dose: String,
    quantity: String,
    days: i32,
}

#[derive(Template)]
#[template(path = "console/pharmacy/patient_show.html")]
struct ShowPage {
    layout: Layout,
    receipt: ReceiptShown,
    hospital: String,
    prescriber: String,
    items: Vec<ItemShown>,
    notes: String,
    can_pay: bool,
    live: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(raw): Path<String>,
) -> PageResult {
    let actor = patient(&state, &signed_in.principal).await?;
    let number = rx::number(&raw)?;
    let view = state
        .in_write_txn(async |txn, core| {
            prescriptions::read_view_in_txn(txn, core, &actor, &number, None).await
        })
        .await?;
    let receipt = prescriptions::receipt(&state.db, &state.core, &actor, &number, None).await?;
    let live = rx::is_waiting(&receipt).then(|| {
        format!(
            "/patient/prescriptions/{number}/status?v={}",
            rx::fingerprint(&receipt)
        )
    });
    page::render(&ShowPage {
        layout: Layout::signed_in(
            format!("Prescription {number}"),
            &signed_in.session,
            "/patient",
        ),
        can_pay: receipt.state == PrescriptionState::Priced,
        receipt: ReceiptShown::from(&receipt),
        hospital: view.hospital.name,
        prescriber: view.prescriber.name,
        items: view
            .items
            .into_iter()
            .map(|item| ItemShown {
                quantity: format!("{} {}", item.quantity, item.unit).trim().to_owned(),
                name: item.name,
                strength: item.strength,
                dose: item.dose,
                days: item.days,
            })
            .collect(),
        notes: view.notes.unwrap_or_default(),
        live,
    })
}

async fn status(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(raw): Path<String>,
    Query(shown): Query<Shown>,
) -> PageResult {
    let actor = patient(&state, &signed_in.principal).await?;
    let number = rx::number(&raw)?;
    let receipt = prescriptions::receipt(&state.db, &state.core, &actor, &number, None).await?;
    Ok(rx::live_answer(&receipt, shown.v.as_deref()))
}

#[derive(Deserialize)]
struct PayForm {
    method: PaymentMethod,
    #[serde(default)]
    installment_months: String,
}

async fn pay(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    posted: Posted<PayForm>,
) -> PageResult {
    let actor = patient(&state, &posted.session.principal()?).await?;
    let number = rx::number(&raw)?;
    let installment_months = match (posted.form.method, posted.form.installment_months.trim()) {
        (PaymentMethod::Installments, months) => Some(months.parse::<u32>().map_err(|_| {
            ApiError::invalid("give the number of monthly installments as a whole number")
        })?),
        _ => None,
    };
    let choice = PaymentChoice {
        method: posted.form.method,
        installment_months,
    };
    txn::write(&state, posted.claim, async |txn, core| {
        payment::choose_payment_in_txn(txn, core, &actor, &number, choice).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other(&format!("/patient/prescriptions/{number}")))
}

#[derive(Template)]
#[template(path = "console/pharmacy/patient_payments.html")]
struct PaymentsPage {
    layout: Layout,
    payments: Vec<ReceiptShown>,
    next: Option<String>,
}

/// Each prescription's payment and the confirmation the phone is asked for, from its receipt
/// (which logs nothing: this page is not a read of the content).
async fn payments(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let actor = patient(&state, &signed_in.principal).await?;
    let (filter, page) = rx::filter(&query)?;
    let found = prescriptions::list_page(&state.db, &state.core, &actor, &filter, &page).await?;
    let mut payments = Vec::new();
    for summary in &found.items {
        let receipt = prescriptions::receipt(
            &state.db,
            &state.core,
            &actor,
            &summary.prescription_number,
            None,
        )
        .await?;
        if receipt.price.is_some() || receipt.payment.is_some() {
            payments.push(ReceiptShown::from(&receipt));
        }
    }
    let next = rx::list_shown("/patient/payments", &query, &filter, &found).next;
    page::render(&PaymentsPage {
        layout: Layout::signed_in("Payments", &signed_in.session, "/patient/payments"),
        payments,
        next,
    })
}

#[derive(Deserialize)]
struct LogQuery {
    before: Option<DateTime<Utc>>,
}

struct AccessShown {
    number: String,
    reader: String,
    role: String,
    organisation: String,
    what: &'static str,
    at: String,
}

#[derive(Template)]
#[template(path = "console/pharmacy/patient_access_log.html")]
struct AccessLogPage {
    layout: Layout,
    entries: Vec<AccessShown>,
    next: Option<String>,
}

const LOG_PAGE: u64 = 50;

async fn access_log(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<LogQuery>,
) -> PageResult {
    PageError::require(&signed_in.principal, &[Role::Shopper])?;
    let entries =
        audit::access_log_of(&state.db, signed_in.principal.party, query.before, LOG_PAGE).await?;
    let next = (entries.len() as u64 == LOG_PAGE)
        .then(|| entries.last())
        .flatten()
        .map(|last| {
            format!(
                "/patient/access-log?before={}",
                last.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            )
        });
    page::render(&AccessLogPage {
        layout: Layout::signed_in(
            "Who read your prescriptions",
            &signed_in.session,
            "/patient/access-log",
        ),
        entries: entries
            .into_iter()
            .map(|e| AccessShown {
                number: e.prescription_number.to_string(),
                reader: e.reader_name,
                role: e.reader_role,
                organisation: e.organisation.unwrap_or_else(|| "–".to_owned()),
                what: match e.what.as_str() {
                    "content" => "read what was prescribed",
                    "fhir" => "read the FHIR record",
                    "existence" => "saw that it exists",
                    _ => "read it",
                },
                at: rx::time(e.at),
            })
            .collect(),
        next,
    })
}
