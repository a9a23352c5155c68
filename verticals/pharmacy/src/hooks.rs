//! How the server plugs this vertical in: plain functions it calls when a phone answer or a
//! timer concerns one of the vertical's cases. (Filled in by the vertical's own work.)

use crate::error::PharmacyResult;
use holdfast_core::challenge::Decision;
use holdfast_core::escrow::{CaseOutcome, EscrowCase};
use holdfast_core::ids::ChallengeId;
use holdfast_core::{Core, CoreError};
use sea_orm::DatabaseTransaction;

/// The vertical's follow-up when an answer on the phone changed one of its escrow cases (the
/// buyer approved the payment, the settlement…), in the answer's transaction.
pub async fn after_answer_in_txn(
    _txn: &DatabaseTransaction,
    _core: &Core,
    _case: &EscrowCase,
    _outcome: CaseOutcome,
) -> PharmacyResult<()> {
    Ok(())
}

/// What answering one of the vertical's own challenges did: a JSON summary for the answer's
/// response, or a refusal that changed the challenge (committed, then reported).
#[derive(Debug)]
pub enum VerticalAnswer {
    Applied(serde_json::Value),
    Refused(CoreError),
}

/// Answers a challenge whose purpose belongs to this vertical.
pub async fn answer_in_txn(
    _txn: &DatabaseTransaction,
    _core: &Core,
    _challenge: ChallengeId,
    _code: &str,
    _decision: Decision,
) -> PharmacyResult<VerticalAnswer> {
    Ok(VerticalAnswer::Refused(CoreError::ChallengeNotAnswerable))
}

/// Whether a timer kind is this vertical's.
pub fn handles_timer(_kind: &str) -> bool {
    false
}

/// Locks what one of the vertical's timers is about (before the timer row is locked).
pub async fn lock_timer_subject_in_txn(
    _txn: &DatabaseTransaction,
    _kind: &str,
    _subject: uuid::Uuid,
) -> PharmacyResult<()> {
    Ok(())
}

/// Fires one of the vertical's timers.
pub async fn fire_timer_in_txn(
    _txn: &DatabaseTransaction,
    _core: &Core,
    _kind: &str,
    _subject: uuid::Uuid,
) -> PharmacyResult<()> {
    Ok(())
}
