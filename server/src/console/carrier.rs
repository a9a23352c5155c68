//! The carrier's page: the parcels assigned to it (where each goes and its order number, never
//! who pays or how), a tracking entry at each distribution point (texted to the buyer by the
//! use case), and delivery with the order number the buyer hands over.

use super::orders_view::parse_number;
use super::page::{self, Layout, PageError, PageResult, Posted};
use super::session::SignedIn;
use super::txn;
use super::views;
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use holdfast_core::paging::ListKind;
use holdfast_core::parties::Role;
use holdfast_retail::distribution::{
    self, Location, ParcelId, ParcelStatus, TrackingEntry, TrackingKind, TrackingNote,
};
use sea_orm::Iterable;
use serde::Deserialize;

pub fn routes() -> Router<AppState> {
    Router::new().route("/carrier", get(parcels_page)).route(
        "/carrier/parcels/{parcel_id}/tracking",
        post(record_tracking),
    )
}

struct Parcel {
    id: ParcelId,
    number: String,
    destination: String,
    status: String,
    open: bool,
    tracking: Vec<String>,
}

#[derive(Deserialize, Default)]
struct Filter {
    order_number: Option<String>,
    /// Only strings inside, so flattening is safe with a form-encoded query.
    #[serde(flatten)]
    list: views::ListParams,
}

#[derive(Template)]
#[template(path = "console/carrier/parcels.html")]
struct ParcelsTemplate {
    layout: Layout,
    parcels: Vec<Parcel>,
    filter: String,
    nav: views::ListNav,
}

async fn parcels_page(
    State(state): State<AppState>,
    SignedIn { session, principal }: SignedIn,
    Query(filter): Query<Filter>,
) -> PageResult {
    PageError::require(&principal, &[Role::Distributor])?;
    let wanted = filter.order_number.unwrap_or_default();
    let number = match wanted.trim() {
        "" => None,
        raw => Some(parse_number(raw)?),
    };
    let list_filter = filter.list.filter()?;
    let page = filter.list.page(ListKind::Parcels)?;
    let list = distribution::parcels_of(
        &state.db,
        principal.party,
        number.as_ref(),
        &list_filter,
        &page,
    )
    .await?;
    let nav = filter.list.nav(
        "/carrier",
        ParcelStatus::iter(),
        &list_filter,
        list.next_cursor,
    );
    page::render(&ParcelsTemplate {
        layout: Layout::signed_in("Parcels", &session, "/carrier"),
        nav,
        parcels: list
            .items
            .into_iter()
            .map(|p| Parcel {
                id: p.parcel_id,
                number: p.order_number.to_string(),
                destination: p.destination,
                status: views::label(&p.status),
                open: matches!(
                    p.status,
                    ParcelStatus::AwaitingPickup | ParcelStatus::InTransit
                ),
                tracking: p
                    .tracking
                    .iter()
                    .map(|t| {
                        format!(
                            "{} — {} ({})",
                            views::label(&t.kind),
                            t.location,
                            views::when(t.at)
                        )
                    })
                    .collect(),
            })
            .collect(),
        filter: wanted,
    })
}

#[derive(Deserialize)]
struct TrackingForm {
    kind: TrackingKind,
    location: Location,
    #[serde(default)]
    note: String,
    #[serde(default)]
    order_number: String,
}

async fn record_tracking(
    State(state): State<AppState>,
    Path(parcel): Path<ParcelId>,
    posted: Posted<TrackingForm>,
) -> PageResult {
    let principal = posted.session.principal()?;
    PageError::require(&principal, &[Role::Distributor])?;
    let form = posted.form;
    let note = match form.note.trim() {
        "" => None,
        note => Some(
            TrackingNote::parse(note.to_owned())
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?,
        ),
    };
    let order_number = match form.order_number.trim() {
        "" => None,
        raw => Some(parse_number(raw)?),
    };
    let entry = TrackingEntry {
        kind: form.kind,
        location: form.location,
        note,
        order_number,
    };
    txn::write(&state, posted.claim, async move |txn, core| {
        distribution::record_tracking_in_txn(txn, core, principal.party, parcel, entry).await?;
        Ok(())
    })
    .await?;
    Ok(page::see_other("/carrier"))
}
