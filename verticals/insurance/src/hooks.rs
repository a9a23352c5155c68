//! How the server plugs this vertical in: plain functions it calls when a phone answer or a
//! timer concerns one of the vertical's cases.

use crate::cycle;
use crate::error::InsuranceResult;
use crate::policies::{self, CONFIRMATION_DEADLINE_TIMER, RECHECK_DEADLINE_TIMER};
use holdfast_core::challenge::{self, Decision};
use holdfast_core::escrow::{self, CaseOutcome, EscrowCase};
use holdfast_core::ids::CaseId;
use holdfast_core::ids::ChallengeId;
use holdfast_core::{Core, CoreError};
use sea_orm::DatabaseTransaction;

/// Locks the policy a phone answer is about, before the core locks the premium's case: the
/// house lock order (a vertical's own row, then the case). The server calls it at the start of
/// every order or settlement answer's transaction; for a challenge that is not one of a
/// premium's, it locks nothing.
pub async fn lock_answer_subject_in_txn(
    txn: &DatabaseTransaction,
    challenge: ChallengeId,
) -> InsuranceResult<()> {
    let Some(subject) = challenge::get_challenge(txn, challenge).await?.subject else {
        return Ok(());
    };
    if let Some(premium) = policies::premium_of_case(txn, CaseId::from_uuid(subject)).await? {
        policies::lock_row(txn, premium.policy_id).await?;
    }
    Ok(())
}

/// The vertical's follow-up when an answer on the phone changed one of its escrow cases (the
/// holder approved the application, a premium's settlement…), in the answer's transaction.
#[tracing::instrument(name = "insurance.after_answer", skip_all, fields(case_id = %case.id, policy_id = tracing::field::Empty))]
pub async fn after_answer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &EscrowCase,
    outcome: CaseOutcome,
) -> InsuranceResult<()> {
    policies::after_answer_in_txn(txn, core, case, outcome).await
}

/// What answering one of the vertical's own challenges did: a JSON summary for the answer's
/// response, or a refusal that changed the challenge (committed, then reported).
#[derive(Debug)]
pub enum VerticalAnswer {
    Applied(serde_json::Value),
    Refused(CoreError),
}

/// Answers a challenge whose purpose belongs to this vertical. Insurance has none of its own:
/// the application (`policy`) and premium settlements are escrow cases' challenges, answered
/// through the core.
pub async fn answer_in_txn(
    _txn: &DatabaseTransaction,
    _core: &Core,
    _challenge: ChallengeId,
    _code: &str,
    _decision: Decision,
) -> InsuranceResult<VerticalAnswer> {
    Ok(VerticalAnswer::Refused(CoreError::ChallengeNotAnswerable))
}

/// Whether a timer kind is this vertical's.
pub fn handles_timer(kind: holdfast_core::TimerKind) -> bool {
    matches!(
        kind,
        cycle::PREMIUM_DUE_TIMER
            | cycle::GRACE_END_TIMER
            | cycle::TERM_END_TIMER
            | cycle::UNCLAIMED_TIMER
            | CONFIRMATION_DEADLINE_TIMER
            | RECHECK_DEADLINE_TIMER
    )
}

/// Locks what one of the vertical's timers is about (before the timer row is locked), in the
/// order every use case follows: the policy, then the premium case the timer acts on.
pub async fn lock_timer_subject_in_txn(
    txn: &DatabaseTransaction,
    kind: holdfast_core::TimerKind,
    subject: uuid::Uuid,
) -> InsuranceResult<()> {
    let row = policies::lock_row(txn, subject).await?;
    if matches!(kind, CONFIRMATION_DEADLINE_TIMER | RECHECK_DEADLINE_TIMER) {
        escrow::lock_case_in_txn(txn, CaseId::from_uuid(row.first_case_id)).await?;
    }
    Ok(())
}

/// Fires one of the vertical's timers.
#[tracing::instrument(name = "insurance.fire_timer", skip_all, fields(kind = %kind, timer_subject = %subject, policy_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn fire_timer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    kind: holdfast_core::TimerKind,
    subject: uuid::Uuid,
) -> InsuranceResult<()> {
    match kind {
        cycle::PREMIUM_DUE_TIMER => cycle::premium_due_in_txn(txn, core, subject).await,
        cycle::GRACE_END_TIMER => cycle::grace_end_in_txn(txn, core, subject).await,
        cycle::TERM_END_TIMER => cycle::term_end_in_txn(txn, core, subject).await,
        cycle::UNCLAIMED_TIMER => cycle::unclaimed_in_txn(txn, core, subject).await,
        CONFIRMATION_DEADLINE_TIMER => {
            policies::confirmation_deadline_in_txn(txn, core, subject).await
        }
        RECHECK_DEADLINE_TIMER => policies::recheck_deadline_in_txn(txn, core, subject).await,
        other => Err(CoreError::invalid(format!("not an insurance timer: {other}")).into()),
    }
}
