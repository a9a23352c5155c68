//! What parties are told. Every event goes to the party's feed (`party_events`) and, through
//! the outbox, to each of its active webhook endpoints — in the transaction of the change it
//! reports.

use crate::clock::Clock;
use crate::entities::party_events;
use crate::error::CoreResult;
use crate::ids::PartyId;
use crate::outbox::{self, Channel};
use crate::write_buffer;
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;
use utoipa::ToSchema;

/// An event as a party receives it, in its feed and in webhook bodies.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Event {
    /// Unique: a receiver that sees an id twice has seen the same event twice.
    pub id: Uuid,
    #[schema(example = "order.confirmed")]
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub data: serde_json::Value,
}

/// Records `kind` for `party` and queues it to the party's webhooks.
pub async fn publish_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    party: PartyId,
    kind: &str,
    data: serde_json::Value,
) -> CoreResult<Uuid> {
    let id = Uuid::now_v7();
    let now = clock.now();
    let event = Event {
        id,
        kind: kind.to_owned(),
        created_at: now,
        data,
    };
    let payload = serde_json::to_string(&event).unwrap_or_default();
    let row = party_events::ActiveModel {
        id: Set(id),
        party_id: Set(party.uuid()),
        kind: Set(kind.to_owned()),
        payload: Set(payload.clone()),
        created_at: Set(now),
    };
    // Written with the transaction's other events just before it commits; the endpoints are
    // read once per transaction and party.
    write_buffer::insert_party_event(txn, row).await?;
    let endpoints = write_buffer::active_endpoints(txn, party.uuid()).await?;
    for endpoint in endpoints {
        outbox::enqueue_in_txn(
            txn,
            clock,
            Channel::Webhook,
            endpoint.id.to_string(),
            payload.clone(),
            Some(id),
        )
        .await?;
    }
    Ok(id)
}

pub const MAX_FEED_PAGE: u64 = 100;

/// The party's events, oldest first, after `after` (the last id seen).
pub async fn feed(
    db: &impl ConnectionTrait,
    party: PartyId,
    after: Option<Uuid>,
    limit: u64,
) -> CoreResult<Vec<Event>> {
    let mut query = party_events::Entity::find()
        .filter(party_events::Column::PartyId.eq(party.uuid()))
        .order_by_asc(party_events::Column::Id)
        .limit(limit.clamp(1, MAX_FEED_PAGE));
    if let Some(after) = after {
        query = query.filter(party_events::Column::Id.gt(after));
    }
    Ok(query
        .all(db)
        .await?
        .into_iter()
        .filter_map(|row| {
            serde_json::from_str::<serde_json::Value>(&row.payload)
                .ok()
                .map(|value| (row, value))
        })
        .map(|(row, value)| Event {
            id: row.id,
            kind: row.kind,
            created_at: row.created_at,
            data: value
                .get("data")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
        })
        .collect())
}
