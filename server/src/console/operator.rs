//! Pages of an operator: the desk (disputes waiting, the ledger's state), onboarding every
//! party the API's operator endpoints onboard (supplier, shopper, institution, carrier or
//! service company, insurer, hospital and its prescribers, drugstore and its pharmacists,
//! terminal), disputes of every vertical with their mediation (release, refund, split,
//! penalty) through [`crate::app::mediation`], and the ledger audit.

use super::forms::{self, label, when};
use super::page::{self, FormClaim, Layout, PageError, PageResult, Posted};
use super::session::{Session, SignedIn};
use super::txn;
use super::views;
use crate::app::mediation::{self, Decision, Mediated, MediationOrder};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use holdfast_core::escrow::{self, EscrowCase, Fault};
use holdfast_core::funding::{InstitutionKind, NewInstitution};
use holdfast_core::ids::PartyId;
use holdfast_core::ledger;
use holdfast_core::onboarding::{self, NewShopper, StaffCredentials};
use holdfast_core::order_number::OrderNumber;
use holdfast_core::paging::{CreatedRange, ListKind, Page};
use holdfast_core::parties::Role;
use holdfast_core::phone_number::PhoneNumber;
use holdfast_core::text::{Address, Name, NewPassword, Note, Token, Username};
use holdfast_core::{BasisPoints, CoreError, Currency};
use holdfast_pharmacy::parties::{self as pharmacy, HospitalId, NewStaff};
use holdfast_retail::catalogue::CommissionRate;
use holdfast_retail::sellers::{self, SellerTerms};
use serde::{Deserialize, Serialize};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/operator", get(desk))
        .route("/operator/onboarding", get(onboarding_page))
        .route("/operator/onboarding/supplier", post(onboard_supplier))
        .route("/operator/onboarding/shopper", post(onboard_shopper))
        .route(
            "/operator/onboarding/institution",
            post(onboard_institution),
        )
        .route(
            "/operator/onboarding/distributor",
            post(onboard_distributor),
        )
        .route("/operator/onboarding/insurer", post(onboard_insurer))
        .route("/operator/onboarding/hospital", post(onboard_hospital))
        .route("/operator/onboarding/prescriber", post(onboard_prescriber))
        .route("/operator/onboarding/drugstore", post(onboard_drugstore))
        .route("/operator/onboarding/pharmacist", post(onboard_pharmacist))
        .route("/operator/onboarding/terminal", post(onboard_terminal))
        .route("/operator/disputes", get(disputes_page))
        .route(
            "/operator/disputes/{number}",
            get(dispute_page).post(mediate),
        )
        .route("/operator/audit", get(audit_page))
}

/// How many disputes a page lists (the use case's longest waiting first).
const DISPUTES_SHOWN: u64 = 50;

struct DisputeRow {
    number: String,
    vertical: &'static str,
    state: &'static str,
    amount: String,
    payee: String,
    disputed_at: String,
}

impl From<EscrowCase> for DisputeRow {
    fn from(case: EscrowCase) -> Self {
        DisputeRow {
            number: case.order_number.to_string(),
            vertical: case.vertical.as_str(),
            state: case.state.as_str(),
            amount: case.amount.to_string(),
            payee: case.payee_name,
            disputed_at: when(&case.updated_at),
        }
    }
}

struct AuditView {
    clean: bool,
    transfers: u64,
    postings: u64,
    problems: Vec<String>,
    net: Vec<(String, String)>,
}

async fn audit_view(state: &AppState) -> Result<AuditView, PageError> {
    let audit = ledger::audit(&state.db).await?;
    let problems = [
        ("unbalanced transfer", &audit.unbalanced_transfers),
        ("balance mismatch", &audit.balance_mismatches),
        ("overdrawn account", &audit.overdrawn_accounts),
        ("reservation mismatch", &audit.reservation_mismatches),
        ("freezing account mismatch", &audit.freezing_mismatches),
    ]
    .into_iter()
    .flat_map(|(what, list)| list.iter().map(move |item| format!("{what}: {item}")))
    .collect();
    Ok(AuditView {
        clean: audit.is_clean(),
        transfers: audit.transfers,
        postings: audit.postings,
        problems,
        net: audit.net_by_currency.into_iter().collect(),
    })
}

#[derive(Template)]
#[template(path = "console/operator/desk.html")]
struct DeskPage {
    layout: Layout,
    disputes: Vec<DisputeRow>,
    audit: AuditView,
}

/// The operator's main page: the disputes waiting and whether the ledger proves.
async fn desk(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
) -> PageResult {
    PageError::require(&principal, &[Role::Operator])?;
    let page = Page::first(ListKind::Disputes, DISPUTES_SHOWN);
    let cases = escrow::disputed_cases(&state.db, &CreatedRange::default(), &page).await?;
    page::render(&DeskPage {
        layout: Layout::signed_in("Operator desk", &session, "/operator"),
        disputes: cases.items.into_iter().map(DisputeRow::from).collect(),
        audit: audit_view(&state).await?,
    })
}

#[derive(Template)]
#[template(path = "console/operator/audit.html")]
struct AuditPage {
    layout: Layout,
    audit: AuditView,
}

async fn audit_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
) -> PageResult {
    PageError::require(&principal, &[Role::Operator])?;
    page::render(&AuditPage {
        layout: Layout::signed_in("Ledger audit", &session, "/operator/audit"),
        audit: audit_view(&state).await?,
    })
}

#[derive(Template)]
#[template(path = "console/operator/onboarding.html")]
struct OnboardingPage {
    layout: Layout,
    /// What was just created, to be read off the page (ids, a card number).
    created: Vec<(String, String)>,
    currencies: [Currency; 5],
}

fn onboarding(session: &Session, created: Vec<(String, String)>) -> PageResult {
    page::render(&OnboardingPage {
        layout: Layout::signed_in("Onboarding", session, "/operator/onboarding"),
        created,
        currencies: Currency::ALL,
    })
}

async fn onboarding_page(SignedIn { session, principal }: SignedIn) -> PageResult {
    PageError::require(&principal, &[Role::Operator])?;
    onboarding(&session, Vec::new())
}

/// The operator behind a posted form.
fn operator_of(session: &Session) -> Result<(), PageError> {
    PageError::require(&session.principal()?, &[Role::Operator])
}

fn fact(name: &str, value: impl ToString) -> (String, String) {
    (name.to_owned(), value.to_string())
}

/// What the onboarding page says of a created party: who, and how it signs in.
fn created(what: &str, name: &str, party: impl ToString, username: String) -> Facts {
    vec![
        fact(what, name),
        fact("Party id", party),
        fact("Username", username),
    ]
}

/// What was just created, as the onboarding page lists it; recorded with the form's claim, so
/// the same form sent again shows the same lines (and creates nothing).
type Facts = Vec<(String, String)>;

/// A rate typed as a decimal fraction ("0.05"), as the API reads it; `None` when blank.
fn rate(raw: &str) -> Result<Option<CommissionRate>, PageError> {
    Ok(forms::optional_text(raw)
        .map(|r| CommissionRate::parse(&r))
        .transpose()?)
}

fn basis_points(rate: CommissionRate) -> Result<BasisPoints, PageError> {
    Ok(BasisPoints::new(rate.basis_points()).map_err(CoreError::Money)?)
}

#[derive(Deserialize)]
struct StaffForm {
    display_name: Name,
    username: Username,
    password: NewPassword,
    #[serde(default)]
    commission_rate: String,
}

async fn onboard_supplier(State(state): State<AppState>, posted: Posted<StaffForm>) -> PageResult {
    operator_of(&posted.session)?;
    let form = posted.form;
    let commission = sellers::commission_or_default(rate(&form.commission_rate)?)?;
    let credentials = staff_credentials(&state, &form.username, &form.password).await?;
    let terms = SellerTerms {
        commission,
        default_distributor: None,
    };
    let facts = txn::write(&state, posted.claim, async |txn, core| {
        let (party, username, _) =
            sellers::onboard_supplier_in_txn(txn, core, &form.display_name, credentials, terms)
                .await?;
        Ok(created("Supplier", &party.display_name, party.id, username))
    })
    .await?;
    onboarding(&posted.session, facts)
}

#[derive(Deserialize)]
struct ShopperForm {
    display_name: Name,
    phone: PhoneNumber,
    currency: Currency,
    #[serde(default)]
    initial_deposit: String,
    #[serde(default)]
    delivery_address: String,
}

async fn onboard_shopper(State(state): State<AppState>, posted: Posted<ShopperForm>) -> PageResult {
    operator_of(&posted.session)?;
    let form = posted.form;
    let new = NewShopper {
        display_name: form.display_name.into(),
        phone: form.phone,
        currency: form.currency,
        initial_deposit: forms::optional_money(&form.initial_deposit, form.currency)?,
        delivery_address: forms::optional_field(&form.delivery_address, Address::parse)?
            .map(String::from),
    };
    let facts = txn::write(&state, posted.claim, async |txn, core| {
        let issued = onboarding::onboard_shopper_in_txn(txn, core, new).await?;
        Ok(vec![
            fact("Shopper's party id", issued.card.holder),
            fact("EC card number", &issued.card.number),
            fact("Prepaid balance", issued.funding.available()),
        ])
    })
    .await?;
    onboarding(&posted.session, facts)
}

#[derive(Deserialize)]
struct InstitutionForm {
    display_name: Name,
    code: Token,
    kind: InstitutionKind,
    #[serde(default)]
    shares_freezing_with: String,
    #[serde(default)]
    card_fee_rate: String,
    username: Username,
    password: NewPassword,
}

async fn onboard_institution(
    State(state): State<AppState>,
    posted: Posted<InstitutionForm>,
) -> PageResult {
    operator_of(&posted.session)?;
    let form = posted.form;
    let card_fee = rate(&form.card_fee_rate)?
        .map(basis_points)
        .transpose()?
        .unwrap_or(BasisPoints::ZERO);
    let credentials = staff_credentials(&state, &form.username, &form.password).await?;
    let new = NewInstitution {
        display_name: form.display_name.into(),
        code: form.code.into(),
        kind: form.kind,
        shares_freezing_with: forms::optional_text(&form.shares_freezing_with),
        credit_class_caps: Vec::new(),
        card_fee,
    };
    let facts = txn::write(&state, posted.claim, async move |txn, core| {
        let (institution, username) =
            onboarding::create_institution_in_txn(txn, core, new, credentials).await?;
        Ok(vec![
            fact("Institution", &institution.display_name),
            fact("Party id", institution.party_id),
            fact("Card number prefix", &institution.code),
            fact("Username", username),
        ])
    })
    .await?;
    onboarding(&posted.session, facts)
}

async fn onboard_distributor(
    State(state): State<AppState>,
    posted: Posted<StaffForm>,
) -> PageResult {
    operator_of(&posted.session)?;
    let form = posted.form;
    let credentials = staff_credentials(&state, &form.username, &form.password).await?;
    let facts = txn::write(&state, posted.claim, async |txn, core| {
        let role = Role::Distributor;
        let (party, username) =
            onboarding::create_staff_in_txn(txn, core, role, &form.display_name, credentials)
                .await?;
        let what = "Carrier or service company";
        Ok(created(what, &party.display_name, party.id, username))
    })
    .await?;
    onboarding(&posted.session, facts)
}

async fn onboard_insurer(State(state): State<AppState>, posted: Posted<StaffForm>) -> PageResult {
    operator_of(&posted.session)?;
    let form = posted.form;
    let commission = rate(&form.commission_rate)?.map(basis_points).transpose()?;
    let credentials = staff_credentials(&state, &form.username, &form.password).await?;
    let facts = txn::write(&state, posted.claim, async |txn, core| {
        let (party, username) = holdfast_insurance::products::onboard_insurer_in_txn(
            txn,
            core,
            &form.display_name,
            credentials,
            commission,
        )
        .await?;
        Ok(created("Insurer", &party.display_name, party.id, username))
    })
    .await?;
    onboarding(&posted.session, facts)
}

#[derive(Deserialize)]
struct HospitalForm {
    name: Name,
    code: Token,
}

async fn onboard_hospital(
    State(state): State<AppState>,
    posted: Posted<HospitalForm>,
) -> PageResult {
    operator_of(&posted.session)?;
    let form = &posted.form;
    let facts = txn::write(&state, posted.claim, async |txn, core| {
        let hospital = pharmacy::create_hospital_in_txn(txn, core, &form.name, &form.code).await?;
        Ok(vec![
            fact("Hospital", &hospital.name),
            fact("Hospital id", hospital.hospital_id),
            fact("Code", &hospital.code),
        ])
    })
    .await?;
    onboarding(&posted.session, facts)
}

#[derive(Deserialize)]
struct MemberForm {
    organisation_id: String,
    display_name: Name,
    username: Username,
    password: NewPassword,
}

impl MemberForm {
    fn staff(self) -> NewStaff {
        NewStaff {
            display_name: self.display_name.into(),
            username: self.username.into(),
            password: self.password.into(),
        }
    }
}

fn staff_created(staff: holdfast_pharmacy::parties::StaffCreated) -> Facts {
    created(
        page::role_label(staff.role),
        &staff.display_name,
        staff.party_id,
        staff.username,
    )
}

fn id_of<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, PageError> {
    raw.trim()
        .parse::<T>()
        .map_err(|_| PageError::Api(ApiError::invalid(format!("{what} is an id"))))
}

async fn onboard_prescriber(
    State(state): State<AppState>,
    posted: Posted<MemberForm>,
) -> PageResult {
    operator_of(&posted.session)?;
    let hospital: HospitalId = id_of(&posted.form.organisation_id, "the hospital")?;
    let staff = posted.form.staff();
    let facts = pharmacy_staff(
        &state,
        posted.claim,
        staff,
        async move |txn, core, staff| {
            let created = pharmacy::add_prescriber_in_txn(txn, core, hospital, staff).await?;
            Ok(staff_created(created))
        },
    )
    .await?;
    onboarding(&posted.session, facts)
}

async fn onboard_drugstore(State(state): State<AppState>, posted: Posted<StaffForm>) -> PageResult {
    operator_of(&posted.session)?;
    let form = posted.form;
    let commission = match forms::optional_text(&form.commission_rate) {
        Some(rate) => pharmacy::parse_commission_rate(&rate)?,
        None => BasisPoints::ZERO,
    };
    let staff = NewStaff {
        display_name: form.display_name.into(),
        username: form.username.into(),
        password: form.password.into(),
    };
    let facts = pharmacy_staff(
        &state,
        posted.claim,
        staff,
        async move |txn, core, staff| {
            let (drugstore, username) =
                pharmacy::create_drugstore_in_txn(txn, core, staff, commission).await?;
            let id = drugstore.drugstore_id;
            Ok(created("Drugstore", &drugstore.name, id, username))
        },
    )
    .await?;
    onboarding(&posted.session, facts)
}

async fn onboard_pharmacist(
    State(state): State<AppState>,
    posted: Posted<MemberForm>,
) -> PageResult {
    operator_of(&posted.session)?;
    let drugstore: PartyId = id_of(&posted.form.organisation_id, "the drugstore")?;
    let staff = posted.form.staff();
    let facts = pharmacy_staff(
        &state,
        posted.claim,
        staff,
        async move |txn, core, staff| {
            let created = pharmacy::add_pharmacist_in_txn(txn, core, drugstore, staff).await?;
            Ok(staff_created(created))
        },
    )
    .await?;
    onboarding(&posted.session, facts)
}

#[derive(Deserialize)]
struct TerminalForm {
    organisation_id: String,
    label: holdfast_card_present::TerminalLabel,
    username: Username,
    password: NewPassword,
}

async fn onboard_terminal(
    State(state): State<AppState>,
    posted: Posted<TerminalForm>,
) -> PageResult {
    operator_of(&posted.session)?;
    let form = posted.form;
    let merchant: PartyId = id_of(&form.organisation_id, "the merchant")?;
    let credentials = staff_credentials(&state, &form.username, &form.password).await?;
    let facts = txn::write(&state, posted.claim, async |txn, core| {
        let terminal = holdfast_card_present::register_terminal_in_txn(
            txn,
            core,
            merchant,
            &form.label,
            credentials,
        )
        .await?;
        Ok(vec![
            fact(
                "Terminal",
                format!("{} of {}", terminal.label, terminal.merchant_name),
            ),
            fact("Party id", terminal.terminal_id),
            fact("Username", terminal.username),
        ])
    })
    .await?;
    onboarding(&posted.session, facts)
}

#[derive(Template)]
#[template(path = "console/operator/disputes.html")]
struct DisputesPage {
    layout: Layout,
    disputes: Vec<DisputeRow>,
    nav: views::ListNav,
}

async fn disputes_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(params): Query<views::ListParams>,
) -> PageResult {
    PageError::require(&principal, &[Role::Operator])?;
    // Every dispute waiting is in one state: the filter is the creation dates only.
    let filter = params.filter::<()>()?;
    let page = params.page(ListKind::Disputes)?;
    let cases = escrow::disputed_cases(&state.db, &filter.created, &page).await?;
    page::render(&DisputesPage {
        layout: Layout::signed_in("Disputes", &session, "/operator/disputes"),
        nav: params.nav("/operator/disputes", [], &filter, cases.next_cursor),
        disputes: cases.items.into_iter().map(DisputeRow::from).collect(),
    })
}

/// What a mediation paid out, to the cent; recorded with the form's claim, so the same form sent
/// again shows it again (and pays nothing).
#[derive(Serialize, Deserialize)]
struct Payout {
    released_to_seller: String,
    seller_payout: String,
    commission: String,
    institution_fee: String,
    penalty: String,
    refunded_to_buyer: String,
}

#[derive(Template)]
#[template(path = "console/operator/dispute.html")]
struct DisputePage {
    layout: Layout,
    case: DisputeRow,
    currency: String,
    disputed: bool,
    result: Option<Payout>,
}

async fn find_case(state: &AppState, number: &OrderNumber) -> Result<EscrowCase, PageError> {
    Ok(escrow::find_case_by_number(&state.db, number)
        .await?
        .ok_or(CoreError::NotFound("order"))?)
}

fn dispute(session: &Session, case: EscrowCase, result: Option<Payout>) -> PageResult {
    let currency = label(&case.amount.currency());
    let disputed = case.state == escrow::CaseState::Disputed;
    page::render(&DisputePage {
        layout: Layout::signed_in(
            format!("Dispute {}", case.order_number),
            session,
            "/operator/disputes",
        ),
        case: DisputeRow::from(case),
        currency,
        disputed,
        result,
    })
}

async fn dispute_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Path(number): Path<OrderNumber>,
) -> PageResult {
    PageError::require(&principal, &[Role::Operator])?;
    let case = find_case(&state, &number).await?;
    dispute(&session, case, None)
}

#[derive(Deserialize)]
struct MediationForm {
    outcome: String,
    #[serde(default)]
    to_seller: String,
    #[serde(default)]
    penalty_party: String,
    #[serde(default)]
    penalty: String,
    note: Note,
}

async fn mediate(
    State(state): State<AppState>,
    Path(number): Path<OrderNumber>,
    posted: Posted<MediationForm>,
) -> Result<Response, PageError> {
    operator_of(&posted.session)?;
    let form = posted.form;
    // The case's currency never changes: the amounts typed are read in it.
    let currency = find_case(&state, &number).await?.amount.currency();
    let decision = match form.outcome.as_str() {
        "release" => Decision::Release,
        "refund" => Decision::Refund,
        "split" => Decision::split(forms::optional_money(&form.to_seller, currency)?)?,
        _ => return Err(ApiError::invalid("choose release, refund or split").into()),
    };
    let penalty = match forms::optional_choice::<Fault>(Some(&form.penalty_party))? {
        Some(party) => Some((party, forms::money(&form.penalty, currency, "Penalty")?)),
        None => None,
    };
    let order = MediationOrder {
        decision,
        penalty,
        note: form.note.into(),
    };
    let payout = txn::write(&state, posted.claim, async |txn, core| {
        let Mediated { split, .. } = mediation::mediate_in_txn(txn, core, &number, order).await?;
        Ok(Payout {
            released_to_seller: split.to_seller.to_string(),
            seller_payout: split.seller_net.to_string(),
            commission: split.commission.to_string(),
            institution_fee: split.institution_fee.to_string(),
            penalty: split.penalty.to_string(),
            refunded_to_buyer: split.refund.to_string(),
        })
    })
    .await?;
    let case = find_case(&state, &number).await?;
    dispute(&posted.session, case, Some(payout))
}

/// A new staff member's credentials, hashed before the transaction opens (hashing is slow and
/// holds no row), as the API's onboarding handlers do.
async fn staff_credentials(
    state: &AppState,
    username: &str,
    password: &str,
) -> Result<StaffCredentials, PageError> {
    Ok(StaffCredentials::hash(&state.core.passwords, username, password, None).await?)
}

/// Hashes a pharmacy staff member's password, then runs `onboard` with the hashed staff in the
/// runner's transaction, claimed by the form's nonce.
async fn pharmacy_staff(
    state: &AppState,
    claim: FormClaim,
    staff: NewStaff,
    onboard: impl AsyncFnOnce(
        &sea_orm::DatabaseTransaction,
        &holdfast_core::Core,
        pharmacy::HashedStaff,
    ) -> ApiResult<Facts>,
) -> Result<Facts, PageError> {
    let staff = staff.hash(&state.core.passwords).await?;
    txn::write(state, claim, async move |txn, core| {
        onboard(txn, core, staff).await
    })
    .await
}
