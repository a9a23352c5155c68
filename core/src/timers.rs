//! The durable timer table that drives every deadline. A timer fires exactly once, even with
//! several server processes on one PostgreSQL:
//!
//! 1. a worker leases the most overdue timer in a short transaction (`SKIP LOCKED`, so other
//!    workers take other timers; the lease keeps it from them while it is handled);
//! 2. in the handling transaction it first locks the timer's subject (the case, the
//!    prescription…), then the timer row, re-checks that it is still pending, runs the effect
//!    and marks it fired — so effect and firing commit together or not at all.
//!
//! Locking the subject before the timer row is the same order every use case follows (a dispute
//! locks its case, then cancels the auto-settle timer), so the two never deadlock. A crash
//! before the commit leaves the timer pending; its lease runs out and it fires after restart.

use crate::clock::Clock;
use crate::db;
use crate::entities::timers;
use crate::error::{CoreError, CoreResult};
use crate::ids::{PartyId, TimerId};
use crate::paging::{Page, Paged};
use chrono::{DateTime, Duration, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, Condition, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    QueryFilter, QueryOrder, QuerySelect, Statement,
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

/// Every kind of deadline the timer table holds. A closed set, stored by these names: the
/// worker that fires timers matches it exhaustively, so a kind without a handler does not
/// compile.
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
    utoipa::ToSchema,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::N(48))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// An escrow case's order confirmation was not answered in time.
    CaseOrderDeadline,
    /// A settlement request nobody answered settles by itself.
    CaseAutoSettle,
    /// An auction's bidding ends.
    RetailAuctionClose,
    /// A prescription's validity ends.
    PharmacyPrescriptionExpiry,
    /// A patient did not answer a drugstore's request to open a prescription.
    PharmacyConsentDeadline,
    /// A policy's monthly premium falls due.
    InsurancePremiumDue,
    /// A policy's grace period for an overdue premium ends.
    InsuranceGraceEnd,
    /// A policy's term ends.
    InsuranceTermEnd,
    /// Premiums of an ended policy that the insurer never claimed return to the holder.
    InsuranceUnclaimedPremiums,
    /// A policy purchase was not confirmed on the phone in time.
    InsuranceConfirmationDeadline,
    /// The insurer did not recheck an application in time.
    InsuranceRecheckDeadline,
    /// An approved card-present authorisation was never captured.
    CardPresentCaptureDeadline,
    /// A payee's daily sweep of its withdrawal account to its bank.
    PayoutSweep,
}

impl TimerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimerKind::CaseOrderDeadline => "case_order_deadline",
            TimerKind::CaseAutoSettle => "case_auto_settle",
            TimerKind::RetailAuctionClose => "retail_auction_close",
            TimerKind::PharmacyPrescriptionExpiry => "pharmacy_prescription_expiry",
            TimerKind::PharmacyConsentDeadline => "pharmacy_consent_deadline",
            TimerKind::InsurancePremiumDue => "insurance_premium_due",
            TimerKind::InsuranceGraceEnd => "insurance_grace_end",
            TimerKind::InsuranceTermEnd => "insurance_term_end",
            TimerKind::InsuranceUnclaimedPremiums => "insurance_unclaimed_premiums",
            TimerKind::InsuranceConfirmationDeadline => "insurance_confirmation_deadline",
            TimerKind::InsuranceRecheckDeadline => "insurance_recheck_deadline",
            TimerKind::CardPresentCaptureDeadline => "card_present_capture_deadline",
            TimerKind::PayoutSweep => "payout_sweep",
        }
    }
}

impl std::fmt::Display for TimerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub id: TimerId,
    pub kind: TimerKind,
    pub subject: Uuid,
    pub due_at: DateTime<Utc>,
    pub attempts: i32,
}

pub const MAX_ATTEMPTS: i32 = 10;
pub const LEASE_SECS: i64 = 60;

/// Schedules `kind` for `subject` at `due_at`. At most one pending timer exists per kind and
/// subject (a partial unique index); scheduling again is a no-op, also under a race.
#[tracing::instrument(name = "timers.schedule", level = "debug", skip_all, fields(kind = %kind, timer_subject = %subject))]
pub async fn schedule_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    kind: TimerKind,
    subject: Uuid,
    due_at: DateTime<Utc>,
) -> CoreResult<()> {
    let backend = txn.get_database_backend();
    // ON CONFLICT without a target: the conflict is on the partial unique index.
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            "INSERT INTO timers (id, kind, subject_id, due_at, status, attempts, created_at) \
             VALUES ($1, $2, $3, $4, 'pending', 0, $5) ON CONFLICT DO NOTHING"
        }
        _ => {
            "INSERT INTO timers (id, kind, subject_id, due_at, status, attempts, created_at) \
             VALUES (?, ?, ?, ?, 'pending', 0, ?) ON CONFLICT DO NOTHING"
        }
    };
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [
            TimerId::new().uuid().into(),
            kind.as_str().into(),
            subject.into(),
            due_at.into(),
            clock.now().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Cancels the pending timer of `kind` for `subject`, if there is one. Call it with the
/// subject locked.
#[tracing::instrument(name = "timers.cancel", level = "debug", skip_all, fields(kind = %kind, timer_subject = %subject))]
pub async fn cancel_in_txn(
    txn: &DatabaseTransaction,
    kind: TimerKind,
    subject: Uuid,
) -> CoreResult<()> {
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
    db: &impl ConnectionTrait,
    kind: TimerKind,
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

/// Runs the effect of a due timer. Implemented once by whoever knows every timer kind (the
/// server), dispatching to core's and the verticals' plain functions.
#[async_trait::async_trait]
pub trait TimerHandler: Send + Sync {
    /// Locks what the timer is about (before the timer row is locked: the lock order every use
    /// case follows).
    async fn lock_subject(&self, txn: &DatabaseTransaction, timer: &Timer) -> CoreResult<()>;

    /// The timer's effect; the timer is marked fired in the same transaction.
    async fn fire(&self, txn: &DatabaseTransaction, timer: &Timer) -> CoreResult<()>;
}

/// What happened to one due timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// Nothing was due.
    Idle,
    Fired(Timer),
    /// Someone else fired or cancelled it first.
    Skipped(Timer),
    /// The handler failed; the timer will be tried again later (or was given up).
    Failed(Timer),
}

/// Leases the most overdue pending timer, if any.
async fn lease_next(db: &DatabaseConnection, clock: &Clock) -> CoreResult<Option<Timer>> {
    let now = clock.now();
    // The worker's own transaction, not a use case's: the lease must commit before the
    // handler's transaction starts, so that another worker skips this timer meanwhile.
    let txn = db::begin_write(db).await?;
    let row = timers::Entity::find()
        .filter(timers::Column::Status.eq(TimerStatus::Pending))
        .filter(timers::Column::DueAt.lte(now))
        .filter(
            Condition::any()
                .add(timers::Column::LeaseUntil.is_null())
                .add(timers::Column::LeaseUntil.lt(now)),
        )
        .order_by_asc(timers::Column::DueAt)
        .limit(1)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .one(&txn)
        .await?;
    let Some(row) = row else {
        txn.commit().await?;
        return Ok(None);
    };
    timers::ActiveModel {
        id: Set(row.id),
        lease_until: Set(Some(now + Duration::seconds(LEASE_SECS))),
        ..Default::default()
    }
    .update(&txn)
    .await?;
    txn.commit().await?;
    Ok(Some(timer_from_row(row)))
}

/// Fires the most overdue pending timer, if any.
pub async fn fire_next(
    db: &DatabaseConnection,
    clock: &Clock,
    handler: &dyn TimerHandler,
) -> CoreResult<Fired> {
    let Some(timer) = lease_next(db, clock).await? else {
        return Ok(Fired::Idle);
    };
    fire_leased(db, clock, handler, timer).await
}

/// Fires a timer this worker leased; an idle round makes no span, a firing one does.
#[tracing::instrument(name = "timer.fire", skip_all, fields(timer_id = %timer.id, kind = %timer.kind, timer_subject = %timer.subject))]
async fn fire_leased(
    db: &DatabaseConnection,
    clock: &Clock,
    handler: &dyn TimerHandler,
    timer: Timer,
) -> CoreResult<Fired> {
    // The timer worker is the runner for timers: it owns this transaction, in which the
    // subject is locked, the timer claimed, the handler's `_in_txn` use case run, and the timer
    // finished, all or nothing.
    let txn = db::begin_write(db).await?;
    // The handler's events and messages are written together just before the commit.
    let result = crate::write_buffer::buffered(&txn, async {
        handler.lock_subject(&txn, &timer).await?;
        let still_pending = timers::Entity::find_by_id(timer.id.uuid())
            .filter(timers::Column::Status.eq(TimerStatus::Pending))
            .lock_exclusive()
            .one(&txn)
            .await?
            .is_some();
        if !still_pending {
            return Ok(false);
        }
        // Marked fired before the handler runs, in the same transaction: a handler may then
        // schedule the next timer of the same kind for the same subject (a monthly cycle)
        // without meeting this one on the one-pending-per-subject index. A failing handler
        // rolls the mark back with everything else.
        timers::ActiveModel {
            id: Set(timer.id.uuid()),
            status: Set(TimerStatus::Fired),
            fired_at: Set(Some(clock.now())),
            attempts: Set(timer.attempts + 1),
            lease_until: Set(None),
            ..Default::default()
        }
        .update(&txn)
        .await?;
        handler.fire(&txn, &timer).await?;
        Ok::<bool, crate::CoreError>(true)
    })
    .await;
    match result {
        Ok(true) => {
            txn.commit().await?;
            Ok(Fired::Fired(timer))
        }
        Ok(false) => {
            txn.commit().await?;
            Ok(Fired::Skipped(timer))
        }
        Err(error) => {
            txn.rollback().await?;
            record_failure(db, clock, &timer, &error).await?;
            Ok(Fired::Failed(timer))
        }
    }
}

/// Puts a failed timer back for a later try, or gives it up — only if it is still the pending
/// timer this worker read (another worker may have fired or cancelled it meanwhile).
async fn record_failure(
    db: &DatabaseConnection,
    clock: &Clock,
    timer: &Timer,
    error: &crate::CoreError,
) -> CoreResult<()> {
    let attempts = timer.attempts + 1;
    tracing::warn!(timer_id = %timer.id, kind = %timer.kind, attempts, code = error.code(), "timer handler failed");
    let status = if attempts >= MAX_ATTEMPTS {
        TimerStatus::Failed
    } else {
        TimerStatus::Pending
    };
    // Its own transaction: the handler's was rolled back, and the failure must still be
    // counted.
    let txn = db::begin_write(db).await?;
    timers::Entity::update_many()
        .col_expr(timers::Column::Status, Expr::value(status))
        .col_expr(timers::Column::Attempts, Expr::value(attempts))
        .col_expr(
            timers::Column::DueAt,
            Expr::value(clock.now() + crate::outbox::backoff(attempts)),
        )
        .col_expr(
            timers::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(timers::Column::LastError, Expr::value(error.code()))
        .filter(timers::Column::Id.eq(timer.id.uuid()))
        .filter(timers::Column::Status.eq(TimerStatus::Pending))
        .filter(timers::Column::Attempts.eq(timer.attempts))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
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

/// A timer the worker gave up on ([`MAX_ATTEMPTS`] failed tries), as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedTimer {
    pub id: TimerId,
    pub kind: TimerKind,
    pub subject: Uuid,
    pub due_at: DateTime<Utc>,
    pub attempts: i32,
    /// The stable code of the last failure (never the failure's text).
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Failed timers, newest first, one page.
pub async fn failed(db: &impl ConnectionTrait, page: &Page) -> CoreResult<Paged<FailedTimer>> {
    let select = timers::Entity::find().filter(timers::Column::Status.eq(TimerStatus::Failed));
    let rows = page
        .apply(select, timers::Column::CreatedAt, timers::Column::Id)
        .all(db)
        .await?;
    Ok(page
        .finish(rows, |row| (row.created_at, row.id))
        .map(|row| FailedTimer {
            id: TimerId::from_uuid(row.id),
            kind: row.kind,
            subject: row.subject_id,
            due_at: row.due_at,
            attempts: row.attempts,
            last_error: row.last_error,
            created_at: row.created_at,
        }))
}

/// Puts a failed timer back: pending, due now, with its attempts counted from zero again (the
/// operator retries after fixing the cause, so it gets the whole budget; `last_error` stays
/// until it fires). Recorded in the acting operator's event feed as `timer.retried` (who,
/// when, which timer). Only a failed timer: another state is `TimerNotFailed`, and a subject
/// that has a pending timer of the same kind again is `TimerSuperseded`.
pub async fn retry_failed_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    by: PartyId,
    id: TimerId,
) -> CoreResult<Timer> {
    // The timer row alone is locked: no subject lock is taken, so no lock-order cycle with the
    // worker (subject, then timer) can form.
    let row = timers::Entity::find_by_id(id.uuid())
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("timer"))?;
    if row.status != TimerStatus::Failed {
        return Err(CoreError::TimerNotFailed);
    }
    if find_pending(txn, row.kind, row.subject_id).await?.is_some() {
        return Err(CoreError::TimerSuperseded);
    }
    let now = clock.now();
    timers::ActiveModel {
        id: Set(row.id),
        status: Set(TimerStatus::Pending),
        due_at: Set(now),
        attempts: Set(0),
        lease_until: Set(None),
        ..Default::default()
    }
    .update(txn)
    .await?;
    crate::events::publish_in_txn(
        txn,
        clock,
        by,
        "timer.retried",
        serde_json::json!({
            "timer_id": id,
            "kind": row.kind,
            "subject_id": row.subject_id,
            "retried_by": by,
            "retried_at": now,
        }),
    )
    .await?;
    tracing::info!(timer_id = %id, kind = %row.kind, "failed timer put back");
    Ok(Timer {
        id,
        kind: row.kind,
        subject: row.subject_id,
        due_at: now,
        attempts: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ActiveEnum, Iterable};

    #[test]
    fn a_timer_kind_is_stored_by_its_name() {
        for kind in TimerKind::iter() {
            assert_eq!(kind.to_value(), kind.as_str());
        }
    }
}
