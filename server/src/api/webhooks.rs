//! A party's webhook endpoints, their delivery log, and its event feed.

use crate::api::paging::{self, PagedJson};
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use holdfast_core::events::{self, Event};
use holdfast_core::outbox::DeliveryRecord;
use holdfast_core::paging::ListKind;
use holdfast_core::webhooks::{self, Endpoint, Registered};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register, list))
        .routes(routes!(deactivate))
        .routes(routes!(deliveries))
        .routes(routes!(feed))
}

#[derive(Deserialize, Serialize, ToSchema)]
pub struct NewEndpoint {
    /// Where events are POSTed.
    #[schema(example = "https://supplier.example/holdfast-events")]
    pub url: holdfast_core::text::WebhookUrl,
}

/// Register an endpoint for the caller's events. It must be a public address: loopback,
/// private, link-local, shared, multicast, documentation and reserved addresses, `localhost`
/// and numeric disguises of them are refused with 422 `webhook_target_forbidden` (and checked
/// again, after resolving the name, at each delivery). The answer carries the signing secret, once:
/// each delivery is signed `Holdfast-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`
/// and names its event in `Holdfast-Event-Id` (deliveries are at least once: de-duplicate on
/// it).
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    request_body = NewEndpoint,
    responses((status = 201, description = "registered", body = Registered),
        (status = 400, description = "not an http(s) URL", body = crate::error::ErrorBody),
        (status = 422, description = "`webhook_target_forbidden`: not a public address",
            body = crate::error::ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    principal: Principal,
    Json(body): Json<NewEndpoint>,
) -> ApiResult<(StatusCode, axum::Json<Registered>)> {
    let policy = state.webhook_policy;
    let registered = state
        .in_write_txn(async move |txn, core| {
            webhooks::register_in_txn(txn, &core.clock, principal.party, &body.url, policy).await
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(registered)))
}

/// The caller's endpoints.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = [Endpoint])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<Vec<Endpoint>>> {
    Ok(axum::Json(
        webhooks::endpoints_of(&state.db, principal.party).await?,
    ))
}

/// Stop delivering to an endpoint.
#[utoipa::path(delete, path = "/v1/webhooks/{endpoint_id}", tag = "webhooks",
    security(("bearer" = [])), params(("endpoint_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn deactivate(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    state
        .in_write_txn(async move |txn, _| {
            webhooks::deactivate_in_txn(txn, principal.party, id).await
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
pub struct DeliveriesQuery {
    /// Only deliveries in this status.
    pub state: Option<holdfast_core::outbox::DeliveryStatus>,
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

/// The delivery log of an endpoint, newest first: attempts, the receiver's last status,
/// the next try. Paged: the next page's cursor is in the `Next-Cursor` header.
#[utoipa::path(get, path = "/v1/webhooks/{endpoint_id}/deliveries", tag = "webhooks",
    security(("bearer" = [])), params(("endpoint_id" = Uuid, Path), DeliveriesQuery),
    responses((status = 200, description = "a page of deliveries", body = [DeliveryRecord], headers(("Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "a cursor this list did not give out (`invalid_cursor`)", body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn deliveries(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<Uuid>,
    Query(query): Query<DeliveriesQuery>,
) -> ApiResult<PagedJson<DeliveryRecord>> {
    let page = paging::page(
        ListKind::WebhookDeliveries,
        query.limit,
        query.cursor.as_deref(),
    )?;
    let filter = paging::filter(query.state, query.from, query.to);
    let log = webhooks::deliveries(&state.db, principal.party, id, &filter, &page).await?;
    Ok(log.into())
}

#[derive(Deserialize, IntoParams)]
pub struct FeedQuery {
    /// The last event id seen.
    pub after: Option<Uuid>,
    /// 1–100, default 50.
    pub limit: Option<u64>,
}

/// The caller's events, oldest first: everything its webhooks receive, for polling instead.
#[utoipa::path(get, path = "/v1/events", tag = "webhooks", security(("bearer" = [])),
    params(FeedQuery), responses((status = 200, body = [Event])))]
pub async fn feed(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<FeedQuery>,
) -> ApiResult<axum::Json<Vec<Event>>> {
    let list = events::feed(
        &state.db,
        principal.party,
        query.after,
        query.limit.unwrap_or(50),
    )
    .await?;
    Ok(axum::Json(list))
}
