//! Parcels and tracking. When an order is confirmed its parcel goes to the seller's carrier,
//! which sees the destination and the order number, never payment data. The carrier records
//! each distribution point; every one is forwarded to the buyer's phone. The last is the
//! delivery, where the carrier records the order number the buyer handed over.

use crate::VERTICAL;
use crate::entities::{parcels, tracking_events};
use crate::error::{RetailError, RetailResult};
use chrono::{DateTime, Utc};
use holdfast_core::escrow::{self, CaseState, EscrowCase};
use holdfast_core::events;
use holdfast_core::ids::{Id, IdKind, PartyId};
use holdfast_core::order_number::OrderNumber;
use holdfast_core::paging::{ListFilter, Page, Paged};
use holdfast_core::parties::{self, Role};
use holdfast_core::text::Text;
use holdfast_core::{Core, CoreError};
use sea_orm::entity::prelude::*;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug)]
pub enum ParcelKind {}
impl IdKind for ParcelKind {
    const NAME: &'static str = "parcel";
}
pub type ParcelId = Id<ParcelKind>;

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::N(24))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum ParcelStatus {
    AwaitingPickup,
    InTransit,
    Delivered,
    /// The order was cancelled or refused before pickup.
    Withdrawn,
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::N(24))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum TrackingKind {
    PickedUp,
    Arrived,
    Departed,
    OutForDelivery,
    /// The buyer received it and handed over the order number.
    Delivered,
}

impl TrackingKind {
    fn phrase(self) -> &'static str {
        match self {
            TrackingKind::PickedUp => "picked up",
            TrackingKind::Arrived => "arrived at",
            TrackingKind::Departed => "left",
            TrackingKind::OutForDelivery => "out for delivery from",
            TrackingKind::Delivered => "delivered at",
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TrackingPoint {
    pub kind: TrackingKind,
    pub location: String,
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

/// A parcel as its carrier sees it: where it goes and the order number, no payment data.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ParcelView {
    pub parcel_id: ParcelId,
    pub order_number: OrderNumber,
    pub destination: String,
    pub status: ParcelStatus,
    pub tracking: Vec<TrackingPoint>,
    pub created_at: DateTime<Utc>,
}

/// What a buyer and a seller see of the parcel.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ParcelSummary {
    pub status: ParcelStatus,
    pub distributor_id: Option<PartyId>,
    pub tracking: Vec<TrackingPoint>,
}

pub const MAX_LOCATION_CHARS: usize = 200;
pub const MAX_NOTE_CHARS: usize = 500;
pub type Location = Text<1, MAX_LOCATION_CHARS>;
pub type TrackingNote = Text<1, MAX_NOTE_CHARS>;

/// Opens the parcel of a confirmed order and tells the seller and the carrier.
#[tracing::instrument(name = "retail.open_parcel", skip_all, fields(case_id = %case.id))]
pub async fn open_parcel_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &EscrowCase,
    destination: String,
    distributor: Option<PartyId>,
) -> RetailResult<()> {
    let id = ParcelId::new();
    let now = core.clock.now();
    parcels::Entity::insert(parcels::ActiveModel {
        id: Set(id.uuid()),
        case_id: Set(case.id.uuid()),
        distributor_party_id: Set(distributor.map(|d| d.uuid())),
        destination: Set(destination.clone()),
        status: Set(ParcelStatus::AwaitingPickup),
        delivered_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    if let Some(distributor) = distributor {
        tell_carrier_in_txn(txn, core, distributor, id, case, &destination).await?;
    }
    Ok(())
}

async fn tell_carrier_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    distributor: PartyId,
    parcel: ParcelId,
    case: &EscrowCase,
    destination: &str,
) -> RetailResult<()> {
    events::publish_in_txn(
        txn,
        &core.clock,
        distributor,
        "parcel.assigned",
        serde_json::json!({
            "parcel_id": parcel,
            "order_number": case.order_number,
            "destination": destination,
            "seller": case.payee_name,
        }),
    )
    .await?;
    Ok(())
}

async fn parcel_of_case(
    db: &impl ConnectionTrait,
    case: &EscrowCase,
) -> RetailResult<Option<parcels::Model>> {
    Ok(parcels::Entity::find()
        .filter(parcels::Column::CaseId.eq(case.id.uuid()))
        .one(db)
        .await?)
}

async fn tracking_of(db: &impl ConnectionTrait, parcel: Uuid) -> RetailResult<Vec<TrackingPoint>> {
    Ok(tracking_events::Entity::find()
        .filter(tracking_events::Column::ParcelId.eq(parcel))
        .order_by_asc(tracking_events::Column::At)
        .order_by_asc(tracking_events::Column::Id)
        .limit(200)
        .all(db)
        .await?
        .into_iter()
        .map(|row| TrackingPoint {
            kind: row.kind,
            location: row.location,
            note: row.note,
            at: row.at,
        })
        .collect())
}

pub async fn summary_of(
    db: &impl ConnectionTrait,
    case: &EscrowCase,
) -> RetailResult<Option<ParcelSummary>> {
    match parcel_of_case(db, case).await? {
        None => Ok(None),
        Some(parcel) => Ok(Some(ParcelSummary {
            status: parcel.status,
            distributor_id: parcel.distributor_party_id.map(PartyId::from_uuid),
            tracking: tracking_of(db, parcel.id).await?,
        })),
    }
}

/// The seller hands the parcel to another carrier (before pickup only).
#[tracing::instrument(name = "retail.assign_parcel", skip_all, fields(case_id = %case.id))]
pub async fn assign_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &EscrowCase,
    distributor: PartyId,
) -> RetailResult<()> {
    let carrier = parties::get_party(txn, distributor).await?;
    if carrier.role != Role::Distributor {
        return Err(CoreError::invalid("a parcel goes to a distributor").into());
    }
    let parcel = parcel_of_case(txn, case)
        .await?
        .ok_or_else(|| CoreError::invalid("the order has no parcel yet: it is not confirmed"))?;
    if parcel.status != ParcelStatus::AwaitingPickup {
        return Err(CoreError::invalid("the parcel was already picked up").into());
    }
    parcels::ActiveModel {
        id: Set(parcel.id),
        distributor_party_id: Set(Some(distributor.uuid())),
        updated_at: Set(core.clock.now()),
        ..Default::default()
    }
    .update(txn)
    .await?;
    tell_carrier_in_txn(
        txn,
        core,
        distributor,
        ParcelId::from_uuid(parcel.id),
        case,
        &parcel.destination,
    )
    .await
}

/// Withdraws the parcel of an order cancelled or refused before pickup.
#[tracing::instrument(name = "retail.withdraw_parcel", skip_all, fields(case_id = %case.id))]
pub async fn withdraw_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &EscrowCase,
) -> RetailResult<()> {
    if let Some(parcel) = parcel_of_case(txn, case).await?
        && parcel.status == ParcelStatus::AwaitingPickup
    {
        parcels::ActiveModel {
            id: Set(parcel.id),
            status: Set(ParcelStatus::Withdrawn),
            updated_at: Set(core.clock.now()),
            ..Default::default()
        }
        .update(txn)
        .await?;
        if let Some(distributor) = parcel.distributor_party_id {
            events::publish_in_txn(
                txn,
                &core.clock,
                PartyId::from_uuid(distributor),
                "parcel.withdrawn",
                serde_json::json!({"parcel_id": parcel.id, "order_number": case.order_number}),
            )
            .await?;
        }
    }
    Ok(())
}

/// The parcels given to a carrier, newest first: those in the filter's state, or with none
/// those not yet delivered or withdrawn; only the one of an order, when `order` names it.
pub async fn parcels_of(
    db: &impl ConnectionTrait,
    distributor: PartyId,
    order: Option<&OrderNumber>,
    filter: &ListFilter<ParcelStatus>,
    page: &Page,
) -> RetailResult<Paged<ParcelView>> {
    let mut query = parcels::Entity::find();
    // Filtered by order number, the case is read once here, not again for the view.
    let mut known_case = None;
    if let Some(number) = order {
        match escrow::find_case_by_number(db, number).await? {
            Some(case) => {
                query = query.filter(parcels::Column::CaseId.eq(case.id.uuid()));
                known_case = Some(case);
            }
            None => return Ok(Paged::empty()),
        }
    }
    query = query
        .filter(parcels::Column::DistributorPartyId.eq(distributor.uuid()))
        .filter(filter.created.condition(parcels::Column::CreatedAt));
    query = match filter.state {
        Some(state) => query.filter(parcels::Column::Status.eq(state)),
        None => query.filter(
            parcels::Column::Status.is_in([ParcelStatus::AwaitingPickup, ParcelStatus::InTransit]),
        ),
    };
    let rows = page
        .apply(query, parcels::Column::CreatedAt, parcels::Column::Id)
        .all(db)
        .await?;
    let rows = page.finish(rows, |row| (row.created_at, row.id));
    let mut views = Vec::with_capacity(rows.items.len());
    for row in rows.items {
        let order_number = match &known_case {
            Some(case) if case.id.uuid() == row.case_id => case.order_number.clone(),
            _ => {
                escrow::get_case(db, holdfast_core::ids::CaseId::from_uuid(row.case_id))
                    .await?
                    .order_number
            }
        };
        views.push(view_of(db, row, order_number).await?);
    }
    Ok(Paged {
        items: views,
        next_cursor: rows.next_cursor,
    })
}

/// The parcel as its carrier sees it; `order_number` is its case's (which the caller has).
async fn view_of(
    db: &impl ConnectionTrait,
    row: parcels::Model,
    order_number: OrderNumber,
) -> RetailResult<ParcelView> {
    Ok(ParcelView {
        parcel_id: ParcelId::from_uuid(row.id),
        order_number,
        tracking: tracking_of(db, row.id).await?,
        destination: row.destination,
        status: row.status,
        created_at: row.created_at,
    })
}

/// A carrier's entry at a distribution point.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct TrackingEntry {
    pub kind: TrackingKind,
    /// Where the parcel is: a depot, a city.
    pub location: Location,
    pub note: Option<TrackingNote>,
    /// For `delivered`: the order number the buyer handed over.
    pub order_number: Option<OrderNumber>,
}

fn bounded(text: &str, what: &str, max: usize) -> RetailResult<String> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(CoreError::invalid(format!("{what} has 1 to {max} characters")).into());
    }
    Ok(text.to_owned())
}

/// Records a distribution point. The first moves the order into delivery (it can no longer be
/// cancelled); `delivered` needs the order number the buyer handed over and records the
/// delivery. Every point is forwarded to the buyer's phone and the seller.
#[tracing::instrument(name = "retail.record_tracking", skip_all, fields(parcel_id = %parcel, case_id = tracing::field::Empty))]
pub async fn record_tracking_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    distributor: PartyId,
    parcel: ParcelId,
    entry: TrackingEntry,
) -> RetailResult<ParcelView> {
    let location = bounded(&entry.location, "a location", MAX_LOCATION_CHARS)?;
    let note = entry
        .note
        .as_deref()
        .map(|n| bounded(n, "a note", MAX_NOTE_CHARS))
        .transpose()?;
    let unlocked = parcels::Entity::find_by_id(parcel.uuid())
        .one(txn)
        .await?
        .filter(|row| row.distributor_party_id == Some(distributor.uuid()))
        .ok_or(RetailError::Core(CoreError::NotFound("parcel")))?;
    // Lock order: the case first, as every use case does.
    let mut case =
        escrow::lock_case_in_txn(txn, holdfast_core::ids::CaseId::from_uuid(unlocked.case_id))
            .await?;
    if case.vertical != VERTICAL {
        return Err(CoreError::NotFound("parcel").into());
    }
    let row = parcels::Entity::find_by_id(parcel.uuid())
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(RetailError::Core(CoreError::NotFound("parcel")))?;
    if matches!(
        row.status,
        ParcelStatus::Delivered | ParcelStatus::Withdrawn
    ) {
        return Err(CoreError::invalid("the parcel is already delivered or withdrawn").into());
    }
    let now = core.clock.now();
    let mut status = ParcelStatus::InTransit;
    let mut delivered_at = None;
    match entry.kind {
        TrackingKind::Delivered => {
            let handed = entry.order_number.as_ref().ok_or_else(|| {
                CoreError::invalid("a delivery records the order number the buyer handed over")
            })?;
            escrow::record_dispatch_and_delivery_in_txn(txn, core, &mut case, handed).await?;
            status = ParcelStatus::Delivered;
            delivered_at = Some(now);
        }
        _ => {
            if matches!(case.state, CaseState::Frozen) {
                escrow::record_dispatch_in_txn(txn, core, &mut case).await?;
            } else if !matches!(case.state, CaseState::InDelivery) {
                return Err(CoreError::InvalidTransition {
                    state: case.state.as_str(),
                    action: "track the parcel",
                }
                .into());
            }
        }
    }
    tracking_events::Entity::insert(tracking_events::ActiveModel {
        id: Set(Uuid::now_v7()),
        parcel_id: Set(row.id),
        kind: Set(entry.kind),
        location: Set(location.clone()),
        note: Set(note.clone()),
        at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    // The row as updated comes back with the update (RETURNING) for the answer.
    let updated = parcels::ActiveModel {
        id: Set(row.id),
        status: Set(status),
        delivered_at: Set(delivered_at),
        updated_at: Set(now),
        ..Default::default()
    }
    .update(txn)
    .await?;
    let line = format!("parcel {} {location}", entry.kind.phrase());
    escrow::note_in_txn(txn, core, case.id, "tracking", line.clone()).await?;
    escrow::text_buyer_in_txn(
        txn,
        core,
        &case,
        format!("Holdfast: order {}: {line}.", case.order_number),
    )
    .await?;
    events::publish_in_txn(
        txn,
        &core.clock,
        case.payee,
        "parcel.tracked",
        serde_json::json!({"order_number": case.order_number, "kind": entry.kind, "location": location}),
    )
    .await?;
    view_of(txn, updated, case.order_number).await
}
