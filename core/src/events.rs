//! What parties are told. Every event goes to the party's feed (`party_events`) and, through
//! the outbox, to each of its active webhook endpoints — in the transaction of the change it
//! reports.

use crate::clock::Clock;
use crate::entities::{party_events, webhook_endpoints};
use crate::error::CoreResult;
use crate::ids::PartyId;
use crate::outbox::{self, Channel};
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, DbBackend, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Statement,
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
    let endpoints = match txn.get_database_backend() {
        // One round trip: the feed's row is written by a data-modifying CTE of the query
        // that finds the party's active endpoints.
        DbBackend::Postgres => {
            let insert = party_events::Entity::insert(row)
                .query()
                .to_owned()
                .build(sea_orm::sea_query::PostgresQueryBuilder);
            let (sql, mut values) = insert;
            let party_at = values.0.len() + 1;
            values.0.push(party.uuid().into());
            let find = format!(
                "WITH recorded AS ({sql}) SELECT id, party_id, url, secret, active, created_at \
                 FROM webhook_endpoints WHERE party_id = ${party_at} AND active"
            );
            webhook_endpoints::Entity::find()
                .from_raw_sql(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    find,
                    values,
                ))
                .all(txn)
                .await?
        }
        _ => {
            party_events::Entity::insert(row)
                .exec_without_returning(txn)
                .await?;
            webhook_endpoints::Entity::find()
                .filter(webhook_endpoints::Column::PartyId.eq(party.uuid()))
                .filter(webhook_endpoints::Column::Active.eq(true))
                .all(txn)
                .await?
        }
    };
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
