//! Pages of an insurer's staff: its products (list, create, take off sale or put back), the
//! applications its holders approved on the phone (issue, or decline with a reason), and its
//! premiums with the settlement requested by policy number. The same use cases as
//! `/v1/insurance/products`, `…/policies/{policy}/recheck` and
//! `…/policies/{policy}/settlement-request`.

use super::forms::{self, label, when};
use super::page::{self, FormClaim, Layout, PageError, PageResult, Posted};
use super::session::SignedIn;
use super::txn;
use super::views::{ListNav, ListParams};
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use holdfast_core::Currency;
use holdfast_core::ids::PartyId;
use holdfast_core::order_number::OrderNumber;
use holdfast_core::paging::{ListFilter, ListKind};
use holdfast_core::parties::Role;
use holdfast_insurance::policies::{
    self, PolicyRef, PolicyState, PolicyView, Recheck, RecheckReason,
};
use holdfast_insurance::products::{
    self, Coverage, NewProduct, PaymentPlan, Product, ProductId, ProductName, ProductViewer,
};
use sea_orm::Iterable;
use serde::Deserialize;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/insurer/applications", get(applications))
        .route("/insurer/applications/{policy}/issue", post(issue))
        .route("/insurer/applications/{policy}/decline", post(decline))
        .route("/insurer/products", get(products_page).post(create_product))
        .route("/insurer/products/{product}/sale", post(change_product))
        .route("/insurer/premiums", get(premiums))
        .route("/insurer/settlement", post(request_settlement))
}

/// The most rows a page asks for.
const PAGE: u64 = 20;

/// One premium of a policy, as the insurer's pages print it.
pub struct PremiumRow {
    pub installment: i32,
    pub order_number: String,
    pub amount: String,
    pub state: &'static str,
    pub due_at: String,
}

/// A policy, as the insurer's, the operator's and the holder's pages print it.
pub struct PolicyRow {
    pub id: Uuid,
    pub number: String,
    pub state: &'static str,
    pub product: String,
    pub insurer: String,
    pub premium: String,
    pub plan: String,
    pub coverage_amount: String,
    pub card: String,
    pub certificate: &'static str,
    pub installments: String,
    pub awaiting_phone: bool,
    pub premiums: Vec<PremiumRow>,
    pub created_at: String,
}

impl From<PolicyView> for PolicyRow {
    fn from(view: PolicyView) -> Self {
        PolicyRow {
            id: view.policy_id,
            number: view
                .policy_number
                .map_or_else(|| "not issued yet".to_owned(), |n| n.to_string()),
            state: view.state.as_str(),
            product: view.product_name,
            insurer: view.insurer_name,
            premium: view.premium.to_string(),
            plan: label(&view.payment_plan),
            coverage_amount: view.coverage_amount.to_string(),
            card: view.card,
            certificate: view.certificate_status.as_str(),
            installments: format!("{} of {}", view.installments_collected, view.installments),
            awaiting_phone: view.pending_confirmation.is_some()
                || view
                    .premiums
                    .iter()
                    .any(|p| p.pending_confirmation.is_some()),
            premiums: view
                .premiums
                .into_iter()
                .map(|p| PremiumRow {
                    installment: p.installment,
                    order_number: p.order_number.to_string(),
                    amount: p.amount.to_string(),
                    state: p.state.as_str(),
                    due_at: when(&p.due_at),
                })
                .collect(),
            created_at: when(&view.created_at),
        }
    }
}

/// A product, as the insurer's and the holder's pages print it.
pub struct ProductRow {
    pub id: ProductId,
    pub name: String,
    pub coverage: String,
    pub coverage_amount: String,
    pub premium: String,
    pub plan: String,
    pub term_months: i32,
    pub insurer: String,
    pub service_company: PartyId,
    pub active: bool,
}

impl From<Product> for ProductRow {
    fn from(product: Product) -> Self {
        ProductRow {
            id: product.id,
            name: product.name,
            coverage: product.coverage,
            coverage_amount: product.coverage_amount.to_string(),
            premium: product.premium.to_string(),
            plan: label(&product.payment_plan),
            term_months: product.term_months,
            insurer: product.insurer_name,
            service_company: product.service_company_id,
            active: product.active,
        }
    }
}

#[derive(Template)]
#[template(path = "console/insurer/applications.html")]
struct ApplicationsPage {
    layout: Layout,
    applications: Vec<PolicyRow>,
    nav: ListNav,
}

/// The applications to recheck: approved on the holder's phone, waiting for the insurer.
async fn applications(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(params): Query<ListParams>,
) -> PageResult {
    PageError::require(&principal, &[Role::Insurer])?;
    let filter = ListFilter::state(Some(PolicyState::AwaitingRecheck));
    let page = params.page(ListKind::Policies)?;
    let (db, core) = (&state.db, &state.core);
    let list =
        policies::list_policies(db, core, principal.party, principal.role, &filter, &page).await?;
    page::render(&ApplicationsPage {
        layout: Layout::signed_in("Applications to recheck", &session, "/insurer/applications"),
        nav: params.pager("/insurer/applications", list.next_cursor),
        applications: list.items.into_iter().map(PolicyRow::from).collect(),
    })
}

async fn issue(
    State(state): State<AppState>,
    Path(policy): Path<Uuid>,
    posted: Posted<page::NoFields>,
) -> PageResult {
    let principal = posted.session.principal()?;
    PageError::require(&principal, &[Role::Insurer])?;
    recheck(
        &state,
        posted.claim,
        principal.party,
        policy,
        Recheck::Issue,
    )
    .await?;
    Ok(page::see_other("/insurer/applications"))
}

#[derive(Deserialize)]
struct DeclineForm {
    reason: RecheckReason,
}

async fn decline(
    State(state): State<AppState>,
    Path(policy): Path<Uuid>,
    posted: Posted<DeclineForm>,
) -> PageResult {
    let principal = posted.session.principal()?;
    PageError::require(&principal, &[Role::Insurer])?;
    let reason = String::from(posted.form.reason);
    let decision = Recheck::Decline { reason };
    recheck(&state, posted.claim, principal.party, policy, decision).await?;
    Ok(page::see_other("/insurer/applications"))
}

/// The recheck, in the write transaction its API handler runs it in.
async fn recheck(
    state: &AppState,
    claim: FormClaim,
    insurer: PartyId,
    policy: Uuid,
    decision: Recheck,
) -> Result<(), PageError> {
    txn::write(state, claim, async |txn, core| {
        policies::recheck_in_txn(txn, core, insurer, &PolicyRef::Id(policy), decision).await?;
        Ok(())
    })
    .await
}

#[derive(Deserialize)]
struct ProductsQuery {
    after: Option<ProductId>,
}

#[derive(Template)]
#[template(path = "console/insurer/products.html")]
struct ProductsPage {
    layout: Layout,
    products: Vec<ProductRow>,
    next: Option<ProductId>,
    currencies: [Currency; 5],
}

async fn products_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(query): Query<ProductsQuery>,
) -> PageResult {
    PageError::require(&principal, &[Role::Insurer])?;
    let list = products::list_products(
        &state.db,
        ProductViewer::Insurer(principal.party),
        query.after,
        PAGE,
    )
    .await?;
    let next = (list.len() as u64 == PAGE)
        .then(|| list.last().map(|p| p.id))
        .flatten();
    page::render(&ProductsPage {
        layout: Layout::signed_in("Products", &session, "/insurer/products"),
        products: list.into_iter().map(ProductRow::from).collect(),
        next,
        currencies: Currency::ALL,
    })
}

#[derive(Deserialize)]
struct ProductForm {
    name: ProductName,
    coverage: Coverage,
    currency: Currency,
    coverage_amount: String,
    premium: String,
    term_months: String,
    payment_plan: PaymentPlan,
    service_company_id: PartyId,
    #[serde(default)]
    grace_days: String,
    #[serde(default)]
    free_look_days: String,
}

async fn create_product(State(state): State<AppState>, posted: Posted<ProductForm>) -> PageResult {
    let principal = posted.session.principal()?;
    PageError::require(&principal, &[Role::Insurer])?;
    let form = posted.form;
    let new = NewProduct {
        name: form.name.into(),
        coverage: form.coverage.into(),
        coverage_amount: forms::money(&form.coverage_amount, form.currency, "Sum insured")?,
        premium: forms::money(&form.premium, form.currency, "Premium")?,
        term_months: forms::optional_int(&form.term_months, "Term in months")?.unwrap_or(0),
        payment_plan: form.payment_plan,
        service_company: form.service_company_id,
        grace_days: forms::optional_int(&form.grace_days, "Grace days")?,
        free_look_days: forms::optional_int(&form.free_look_days, "Free-look days")?,
    };
    txn::write(&state, posted.claim, async move |txn, core| {
        products::create_product_in_txn(txn, core, principal.party, new).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other("/insurer/products"))
}

#[derive(Deserialize)]
struct SaleForm {
    active: bool,
}

async fn change_product(
    State(state): State<AppState>,
    Path(product): Path<ProductId>,
    posted: Posted<SaleForm>,
) -> PageResult {
    let principal = posted.session.principal()?;
    PageError::require(&principal, &[Role::Insurer])?;
    let active = posted.form.active;
    txn::write(&state, posted.claim, async |txn, core| {
        products::set_active_in_txn(txn, core, principal.party, product, active).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other("/insurer/products"))
}

#[derive(Template)]
#[template(path = "console/insurer/premiums.html")]
struct PremiumsPage {
    layout: Layout,
    policies: Vec<PolicyRow>,
    nav: ListNav,
}

/// The insurer's policies with every premium and where its money stands, and the form that
/// asks to be paid a premium by quoting the policy number.
async fn premiums(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(params): Query<ListParams>,
) -> PageResult {
    PageError::require(&principal, &[Role::Insurer])?;
    let filter = params.filter()?;
    let page = params.page(ListKind::Policies)?;
    let (db, core) = (&state.db, &state.core);
    let list =
        policies::list_policies(db, core, principal.party, principal.role, &filter, &page).await?;
    page::render(&PremiumsPage {
        layout: Layout::signed_in("Premiums and settlement", &session, "/insurer/premiums"),
        nav: params.nav(
            "/insurer/premiums",
            PolicyState::iter(),
            &filter,
            list.next_cursor,
        ),
        policies: list.items.into_iter().map(PolicyRow::from).collect(),
    })
}

#[derive(Deserialize)]
struct SettlementForm {
    policy_number: OrderNumber,
    #[serde(default)]
    installment: String,
}

async fn request_settlement(
    State(state): State<AppState>,
    posted: Posted<SettlementForm>,
) -> PageResult {
    let principal = posted.session.principal()?;
    PageError::require(&principal, &[Role::Insurer])?;
    let number = posted.form.policy_number;
    let installment = forms::optional_int(&posted.form.installment, "Installment")?;
    let insurer = principal.party;
    txn::write(&state, posted.claim, async |txn, core| {
        policies::request_settlement_in_txn(txn, core, insurer, &number, installment).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other("/insurer/premiums"))
}
