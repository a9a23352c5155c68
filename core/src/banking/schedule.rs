//! A payee's payout schedule: once a day, at a fixed hour (UTC), everything on its withdrawal
//! account in the schedule's currency is paid out — when it holds at least the minimum and a
//! destination is confirmed. The sweep is a durable timer (`payout_sweep`, subject: the payee)
//! that schedules the next day's when it fires.
//!
//! A sweep's payout key is the payee and the day (`sweep:2026-03-11`): a timer that fires
//! again the same day (the schedule moved to a later hour, a timer retried by an operator)
//! finds the day's payout and pays nothing more. Lock order: the schedule row, then the
//! timer row (the timer worker locks its subject first), then the withdrawal account.

use crate::banking::payee;
use crate::banking::payouts::{Payout, PayoutAmount};
use crate::clock::Clock;
use crate::db::MinorUnits;
use crate::entities::payout_schedules as rows;
use crate::error::{CoreError, CoreResult};
use crate::ids::PartyId;
use crate::ledger::{self, Applied};
use crate::money::{Currency, Money};
use crate::timers::{self, TimerKind};
use chrono::{DateTime, Duration, NaiveTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QuerySelect};
use std::str::FromStr;

pub const SWEEP_TIMER: TimerKind = TimerKind::PayoutSweep;

/// The last hour of a day a sweep may be set to.
pub const MAX_HOUR_UTC: u8 = 23;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayoutSchedule {
    pub party: PartyId,
    pub enabled: bool,
    /// The sweep pays out only when the withdrawal account holds at least this; its currency
    /// is the schedule's.
    pub minimum: Money,
    /// The hour (UTC) the daily sweep runs at.
    pub hour_utc: u8,
    /// When the next sweep runs, while enabled.
    pub next_sweep_at: Option<DateTime<Utc>>,
}

/// What a payee sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleTerms {
    pub enabled: bool,
    pub minimum: Money,
    pub hour_utc: u8,
}

impl ScheduleTerms {
    pub fn currency(&self) -> Currency {
        self.minimum.currency()
    }
}

/// The first moment at `hour` (UTC) strictly after `now`.
pub fn next_sweep_after(now: DateTime<Utc>, hour: u8) -> DateTime<Utc> {
    let at = NaiveTime::from_hms_opt(u32::from(hour.min(MAX_HOUR_UTC)), 0, 0).unwrap_or_default();
    let today = now.date_naive().and_time(at).and_utc();
    if today > now {
        today
    } else {
        today + Duration::days(1)
    }
}

/// The payout key of `party`'s sweep on the day of `now`.
fn sweep_key(now: DateTime<Utc>) -> String {
    format!("sweep:{}", now.date_naive())
}

fn from_row(row: rows::Model, next_sweep_at: Option<DateTime<Utc>>) -> CoreResult<PayoutSchedule> {
    let currency = Currency::from_str(&row.currency)?;
    Ok(PayoutSchedule {
        party: PartyId::from_uuid(row.party_id),
        enabled: row.enabled,
        minimum: Money::from_minor(row.minimum.0, currency)?,
        hour_utc: u8::try_from(row.hour_utc)
            .map_err(|_| CoreError::Internal("a stored sweep hour is out of range"))?,
        next_sweep_at,
    })
}

/// Sets `party`'s schedule (replacing the one before) and moves its next sweep: to the next
/// `hour_utc` if enabled, nowhere if not.
pub async fn set_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    party: PartyId,
    terms: ScheduleTerms,
) -> CoreResult<PayoutSchedule> {
    if terms.hour_utc > MAX_HOUR_UTC {
        return Err(CoreError::invalid("a sweep's hour is 0 to 23 (UTC)"));
    }
    let now = clock.now();
    rows::Entity::insert(rows::ActiveModel {
        party_id: Set(party.uuid()),
        enabled: Set(terms.enabled),
        currency: Set(terms.currency().code().to_owned()),
        minimum: Set(MinorUnits(terms.minimum.minor())),
        hour_utc: Set(i32::from(terms.hour_utc)),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(rows::Column::PartyId)
            .update_columns([
                rows::Column::Enabled,
                rows::Column::Currency,
                rows::Column::Minimum,
                rows::Column::HourUtc,
                rows::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    // The row is written (and so locked) before its timer changes: the timer worker's order.
    timers::cancel_in_txn(txn, SWEEP_TIMER, party.uuid()).await?;
    let next = terms.enabled.then(|| next_sweep_after(now, terms.hour_utc));
    if let Some(at) = next {
        timers::schedule_in_txn(txn, clock, SWEEP_TIMER, party.uuid(), at).await?;
    }
    Ok(PayoutSchedule {
        party,
        enabled: terms.enabled,
        minimum: terms.minimum,
        hour_utc: terms.hour_utc,
        next_sweep_at: next,
    })
}

/// `party`'s schedule, if it set one.
pub async fn get(db: &impl ConnectionTrait, party: PartyId) -> CoreResult<Option<PayoutSchedule>> {
    let Some(row) = rows::Entity::find_by_id(party.uuid()).one(db).await? else {
        return Ok(None);
    };
    let next = timers::find_pending(db, SWEEP_TIMER, party.uuid())
        .await?
        .map(|timer| timer.due_at);
    from_row(row, next).map(Some)
}

/// Locks the schedule a sweep timer is about (timers lock their subject first).
pub async fn lock_timer_subject_in_txn(txn: &DatabaseTransaction, party: Uuid) -> CoreResult<()> {
    rows::Entity::find_by_id(party)
        .lock_exclusive()
        .one(txn)
        .await?;
    Ok(())
}

/// What a sweep did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Swept {
    /// Paid out (or, fired again the same day, the day's payout found again).
    Paid(Box<Applied<Payout>>),
    /// Less than the minimum on the account, or no confirmed destination: nothing moved.
    Skipped,
    /// The schedule is off (or gone): nothing moved and no next sweep.
    Off,
}

/// The sweep timer of `party` fired: pays out everything when the account holds at least the
/// minimum and a destination is confirmed, then schedules the next day's sweep. An ordinary
/// reason not to pay (too little, no destination) is not a failure: the timer is done.
pub async fn sweep_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    party: PartyId,
) -> CoreResult<Swept> {
    let Some(row) = rows::Entity::find_by_id(party.uuid())
        .lock_exclusive()
        .one(txn)
        .await?
    else {
        return Ok(Swept::Off);
    };
    let schedule = from_row(row, None)?;
    if !schedule.enabled {
        return Ok(Swept::Off);
    }
    let now = clock.now();
    timers::schedule_in_txn(
        txn,
        clock,
        SWEEP_TIMER,
        party.uuid(),
        next_sweep_after(now, schedule.hour_utc),
    )
    .await?;
    let currency = schedule.minimum.currency();
    let Some(withdrawal) =
        ledger::find_keyed_account(txn, &ledger::keys::withdrawal(party, currency)).await?
    else {
        return Ok(Swept::Skipped);
    };
    let held = ledger::lock_and_read_in_txn(txn, withdrawal.id)
        .await?
        .available();
    if held.is_zero() || schedule.minimum.exceeds(&held)? {
        return Ok(Swept::Skipped);
    }
    match payee::request_payout_in_txn(
        txn,
        clock,
        party,
        PayoutAmount::All(currency),
        sweep_key(now),
    )
    .await
    {
        Ok(applied) => Ok(Swept::Paid(Box::new(applied))),
        Err(CoreError::PayoutDestinationRequired) => Ok(Swept::Skipped),
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_next_sweep_is_the_first_such_hour_strictly_after_now() {
        let at = |d, h, m| Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap();
        assert_eq!(next_sweep_after(at(11, 9, 30), 10), at(11, 10, 0));
        assert_eq!(next_sweep_after(at(11, 10, 0), 10), at(12, 10, 0));
        assert_eq!(next_sweep_after(at(11, 23, 59), 0), at(12, 0, 0));
    }

    #[test]
    fn a_sweep_key_names_the_day_only() {
        let morning = Utc.with_ymd_and_hms(2026, 3, 11, 1, 0, 0).unwrap();
        let evening = Utc.with_ymd_and_hms(2026, 3, 11, 23, 0, 0).unwrap();
        assert_eq!(sweep_key(morning), "sweep:2026-03-11");
        assert_eq!(sweep_key(morning), sweep_key(evening));
    }
}
