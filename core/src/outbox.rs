//! The transactional outbox. A message is written in the same transaction as the state change
//! it reports, and delivered afterwards by a worker — never sent from inside a transaction.
//! Delivery is at least once: a worker that dies after sending but before recording it
//! leaves the lease to run out, and the message goes again (webhook receivers de-duplicate on
//! the event id).

use crate::clock::Clock;
use crate::db;
use crate::entities::outbox;
use crate::error::CoreResult;
use crate::ids::{ChallengeId, OutboxMessageId};
use crate::phone_number::PhoneNumber;
use chrono::{DateTime, Duration, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, Condition, DatabaseConnection, DatabaseTransaction, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    db_type = "String(StringLen::N(32))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A text to a phone, through the phone gateway; `destination` is the E.164 number.
    Phone,
    /// A signed POST to a party's webhook endpoint; `destination` is the endpoint id.
    Webhook,
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
    db_type = "String(StringLen::N(16))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Given up after the channel's last attempt; kept for an operator to look at.
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

pub const LEASE_SECS: i64 = 30;
pub const MAX_BATCH: u64 = 100;
/// What a delivered or abandoned phone message's payload is replaced with: it held a code.
const REDACTED: &str = "{\"redacted\":true}";

/// How many tries a message gets before it is given up.
pub fn max_attempts(channel: Channel) -> i32 {
    match channel {
        Channel::Phone => 8,
        // About a day of retries: a receiver may be down for a while.
        Channel::Webhook => 20,
    }
}

/// Waits between tries: 1 s, 2 s, 4 s … capped at ten minutes (an hour for webhooks).
pub fn backoff_for(channel: Channel, attempts: i32) -> Duration {
    let cap = match channel {
        Channel::Phone => 600,
        Channel::Webhook => 3600,
    };
    let exponent = u32::try_from(attempts.clamp(0, 12)).unwrap_or(12);
    Duration::seconds(2_i64.pow(exponent).min(cap))
}

/// The default backoff (phone messages, timers).
pub fn backoff(attempts: i32) -> Duration {
    backoff_for(Channel::Phone, attempts)
}

pub async fn enqueue_phone_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    message: PhoneMessage,
) -> CoreResult<()> {
    let destination = message.to.e164().to_owned();
    let payload = serde_json::to_string(&message).unwrap_or_default();
    enqueue_in_txn(txn, clock, Channel::Phone, destination, payload, None).await
}

/// Queues any message; delivered by the worker after the transaction commits.
pub async fn enqueue_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    channel: Channel,
    destination: String,
    payload: String,
    event: Option<Uuid>,
) -> CoreResult<()> {
    let now = clock.now();
    let row = outbox::ActiveModel {
        id: Set(OutboxMessageId::new().uuid()),
        channel: Set(channel),
        destination: Set(destination),
        payload: Set(payload),
        status: Set(DeliveryStatus::Pending),
        attempts: Set(0),
        next_attempt_at: Set(now),
        lease_until: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        delivered_at: Set(None),
        last_status_code: Set(None),
        event_id: Set(event),
    };
    // Written with the transaction's other messages just before it commits.
    crate::write_buffer::insert_outbox(txn, vec![row]).await?;
    Ok(())
}

/// One message to send, as the worker hands it to the sender.
#[derive(Clone)]
pub struct Outbound {
    pub id: Uuid,
    pub channel: Channel,
    pub destination: String,
    pub payload: String,
    pub event: Option<Uuid>,
    pub attempt: i32,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// Why a send failed; the HTTP status, if the other side answered.
#[derive(Debug, Clone)]
pub struct SendFailure {
    pub status_code: Option<u16>,
    pub reason: String,
}

/// Sends outbox messages: the phone gateway for texts, HTTP for webhooks. Implemented by the
/// server, which owns the network clients. `Ok` carries the receiver's status code, if any.
#[async_trait::async_trait]
pub trait OutboxSender: Send + Sync {
    async fn send(&self, message: &Outbound) -> Result<Option<u16>, SendFailure>;

    /// Sends a batch; one outcome per message, in order. The default sends them one by one;
    /// a sender overrides it to batch (texts in one call to the phone gateway, webhooks side by
    /// side).
    async fn send_many(&self, messages: &[Outbound]) -> Vec<Result<Option<u16>, SendFailure>> {
        let mut outcomes = Vec::with_capacity(messages.len());
        for message in messages {
            outcomes.push(self.send(message).await);
        }
        outcomes
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryRound {
    pub delivered: usize,
    pub retried: usize,
    pub failed: usize,
}

/// Leases up to `limit` due messages, sends them outside any transaction, and records each
/// outcome. Several workers may run at once: the lease (and `SKIP LOCKED` on PostgreSQL) gives
/// each message to one of them, and only the lease holder records the outcome. Successes are
/// recorded together, one statement per channel and status: a busy outbox costs a few
/// statements per batch, not two per message.
pub async fn deliver_due(
    db: &DatabaseConnection,
    clock: &Clock,
    sender: &dyn OutboxSender,
    limit: u64,
) -> CoreResult<DeliveryRound> {
    let now = clock.now();
    let lease = now + Duration::seconds(LEASE_SECS);
    // The dispatcher's own transaction, not a use case's: it leases due messages and commits
    // before any network call, so that no transaction stays open while a gateway answers.
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
        .col_expr(outbox::Column::LeaseUntil, Expr::value(lease))
        .col_expr(
            outbox::Column::Attempts,
            sea_orm::sea_query::ExprTrait::add(Expr::col(outbox::Column::Attempts), 1),
        )
        .filter(outbox::Column::Id.is_in(ids))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    send_leased(db, clock, sender, due, lease).await
}

/// Sends a leased batch, outside any transaction, and records each outcome. Its span names
/// only the batch's size: destinations and texts are phone numbers and codes.
#[tracing::instrument(name = "outbox.deliver", skip_all, fields(messages = due.len()))]
async fn send_leased(
    db: &DatabaseConnection,
    clock: &Clock,
    sender: &dyn OutboxSender,
    due: Vec<outbox::Model>,
    lease: DateTime<Utc>,
) -> CoreResult<DeliveryRound> {
    let messages: Vec<Outbound> = due
        .into_iter()
        .map(|row| Outbound {
            id: row.id,
            channel: row.channel,
            destination: row.destination,
            payload: row.payload,
            event: row.event_id,
            attempt: row.attempts + 1,
        })
        .collect();
    let outcomes = sender.send_many(&messages).await;

    // The outcomes are recorded in one write transaction (on SQLite, through the writer, like
    // every write: an autocommit statement on the pool would wait on the file lock).
    let txn = db::begin_write(db).await?;
    let mut round = DeliveryRound::default();
    // Delivered messages, grouped by what their row becomes: (channel, receiver's status).
    let mut delivered: std::collections::BTreeMap<(bool, Option<i32>), Vec<Uuid>> =
        std::collections::BTreeMap::new();
    for (message, outcome) in messages.iter().zip(outcomes) {
        match outcome {
            Ok(status) => {
                let is_phone = message.channel == Channel::Phone;
                delivered
                    .entry((is_phone, status.map(i32::from)))
                    .or_default()
                    .push(message.id);
                round.delivered += 1;
            }
            Err(failure) => {
                if record_failure(&txn, clock, message, &failure, lease).await? {
                    round.failed += 1;
                } else {
                    round.retried += 1;
                }
            }
        }
    }
    let delivered_at = clock.now();
    for ((is_phone, status), ids) in delivered {
        let mut update = outbox::Entity::update_many()
            .col_expr(
                outbox::Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                outbox::Column::Status,
                Expr::value(DeliveryStatus::Delivered),
            )
            .col_expr(outbox::Column::DeliveredAt, Expr::value(delivered_at))
            .col_expr(outbox::Column::LastStatusCode, Expr::value(status));
        if is_phone {
            // The text held a code: once it is out, the outbox forgets it.
            update = update.col_expr(outbox::Column::Payload, Expr::value(REDACTED));
        }
        update
            .filter(outbox::Column::Id.is_in(ids))
            .filter(outbox::Column::Status.eq(DeliveryStatus::Pending))
            .filter(outbox::Column::LeaseUntil.eq(lease))
            .exec(&*txn)
            .await?;
    }
    txn.commit().await?;
    Ok(round)
}

/// Failed sends, by channel and whether it was the last try (a Prometheus counter).
pub const DELIVERY_FAILURES: &str = "holdfast_outbox_delivery_failures_total";

/// Records a failed send: retried after a backoff, or given up after the channel's last try.
/// Returns whether it was given up.
async fn record_failure(
    txn: &DatabaseTransaction,
    clock: &Clock,
    message: &Outbound,
    failure: &SendFailure,
    lease: DateTime<Utc>,
) -> CoreResult<bool> {
    tracing::warn!(message_id = %message.id, channel = ?message.channel, attempt = message.attempt, status = ?failure.status_code, "delivery failed");
    let give_up = message.attempt >= max_attempts(message.channel);
    // The send failed whether or not this transaction commits: counted now.
    let channel = match message.channel {
        Channel::Phone => "phone",
        Channel::Webhook => "webhook",
    };
    metrics::counter!(DELIVERY_FAILURES, "channel" => channel, "given_up" => if give_up { "true" } else { "false" })
        .increment(1);
    let mut update = outbox::Entity::update_many()
        .col_expr(
            outbox::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            outbox::Column::LastError,
            Expr::value(failure.reason.chars().take(500).collect::<String>()),
        )
        .col_expr(
            outbox::Column::LastStatusCode,
            Expr::value(failure.status_code.map(i32::from)),
        );
    if give_up {
        update = update.col_expr(outbox::Column::Status, Expr::value(DeliveryStatus::Failed));
        if message.channel == Channel::Phone {
            update = update.col_expr(outbox::Column::Payload, Expr::value(REDACTED));
        }
    } else {
        update = update.col_expr(
            outbox::Column::NextAttemptAt,
            Expr::value(clock.now() + backoff_for(message.channel, message.attempt)),
        );
    }
    update
        .filter(outbox::Column::Id.eq(message.id))
        .filter(outbox::Column::Status.eq(DeliveryStatus::Pending))
        .filter(outbox::Column::LeaseUntil.eq(lease))
        .exec(txn)
        .await?;
    Ok(give_up)
}

/// One delivery as its log shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryRecord {
    pub message_id: Uuid,
    pub event_id: Option<Uuid>,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<outbox::Model> for DeliveryRecord {
    fn from(row: outbox::Model) -> Self {
        DeliveryRecord {
            message_id: row.id,
            event_id: row.event_id,
            status: row.status,
            attempts: row.attempts,
            last_status_code: row.last_status_code,
            last_error: row.last_error,
            next_attempt_at: row.next_attempt_at,
            created_at: row.created_at,
            delivered_at: row.delivered_at,
        }
    }
}
