//! The durable timer table that drives every deadline. A timer fires exactly once: the
//! worker locks its row (`SKIP LOCKED` on PostgreSQL, so several server instances share the
//! work), runs the handler and marks it fired in one transaction. A crash before the commit
//! leaves it pending, and it fires after the restart.

use crate::clock::Clock;
use crate::db;
use crate::entities::timers;
use crate::error::CoreResult;
use crate::ids::TimerId;
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, DatabaseConnection, DatabaseTransaction, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::N(16))",
    rename_all = "snake_case"
)]
pub enum TimerStatus {
    Pending,
    Fired,
    Cancelled,
    /// The handler kept failing; left for an operator.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub id: TimerId,
    pub kind: String,
    pub subject: Uuid,
    pub due_at: DateTime<Utc>,
    pub attempts: i32,
}

pub const MAX_ATTEMPTS: i32 = 10;

/// Schedules `kind` for `subject` at `due_at`. At most one pending timer exists per kind and
/// subject; scheduling again is a no-op.
pub async fn schedule_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    kind: &str,
    subject: Uuid,
    due_at: DateTime<Utc>,
) -> CoreResult<()> {
    let exists = timers::Entity::find()
        .filter(timers::Column::Kind.eq(kind))
        .filter(timers::Column::SubjectId.eq(subject))
        .filter(timers::Column::Status.eq(TimerStatus::Pending))
        .one(txn)
        .await?
        .is_some();
    if exists {
        return Ok(());
    }
    timers::Entity::insert(timers::ActiveModel {
        id: Set(TimerId::new().uuid()),
        kind: Set(kind.to_owned()),
        subject_id: Set(subject),
        due_at: Set(due_at),
        status: Set(TimerStatus::Pending),
        attempts: Set(0),
        lease_until: Set(None),
        fired_at: Set(None),
        last_error: Set(None),
        created_at: Set(clock.now()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Cancels the pending timer of `kind` for `subject`, if there is one.
pub async fn cancel_in_txn(txn: &DatabaseTransaction, kind: &str, subject: Uuid) -> CoreResult<()> {
    timers::Entity::update_many()
        .col_expr(timers::Column::Status, Expr::value(TimerStatus::Cancelled))
        .filter(timers::Column::Kind.eq(kind))
        .filter(timers::Column::SubjectId.eq(subject))
        .filter(timers::Column::Status.eq(TimerStatus::Pending))
        .exec(txn)
        .await?;
    Ok(())
}

/// The pending timer of `kind` for `subject`.
pub async fn find_pending(
    db: &impl sea_orm::ConnectionTrait,
    kind: &str,
    subject: Uuid,
) -> CoreResult<Option<Timer>> {
    Ok(timers::Entity::find()
        .filter(timers::Column::Kind.eq(kind))
        .filter(timers::Column::SubjectId.eq(subject))
        .filter(timers::Column::Status.eq(TimerStatus::Pending))
        .one(db)
        .await?
        .map(timer_from_row))
}

fn timer_from_row(row: timers::Model) -> Timer {
    Timer {
        id: TimerId::from_uuid(row.id),
        kind: row.kind,
        subject: row.subject_id,
        due_at: row.due_at,
        attempts: row.attempts,
    }
}

/// What happened to one due timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// Nothing was due.
    Idle,
    Fired(Timer),
    /// The handler failed; the timer will be tried again later (or was given up).
    Failed(Timer),
}

/// Runs the effect of a due timer. Implemented once by whoever knows every timer kind (the
/// server), dispatching to core's and the verticals' plain functions.
#[async_trait::async_trait]
pub trait TimerHandler: Send + Sync {
    async fn handle(&self, txn: &DatabaseTransaction, timer: &Timer) -> CoreResult<()>;
}

/// Fires the most overdue pending timer, if any: the handler runs in the same transaction that
/// marks the timer fired, so its effect and the firing commit together or not at all.
pub async fn fire_next(
    db: &DatabaseConnection,
    clock: &Clock,
    handler: &dyn TimerHandler,
) -> CoreResult<Fired> {
    let now = clock.now();
    let txn = db::begin_write(db).await?;
    let row = timers::Entity::find()
        .filter(timers::Column::Status.eq(TimerStatus::Pending))
        .filter(timers::Column::DueAt.lte(now))
        .order_by_asc(timers::Column::DueAt)
        .limit(1)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .one(&txn)
        .await?;
    let Some(row) = row else {
        txn.commit().await?;
        return Ok(Fired::Idle);
    };
    let timer = timer_from_row(row);
    match handler.handle(&txn, &timer).await {
        Ok(()) => {
            timers::ActiveModel {
                id: Set(timer.id.uuid()),
                status: Set(TimerStatus::Fired),
                fired_at: Set(Some(now)),
                attempts: Set(timer.attempts + 1),
                ..Default::default()
            }
            .update(&txn)
            .await?;
            txn.commit().await?;
            Ok(Fired::Fired(timer))
        }
        Err(error) => {
            txn.rollback().await?;
            let attempts = timer.attempts + 1;
            tracing::warn!(timer_id = %timer.id, kind = %timer.kind, attempts, %error, "timer handler failed");
            let status = if attempts >= MAX_ATTEMPTS {
                TimerStatus::Failed
            } else {
                TimerStatus::Pending
            };
            let retry = db.begin().await?;
            timers::ActiveModel {
                id: Set(timer.id.uuid()),
                status: Set(status),
                attempts: Set(attempts),
                due_at: Set(clock.now() + crate::outbox::backoff(attempts)),
                last_error: Set(Some(error.to_string().chars().take(500).collect())),
                ..Default::default()
            }
            .update(&retry)
            .await?;
            retry.commit().await?;
            Ok(Fired::Failed(timer))
        }
    }
}

/// The earliest due time among pending timers, so a worker knows how long it may sleep.
pub async fn next_due(db: &DatabaseConnection) -> CoreResult<Option<DateTime<Utc>>> {
    Ok(timers::Entity::find()
        .filter(timers::Column::Status.eq(TimerStatus::Pending))
        .order_by_asc(timers::Column::DueAt)
        .one(db)
        .await?
        .map(|row| row.due_at))
}
