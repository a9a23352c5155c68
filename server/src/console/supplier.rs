//! The supplier's windows, after the seed: settlement status (its orders and its withdrawal
//! balance), supplied goods (its commodities, new ones, commodity change), order-number check,
//! information change (with the second password), and on each order the carrier choice, the
//! settlement request (whole or part) and a refusal; plus its webhooks and their delivery log.
//! A supplier sees an order's card masked and its items, never the buyer's name, phone or
//! address: the order views of the use cases say so.

use super::orders_view::{self, OrderStatus, Shown, lines_of, parse_number};
use super::page::{self, FormClaim, Layout, Notice, PageError, PageResult, Posted};
use super::session::SignedIn;
use super::txn;
use super::views::{self, AccountLine};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use holdfast_core::escrow::CaseState;
use holdfast_core::ids::PartyId;
use holdfast_core::outbox::{DeliveryRecord, DeliveryStatus};
use holdfast_core::paging::{ListFilter, ListKind, Page};
use holdfast_core::parties::{self, Role};
use holdfast_core::{ledger, webhooks};
use holdfast_retail::catalogue::{
    self, Audience, CommodityChange, CommodityId, Listing, NewCommodity,
};
use holdfast_retail::orders;
use sea_orm::Iterable;
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/supplier", get(status_page))
        .route("/supplier/check", get(check_page))
        .route("/supplier/orders/{number}", get(order_page))
        .route("/supplier/orders/{number}/status", get(order_status))
        .route("/supplier/orders/{number}/carrier", post(choose_carrier))
        .route(
            "/supplier/orders/{number}/settlement-request",
            post(request_settlement),
        )
        .route("/supplier/orders/{number}/refuse", post(refuse_order))
        .route("/supplier/goods", get(goods_page).post(new_commodity))
        .route("/supplier/goods/{id}", post(change_commodity))
        .route("/supplier/profile", get(profile_page).post(change_profile))
        .route(
            "/supplier/webhooks",
            get(webhooks_page).post(register_webhook),
        )
        .route("/supplier/webhooks/{id}/deliveries", get(deliveries_page))
        .route(
            "/supplier/webhooks/{id}/deactivate",
            post(deactivate_webhook),
        )
}

fn supplier(principal: &Principal) -> Result<(), PageError> {
    PageError::require(principal, &[Role::Supplier])
}

struct OrderRow {
    number: String,
    state: String,
    total: String,
    placed: String,
}

#[derive(Template)]
#[template(path = "console/supplier/status.html")]
struct StatusTemplate {
    layout: Layout,
    accounts: Vec<AccountLine>,
    orders: Vec<OrderRow>,
    nav: views::ListNav,
}

async fn status_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(params): Query<views::ListParams>,
) -> PageResult {
    supplier(&principal)?;
    let filter = params.filter()?;
    let page = params.page(ListKind::Cases)?;
    let accounts = ledger::accounts_of(&state.db, principal.party).await?;
    let list = orders::list_orders(&state.db, principal.party, &filter, &page).await?;
    let nav = params.nav("/supplier", CaseState::iter(), &filter, list.next_cursor);
    page::render(&StatusTemplate {
        layout: Layout::signed_in("Settlement status", &session, "/supplier"),
        accounts: accounts.iter().map(AccountLine::from).collect(),
        orders: list
            .items
            .into_iter()
            .map(|o| OrderRow {
                number: o.order_number.to_string(),
                state: views::label(&o.state),
                total: o.total.to_string(),
                placed: views::when(o.created_at),
            })
            .collect(),
        nav,
    })
}

#[derive(Deserialize, Default)]
struct CheckQuery {
    number: Option<String>,
}

#[derive(Template)]
#[template(path = "console/supplier/check.html")]
struct CheckTemplate {
    layout: Layout,
}

/// The order-number check: a number typed in opens that order (if it is this supplier's).
async fn check_page(
    SignedIn { session, principal }: SignedIn,
    Query(query): Query<CheckQuery>,
) -> PageResult {
    supplier(&principal)?;
    if let Some(raw) = query.number.filter(|n| !n.trim().is_empty()) {
        let number = parse_number(&raw)?;
        return Ok(page::see_other(&format!("/supplier/orders/{number}")));
    }
    page::render(&CheckTemplate {
        layout: Layout::signed_in("Order-number check", &session, "/supplier/check"),
    })
}

struct Carrier {
    id: PartyId,
    name: String,
}

#[derive(Template)]
#[template(path = "console/supplier/order.html")]
struct OrderTemplate {
    layout: Layout,
    status: OrderStatus,
    card: String,
    lines: Vec<orders_view::Line>,
    carriers: Vec<Carrier>,
    currency: String,
    state_key: &'static str,
}

async fn order_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Path(raw): Path<String>,
) -> PageResult {
    supplier(&principal)?;
    let number = parse_number(&raw)?;
    let (view, status) = OrderStatus::load(&state, &principal, &number, "/supplier/orders").await?;
    let carriers = parties::parties_with_role(&state.db, Role::Distributor, 100).await?;
    page::render(&OrderTemplate {
        layout: Layout::signed_in(format!("Order {number}"), &session, "/supplier"),
        card: view.card.clone(),
        lines: lines_of(&view),
        carriers: carriers
            .into_iter()
            .map(|p| Carrier {
                id: p.id,
                name: p.display_name,
            })
            .collect(),
        currency: view.total.currency().to_string(),
        state_key: view.state.as_str(),
        status,
    })
}

async fn order_status(
    State(state): State<AppState>,
    SignedIn { principal, .. }: SignedIn,
    Path(raw): Path<String>,
    Query(shown): Query<Shown>,
) -> PageResult {
    supplier(&principal)?;
    orders_view::status_fragment(&state, &principal, &raw, shown, "/supplier/orders").await
}

#[derive(Deserialize)]
struct CarrierForm {
    distributor_id: PartyId,
}

async fn choose_carrier(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    posted: Posted<CarrierForm>,
) -> PageResult {
    let principal = posted.session.principal()?;
    supplier(&principal)?;
    let number = parse_number(&raw)?;
    let carrier = posted.form.distributor_id;
    txn::write(&state, posted.claim, async |txn, core| {
        orders::assign_carrier_in_txn(txn, core, principal.party, &number, carrier).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other(&format!("/supplier/orders/{number}")))
}

#[derive(Deserialize)]
struct SettlementForm {
    #[serde(default)]
    amount: String,
    currency: String,
}

async fn request_settlement(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    posted: Posted<SettlementForm>,
) -> PageResult {
    let principal = posted.session.principal()?;
    supplier(&principal)?;
    let number = parse_number(&raw)?;
    let amount = views::money_field(&posted.form.amount, &posted.form.currency)?;
    txn::write(&state, posted.claim, async |txn, core| {
        orders::request_settlement_in_txn(txn, core, principal.party, &number, amount).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other(&format!("/supplier/orders/{number}")))
}

#[derive(Deserialize)]
struct RefuseForm {
    #[serde(default)]
    reason: Option<holdfast_core::text::Note>,
}

async fn refuse_order(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    posted: Posted<RefuseForm>,
) -> PageResult {
    let principal = posted.session.principal()?;
    supplier(&principal)?;
    let number = parse_number(&raw)?;
    let reason = posted
        .form
        .reason
        .map(String::from)
        .filter(|r| !r.trim().is_empty());
    txn::write(&state, posted.claim, async |txn, core| {
        orders::refuse_order_in_txn(txn, core, principal.party, &number, reason).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other(&format!("/supplier/orders/{number}")))
}

struct Good {
    id: CommodityId,
    name: String,
    price: String,
    amount: String,
    currency: String,
    audience: String,
    commission: String,
    active: bool,
}

#[derive(Template)]
#[template(path = "console/supplier/goods.html")]
struct GoodsTemplate {
    layout: Layout,
    goods: Vec<Good>,
    nav: views::ListNav,
}

async fn goods_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(params): Query<views::ListParams>,
) -> PageResult {
    supplier(&principal)?;
    let filter = params.filter()?;
    let page = params.page(ListKind::Commodities)?;
    let paged =
        catalogue::commodities_of_seller(&state.db, principal.party, &filter, &page).await?;
    let nav = params.nav("/supplier/goods", Listing::ALL, &filter, paged.next_cursor);
    let list = paged.items;
    page::render(&GoodsTemplate {
        layout: Layout::signed_in("Supplied goods", &session, "/supplier/goods"),
        goods: list
            .into_iter()
            .map(|c| Good {
                id: c.id,
                name: c.name,
                price: c.price.to_string(),
                amount: c.price.amount().to_string(),
                currency: c.price.currency().to_string(),
                audience: views::label(&c.audience),
                commission: c.commission_rate,
                active: c.active,
            })
            .collect(),
        nav,
    })
}

#[derive(Deserialize)]
struct NewCommodityForm {
    name: holdfast_core::text::Name,
    #[serde(default)]
    manufacturer: holdfast_core::text::ShortText,
    price: String,
    currency: String,
    audience: Audience,
}

async fn new_commodity(
    State(state): State<AppState>,
    posted: Posted<NewCommodityForm>,
) -> PageResult {
    let principal = posted.session.principal()?;
    supplier(&principal)?;
    let form = posted.form;
    let price = views::money_field(&form.price, &form.currency)?
        .ok_or_else(|| ApiError::invalid("a commodity needs a price"))?;
    let commodity = NewCommodity {
        name: form.name.into(),
        manufacturer: form.manufacturer.into(),
        description: String::new(),
        price,
        audience: form.audience,
    };
    txn::write(&state, posted.claim, async move |txn, core| {
        catalogue::create_commodity_in_txn(txn, core, principal.party, commodity).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other("/supplier/goods"))
}

#[derive(Deserialize)]
struct ChangeForm {
    price: String,
    currency: String,
    #[serde(default)]
    on_sale: Option<String>,
}

async fn change_commodity(
    State(state): State<AppState>,
    Path(id): Path<CommodityId>,
    posted: Posted<ChangeForm>,
) -> PageResult {
    let principal = posted.session.principal()?;
    supplier(&principal)?;
    let form = posted.form;
    let change = CommodityChange {
        name: None,
        manufacturer: None,
        description: None,
        price: views::money_field(&form.price, &form.currency)?,
        audience: None,
        active: Some(form.on_sale.is_some()),
    };
    txn::write(&state, posted.claim, async move |txn, _| {
        catalogue::update_commodity_in_txn(txn, principal.party, id, change).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other("/supplier/goods"))
}

#[derive(Template)]
#[template(path = "console/supplier/profile.html")]
struct ProfileTemplate {
    layout: Layout,
    display_name: String,
    notice: Option<Notice>,
}

async fn profile_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
) -> PageResult {
    supplier(&principal)?;
    let party = parties::get_party(&state.db, principal.party).await?;
    page::render(&ProfileTemplate {
        layout: Layout::signed_in("Information change", &session, "/supplier/profile"),
        display_name: party.display_name,
        notice: None,
    })
}

#[derive(Deserialize)]
struct ProfileForm {
    display_name: holdfast_core::text::Name,
    second_password: holdfast_core::text::Password,
}

/// The information change, as the API makes it: the second password first, then the change in
/// the runner's transaction.
async fn change_display_name(
    state: &AppState,
    party: PartyId,
    form: &ProfileForm,
    claim: FormClaim,
) -> Result<(), PageError> {
    parties::verify_second_password(
        &state.db,
        &state.core.passwords,
        party,
        &form.second_password,
    )
    .await?;
    txn::write(state, claim, async |txn, _| {
        parties::change_display_name_in_txn(txn, party, &form.display_name).await?;
        Ok(())
    })
    .await
}

async fn change_profile(State(state): State<AppState>, posted: Posted<ProfileForm>) -> PageResult {
    let principal = posted.session.principal()?;
    supplier(&principal)?;
    let changed = change_display_name(&state, principal.party, &posted.form, posted.claim).await;
    match changed {
        Ok(()) => Ok(page::see_other("/supplier/profile")),
        Err(PageError::Api(error)) => {
            let mut response = page::render(&ProfileTemplate {
                layout: Layout::signed_in(
                    "Information change",
                    &posted.session,
                    "/supplier/profile",
                ),
                display_name: posted.form.display_name.to_string(),
                notice: Some(Notice::from(&error)),
            })?;
            *response.status_mut() = error.status;
            Ok(response)
        }
        Err(other) => Err(other),
    }
}

struct DeliveryRow {
    at: String,
    status: String,
    attempts: i32,
    last: String,
}

impl From<DeliveryRecord> for DeliveryRow {
    fn from(d: DeliveryRecord) -> Self {
        DeliveryRow {
            at: views::when(d.created_at),
            status: views::label(&d.status),
            attempts: d.attempts,
            last: match (d.last_status_code, d.last_error) {
                (Some(code), _) => format!("HTTP {code}"),
                (None, Some(error)) => error,
                (None, None) => String::new(),
            },
        }
    }
}

struct EndpointRow {
    id: uuid::Uuid,
    url: String,
    active: bool,
    deliveries: Vec<DeliveryRow>,
}

#[derive(Template)]
#[template(path = "console/supplier/webhooks.html")]
struct WebhooksTemplate {
    layout: Layout,
    endpoints: Vec<EndpointRow>,
    secret: Option<String>,
}

/// The newest deliveries shown per endpoint.
const DELIVERIES_SHOWN: u64 = 20;

async fn webhooks_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
) -> PageResult {
    supplier(&principal)?;
    render_webhooks(&state, &session, &principal, None).await
}

#[derive(Template)]
#[template(path = "console/supplier/deliveries.html")]
struct DeliveriesTemplate {
    layout: Layout,
    url: String,
    deliveries: Vec<DeliveryRow>,
    nav: views::ListNav,
}

/// The whole delivery log of one endpoint, paged and filtered by status and date.
async fn deliveries_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Path(id): Path<uuid::Uuid>,
    Query(params): Query<views::ListParams>,
) -> PageResult {
    supplier(&principal)?;
    let filter = params.filter()?;
    let page = params.page(ListKind::WebhookDeliveries)?;
    let log = webhooks::deliveries(&state.db, principal.party, id, &filter, &page).await?;
    let url = webhooks::endpoints_of(&state.db, principal.party)
        .await?
        .into_iter()
        .find(|endpoint| endpoint.id == id)
        .map(|endpoint| endpoint.url)
        .unwrap_or_default();
    let nav = params.nav(
        format!("/supplier/webhooks/{id}/deliveries"),
        DeliveryStatus::iter(),
        &filter,
        log.next_cursor,
    );
    page::render(&DeliveriesTemplate {
        layout: Layout::signed_in("Webhook deliveries", &session, "/supplier/webhooks"),
        url,
        deliveries: log.items.into_iter().map(DeliveryRow::from).collect(),
        nav,
    })
}

async fn render_webhooks(
    state: &AppState,
    session: &super::session::Session,
    principal: &Principal,
    secret: Option<String>,
) -> PageResult {
    let mut endpoints = Vec::new();
    for endpoint in webhooks::endpoints_of(&state.db, principal.party).await? {
        let first = Page::first(ListKind::WebhookDeliveries, DELIVERIES_SHOWN);
        let log = webhooks::deliveries(
            &state.db,
            principal.party,
            endpoint.id,
            &ListFilter::default(),
            &first,
        )
        .await?
        .items;
        endpoints.push(EndpointRow {
            id: endpoint.id,
            url: endpoint.url,
            active: endpoint.active,
            deliveries: log.into_iter().map(DeliveryRow::from).collect(),
        });
    }
    page::render(&WebhooksTemplate {
        layout: Layout::signed_in("Webhooks", session, "/supplier/webhooks"),
        endpoints,
        secret,
    })
}

#[derive(Deserialize)]
struct WebhookForm {
    url: holdfast_core::text::WebhookUrl,
}

async fn register_webhook(
    State(state): State<AppState>,
    posted: Posted<WebhookForm>,
) -> PageResult {
    let principal = posted.session.principal()?;
    supplier(&principal)?;
    let policy = state.webhook_policy;
    let url = &posted.form.url;
    // The signing secret is shown this once, on the page that answers the form; it is not
    // recorded with the form's claim, so the same form sent again lands on the page without it.
    let mut secret = None;
    txn::write(&state, posted.claim, async |txn, core| {
        let registered =
            webhooks::register_in_txn(txn, &core.clock, principal.party, url, policy).await?;
        secret = Some(registered.secret);
        Ok(())
    })
    .await?;
    render_webhooks(&state, &posted.session, &principal, secret).await
}

async fn deactivate_webhook(
    State(state): State<AppState>,
    Path(id): Path<uuid::Uuid>,
    posted: Posted<page::NoFields>,
) -> PageResult {
    let principal = posted.session.principal()?;
    supplier(&principal)?;
    txn::write(&state, posted.claim, async |txn, _| {
        webhooks::deactivate_in_txn(txn, principal.party, id).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other("/supplier/webhooks"))
}
