//! The carrier's desk: the parcels assigned to it (destination and order number, never payment
//! data), and a tracking entry at every distribution point.

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use holdfast_core::order_number::OrderNumber;
use holdfast_core::parties::Role;
use holdfast_retail::distribution::{self, ParcelId, ParcelView, TrackingEntry};
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
    /// 1–100, default 50.
    pub limit: Option<u64>,
}

/// The parcels assigned to the carrier and not yet delivered, oldest first.
#[utoipa::path(get, path = "/v1/distributor/parcels", tag = "distributor", security(("bearer" = [])),
    params(ParcelsQuery), responses((status = 200, body = [ParcelView])))]
pub async fn list_parcels(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<ParcelsQuery>,
) -> ApiResult<axum::Json<Vec<ParcelView>>> {
    principal.require(&[Role::Distributor])?;
    let list = distribution::parcels_of(
        &state.db,
        principal.party,
        query.order_number.as_ref(),
        query.limit.unwrap_or(50),
    )
    .await?;
    Ok(axum::Json(list))
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
