//! Retail: the catalogue, orders, cancellation and the supplier's settlement request.

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{Json, Path, Query};
use crate::idempotency::{self, IdempotencyKey, Outcome};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use holdfast_core::Money;
use holdfast_core::cards;
use holdfast_core::escrow::CaseEvent;
use holdfast_core::order_number::OrderNumber;
use holdfast_core::parties::Role;
use holdfast_retail::catalogue::{
    self, Audience, CommissionRate, Commodity, CommodityId, NewCommodity, Viewer,
};
use holdfast_retail::orders::{self, OrderSummary, OrderView, PlaceOrder};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/retail/commodities",
            post(create_commodity).get(list_commodities),
        )
        .route("/retail/orders", post(place_order).get(list_orders))
        .route("/retail/orders/{order_number}", get(get_order))
        .route("/retail/orders/{order_number}/history", get(order_history))
        .route("/retail/orders/{order_number}/cancel", post(cancel_order))
        .route(
            "/retail/orders/{order_number}/settlement-request",
            post(request_settlement),
        )
        .route(
            "/retail/orders/{order_number}/settlement-confirmation",
            post(renew_settlement_confirmation),
        )
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct CreateCommodity {
    pub name: String,
    #[serde(default)]
    pub manufacturer: String,
    #[serde(default)]
    pub description: String,
    pub price: Money,
    /// The platform's share of the price, a decimal fraction below 1 (`"0.05"` = 5 %).
    #[schema(example = "0.05")]
    pub commission_rate: String,
    /// Who may see and buy it, by card class (default `all`).
    #[serde(default)]
    pub audience: Audience,
}

/// List a commodity for sale (suppliers).
#[utoipa::path(post, path = "/v1/retail/commodities", tag = "retail", security(("bearer" = [])),
    request_body = CreateCommodity,
    responses((status = 201, body = Commodity), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)))]
pub async fn create_commodity(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<CreateCommodity>,
) -> ApiResult<(StatusCode, axum::Json<Commodity>)> {
    principal.require(&[Role::Supplier])?;
    let commodity = catalogue::create_commodity(
        &state.db,
        &state.core,
        principal.party,
        NewCommodity {
            name: body.name,
            manufacturer: body.manufacturer,
            description: body.description,
            price: body.price,
            commission_rate: CommissionRate::parse(&body.commission_rate)?,
            audience: body.audience,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(commodity)))
}

#[derive(Deserialize, IntoParams)]
pub struct PageQuery {
    /// The last id of the previous page.
    pub after: Option<CommodityId>,
    /// 1–100, default 20.
    pub limit: Option<u64>,
}

/// Commodities for sale. A shopper sees what the class of the card it logged in with may buy
/// (no adult goods for adolescent cards, business goods for business cards only).
#[utoipa::path(get, path = "/v1/retail/commodities", tag = "retail", security(("bearer" = [])),
    params(PageQuery), responses((status = 200, body = [Commodity])))]
pub async fn list_commodities(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
) -> ApiResult<axum::Json<Vec<Commodity>>> {
    let viewer = match principal.role {
        Role::Shopper => {
            let card = cards::get_card(&state.db, principal.shopper_card()?).await?;
            Viewer::Card(card.age_class, card.purchase_type)
        }
        _ => Viewer::Staff,
    };
    let list = catalogue::list_commodities(&state.db, viewer, page.after, page.limit.unwrap_or(20))
        .await?;
    Ok(axum::Json(list))
}

/// Place an order (shoppers). The total is held at once and the shopper's phone is asked to
/// approve; answer with `POST /v1/challenges/{id}/answer`.
#[utoipa::path(post, path = "/v1/retail/orders", tag = "retail", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header)),
    request_body = PlaceOrder,
    responses((status = 201, body = OrderView), (status = 400, body = crate::error::ErrorBody),
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
    let fingerprint = idempotency::fingerprint("place_order", &(card, &body));
    let core = state.core.clone();
    idempotency::run(
        &state,
        principal.scope(),
        key,
        fingerprint,
        StatusCode::CREATED,
        move |txn| {
            Box::pin(async move {
                let view =
                    orders::place_order_in_txn(txn, &core, principal.party, card, body).await?;
                Ok(Outcome::Done(view))
            })
        },
    )
    .await
}

#[derive(Deserialize, IntoParams)]
pub struct ListQuery {
    /// 1–100, default 20.
    pub limit: Option<u64>,
}

/// The caller's orders, newest first: placed (shoppers) or to fill (suppliers).
#[utoipa::path(get, path = "/v1/retail/orders", tag = "retail", security(("bearer" = [])),
    params(ListQuery), responses((status = 200, body = [OrderSummary])))]
pub async fn list_orders(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<Vec<OrderSummary>>> {
    principal.require(&[Role::Shopper, Role::Supplier])?;
    let list = orders::list_orders(&state.db, principal.party, query.limit.unwrap_or(20)).await?;
    Ok(axum::Json(list))
}

/// One order, for its shopper, its supplier or an operator.
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

/// Every state change of an order, oldest first.
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
    params(("order_number" = OrderNumber, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = OrderView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn cancel_order(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<OrderNumber>,
    key: IdempotencyKey,
) -> ApiResult<Response> {
    principal.require(&[Role::Shopper])?;
    let fingerprint = idempotency::fingerprint("cancel_order", &number);
    let core = state.core.clone();
    idempotency::run(
        &state,
        principal.scope(),
        key,
        fingerprint,
        StatusCode::OK,
        move |txn| {
            Box::pin(async move {
                let view =
                    orders::cancel_order_in_txn(txn, &core, principal.party, &number).await?;
                Ok(Outcome::Done(view))
            })
        },
    )
    .await
}

/// Ask to be paid for an order, quoting its number (its supplier). The shopper's phone is
/// asked to release the money; without an answer it is released when the period ends.
#[utoipa::path(post, path = "/v1/retail/orders/{order_number}/settlement-request", tag = "retail",
    security(("bearer" = [])),
    params(("order_number" = OrderNumber, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = OrderView), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn request_settlement(
    State(state): State<AppState>,
    principal: Principal,
    Path(number): Path<OrderNumber>,
    key: IdempotencyKey,
) -> ApiResult<Response> {
    principal.require(&[Role::Supplier])?;
    let fingerprint = idempotency::fingerprint("request_settlement", &number);
    let core = state.core.clone();
    idempotency::run(
        &state,
        principal.scope(),
        key,
        fingerprint,
        StatusCode::OK,
        move |txn| {
            Box::pin(async move {
                let view =
                    orders::request_settlement_in_txn(txn, &core, principal.party, &number).await?;
                Ok(Outcome::Done(view))
            })
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
    let view =
        orders::renew_settlement_confirmation(&state.db, &state.core, principal.party, &number)
            .await?;
    Ok(axum::Json(view))
}
