//! The carrier's desk: the parcels assigned to it (destination and order number, never payment
//! data), and a tracking entry at every distribution point.

use crate::api::paging::{self, PagedJson};
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use holdfast_core::order_number::OrderNumber;
use holdfast_core::paging::ListKind;
use holdfast_core::parties::Role;
use holdfast_retail::distribution::{self, ParcelId, ParcelStatus, ParcelView, TrackingEntry};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_parcels))
        .routes(routes!(record_tracking))
}

#[derive(Deserialize, IntoParams)]
pub struct ParcelsQuery {
    /// Only the parcel of this order.
    #[param(value_type = Option<String>)]
    pub order_number: Option<OrderNumber>,
    /// Only parcels in this status; without it, those not yet delivered or withdrawn.
    pub state: Option<ParcelStatus>,
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

/// The parcels assigned to the carrier, newest first: those not yet delivered or withdrawn, or
/// those in `state`. Paged: the next page's cursor is in the `Next-Cursor` header.
#[utoipa::path(get, path = "/v1/distributor/parcels", tag = "distributor", security(("bearer" = [])),
    params(ParcelsQuery), responses((status = 200, description = "a page of parcels", body = [ParcelView], headers(("Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last page."))),
        (status = 400, description = "a mistyped order number, or a cursor this list did not give out (`invalid_cursor`)", body = crate::error::ErrorBody)))]
pub async fn list_parcels(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<ParcelsQuery>,
) -> ApiResult<PagedJson<ParcelView>> {
    principal.require(&[Role::Distributor])?;
    let page = paging::page(ListKind::Parcels, query.limit, query.cursor.as_deref())?;
    let filter = paging::filter(query.state, query.from, query.to);
    let list = distribution::parcels_of(
        &state.db,
        principal.party,
        query.order_number.as_ref(),
        &filter,
        &page,
    )
    .await?;
    Ok(list.into())
}

/// Record a distribution point. The first takes the order into delivery; `delivered` needs the
/// order number the buyer handed over. Each point is texted to the buyer.
#[utoipa::path(post, path = "/v1/distributor/parcels/{parcel_id}/tracking", tag = "distributor",
    security(("bearer" = [])), params(("parcel_id" = ParcelId, Path)), request_body = TrackingEntry,
    responses((status = 201, body = ParcelView), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn record_tracking(
    State(state): State<AppState>,
    principal: Principal,
    Path(parcel): Path<ParcelId>,
    Json(entry): Json<TrackingEntry>,
) -> ApiResult<(StatusCode, axum::Json<ParcelView>)> {
    principal.require(&[Role::Distributor])?;
    let view = state
        .in_write_txn(async move |txn, core| {
            distribution::record_tracking_in_txn(txn, core, principal.party, parcel, entry).await
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}
