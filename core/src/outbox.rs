//! The transactional outbox. A message is written in the same transaction as the state change
//! it reports, and delivered afterwards by a worker — never sent from inside a transaction.
//! Delivery is at least once: a worker that dies after sending but before recording it
//! leaves the lease to run out, and the message goes again.

use crate::clock::Clock;
use crate::db;
use crate::entities::outbox;
use crate::error::CoreResult;
use crate::ids::{ChallengeId, OutboxMessageId};
use crate::phone::PhoneGateway;
use crate::phone_number::PhoneNumber;
use chrono::Duration;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, Condition, DatabaseConnection, DatabaseTransaction, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::N(32))",
    rename_all = "snake_case"
)]
pub enum Channel {
    Phone,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::N(16))",
    rename_all = "snake_case"
)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Gave up after [`MAX_ATTEMPTS`]; kept for an operator to look at.
    Failed,
}

/// A text to a phone. `Debug` never shows the number or the text (it may hold a code).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneMessage {
    pub to: PhoneNumber,
    pub body: String,
    pub challenge: Option<ChallengeId>,
}

impl std::fmt::Debug for PhoneMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneMessage")
            .field("to", &self.to)
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

pub const MAX_ATTEMPTS: i32 = 8;
/// What a delivered or abandoned message's payload is replaced with.
const REDACTED: &str = "{\"redacted\":true}";
pub const LEASE_SECS: i64 = 30;
pub const MAX_BATCH: u64 = 100;

pub async fn enqueue_phone_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    message: PhoneMessage,
) -> CoreResult<()> {
    let now = clock.now();
    outbox::Entity::insert(outbox::ActiveModel {
        id: Set(OutboxMessageId::new().uuid()),
        channel: Set(Channel::Phone),
        destination: Set(message.to.e164().to_owned()),
        payload: Set(serde_json::to_string(&message).unwrap_or_default()),
        status: Set(DeliveryStatus::Pending),
        attempts: Set(0),
        next_attempt_at: Set(now),
        lease_until: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        delivered_at: Set(None),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Waits between tries: 1 s, 2 s, 4 s … capped at 10 minutes.
pub fn backoff(attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.clamp(0, 10)).unwrap_or(10);
    Duration::seconds(2_i64.pow(exponent).min(600))
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryRound {
    pub delivered: usize,
    pub retried: usize,
    pub failed: usize,
}

/// Leases up to `limit` due messages, sends them through `gateway` outside any transaction,
/// and records each outcome. Several workers may run at once: the lease (and `SKIP LOCKED` on
/// PostgreSQL) gives each message to one of them.
pub async fn deliver_due(
    db: &DatabaseConnection,
    clock: &Clock,
    gateway: &dyn PhoneGateway,
    limit: u64,
) -> CoreResult<DeliveryRound> {
    let now = clock.now();
    let txn = db::begin_write(db).await?;
    let due = outbox::Entity::find()
        .filter(outbox::Column::Status.eq(DeliveryStatus::Pending))
        .filter(outbox::Column::NextAttemptAt.lte(now))
        .filter(
            Condition::any()
                .add(outbox::Column::LeaseUntil.is_null())
                .add(outbox::Column::LeaseUntil.lt(now)),
        )
        .order_by_asc(outbox::Column::NextAttemptAt)
        .limit(limit.min(MAX_BATCH))
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(&txn)
        .await?;
    if due.is_empty() {
        txn.commit().await?;
        return Ok(DeliveryRound::default());
    }
    let ids: Vec<Uuid> = due.iter().map(|m| m.id).collect();
    outbox::Entity::update_many()
        .col_expr(
            outbox::Column::LeaseUntil,
            Expr::value(now + Duration::seconds(LEASE_SECS)),
        )
        .col_expr(
            outbox::Column::Attempts,
            sea_orm::sea_query::ExprTrait::add(Expr::col(outbox::Column::Attempts), 1),
        )
        .filter(outbox::Column::Id.is_in(ids))
        .exec(&txn)
        .await?;
    txn.commit().await?;

    let mut round = DeliveryRound::default();
    let lease = now + Duration::seconds(LEASE_SECS);
    for row in due {
        let attempts = row.attempts + 1;
        let sent = match serde_json::from_str::<PhoneMessage>(&row.payload) {
            Ok(message) => gateway.send(&message).await.map_err(|e| e.to_string()),
            Err(error) => Err(format!("unreadable payload: {error}")),
        };
        let mut update = outbox::Entity::update_many().col_expr(
            outbox::Column::LeaseUntil,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        );
        match sent {
            Ok(()) => {
                // The text held a one-time code: once delivered it is not kept.
                update = update
                    .col_expr(
                        outbox::Column::Status,
                        Expr::value(DeliveryStatus::Delivered),
                    )
                    .col_expr(outbox::Column::DeliveredAt, Expr::value(clock.now()))
                    .col_expr(outbox::Column::Payload, Expr::value(REDACTED));
                round.delivered += 1;
            }
            Err(error) => {
                tracing::warn!(message_id = %row.id, attempts, "phone delivery failed");
                update = update.col_expr(
                    outbox::Column::LastError,
                    Expr::value(error.chars().take(500).collect::<String>()),
                );
                if attempts >= MAX_ATTEMPTS {
                    update = update
                        .col_expr(outbox::Column::Status, Expr::value(DeliveryStatus::Failed))
                        .col_expr(outbox::Column::Payload, Expr::value(REDACTED));
                    round.failed += 1;
                } else {
                    update = update.col_expr(
                        outbox::Column::NextAttemptAt,
                        Expr::value(clock.now() + backoff(attempts)),
                    );
                    round.retried += 1;
                }
            }
        }
        // Only while this worker still holds the lease: a late worker must not undo another's
        // outcome.
        update
            .filter(outbox::Column::Id.eq(row.id))
            .filter(outbox::Column::Status.eq(DeliveryStatus::Pending))
            .filter(outbox::Column::LeaseUntil.eq(lease))
            .exec(db)
            .await?;
    }
    Ok(round)
}
