//! Firing a due timer: each kind goes to the vertical (or core's escrow) that owns it. The
//! match is exhaustive, so a new kind does not compile until it has a handler.

use super::{AppError, AppResult};
use holdfast_card_present as card_present;
use holdfast_core::banking::schedule;
use holdfast_core::ids::PartyId;
use holdfast_core::timers::{Timer, TimerHandler};
use holdfast_core::{Core, CoreResult, TimerKind, escrow};
use holdfast_retail::auctions;
use sea_orm::DatabaseTransaction;
use uuid::Uuid;

/// Who handles a timer kind.
enum Owner {
    Escrow,
    Auctions,
    Pharmacy,
    Insurance,
    CardPresent,
    Payouts,
}

fn owner(kind: TimerKind) -> Owner {
    match kind {
        TimerKind::CaseOrderDeadline | TimerKind::CaseAutoSettle => Owner::Escrow,
        TimerKind::RetailAuctionClose => Owner::Auctions,
        TimerKind::PharmacyPrescriptionExpiry | TimerKind::PharmacyConsentDeadline => {
            Owner::Pharmacy
        }
        TimerKind::InsurancePremiumDue
        | TimerKind::InsuranceGraceEnd
        | TimerKind::InsuranceTermEnd
        | TimerKind::InsuranceUnclaimedPremiums
        | TimerKind::InsuranceConfirmationDeadline
        | TimerKind::InsuranceRecheckDeadline => Owner::Insurance,
        TimerKind::CardPresentCaptureDeadline => Owner::CardPresent,
        TimerKind::PayoutSweep => Owner::Payouts,
    }
}

/// Locks what the timer is about, before the timer row (the order every use case follows).
pub async fn lock_subject_in_txn(
    txn: &DatabaseTransaction,
    kind: TimerKind,
    subject: Uuid,
) -> AppResult<()> {
    match owner(kind) {
        Owner::Escrow => escrow::lock_timer_subject_in_txn(txn, subject).await?,
        Owner::Auctions => auctions::lock_in_txn(txn, subject).await?,
        Owner::Pharmacy => {
            holdfast_pharmacy::hooks::lock_timer_subject_in_txn(txn, kind, subject).await?
        }
        Owner::Insurance => {
            holdfast_insurance::hooks::lock_timer_subject_in_txn(txn, kind, subject).await?
        }
        Owner::CardPresent => card_present::lock_timer_subject_in_txn(txn, subject).await?,
        Owner::Payouts => schedule::lock_timer_subject_in_txn(txn, subject).await?,
    }
    Ok(())
}

/// Runs the timer's effect.
#[tracing::instrument(name = "app.fire_timer", skip_all, fields(kind = %kind, timer_subject = %subject))]
pub async fn fire_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    kind: TimerKind,
    subject: Uuid,
) -> AppResult<()> {
    match owner(kind) {
        Owner::Escrow => escrow::fire_timer_in_txn(txn, core, kind, subject).await?,
        Owner::Auctions => {
            auctions::close_in_txn(txn, core, subject).await?;
        }
        Owner::Pharmacy => {
            holdfast_pharmacy::hooks::fire_timer_in_txn(txn, core, kind, subject).await?
        }
        Owner::Insurance => {
            holdfast_insurance::hooks::fire_timer_in_txn(txn, core, kind, subject).await?
        }
        Owner::CardPresent => card_present::fire_timer_in_txn(txn, core, kind, subject).await?,
        Owner::Payouts => {
            schedule::sweep_in_txn(txn, &core.clock, PartyId::from_uuid(subject)).await?;
        }
    }
    Ok(())
}

/// The timer worker's handler: every kind, through this module.
pub struct TimerDispatch {
    pub core: Core,
}

#[async_trait::async_trait]
impl TimerHandler for TimerDispatch {
    async fn lock_subject(&self, txn: &DatabaseTransaction, timer: &Timer) -> CoreResult<()> {
        lock_subject_in_txn(txn, timer.kind, timer.subject)
            .await
            .map_err(AppError::into_core)
    }

    async fn fire(&self, txn: &DatabaseTransaction, timer: &Timer) -> CoreResult<()> {
        fire_in_txn(txn, &self.core, timer.kind, timer.subject)
            .await
            .map_err(AppError::into_core)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::Iterable;

    #[test]
    fn every_timer_kind_has_an_owner_of_its_own_vertical() {
        for kind in TimerKind::iter() {
            let name = kind.as_str();
            let expected = match owner(kind) {
                Owner::Escrow => "case_",
                Owner::Auctions => "retail_",
                Owner::Pharmacy => "pharmacy_",
                Owner::Insurance => "insurance_",
                Owner::CardPresent => "card_present_",
                Owner::Payouts => "payout_",
            };
            assert!(name.starts_with(expected), "{name}");
        }
    }
}
