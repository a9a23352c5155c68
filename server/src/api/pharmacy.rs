//! Pharmacy: prescriptions between hospitals and drugstores, paid through escrow.
//!
//! The operator onboards hospitals (with prescribers) and member drugstores (with
//! pharmacists). A prescriber issues a prescription for a patient's medical card number; a
//! drugstore claims it — at once if the patient chose it, else after the patient's phone allows
//! it to open — and receives a claim secret to send as the `Claim-Secret` header from then on.
//! The patient pays by card (the phone confirms the exact amount) or in cash; the drugstore
//! dispenses once and asks to be paid quoting the order number the patient handed over. Every
//! read of a prescription's content is logged; the patient lists the log.
//!
//! Only `GET …/prescriptions/{number}` (and its FHIR view) answers with content, and it logs
//! the read. Every request that changes a prescription answers with a [`PrescriptionReceipt`]
//! — state, price, payment, no items or notes — because that answer is not logged, and with an
//! `Idempotency-Key` it is stored and replayed.

use crate::api::paging::{self, PagedJson};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::idempotency::{IdempotencyKey, Idempotent};
use crate::state::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use holdfast_core::cards::CardNumber;
use holdfast_core::ids::PartyId;
use holdfast_core::order_number::OrderNumber;
use holdfast_core::paging::ListKind;
use holdfast_core::parties::Role;
use holdfast_core::{BasisPoints, Money};
use holdfast_pharmacy::audit::{self, AccessEntry};
use holdfast_pharmacy::claims::{self, Claim, Existence};
use holdfast_pharmacy::number::PrescriptionNumber;
use holdfast_pharmacy::parties::{
    self, Actor, Drugstore, Hospital, HospitalId, NewStaff, StaffCreated,
};
use holdfast_pharmacy::payment::{self, Dispensing, PaymentChoice};
use holdfast_pharmacy::prescriptions::{
    self, HistoryEntry, NewPrescription, PrescriptionReceipt, PrescriptionSummary, PrescriptionView,
};
use holdfast_pharmacy::state::PrescriptionState;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_hospital))
        .routes(routes!(add_prescriber))
        .routes(routes!(create_drugstore, list_drugstores))
        .routes(routes!(add_pharmacist))
        .routes(routes!(issue_prescription, list_prescriptions))
        .routes(routes!(get_prescription))
        .routes(routes!(get_fhir))
        .routes(routes!(history))
        .routes(routes!(cancel))
        .routes(routes!(lookup))
        .routes(routes!(claim))
        .routes(routes!(hand_back))
        .routes(routes!(price))
        .routes(routes!(pay))
        .routes(routes!(dispense))
        .routes(routes!(request_payment))
        .routes(routes!(access_log))
}

/// The caller as the pharmacy vertical sees it: a prescriber with its hospital, a drugstore
/// login with its drugstore, a patient, an operator.
pub struct PharmacyActor(pub Actor);

impl FromRequestParts<AppState> for PharmacyActor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let actor =
            parties::actor(&state.db, principal.party, principal.role, principal.card).await?;
        Ok(PharmacyActor(actor))
    }
}

pub const CLAIM_SECRET_HEADER: &str = "claim-secret";

/// The `Claim-Secret` header a drugstore received when it claimed the prescription.
pub struct ClaimSecret(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClaimSecret {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(ClaimSecret(
            parts
                .headers
                .get(CLAIM_SECRET_HEADER)
                .and_then(|value| value.to_str().ok())
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty()),
        ))
    }
}

fn scope(actor: &Actor) -> String {
    format!("party:{}", actor.party())
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreatePharmacyHospital)]
pub struct CreateHospital {
    pub name: holdfast_core::text::Name,
    /// 1 to 6 letters and digits (zero-padded to 6): the middle group of its prescription
    /// numbers, like an NHS ODS code.
    #[schema(example = "A83008")]
    pub code: holdfast_core::text::Token,
}

/// Onboard a hospital (operator).
#[utoipa::path(post, path = "/v1/pharmacy/hospitals", tag = "pharmacy", security(("bearer" = [])),
    request_body = CreateHospital,
    responses((status = 201, body = Hospital), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, description = "the code is taken", body = crate::error::ErrorBody)))]
pub async fn create_hospital(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateHospital>,
) -> ApiResult<(StatusCode, axum::Json<Hospital>)> {
    principal.require(&[Role::Operator])?;
    let hospital = state
        .in_write_txn(async move |txn, core| {
            parties::create_hospital_in_txn(txn, core, &body.name, &body.code).await
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(hospital)))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreatePharmacyStaff)]
pub struct CreateStaff {
    pub display_name: holdfast_core::text::Name,
    pub username: holdfast_core::text::Username,
    /// 10 to 256 characters.
    pub password: holdfast_core::text::NewPassword,
}

impl From<CreateStaff> for NewStaff {
    fn from(body: CreateStaff) -> Self {
        NewStaff {
            display_name: body.display_name.into(),
            username: body.username.into(),
            password: body.password.into(),
        }
    }
}

/// Give a hospital a prescriber who logs in with a username and password (operator).
#[utoipa::path(post, path = "/v1/pharmacy/hospitals/{hospital_id}/prescribers", tag = "pharmacy",
    security(("bearer" = [])), params(("hospital_id" = HospitalId, Path)), request_body = CreateStaff,
    responses((status = 201, body = StaffCreated), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn add_prescriber(
    State(state): State<AppState>,
    principal: Principal,
    Path(hospital): Path<HospitalId>,
    Json(body): Json<CreateStaff>,
) -> ApiResult<(StatusCode, axum::Json<StaffCreated>)> {
    principal.require(&[Role::Operator])?;
    let staff = NewStaff::from(body).hash(&state.core.passwords).await?;
    let created = state
        .in_write_txn(async move |txn, core| {
            parties::add_prescriber_in_txn(txn, core, hospital, staff).await
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreatePharmacyDrugstore)]
pub struct CreateDrugstore {
    /// The drugstore's name: the payee the patient's phone shows.
    pub name: holdfast_core::text::Name,
    /// The drugstore's own login (it can add pharmacists later through the operator).
    pub username: holdfast_core::text::Username,
    pub password: holdfast_core::text::NewPassword,
    /// The platform's share of what it is paid, a decimal fraction below 1 (default `"0"`).
    pub commission_rate: Option<holdfast_core::text::Token>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = PharmacyDrugstoreCreated)]
pub struct DrugstoreCreated {
    pub drugstore: Drugstore,
    pub username: String,
}

/// Onboard a member drugstore with its own login (operator).
#[utoipa::path(post, path = "/v1/pharmacy/drugstores", tag = "pharmacy", security(("bearer" = [])),
    request_body = CreateDrugstore,
    responses((status = 201, body = DrugstoreCreated), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn create_drugstore(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateDrugstore>,
) -> ApiResult<(StatusCode, axum::Json<DrugstoreCreated>)> {
    principal.require(&[Role::Operator])?;
    let commission = match &body.commission_rate {
        Some(rate) => parties::parse_commission_rate(rate)?,
        None => BasisPoints::ZERO,
    };
    let staff = NewStaff {
        display_name: body.name.into(),
        username: body.username.into(),
        password: body.password.into(),
    }
    .hash(&state.core.passwords)
    .await?;
    let (drugstore, username) = state
        .in_write_txn(async move |txn, core| {
            parties::create_drugstore_in_txn(txn, core, staff, commission).await
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(DrugstoreCreated {
            drugstore,
            username,
        }),
    ))
}

/// Give a member drugstore a pharmacist who logs in with a username and password (operator).
#[utoipa::path(post, path = "/v1/pharmacy/drugstores/{drugstore_id}/pharmacists", tag = "pharmacy",
    security(("bearer" = [])), params(("drugstore_id" = PartyId, Path)), request_body = CreateStaff,
    responses((status = 201, body = StaffCreated), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn add_pharmacist(
    State(state): State<AppState>,
    principal: Principal,
    Path(drugstore): Path<PartyId>,
    Json(body): Json<CreateStaff>,
) -> ApiResult<(StatusCode, axum::Json<StaffCreated>)> {
    principal.require(&[Role::Operator])?;
    let staff = NewStaff::from(body).hash(&state.core.passwords).await?;
    let created = state
        .in_write_txn(async move |txn, core| {
            parties::add_pharmacist_in_txn(txn, core, drugstore, staff).await
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

#[derive(Deserialize, IntoParams)]
pub struct LimitQuery {
    /// 1–100, default 50.
    pub limit: Option<u64>,
}

/// Member drugstores (anyone logged in: a patient picks one to send a prescription to).
#[utoipa::path(get, path = "/v1/pharmacy/drugstores", tag = "pharmacy", security(("bearer" = [])),
    params(LimitQuery), responses((status = 200, body = [Drugstore])))]
pub async fn list_drugstores(
    State(state): State<AppState>,
    _principal: Principal,
    Query(query): Query<LimitQuery>,
) -> ApiResult<axum::Json<Vec<Drugstore>>> {
    Ok(axum::Json(
        parties::list_drugstores(&state.db, query.limit.unwrap_or(50)).await?,
    ))
}

/// Issue a prescription for a patient's medical card number (prescriber). Without
/// `patient_chosen_drugstore_id` it waits in the pool; with it, it goes to the drugstore the
/// patient chose. The patient's phone is told its number and validity (never its content).
/// The answer is a receipt without the content: read it with `GET …/prescriptions/{number}`,
/// which is logged for the patient.
#[utoipa::path(post, path = "/v1/pharmacy/prescriptions", tag = "pharmacy", security(("bearer" = [])),
    params(crate::openapi::OptionalIdempotencyKey), request_body = NewPrescription,
    responses((status = 201, body = PrescriptionReceipt), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, description = "no such card or drugstore", body = crate::error::ErrorBody)))]
pub async fn issue_prescription(
    State(state): State<AppState>,
    PharmacyActor(actor): PharmacyActor,
    key: IdempotencyKey,
    Json(body): Json<NewPrescription>,
) -> ApiResult<Response> {
    state
        .write(
            Idempotent::new(scope(&actor), key, "issue_prescription", &body),
            StatusCode::CREATED,
            async move |txn, core| Ok(prescriptions::issue_in_txn(txn, core, &actor, body).await?),
        )
        .await
}

#[derive(Deserialize, IntoParams)]
pub struct PrescriptionsQuery {
    /// Only prescriptions in this state (as of now: a lapsed validity counts as `expired`).
    pub state: Option<PrescriptionState>,
    /// Created on or after this day (UTC).
    pub from: Option<chrono::NaiveDate>,
    /// Created on or before this day (UTC).
    pub to: Option<chrono::NaiveDate>,
    /// 1–100, default 20.
    pub limit: Option<u64>,
    /// The `Next-Cursor` of the previous page; empty or absent for the first page.
    #[param(pattern = "^([A-Za-z0-9_-]{40})?$")]
    pub cursor: Option<String>,
}

/// The caller's prescriptions, newest first, without content: a prescriber's hospital's, a
/// drugstore's (held, or sent to it by the patient's choice), a patient's own. Paged: the next
/// page's cursor is in the `Next-Cursor` header.
#[utoipa::path(get, path = "/v1/pharmacy/prescriptions", tag = "pharmacy", security(("bearer" = [])),
    params(PrescriptionsQuery), responses((status = 200, description = "a page of prescriptions", body = [PrescriptionSummary], headers(("Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "a cursor this list did not give out (`invalid_cursor`)", body = crate::error::ErrorBody)))]
pub async fn list_prescriptions(
    State(state): State<AppState>,
    PharmacyActor(actor): PharmacyActor,
    Query(query): Query<PrescriptionsQuery>,
) -> ApiResult<PagedJson<PrescriptionSummary>> {
    let page = paging::page(
        ListKind::Prescriptions,
        query.limit,
        query.cursor.as_deref(),
    )?;
    let filter = paging::filter(query.state, query.from, query.to);
    Ok(
        prescriptions::list_page(&state.db, &state.core, &actor, &filter, &page)
            .await?
            .into(),
    )
}

/// One prescription with its content: for its patient, its prescriber's hospital, an operator,
/// the drugstore the patient chose, or the drugstore holding the claim (with `Claim-Secret`).
/// The read is logged for the patient. A mistyped number fails its check character (400)
/// before any look-up.
#[utoipa::path(get, path = "/v1/pharmacy/prescriptions/{number}", tag = "pharmacy",
    security(("bearer" = [])),
    params(("number" = PrescriptionNumber, Path), ("Claim-Secret" = Option<String>, Header)),
    responses((status = 200, body = PrescriptionView), (status = 400, body = crate::error::ErrorBody),
        (status = 403, description = "a drugstore that does not hold it, or a wrong claim secret", body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_prescription(
    State(state): State<AppState>,
    PharmacyActor(actor): PharmacyActor,
    Path(number): Path<PrescriptionNumber>,
    ClaimSecret(secret): ClaimSecret,
) -> ApiResult<axum::Json<PrescriptionView>> {
    let view = state
        .in_write_txn(async move |txn, core| {
            prescriptions::read_view_in_txn(txn, core, &actor, &number, secret.as_deref()).await
        })
        .await?;
    Ok(axum::Json(view))
}

/// The prescription as an HL7 FHIR R4 Bundle (`collection`): a MedicationRequest per item, the
/// Task carrying its workflow, and a MedicationDispense per item once dispensed. Who may read
/// it is as for the prescription; the read is logged.
#[utoipa::path(get, path = "/v1/pharmacy/prescriptions/{number}/fhir", tag = "pharmacy",
    security(("bearer" = [])),
    params(("number" = PrescriptionNumber, Path), ("Claim-Secret" = Option<String>, Header)),
    responses((status = 200, description = "a FHIR R4 Bundle", content_type = "application/fhir+json", body = Object),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_fhir(
    State(state): State<AppState>,
    PharmacyActor(actor): PharmacyActor,
    Path(number): Path<PrescriptionNumber>,
    ClaimSecret(secret): ClaimSecret,
) -> ApiResult<Response> {
    let bundle = state
        .in_write_txn(async move |txn, core| {
            holdfast_pharmacy::fhir::bundle_in_txn(txn, core, &actor, &number, secret.as_deref())
                .await
        })
        .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/fhir+json")],
        axum::Json(bundle),
    )
        .into_response())
}

/// The prescription's history, oldest first, with its payment's timeline (`payment.*`). It
/// holds no content.
#[utoipa::path(get, path = "/v1/pharmacy/prescriptions/{number}/history", tag = "pharmacy",
    security(("bearer" = [])),
    params(("number" = PrescriptionNumber, Path), ("Claim-Secret" = Option<String>, Header)),
    responses((status = 200, body = [HistoryEntry]), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    PharmacyActor(actor): PharmacyActor,
    Path(number): Path<PrescriptionNumber>,
    ClaimSecret(secret): ClaimSecret,
) -> ApiResult<axum::Json<Vec<HistoryEntry>>> {
    let entries =
        prescriptions::history(&state.db, &state.core, &actor, &number, secret.as_deref()).await?;
    Ok(axum::Json(entries))
}

/// Cancel a prescription of your hospital until it is dispensed (prescriber). The drugstore
/// holding it is told; a held payment returns to the patient.
#[utoipa::path(post, path = "/v1/pharmacy/prescriptions/{number}/cancel", tag = "pharmacy", operation_id = "cancel_prescription",
    security(("bearer" = [])),
    params(("number" = PrescriptionNumber, Path), crate::openapi::OptionalIdempotencyKey),
    responses((status = 200, body = PrescriptionReceipt), (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "already dispensed, cancelled or expired", body = crate::error::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    PharmacyActor(actor): PharmacyActor,
    Path(number): Path<PrescriptionNumber>,
    key: IdempotencyKey,
) -> ApiResult<Response> {
    state
        .write(
            Idempotent::new(scope(&actor), key, "cancel_prescription", &number),
            StatusCode::OK,
            async move |txn, core| Ok(payment::cancel_in_txn(txn, core, &actor, &number).await?),
        )
        .await
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PrescriptionLookup)]
pub struct Lookup {
    /// The medical card number the patient presented.
    pub card_number: CardNumber,
}

/// What prescriptions exist for a medical card, before any consent (drugstore): numbers, item
/// counts and validity — never content. Each is logged for the patient as a read of its
/// existence.
#[utoipa::path(post, path = "/v1/pharmacy/lookups", tag = "pharmacy", security(("bearer" = [])),
    request_body = Lookup,
    responses((status = 200, body = [Existence]), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn lookup(
    State(state): State<AppState>,
    PharmacyActor(actor): PharmacyActor,
    Json(body): Json<Lookup>,
) -> ApiResult<axum::Json<Vec<Existence>>> {
    Ok(axum::Json(
        state
            .in_write_txn(async move |txn, core| {
                claims::lookup_in_txn(txn, core, &actor, &body.card_number).await
            })
            .await?,
    ))
}

#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(as = PrescriptionClaimRequest)]
pub struct ClaimRequest {
    /// The medical card number the patient presented: needed to ask the patient's consent
    /// (flow B), not for a prescription the patient sent to this drugstore (flow A).
    pub card_number: Option<CardNumber>,
}

/// Claim a prescription (drugstore). Sent to this drugstore by the patient's choice: it is
/// claimed at once. In the pool: the patient's phone is asked to let this drugstore open it,
/// and the claim secret works once the patient approves. Keep the secret: it is shown once,
/// and every later request about the prescription sends it as `Claim-Secret`. Lost it? Claim
/// again: the drugstore holding the prescription gets a fresh secret until it dispenses (the
/// old one stops working; 429 after a few an hour). A prescription another drugstore holds or
/// is asking for: 409.
#[utoipa::path(post, path = "/v1/pharmacy/prescriptions/{number}/claim", tag = "pharmacy",
    security(("bearer" = [])), params(("number" = PrescriptionNumber, Path)),
    request_body(content = ClaimRequest, description = "optional"),
    responses((status = 200, body = Claim), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "held by, routed to or awaiting another drugstore; already dispensed; expired; cancelled", body = crate::error::ErrorBody),
        (status = 429, description = "asked the patient, or had the secret re-issued, too often this hour", body = crate::error::ErrorBody)))]
pub async fn claim(
    State(state): State<AppState>,
    PharmacyActor(actor): PharmacyActor,
    Path(number): Path<PrescriptionNumber>,
    raw: axum::body::Bytes,
) -> ApiResult<Response> {
    let body: ClaimRequest = optional_body(&raw)?;
    // No idempotency key: a stored answer would keep the claim secret in the idempotency
    // records, and a replay would hand it out again. A drugstore that lost the answer claims
    // again instead: while it holds the prescription (until dispensing) that re-issues the
    // secret and the old one stops working; while the patient is asked, it asks again.
    let claim = state
        .in_write_txn(async move |txn, core| {
            claims::claim_in_txn(txn, core, &actor, &number, body.card_number).await
        })
        .await?;
    Ok(axum::Json(claim).into_response())
}

fn optional_body<T: serde::de::DeserializeOwned + Default>(raw: &[u8]) -> ApiResult<T> {
    crate::extract::optional_json(raw)
}

/// Hand a claimed prescription back to the pool, before it is dispensed (the drugstore holding
/// it). The claim secret is deleted; a held payment returns to the patient.
#[utoipa::path(post, path = "/v1/pharmacy/prescriptions/{number}/hand-back", tag = "pharmacy",
    security(("bearer" = [])),
    params(("number" = PrescriptionNumber, Path), ("Claim-Secret" = String, Header),
        crate::openapi::OptionalIdempotencyKey),
    responses((status = 200, body = PrescriptionSummary), (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn hand_back(
    State(state): State<AppState>,
    PharmacyActor(actor): PharmacyActor,
    Path(number): Path<PrescriptionNumber>,
    ClaimSecret(secret): ClaimSecret,
    key: IdempotencyKey,
) -> ApiResult<Response> {
    state
        .write(
            Idempotent::new(scope(&actor), key, "hand_back", &number),
            StatusCode::OK,
            async move |txn, core| {
                Ok(claims::hand_back_in_txn(txn, core, &actor, &number, secret.as_deref()).await?)
            },
        )
        .await
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PrescriptionPricing)]
pub struct Pricing {
    pub price: Money,
}

/// Price a claimed prescription (the drugstore holding it; again until the patient pays). The
/// patient's phone is told the amount and what is available on the card.
#[utoipa::path(post, path = "/v1/pharmacy/prescriptions/{number}/price", tag = "pharmacy",
    security(("bearer" = [])),
    params(("number" = PrescriptionNumber, Path), ("Claim-Secret" = String, Header)),
    request_body = Pricing,
    responses((status = 200, body = PrescriptionReceipt), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
        (status = 422, description = "not the card's currency; or `price_below_minimum`: the drugstore's commission would take the whole price (the message names the lowest price)", body = crate::error::ErrorBody)))]
pub async fn price(
    State(state): State<AppState>,
    PharmacyActor(actor): PharmacyActor,
    Path(number): Path<PrescriptionNumber>,
    ClaimSecret(secret): ClaimSecret,
    Json(body): Json<Pricing>,
) -> ApiResult<Response> {
    let receipt = state
        .in_write_txn(async move |txn, core| {
            payment::price_in_txn(txn, core, &actor, &number, secret.as_deref(), body.price).await
        })
        .await?;
    Ok(axum::Json(receipt).into_response())
}

/// Pay for a priced prescription (its patient, with the card of the session): `lump_sum` or
/// `installments` hold the amount in escrow and ask the phone to confirm the exact amount,
/// drugstore and terms (answer with `POST /v1/challenges/{id}/answer`); `cash` holds nothing
/// and records the choice.
#[utoipa::path(post, path = "/v1/pharmacy/prescriptions/{number}/payment", tag = "pharmacy",
    security(("bearer" = [])),
    params(("number" = PrescriptionNumber, Path), crate::openapi::RequiredIdempotencyKey),
    request_body = PaymentChoice,
    responses((status = 200, body = PrescriptionReceipt), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
        (status = 422, description = "not enough funds", body = crate::error::ErrorBody)))]
pub async fn pay(
    State(state): State<AppState>,
    PharmacyActor(actor): PharmacyActor,
    Path(number): Path<PrescriptionNumber>,
    key: IdempotencyKey,
    Json(body): Json<PaymentChoice>,
) -> ApiResult<Response> {
    let key = key.required()?;
    state
        .write(
            Idempotent::new(scope(&actor), key, "pay_prescription", &(&number, &body)),
            StatusCode::OK,
            async move |txn, core| {
                Ok(payment::choose_payment_in_txn(txn, core, &actor, &number, body).await?)
            },
        )
        .await
}

/// Record that the paid prescription was handed over (the drugstore holding it) — once; a
/// second request, concurrent or not, gets 409 `prescription_already_dispensed`. A card payment
/// needs the order number the patient handed over.
#[utoipa::path(post, path = "/v1/pharmacy/prescriptions/{number}/dispense", tag = "pharmacy",
    security(("bearer" = [])),
    params(("number" = PrescriptionNumber, Path), ("Claim-Secret" = String, Header),
        crate::openapi::OptionalIdempotencyKey),
    request_body = Dispensing,
    responses((status = 200, body = PrescriptionReceipt), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn dispense(
    State(state): State<AppState>,
    PharmacyActor(actor): PharmacyActor,
    Path(number): Path<PrescriptionNumber>,
    ClaimSecret(secret): ClaimSecret,
    key: IdempotencyKey,
    raw: axum::body::Bytes,
) -> ApiResult<Response> {
    let body: Dispensing = optional_body(&raw)?;
    state
        .write(
            Idempotent::new(scope(&actor), key, "dispense", &(&number, &body)),
            StatusCode::OK,
            async move |txn, core| {
                Ok(
                    payment::dispense_in_txn(txn, core, &actor, &number, secret.as_deref(), body)
                        .await?,
                )
            },
        )
        .await
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PrescriptionPaymentRequest)]
pub struct PaymentRequest {
    /// The order number the patient handed over.
    pub order_number: OrderNumber,
}

/// Ask to be paid for a dispensed prescription, quoting the order number the patient handed
/// over (the drugstore holding it). The patient's phone is asked to release the money; without
/// an answer it is released when the settlement period ends.
#[utoipa::path(post, path = "/v1/pharmacy/prescriptions/{number}/payment-request", tag = "pharmacy",
    security(("bearer" = [])),
    params(("number" = PrescriptionNumber, Path), ("Claim-Secret" = String, Header),
        crate::openapi::OptionalIdempotencyKey),
    request_body = PaymentRequest,
    responses((status = 200, body = PrescriptionReceipt), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn request_payment(
    State(state): State<AppState>,
    PharmacyActor(actor): PharmacyActor,
    Path(number): Path<PrescriptionNumber>,
    ClaimSecret(secret): ClaimSecret,
    key: IdempotencyKey,
    Json(body): Json<PaymentRequest>,
) -> ApiResult<Response> {
    state
        .write(
            Idempotent::new(scope(&actor), key, "request_payment", &(&number, &body)),
            StatusCode::OK,
            async move |txn, core| {
                Ok(payment::request_payment_in_txn(
                    txn,
                    core,
                    &actor,
                    &number,
                    secret.as_deref(),
                    &body.order_number,
                )
                .await?)
            },
        )
        .await
}

#[derive(Deserialize, IntoParams)]
pub struct AccessLogQuery {
    /// 1–100, default 50.
    pub limit: Option<u64>,
    /// Entries before this time (the `at` of the last entry of the previous page).
    pub before: Option<DateTime<Utc>>,
}

/// Who read your prescriptions, newest first (patient): every read of content, of the FHIR
/// view, and of existence, with the reader's role and organisation.
#[utoipa::path(get, path = "/v1/pharmacy/me/access-log", tag = "pharmacy", security(("bearer" = [])),
    params(AccessLogQuery), responses((status = 200, body = [AccessEntry]),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn access_log(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<AccessLogQuery>,
) -> ApiResult<axum::Json<Vec<AccessEntry>>> {
    principal.require(&[Role::Shopper])?;
    Ok(axum::Json(
        audit::access_log_of(
            &state.db,
            principal.party,
            query.before,
            query.limit.unwrap_or(50),
        )
        .await?,
    ))
}
