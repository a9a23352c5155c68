//! The phone channel. [`PhoneGateway`] is the port; the built-in [`PhoneSimulator`] is the
//! development adapter: it keeps every message in an inbox per number that people and tests
//! read over the API.

use crate::clock::Clock;
use crate::entities::phone_inbox;
use crate::error::CoreResult;
use crate::ids::ChallengeId;
use crate::outbox::PhoneMessage;
use crate::phone_number::PhoneNumber;
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::Notify;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the phone gateway refused the message: {0}")]
    Refused(String),
    #[error("the phone gateway could not be reached: {0}")]
    Unreachable(String),
}

#[async_trait::async_trait]
pub trait PhoneGateway: Send + Sync + std::fmt::Debug {
    /// A short name for logs and health output.
    fn name(&self) -> &'static str;

    async fn send(&self, message: &PhoneMessage) -> Result<(), GatewayError>;

    /// Sends a batch; one result per message, in order. Providers with a bulk endpoint (and the
    /// simulator, with one insert) override it; the default sends one after another.
    async fn send_many(&self, messages: &[PhoneMessage]) -> Vec<Result<(), GatewayError>> {
        let mut results = Vec::with_capacity(messages.len());
        for message in messages {
            results.push(self.send(message).await);
        }
        results
    }
}

/// Delivers into the `phone_inbox` table, and wakes whoever waits for a message.
#[derive(Debug, Clone)]
pub struct PhoneSimulator {
    db: DatabaseConnection,
    clock: Clock,
    arrivals: Arc<Notify>,
}

impl PhoneSimulator {
    pub fn new(db: DatabaseConnection, clock: Clock) -> PhoneSimulator {
        PhoneSimulator {
            db,
            clock,
            arrivals: Arc::new(Notify::new()),
        }
    }

    /// Notified after every delivery into the inbox.
    pub fn arrivals(&self) -> Arc<Notify> {
        self.arrivals.clone()
    }

    fn row(&self, message: &PhoneMessage) -> phone_inbox::ActiveModel {
        phone_inbox::ActiveModel {
            id: Set(Uuid::now_v7()),
            phone_e164: Set(message.to.e164().to_owned()),
            challenge_id: Set(message.challenge.map(|c| c.uuid())),
            body: Set(message.body.clone()),
            created_at: Set(self.clock.now()),
        }
    }
}

#[async_trait::async_trait]
impl PhoneGateway for PhoneSimulator {
    fn name(&self) -> &'static str {
        "simulator"
    }

    async fn send(&self, message: &PhoneMessage) -> Result<(), GatewayError> {
        self.send_many(std::slice::from_ref(message))
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    async fn send_many(&self, messages: &[PhoneMessage]) -> Vec<Result<(), GatewayError>> {
        if messages.is_empty() {
            return Vec::new();
        }
        // A write transaction like any other (on SQLite, through the writer).
        let sent = async {
            let txn = crate::db::begin_write(&self.db).await?;
            phone_inbox::Entity::insert_many(messages.iter().map(|m| self.row(m)))
                .exec_without_returning(&*txn)
                .await?;
            txn.commit().await
        }
        .await;
        self.arrivals.notify_waiters();
        match sent {
            Ok(_) => messages.iter().map(|_| Ok(())).collect(),
            Err(error) => {
                let reason = crate::db::describe(&error);
                messages
                    .iter()
                    .map(|_| Err(GatewayError::Unreachable(reason.clone())))
                    .collect()
            }
        }
    }
}

/// A message as the simulated phone shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InboxMessage {
    pub id: Uuid,
    /// The challenge this message asks to answer, if any.
    pub challenge_id: Option<ChallengeId>,
    /// The one-time code in the message, if it carries one (the simulator reads it out for
    /// convenience; a real phone user reads the text).
    pub code: Option<String>,
    pub body: String,
    pub received_at: DateTime<Utc>,
}

pub const MAX_INBOX_PAGE: u64 = 100;

/// The newest messages sent to `phone`, newest first.
pub async fn inbox(
    db: &impl ConnectionTrait,
    phone: &PhoneNumber,
    limit: u64,
) -> CoreResult<Vec<InboxMessage>> {
    let rows = phone_inbox::Entity::find()
        .filter(phone_inbox::Column::PhoneE164.eq(phone.e164()))
        .order_by_desc(phone_inbox::Column::CreatedAt)
        .order_by_desc(phone_inbox::Column::Id)
        .limit(limit.clamp(1, MAX_INBOX_PAGE))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| InboxMessage {
            id: row.id,
            challenge_id: row.challenge_id.map(ChallengeId::from_uuid),
            code: code_in(&row.body),
            body: row.body,
            received_at: row.created_at,
        })
        .collect())
}

/// The newest message to `phone` for `challenge`, waiting up to `wait` for it to arrive (a
/// phone does not poll: it is told). `arrivals` is the simulator's signal.
pub async fn wait_for_challenge_message(
    db: &impl ConnectionTrait,
    arrivals: &Notify,
    phone: &PhoneNumber,
    challenge: ChallengeId,
    wait: std::time::Duration,
) -> CoreResult<Option<InboxMessage>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Registered before the look, so an arrival between the look and the wait is not
        // missed.
        let arrived = arrivals.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        let row = phone_inbox::Entity::find()
            .filter(phone_inbox::Column::PhoneE164.eq(phone.e164()))
            .filter(phone_inbox::Column::ChallengeId.eq(challenge.uuid()))
            .order_by_desc(phone_inbox::Column::CreatedAt)
            .order_by_desc(phone_inbox::Column::Id)
            .one(db)
            .await?;
        if let Some(row) = row {
            return Ok(Some(InboxMessage {
                id: row.id,
                challenge_id: row.challenge_id.map(ChallengeId::from_uuid),
                code: code_in(&row.body),
                body: row.body,
                received_at: row.created_at,
            }));
        }
        if tokio::time::timeout_at(deadline, arrived).await.is_err() {
            return Ok(None);
        }
    }
}

/// The digits after "Code " in a message, if any.
fn code_in(body: &str) -> Option<String> {
    let start = body.find("Code ")? + "Code ".len();
    let code: String = body[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (code.len() == crate::challenge::CODE_DIGITS).then_some(code)
}
