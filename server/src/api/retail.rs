//! Retail: the catalogue, orders and their lifecycle, the supplier's settlement request, the
//! buyer's dispute, and auctions.

use crate::api::paging::{self, PagedJson};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::idempotency::{IdempotencyKey, Idempotent};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use holdfast_core::Money;
use holdfast_core::escrow::{CaseEvent, CaseState};
use holdfast_core::ids::PartyId;
use holdfast_core::order_number::OrderNumber;
use holdfast_core::paging::ListKind;
use holdfast_core::parties::Role;
use holdfast_retail::auctions::{self, AuctionId, AuctionView, BidView, NewAuction};
use holdfast_retail::catalogue::{
    self, Audience, Commodity, CommodityChange, CommodityId, NewCommodity, Viewer,
};
use holdfast_retail::orders::{self, OrderSummary, OrderView, PlaceOrder};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_commodity, list_commodities))
        .routes(routes!(change_commodity))
        .routes(routes!(place_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(order_history))
        .routes(routes!(cancel_order))
        .routes(routes!(refuse_order))
        .routes(routes!(assign_carrier))
        .routes(routes!(request_settlement))
        .routes(routes!(renew_settlement_confirmation))
        .routes(routes!(dispute_order))
        .routes(routes!(open_auction, list_auctions))
        .routes(routes!(get_auction))
        .routes(routes!(place_bid))
}

/// How the caller sees the catalogue: a shopper through its card's class.
async fn viewer(state: &AppState, principal: &Principal) -> ApiResult<Viewer> {
    let card = match principal.role {
        Role::Shopper => Some(principal.shopper_card()?),
        _ => None,
    };
    Ok(catalogue::viewer(&state.db, card).await?)
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCommodity {
    pub name: holdfast_core::text::Name,
    #[serde(default)]
    pub manufacturer: holdfast_core::text::ShortText,
    #[serde(default)]
    pub description: holdfast_retail::catalogue::Description,
    pub price: Money,
    /// Who may see and buy it, by card class (default `all`).
    #[serde(default)]
    pub audience: Audience,
}

/// List a commodity for sale (suppliers, and card holders who sell). Its commission is the
/// seller's, as the operator set it.
#[utoipa::path(post, path = "/v1/retail/commodities", tag = "retail", security(("bearer" = [])),
    request_body = CreateCommodity,
    responses((status = 201, body = Commodity), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn create_commodity(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateCommodity>,
) -> ApiResult<(StatusCode, axum::Json<Commodity>)> {
    principal.require(&[Role::Supplier, Role::Shopper])?;
    let commodity = state
        .in_write_txn(async move |txn, core| {
            catalogue::create_commodity_in_txn(
                txn,
                core,
                principal.party,
                NewCommodity {
                    name: body.name.into(),
                    manufacturer: body.manufacturer.into(),
                    description: body.description.into(),
                    price: body.price,
                    audience: body.audience,
                },
            )
            .await
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(commodity)))
}

#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ChangeCommodity {
    pub name: Option<holdfast_core::text::Name>,
    pub manufacturer: Option<holdfast_core::text::ShortText>,
    pub description: Option<holdfast_retail::catalogue::Description>,
    /// Applies to new orders; an order keeps the price its buyer confirmed.
    pub price: Option<Money>,
    pub audience: Option<Audience>,
    /// `false` takes it off sale.
    pub active: Option<bool>,
}

/// Change one of the seller's commodities (the commission is the operator's).
#[utoipa::path(patch, path = "/v1/retail/commodities/{commodity_id}", tag = "retail",
    security(("bearer" = [])), params(("commodity_id" = CommodityId, Path)),
    request_body = ChangeCommodity,
    responses((status = 200, body = Commodity), (status = 404, body = crate::error::ErrorBody)))]
pub async fn change_commodity(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<CommodityId>,
    Json(body): Json<ChangeCommodity>,
) -> ApiResult<axum::Json<Commodity>> {
    principal.require(&[Role::Supplier, Role::Shopper])?;
    let commodity = state
        .in_write_txn(async move |txn, _| {
            catalogue::update_commodity_in_txn(
                txn,
                principal.party,
                id,
                CommodityChange {
                    name: body.name.map(Into::into),
                    manufacturer: body.manufacturer.map(Into::into),
                    description: body.description.map(Into::into),
                    price: body.price,
                    audience: body.audience,
                    active: body.active,
                },
            )
            .await
        })
        .await?;
    Ok(axum::Json(commodity))
}

#[derive(Deserialize, IntoParams)]
pub struct CommodityQuery {
    /// Only commodities on sale or withdrawn (the catalogue shows only those on sale).
    #[param(inline)]
    pub state: Option<catalogue::Listing>,
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

/// Commodities for sale, newest first. A shopper sees what the class of the card it logged in
/// with may buy (no adult goods for adolescent cards, business goods for business cards only).
/// Paged: the next page's cursor is in the `Next-Cursor` header.
#[utoipa::path(get, path = "/v1/retail/commodities", tag = "retail", security(("bearer" = [])),
    params(CommodityQuery), responses((status = 200, description = "a page of commodities", body = [Commodity], headers(("Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "a cursor this list did not give out (`invalid_cursor`)", body = crate::error::ErrorBody)))]
pub async fn list_commodities(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<CommodityQuery>,
) -> ApiResult<PagedJson<Commodity>> {
    let viewer = viewer(&state, &principal).await?;
    let page = paging::page(ListKind::Commodities, query.limit, query.cursor.as_deref())?;
    let filter = paging::filter(query.state, query.from, query.to);
    let list = catalogue::list_commodities(&state.db, viewer, &filter, &page).await?;
    Ok(list.into())
}

/// Place an order (shoppers) paid with the card of the session. The total is held at once and
/// the card's phone is asked to approve; answer with `POST /v1/challenges/{id}/answer`.
#[utoipa::path(post, path = "/v1/retail/orders", tag = "retail", security(("bearer" = [])),
    params(crate::openapi::RequiredIdempotencyKey),
    request_body = PlaceOrder,
    responses((status = 201, body = OrderView), (status = 400, body = crate::error::ErrorBody),
        (status = 403, description = "a commodity not sold to this card's class", body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
        (status = 422, description = "not enough funds, mixed suppliers…", body = crate::error::ErrorBody)))]
pub async fn place_order(
    State(state): State<AppState>,
    principal: Principal,
    key: IdempotencyKey,
    Json(body): Json<PlaceOrder>,
) -> ApiResult<Response> {
    let key = key.required()?;
    let card = principal.shopper_card()?;
    state
        .write(
            Idempotent::new(principal.scope(), key, "place_order", &(card, &body)),
            StatusCode::CREATED,
            async move |txn, core| {
                Ok(orders::place_order_in_txn(txn, core, principal.party, card, body).await?)
            },
        )
        .await
}

#[derive(Deserialize, IntoParams)]
pub struct ListQuery {
    /// 1–100, default 20.
    pub limit: Option<u64>,
}

#[derive(Deserialize, IntoParams)]
pub struct OrdersQuery {
    /// Only orders in this state.
    pub state: Option<CaseState>,
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

/// The caller's orders, newest first: placed (shoppers) or to fill, with their settlement
/// status (suppliers). Paged: the next page's cursor is in the `Next-Cursor` header.
#[utoipa::path(get, path = "/v1/retail/orders", tag = "retail", security(("bearer" = [])),
    params(OrdersQuery), responses((status = 200, description = "a page of orders", body = [OrderSummary],
        headers(("Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "a cursor this list did not give out (`invalid_cursor`)", body = crate::error::ErrorBody)))]
pub async fn list_orders(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<OrdersQuery>,
) -> ApiResult<PagedJson<OrderSummary>> {
    principal.require(&[Role::Shopper, Role::Supplier])?;
    let page = paging::page(ListKind::Cases, query.limit, query.cursor.as_deref())?;
    let filter = paging::filter(query.state, query.from, query.to);
    Ok(
        orders::list_orders(&state.db, principal.party, &filter, &page)
            .await?
            .into(),
    )
}

/// One order, for its shopper, its supplier or an operator. A supplier checks an order number
/// here: it sees the card masked, the items and the state, never the buyer's name, phone or
/// address.
#[utoipa::path(get, path = "/v1/retail/orders/{order_number}", tag = "retail",
    security(("bearer" = [])), params(("order_number" = OrderNumber, Path)),
    responses((status = 200, body = OrderView), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_order(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<OrderNumber>,
) -> ApiResult<axum::Json<OrderView>> {
    let view = orders::get_order(&state.db, principal.party, principal.role, &number).await?;
    Ok(axum::Json(view))
}

/// The order's timeline, oldest first: every state change, tracking point and message.
#[utoipa::path(get, path = "/v1/retail/orders/{order_number}/history", tag = "retail",
    security(("bearer" = [])), params(("order_number" = OrderNumber, Path)),
    responses((status = 200, body = [CaseEvent]), (status = 404, body = crate::error::ErrorBody)))]
pub async fn order_history(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<OrderNumber>,
) -> ApiResult<axum::Json<Vec<CaseEvent>>> {
    let events = orders::order_history(&state.db, principal.party, principal.role, &number).await?;
    Ok(axum::Json(events))
}

/// Cancel an order before dispatch (its shopper). The held money returns.
#[utoipa::path(post, path = "/v1/retail/orders/{order_number}/cancel", tag = "retail",
    security(("bearer" = [])),
    params(("order_number" = OrderNumber, Path), crate::openapi::OptionalIdempotencyKey),
    responses((status = 200, body = OrderView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn cancel_order(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<OrderNumber>,
    key: IdempotencyKey,
) -> ApiResult<Response> {
    principal.require(&[Role::Shopper])?;
    state
        .write(
            Idempotent::new(principal.scope(), key, "cancel_order", &number),
            StatusCode::OK,
            async move |txn, core| {
                Ok(orders::cancel_order_in_txn(txn, core, principal.party, &number).await?)
            },
        )
        .await
}

#[derive(Deserialize, Serialize, ToSchema, Default)]
pub struct Reason {
    pub reason: Option<holdfast_core::text::Note>,
}

/// Refuse an order before dispatch (its supplier). The buyer's money returns.
#[utoipa::path(post, path = "/v1/retail/orders/{order_number}/refuse", tag = "retail",
    security(("bearer" = [])),
    params(("order_number" = OrderNumber, Path), crate::openapi::OptionalIdempotencyKey),
    request_body = Reason,
    responses((status = 200, body = OrderView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn refuse_order(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<OrderNumber>,
    key: IdempotencyKey,
    Json(body): Json<Reason>,
) -> ApiResult<Response> {
    principal.require(&[Role::Supplier, Role::Shopper])?;
    state
        .write(
            Idempotent::new(principal.scope(), key, "refuse_order", &(&number, &body)),
            StatusCode::OK,
            async move |txn, core| {
                Ok(orders::refuse_order_in_txn(
                    txn,
                    core,
                    principal.party,
                    &number,
                    body.reason.map(Into::into),
                )
                .await?)
            },
        )
        .await
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct CarrierChoice {
    pub distributor_id: PartyId,
}

/// Give the order's parcel to a carrier (its supplier, before pickup).
#[utoipa::path(post, path = "/v1/retail/orders/{order_number}/carrier", tag = "retail",
    security(("bearer" = [])), params(("order_number" = OrderNumber, Path)),
    request_body = CarrierChoice,
    responses((status = 200, body = OrderView), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn assign_carrier(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<OrderNumber>,
    Json(body): Json<CarrierChoice>,
) -> ApiResult<axum::Json<OrderView>> {
    principal.require(&[Role::Supplier, Role::Shopper])?;
    let view = state
        .in_write_txn(async move |txn, core| {
            orders::assign_carrier_in_txn(txn, core, principal.party, &number, body.distributor_id)
                .await
        })
        .await?;
    Ok(axum::Json(view))
}

#[derive(Deserialize, Serialize, ToSchema, Default)]
pub struct SettlementRequest {
    /// Part of the order (the rest returns to the buyer); the whole order when absent.
    pub amount: Option<Money>,
}

/// Ask to be paid for an order, quoting its number (its supplier): for all of it or part of
/// it. The shopper's phone is asked to release the money and told what is known of the
/// delivery; without an answer it is released when the settlement period ends.
#[utoipa::path(post, path = "/v1/retail/orders/{order_number}/settlement-request", tag = "retail",
    security(("bearer" = [])),
    params(("order_number" = OrderNumber, Path), crate::openapi::OptionalIdempotencyKey),
    request_body(content = SettlementRequest, description = "optional"),
    responses((status = 200, body = OrderView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn request_settlement(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<OrderNumber>,
    key: IdempotencyKey,
    raw: axum::body::Bytes,
) -> ApiResult<Response> {
    principal.require(&[Role::Supplier, Role::Shopper])?;
    // The body is optional: none asks for the whole order.
    let body: SettlementRequest = crate::extract::optional_json(&raw)?;
    state
        .write(
            Idempotent::new(
                principal.scope(),
                key,
                "request_settlement",
                &(&number, &body),
            ),
            StatusCode::OK,
            async move |txn, core| {
                Ok(orders::request_settlement_in_txn(
                    txn,
                    core,
                    principal.party,
                    &number,
                    body.amount,
                )
                .await?)
            },
        )
        .await
}

/// Get a fresh settlement confirmation on the phone (its shopper) when the last one expired or
/// was locked by wrong codes. The settlement period runs on regardless.
#[utoipa::path(post, path = "/v1/retail/orders/{order_number}/settlement-confirmation", tag = "retail",
    security(("bearer" = [])), params(("order_number" = OrderNumber, Path)),
    responses((status = 200, body = OrderView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn renew_settlement_confirmation(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<OrderNumber>,
) -> ApiResult<axum::Json<OrderView>> {
    principal.require(&[Role::Shopper])?;
    let view = state
        .in_write_txn(async move |txn, core| {
            orders::renew_settlement_confirmation_in_txn(txn, core, principal.party, &number).await
        })
        .await?;
    Ok(axum::Json(view))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct Dispute {
    /// What went wrong (required).
    pub reason: holdfast_core::text::Reason,
}

/// Dispute a settlement request instead of approving it (its shopper). The settlement period
/// stops, and the money stays frozen until an operator mediates.
#[utoipa::path(post, path = "/v1/retail/orders/{order_number}/dispute", tag = "retail",
    security(("bearer" = [])), params(("order_number" = OrderNumber, Path)),
    request_body = Dispute,
    responses((status = 200, body = OrderView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn dispute_order(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<OrderNumber>,
    Json(body): Json<Dispute>,
) -> ApiResult<axum::Json<OrderView>> {
    principal.require(&[Role::Shopper])?;
    let view = state
        .in_write_txn(async move |txn, core| {
            orders::dispute_order_in_txn(txn, core, principal.party, &number, body.reason.into())
                .await
        })
        .await?;
    Ok(axum::Json(view))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAuction {
    pub name: holdfast_core::text::Name,
    #[serde(default)]
    pub description: holdfast_retail::catalogue::Description,
    pub reserve_price: Money,
    #[serde(default)]
    pub audience: Audience,
    /// How long it runs: 60 seconds to 30 days.
    #[schema(minimum = 60, maximum = 2_592_000)]
    pub duration_secs: i64,
}

/// Put a commodity up for auction (a card holder who sells). The highest bid at the close
/// becomes an order on the winner's card; the money settles into the seller's withdrawal
/// account.
#[utoipa::path(post, path = "/v1/retail/auctions", tag = "retail", security(("bearer" = [])),
    request_body = OpenAuction,
    responses((status = 201, body = AuctionView), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn open_auction(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<OpenAuction>,
) -> ApiResult<(StatusCode, axum::Json<AuctionView>)> {
    principal.require(&[Role::Shopper, Role::Supplier])?;
    // Out of chrono's range is out of ours too (60 s to 30 days, checked by the vertical).
    let duration = chrono::Duration::try_seconds(body.duration_secs)
        .ok_or_else(|| ApiError::invalid("an auction runs 60 seconds to 30 days"))?;
    let view = state
        .in_write_txn(async move |txn, core| {
            auctions::open_auction_in_txn(
                txn,
                core,
                principal.party,
                NewAuction {
                    name: body.name.into(),
                    description: body.description.into(),
                    reserve_price: body.reserve_price,
                    audience: body.audience,
                    duration,
                },
            )
            .await
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// Open auctions the caller's card may bid in, closing soonest first.
#[utoipa::path(get, path = "/v1/retail/auctions", tag = "retail", security(("bearer" = [])),
    params(ListQuery), responses((status = 200, body = [AuctionView])))]
pub async fn list_auctions(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<Vec<AuctionView>>> {
    let viewer = viewer(&state, &principal).await?;
    let list = auctions::open_auctions(&state.db, viewer, query.limit.unwrap_or(20)).await?;
    Ok(axum::Json(list))
}

/// One auction.
#[utoipa::path(get, path = "/v1/retail/auctions/{auction_id}", tag = "retail",
    security(("bearer" = [])), params(("auction_id" = AuctionId, Path)),
    responses((status = 200, body = AuctionView), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_auction(
    State(state): State<AppState>,
    _principal: Principal,
    Path(id): Path<AuctionId>,
) -> ApiResult<axum::Json<AuctionView>> {
    Ok(axum::Json(auctions::get_auction(&state.db, id).await?))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct Bid {
    pub amount: Money,
}

/// Bid with the card of the session: at least the reserve, more than the highest bid.
#[utoipa::path(post, path = "/v1/retail/auctions/{auction_id}/bids", tag = "retail",
    security(("bearer" = [])), params(("auction_id" = AuctionId, Path)), request_body = Bid,
    responses((status = 201, body = BidView), (status = 400, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn place_bid(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<AuctionId>,
    Json(body): Json<Bid>,
) -> ApiResult<(StatusCode, axum::Json<BidView>)> {
    let card = principal.shopper_card()?;
    let view = state
        .in_write_txn(async move |txn, core| {
            auctions::bid_in_txn(txn, core, principal.party, card, id, body.amount).await
        })
        .await
        .map_err(ApiError::from)?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}
