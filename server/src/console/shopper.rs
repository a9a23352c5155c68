//! The shopper's pages: the catalogue its card's class may buy, the cart (one seller per
//! order: the order use case refuses a mixed cart), placing an order ("approve on your phone",
//! its state updating by itself), orders with their timeline, cancel, dispute, a fresh
//! settlement confirmation, balances, cards (report one lost), and armed card-present
//! approvals. Every action is the use case the API's handler calls.

use super::orders_view::{self, OrderStatus, Shown, lines_of, parse_number};
use super::page::{self, Layout, NoFields, PageError, PageResult, Posted};
use super::session::SignedIn;
use super::txn;
use super::views::{self, AccountLine};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use holdfast_core::cards::{self, CardNumber};
use holdfast_core::escrow::CaseState;
use holdfast_core::ledger;
use holdfast_core::paging::ListKind;
use holdfast_core::parties::Role;
use holdfast_retail::catalogue::{self, CommodityId};
use holdfast_retail::orders::{self, OrderLineRequest, PlaceOrder};
use sea_orm::Iterable;
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/shop", get(catalogue_page))
        .route("/shop/cart", get(cart_page))
        .route("/shop/orders", get(orders_page).post(place_order))
        .route("/shop/orders/{number}", get(order_page))
        .route("/shop/orders/{number}/status", get(order_status))
        .route("/shop/orders/{number}/cancel", post(cancel_order))
        .route("/shop/orders/{number}/dispute", post(dispute_order))
        .route(
            "/shop/orders/{number}/settlement-confirmation",
            post(renew_confirmation),
        )
        .route("/shop/account", get(account_page))
        .route("/shop/approvals", get(approvals_page).post(arm_approval))
        .route("/shop/approvals/{id}/cancel", post(cancel_approval))
        .route("/shop/cards/{number}/lost", post(report_lost))
}

/// The shopper of a session, with the card it signed in with.
fn shopper(principal: &Principal) -> Result<holdfast_core::cards::CardId, PageError> {
    Ok(principal.shopper_card()?)
}

struct Item {
    id: CommodityId,
    seller: String,
    name: String,
    manufacturer: String,
    price: String,
}

#[derive(Template)]
#[template(path = "console/shop/catalogue.html")]
struct CatalogueTemplate {
    layout: Layout,
    items: Vec<Item>,
    nav: views::ListNav,
}

async fn catalogue_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(params): Query<views::ListParams>,
) -> PageResult {
    let card = shopper(&principal)?;
    let viewer = catalogue::viewer(&state.db, Some(card)).await?;
    let filter = params.filter()?;
    let page = params.page(ListKind::Commodities)?;
    let paged = catalogue::list_commodities(&state.db, viewer, &filter, &page).await?;
    // The shop lists only what is on sale: no state to choose.
    let nav = params.nav("/shop", [], &filter, paged.next_cursor);
    let list = paged.items;
    let mut sellers: std::collections::HashMap<holdfast_core::ids::PartyId, String> =
        std::collections::HashMap::new();
    for commodity in &list {
        if let std::collections::hash_map::Entry::Vacant(entry) =
            sellers.entry(commodity.supplier_id)
        {
            let seller =
                holdfast_core::parties::get_party(&state.db, commodity.supplier_id).await?;
            entry.insert(seller.display_name);
        }
    }
    page::render(&CatalogueTemplate {
        layout: Layout::signed_in("Shop", &session, "/shop"),
        items: list
            .into_iter()
            .map(|c| Item {
                id: c.id,
                seller: sellers.get(&c.supplier_id).cloned().unwrap_or_default(),
                name: c.name,
                manufacturer: c.manufacturer,
                price: c.price.to_string(),
            })
            .collect(),
        nav,
    })
}

/// The cart's lines from a form: `q_<commodity id>=<quantity>`, quantities above zero.
fn cart_lines(fields: &[(String, String)]) -> Result<Vec<OrderLineRequest>, PageError> {
    let mut lines = Vec::new();
    for (name, value) in fields {
        let Some(id) = name.strip_prefix("q_") else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let quantity: u32 = value.parse().map_err(|_| {
            ApiError::invalid(format!("a quantity is a whole number, not {value:?}"))
        })?;
        if quantity == 0 {
            continue;
        }
        let commodity_id = id
            .parse()
            .map_err(|_| ApiError::invalid("not a commodity of the catalogue"))?;
        lines.push(OrderLineRequest {
            commodity_id,
            quantity,
        });
    }
    Ok(lines)
}

struct CartLine {
    id: CommodityId,
    name: String,
    seller: String,
    unit_price: String,
    quantity: u32,
}

#[derive(Template)]
#[template(path = "console/shop/cart.html")]
struct CartTemplate {
    layout: Layout,
    lines: Vec<CartLine>,
}

async fn cart_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(fields): Query<Vec<(String, String)>>,
) -> PageResult {
    shopper(&principal)?;
    let mut lines = Vec::new();
    for line in cart_lines(&fields)? {
        let commodity = catalogue::get_commodity(&state.db, line.commodity_id).await?;
        let seller = holdfast_core::parties::get_party(&state.db, commodity.supplier_id)
            .await?
            .display_name;
        lines.push(CartLine {
            id: commodity.id,
            name: commodity.name,
            seller,
            unit_price: commodity.price.to_string(),
            quantity: line.quantity,
        });
    }
    page::render(&CartTemplate {
        layout: Layout::signed_in("Cart", &session, "/shop"),
        lines,
    })
}

async fn place_order(
    State(state): State<AppState>,
    posted: Posted<Vec<(String, String)>>,
) -> PageResult {
    let principal = posted.session.principal()?;
    let card = shopper(&principal)?;
    let order = PlaceOrder {
        lines: cart_lines(&posted.form)?,
    };
    // The order's number is what is recorded: the same cart sent again lands on the same order.
    let number = txn::write(&state, posted.claim, async |txn, core| {
        let view = orders::place_order_in_txn(txn, core, principal.party, card, order).await?;
        Ok(view.order_number.to_string())
    })
    .await?;
    Ok(page::see_other(&format!("/shop/orders/{number}")))
}

struct OrderLine {
    number: String,
    state: String,
    total: String,
    seller: String,
    placed: String,
}

#[derive(Template)]
#[template(path = "console/shop/orders.html")]
struct OrdersTemplate {
    layout: Layout,
    orders: Vec<OrderLine>,
    nav: views::ListNav,
}

async fn orders_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(params): Query<views::ListParams>,
) -> PageResult {
    shopper(&principal)?;
    let filter = params.filter()?;
    let page = params.page(ListKind::Cases)?;
    let list = orders::list_orders(&state.db, principal.party, &filter, &page).await?;
    let nav = params.nav("/shop/orders", CaseState::iter(), &filter, list.next_cursor);
    page::render(&OrdersTemplate {
        layout: Layout::signed_in("Orders", &session, "/shop/orders"),
        orders: list
            .items
            .into_iter()
            .map(|o| OrderLine {
                number: o.order_number.to_string(),
                state: views::label(&o.state),
                total: o.total.to_string(),
                seller: o.supplier_name,
                placed: views::when(o.created_at),
            })
            .collect(),
        nav,
    })
}

#[derive(Template)]
#[template(path = "console/shop/order.html")]
struct OrderTemplate {
    layout: Layout,
    status: OrderStatus,
    seller: String,
    lines: Vec<orders_view::Line>,
    state_key: &'static str,
}

async fn order_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Path(raw): Path<String>,
) -> PageResult {
    shopper(&principal)?;
    let number = parse_number(&raw)?;
    let (view, status) = OrderStatus::load(&state, &principal, &number, "/shop/orders").await?;
    page::render(&OrderTemplate {
        layout: Layout::signed_in(format!("Order {number}"), &session, "/shop/orders"),
        seller: view.supplier_name.clone(),
        lines: lines_of(&view),
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
    shopper(&principal)?;
    orders_view::status_fragment(&state, &principal, &raw, shown, "/shop/orders").await
}

async fn cancel_order(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    posted: Posted<NoFields>,
) -> PageResult {
    let principal = posted.session.principal()?;
    PageError::require(&principal, &[Role::Shopper])?;
    let number = parse_number(&raw)?;
    txn::write(&state, posted.claim, async |txn, core| {
        orders::cancel_order_in_txn(txn, core, principal.party, &number).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other(&format!("/shop/orders/{number}")))
}

#[derive(Deserialize)]
struct DisputeForm {
    reason: holdfast_core::text::Reason,
}

async fn dispute_order(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    posted: Posted<DisputeForm>,
) -> PageResult {
    let principal = posted.session.principal()?;
    PageError::require(&principal, &[Role::Shopper])?;
    let number = parse_number(&raw)?;
    let reason = posted.form.reason.into();
    txn::write(&state, posted.claim, async |txn, core| {
        orders::dispute_order_in_txn(txn, core, principal.party, &number, reason).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other(&format!("/shop/orders/{number}")))
}

async fn renew_confirmation(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    posted: Posted<NoFields>,
) -> PageResult {
    let principal = posted.session.principal()?;
    PageError::require(&principal, &[Role::Shopper])?;
    let number = parse_number(&raw)?;
    txn::write(&state, posted.claim, async |txn, core| {
        orders::renew_settlement_confirmation_in_txn(txn, core, principal.party, &number).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other(&format!("/shop/orders/{number}")))
}

struct CardLine {
    number: String,
    masked: String,
    kind: String,
    class: String,
    status: String,
    active: bool,
    this_session: bool,
}

#[derive(Template)]
#[template(path = "console/shop/account.html")]
struct AccountTemplate {
    layout: Layout,
    accounts: Vec<AccountLine>,
    cards: Vec<CardLine>,
    /// A holder who sells (it has a withdrawal account) is paid out: link its payouts page.
    sells: bool,
}

async fn account_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
) -> PageResult {
    let card = shopper(&principal)?;
    let accounts = ledger::accounts_of(&state.db, principal.party).await?;
    let holder_cards = cards::cards_of_holder(&state.db, principal.party).await?;
    page::render(&AccountTemplate {
        layout: Layout::signed_in("Balances and cards", &session, "/shop/account"),
        sells: accounts
            .iter()
            .any(|a| a.kind == ledger::AccountKind::Withdrawal),
        accounts: accounts.iter().map(AccountLine::from).collect(),
        cards: holder_cards
            .iter()
            .map(|c| CardLine {
                number: c.number.to_string(),
                masked: c.number.masked(),
                kind: views::label(&c.mapping_kind),
                class: format!(
                    "{}, {}",
                    views::label(&c.age_class),
                    views::label(&c.purchase_type)
                ),
                status: views::label(&c.status),
                active: c.status == cards::CardStatus::Active,
                this_session: c.id == card,
            })
            .collect(),
    })
}

async fn report_lost(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    posted: Posted<NoFields>,
) -> PageResult {
    let principal = posted.session.principal()?;
    PageError::require(&principal, &[Role::Shopper])?;
    let number = CardNumber::parse(raw.trim()).map_err(|e| {
        PageError::Api(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_card_number",
            e.to_string(),
        ))
    })?;
    txn::write(&state, posted.claim, async |txn, core| {
        cards::block_in_txn(txn, &core.clock, &number, principal.party).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other("/shop/account"))
}

struct Approval {
    id: holdfast_card_present::ArmedApprovalId,
    merchant: String,
    max_amount: String,
    window: String,
    status: String,
    waiting: bool,
    cancellable: bool,
}

struct MerchantOption {
    id: holdfast_core::ids::PartyId,
    name: String,
}

#[derive(Template)]
#[template(path = "console/shop/approvals.html")]
struct ApprovalsTemplate {
    layout: Layout,
    approvals: Vec<Approval>,
    merchants: Vec<MerchantOption>,
    nav: views::ListNav,
}

/// Card-present approvals armed ahead: one merchant, a ceiling, a window; each confirmed on
/// the phone before it counts.
async fn approvals_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(params): Query<views::ListParams>,
) -> PageResult {
    shopper(&principal)?;
    let page = params.page(ListKind::ArmedApprovals)?;
    let list =
        holdfast_card_present::armed_approvals_of(&state.db, &state.core, principal.party, &page)
            .await?;
    let merchants = holdfast_card_present::merchants(&state.db, 100).await?;
    page::render(&ApprovalsTemplate {
        layout: Layout::signed_in("Card-present approvals", &session, "/shop/approvals"),
        nav: params.pager("/shop/approvals", list.next_cursor),
        approvals: list
            .items
            .into_iter()
            .map(|a| Approval {
                id: a.id,
                merchant: a.merchant_name,
                max_amount: a.max_amount.to_string(),
                window: format!(
                    "{} to {}",
                    views::when(a.valid_from),
                    views::when(a.valid_until)
                ),
                waiting: a.pending_confirmation.is_some(),
                cancellable: matches!(
                    a.status,
                    holdfast_card_present::ArmedStatus::AwaitingConfirmation
                        | holdfast_card_present::ArmedStatus::Armed
                ),
                status: views::label(&a.status),
            })
            .collect(),
        merchants: merchants
            .into_iter()
            .map(|m| MerchantOption {
                id: m.merchant_id,
                name: m.name,
            })
            .collect(),
    })
}

#[derive(Deserialize)]
struct ArmForm {
    merchant_id: holdfast_core::ids::PartyId,
    max_amount: String,
    currency: String,
    valid_for_minutes: i64,
}

async fn arm_approval(State(state): State<AppState>, posted: Posted<ArmForm>) -> PageResult {
    let principal = posted.session.principal()?;
    let card = shopper(&principal)?;
    let form = posted.form;
    let max_amount = views::money_field(&form.max_amount, &form.currency)?
        .ok_or_else(|| ApiError::invalid("an approval needs its most amount"))?;
    let request = holdfast_card_present::ArmRequest {
        merchant: form.merchant_id,
        max_amount,
        valid_from: None,
        valid_for_minutes: form.valid_for_minutes,
    };
    txn::write(&state, posted.claim, async move |txn, core| {
        holdfast_card_present::arm_in_txn(txn, core, principal.party, card, request).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other("/shop/approvals"))
}

async fn cancel_approval(
    State(state): State<AppState>,
    Path(id): Path<holdfast_card_present::ArmedApprovalId>,
    posted: Posted<NoFields>,
) -> PageResult {
    let principal = posted.session.principal()?;
    PageError::require(&principal, &[Role::Shopper])?;
    txn::write(&state, posted.claim, async |txn, core| {
        holdfast_card_present::cancel_armed_in_txn(txn, core, principal.party, id).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other("/shop/approvals"))
}
