//! Durable timers against a real database: one pending timer per kind and subject, fired once,
//! a handler may schedule the next one for the same subject (a monthly cycle), and a failing
//! handler leaves the timer pending for a later try.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use holdfast_core::clock::Clock;
use holdfast_core::db::{self, PoolSize};
use holdfast_core::timers::{self, Fired, Timer, TimerHandler};
use holdfast_core::{CoreError, CoreResult, TimerKind};
use holdfast_migrations::{Migrator, MigratorTrait};
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use std::sync::Mutex;
use uuid::Uuid;

/// The handler below stands in for the real one; any kind will do as the label of its timers.
const MONTHLY: TimerKind = TimerKind::InsurancePremiumDue;

/// A fixed start, so a run does not depend on the day it happens on.
fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap()
}

async fn database() -> DatabaseConnection {
    let db = db::connect(
        "sqlite::memory:",
        PoolSize {
            sqlite: 1,
            postgres: 1,
        },
    )
    .await
    .unwrap();
    Migrator::up(&db, None).await.unwrap();
    db
}

/// Counts firings; reschedules itself a month on until `months` have fired; fails on demand.
struct Monthly {
    clock: Clock,
    months: usize,
    fired: Mutex<Vec<Uuid>>,
    fail_next: Mutex<bool>,
}

#[async_trait::async_trait]
impl TimerHandler for Monthly {
    async fn lock_subject(&self, _txn: &DatabaseTransaction, _timer: &Timer) -> CoreResult<()> {
        Ok(())
    }

    async fn fire(&self, txn: &DatabaseTransaction, timer: &Timer) -> CoreResult<()> {
        if std::mem::take(&mut *self.fail_next.lock().unwrap()) {
            return Err(CoreError::invalid("the collection failed"));
        }
        let count = {
            let mut fired = self.fired.lock().unwrap();
            fired.push(timer.subject);
            fired.len()
        };
        if count < self.months {
            timers::schedule_in_txn(
                txn,
                &self.clock,
                MONTHLY,
                timer.subject,
                self.clock.now() + Duration::days(30),
            )
            .await?;
        }
        Ok(())
    }
}

async fn fire_all(db: &DatabaseConnection, clock: &Clock, handler: &Monthly) -> Vec<Fired> {
    let mut outcomes = Vec::new();
    loop {
        match timers::fire_next(db, clock, handler).await.unwrap() {
            Fired::Idle => return outcomes,
            other => outcomes.push(other),
        }
    }
}

#[tokio::test]
async fn a_timer_can_schedule_its_successor_for_the_same_subject() {
    let db = database().await;
    let clock = Clock::manual(start());
    let subject = Uuid::now_v7();
    let handler = Monthly {
        clock: clock.clone(),
        months: 3,
        fired: Mutex::new(Vec::new()),
        fail_next: Mutex::new(false),
    };
    let txn = db::begin_write(&db).await.unwrap();
    let due = clock.now() + Duration::days(30);
    timers::schedule_in_txn(&txn, &clock, MONTHLY, subject, due)
        .await
        .unwrap();
    // A second schedule while one is pending is a no-op.
    timers::schedule_in_txn(&txn, &clock, MONTHLY, subject, due + Duration::days(1))
        .await
        .unwrap();
    txn.commit().await.unwrap();

    assert!(fire_all(&db, &clock, &handler).await.is_empty(), "not due");
    for month in 1..=3 {
        clock.advance(Duration::days(30));
        let outcomes = fire_all(&db, &clock, &handler).await;
        assert_eq!(outcomes.len(), 1, "month {month}: {outcomes:?}");
        assert!(matches!(outcomes[0], Fired::Fired(_)));
        let pending = timers::find_pending(&db, MONTHLY, subject).await.unwrap();
        assert_eq!(pending.is_some(), month < 3, "month {month}");
    }
    clock.advance(Duration::days(30));
    assert!(fire_all(&db, &clock, &handler).await.is_empty());
    assert_eq!(handler.fired.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_failing_handler_leaves_the_timer_pending_and_schedules_nothing() {
    let db = database().await;
    let clock = Clock::manual(start());
    let subject = Uuid::now_v7();
    let handler = Monthly {
        clock: clock.clone(),
        months: 2,
        fired: Mutex::new(Vec::new()),
        fail_next: Mutex::new(true),
    };
    let txn = db::begin_write(&db).await.unwrap();
    timers::schedule_in_txn(&txn, &clock, MONTHLY, subject, clock.now())
        .await
        .unwrap();
    txn.commit().await.unwrap();

    let first = timers::fire_next(&db, &clock, &handler).await.unwrap();
    assert!(matches!(first, Fired::Failed(_)), "{first:?}");
    let pending = timers::find_pending(&db, MONTHLY, subject)
        .await
        .unwrap()
        .expect("still pending");
    assert_eq!(pending.attempts, 1);
    assert!(pending.due_at > clock.now(), "backed off");
    assert!(handler.fired.lock().unwrap().is_empty());

    clock.advance(Duration::minutes(1));
    let outcomes = fire_all(&db, &clock, &handler).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(handler.fired.lock().unwrap().len(), 1);
    // Its successor, a month on, is the one pending now.
    let next = timers::find_pending(&db, MONTHLY, subject)
        .await
        .unwrap()
        .expect("the next month");
    assert_eq!(next.attempts, 0);
}
