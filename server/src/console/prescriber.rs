//! Pages of hospital staff (the prescriber): enter a prescription for the patient's medical
//! card, see where it stands, cancel it until it is dispensed, and the hospital's
//! prescriptions, paged and filtered by state. The same use cases as
//! `POST /v1/pharmacy/prescriptions`, `…/cancel`, `GET …/history` and the list; the
//! prescription's own page shows its receipt and history (no content), so looking at it
//! writes nothing to the patient's access log.

use super::page::{self, FormClaim, Layout, Notice, PageError, PageResult, Posted};
use super::rx::{self, HistoryShown, ListQuery, ListShown, ReceiptShown, Shown};
use super::session::{Session, SignedIn};
use super::txn;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use holdfast_core::parties::Role;
use holdfast_pharmacy::parties::{self, Actor};
use holdfast_pharmacy::payment;
use holdfast_pharmacy::prescriptions::{self, NewPrescription};
use std::collections::HashMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/prescriber", get(list_page))
        .route("/prescriber/new", get(new_page))
        .route("/prescriber/prescriptions", post(issue))
        .route("/prescriber/prescriptions/{number}", get(show))
        .route("/prescriber/prescriptions/{number}/status", get(status))
        .route("/prescriber/prescriptions/{number}/cancel", post(cancel))
}

async fn prescriber(state: &AppState, principal: &Principal) -> Result<Actor, PageError> {
    PageError::require(principal, &[Role::Prescriber])?;
    rx::actor(state, principal).await
}

#[derive(Template)]
#[template(path = "console/pharmacy/prescriber_list.html")]
struct ListPage {
    layout: Layout,
    hospital: String,
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
    let actor = prescriber(&state, &signed_in.principal).await?;
    let hospital = match &actor {
        Actor::Prescriber { hospital, .. } => hospital.name.clone(),
        _ => String::new(),
    };
    let (filter, page) = rx::filter(&query)?;
    let found = prescriptions::list_page(&state.db, &state.core, &actor, &filter, &page).await?;
    page::render(&ListPage {
        layout: Layout::signed_in("Prescriptions", &signed_in.session, "/prescriber"),
        hospital,
        list: rx::list_shown("/prescriber", &query, &filter, &found),
        list_path: "/prescriber",
        item_path: "/prescriber/prescriptions",
        list_caption: "Your hospital's prescriptions, newest first",
    })
}

/// How many item rows the form offers (the vertical takes up to 20; more can follow as a
/// second prescription).
const ITEM_ROWS: usize = 3;
const ITEM_FIELDS: [&str; 8] = [
    "drug_code",
    "name",
    "strength",
    "dose",
    "quantity",
    "unit",
    "days",
    "class",
];

struct ItemRow {
    n: usize,
    drug_code: String,
    name: String,
    strength: String,
    dose: String,
    quantity: String,
    unit: String,
    days: String,
    controlled: bool,
}

struct DrugstoreOption {
    id: String,
    name: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "console/pharmacy/prescriber_new.html")]
struct NewPage {
    layout: Layout,
    notice: Option<Notice>,
    card_number: String,
    rows: Vec<ItemRow>,
    validity_days: String,
    notes: String,
    drugstores: Vec<DrugstoreOption>,
}

type Form = HashMap<String, String>;

fn field<'a>(form: &'a Form, name: &str) -> &'a str {
    form.get(name).map_or("", |v| v.trim())
}

async fn new_form(
    state: &AppState,
    session: &Session,
    form: &Form,
    notice: Option<Notice>,
) -> Result<NewPage, PageError> {
    let chosen = field(form, "drugstore");
    let drugstores = parties::list_drugstores(&state.db, 100)
        .await?
        .into_iter()
        .map(|d| DrugstoreOption {
            id: d.drugstore_id.to_string(),
            selected: d.drugstore_id.to_string() == chosen,
            name: d.name,
        })
        .collect();
    let rows = (1..=ITEM_ROWS)
        .map(|n| {
            let get = |f: &str| field(form, &format!("item{n}_{f}")).to_owned();
            ItemRow {
                n,
                drug_code: get("drug_code"),
                name: get("name"),
                strength: get("strength"),
                dose: get("dose"),
                quantity: get("quantity"),
                unit: get("unit"),
                days: get("days"),
                controlled: get("class") == "controlled",
            }
        })
        .collect();
    Ok(NewPage {
        layout: Layout::signed_in("New prescription", session, "/prescriber/new"),
        notice,
        card_number: field(form, "card_number").to_owned(),
        rows,
        validity_days: field(form, "validity_days").to_owned(),
        notes: form.get("notes").cloned().unwrap_or_default(),
        drugstores,
    })
}

async fn new_page(State(state): State<AppState>, signed_in: SignedIn) -> PageResult {
    prescriber(&state, &signed_in.principal).await?;
    page::render(&new_form(&state, &signed_in.session, &Form::new(), None).await?)
}

fn whole_number(form: &Form, name: &str, label: &str) -> Result<serde_json::Value, ApiError> {
    field(form, name)
        .parse::<u32>()
        .map(serde_json::Value::from)
        .map_err(|_| ApiError::invalid(format!("{label} is a whole number")))
}

/// The form as the API's request body, so that the vertical's own types check every field
/// and refuse with the API's codes.
fn new_prescription(form: &Form) -> Result<NewPrescription, ApiError> {
    let mut items = Vec::new();
    for n in 1..=ITEM_ROWS {
        let name = |f: &str| format!("item{n}_{f}");
        let filled = ITEM_FIELDS
            .iter()
            .filter(|f| **f != "class")
            .any(|f| !field(form, &name(f)).is_empty());
        if !filled {
            continue;
        }
        items.push(serde_json::json!({
            "drug_code": field(form, &name("drug_code")),
            "name": field(form, &name("name")),
            "strength": field(form, &name("strength")),
            "dose": field(form, &name("dose")),
            "quantity": whole_number(form, &name("quantity"), "the quantity")?,
            "unit": field(form, &name("unit")),
            "days": whole_number(form, &name("days"), "the number of days")?,
            "class": if field(form, &name("class")) == "controlled" { "controlled" } else { "standard" },
        }));
    }
    let mut body = serde_json::json!({
        "card_number": field(form, "card_number"),
        "items": items,
    });
    if !field(form, "validity_days").is_empty() {
        body["validity_days"] = whole_number(form, "validity_days", "the validity in days")?;
    }
    if !field(form, "notes").is_empty() {
        body["notes"] = serde_json::Value::from(form.get("notes").cloned().unwrap_or_default());
    }
    if !field(form, "drugstore").is_empty() {
        body["patient_chosen_drugstore_id"] = serde_json::Value::from(field(form, "drugstore"));
    }
    serde_json::from_value(body).map_err(|e| {
        let message = e.to_string();
        let code = holdfast_core::text::field_error_code(&message).unwrap_or("invalid_form");
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    })
}

async fn issue(State(state): State<AppState>, posted: Posted<Form>) -> PageResult {
    let actor = prescriber(&state, &posted.session.principal()?).await?;
    let issued = match new_prescription(&posted.form) {
        Ok(body) => issue_in_txn(&state, posted.claim, actor, body).await,
        Err(error) => Err(PageError::Api(error)),
    };
    match issued {
        Ok(number) => Ok(page::see_other(&format!(
            "/prescriber/prescriptions/{number}"
        ))),
        // The form again, as it was typed, with what went wrong.
        Err(PageError::Api(error)) => {
            let form = new_form(
                &state,
                &posted.session,
                &posted.form,
                Some(Notice::from(&error)),
            )
            .await?;
            let mut response = page::render(&form)?;
            *response.status_mut() = error.status;
            Ok(response)
        }
        Err(other) => Err(other),
    }
}

/// `POST /v1/pharmacy/prescriptions`'s use case, in one write transaction claimed by the
/// form's nonce: the prescription's number is recorded, so the same form sent again lands on
/// the one prescription.
async fn issue_in_txn(
    state: &AppState,
    claim: FormClaim,
    actor: Actor,
    body: NewPrescription,
) -> Result<String, PageError> {
    txn::write(state, claim, async |txn, core| {
        let receipt = prescriptions::issue_in_txn(txn, core, &actor, body).await?;
        Ok(receipt.prescription_number.to_string())
    })
    .await
}

#[derive(Template)]
#[template(path = "console/pharmacy/prescriber_show.html")]
struct ShowPage {
    layout: Layout,
    receipt: ReceiptShown,
    history: Vec<HistoryShown>,
    cancellable: bool,
    live: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(raw): Path<String>,
) -> PageResult {
    let actor = prescriber(&state, &signed_in.principal).await?;
    let number = rx::number(&raw)?;
    let receipt = prescriptions::receipt(&state.db, &state.core, &actor, &number, None).await?;
    let history = prescriptions::history(&state.db, &state.core, &actor, &number, None).await?;
    let live = rx::is_waiting(&receipt).then(|| {
        format!(
            "/prescriber/prescriptions/{number}/status?v={}",
            rx::fingerprint(&receipt)
        )
    });
    page::render(&ShowPage {
        layout: Layout::signed_in(
            format!("Prescription {number}"),
            &signed_in.session,
            "/prescriber",
        ),
        cancellable: receipt.state.is_undispensed(),
        receipt: ReceiptShown::from(&receipt),
        history: history.into_iter().map(HistoryShown::from).collect(),
        live,
    })
}

async fn status(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(raw): Path<String>,
    Query(shown): Query<Shown>,
) -> PageResult {
    let actor = prescriber(&state, &signed_in.principal).await?;
    let number = rx::number(&raw)?;
    let receipt = prescriptions::receipt(&state.db, &state.core, &actor, &number, None).await?;
    Ok(rx::live_answer(&receipt, shown.v.as_deref()))
}

async fn cancel(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    posted: Posted<page::NoFields>,
) -> PageResult {
    let actor = prescriber(&state, &posted.session.principal()?).await?;
    let number = rx::number(&raw)?;
    txn::write(&state, posted.claim, async |txn, core| {
        payment::cancel_in_txn(txn, core, &actor, &number).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other(&format!(
        "/prescriber/prescriptions/{number}"
    )))
}
