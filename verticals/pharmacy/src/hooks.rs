//! How the server plugs this vertical in: plain functions it calls when a phone answer or a
//! timer concerns one of the vertical's cases or prescriptions.

use crate::entities::prescriptions;
use crate::error::PharmacyResult;
use crate::number::PrescriptionNumber;
use crate::{CONSENT_TIMER, EXPIRY_TIMER, VERTICAL, claims, payment};
use holdfast_core::challenge::Decision;
use holdfast_core::escrow::{CaseOutcome, EscrowCase};
use holdfast_core::ids::ChallengeId;
use holdfast_core::{Core, CoreError, events};
use sea_orm::entity::prelude::*;
use sea_orm::{DatabaseTransaction, QuerySelect};

/// The vertical's follow-up when an answer on the phone changed one of its escrow cases (the
/// patient approved or denied the payment, released or disputed it), in the answer's
/// transaction: the drugstore is told.
///
/// It does not touch the prescription row. The answer holds the case's lock, and every use
/// case locks a prescription before its case: taking the prescription here would invert that
/// order. The prescription catches up with its case when it is next locked, and every read
/// derives its state from the case meanwhile.
#[tracing::instrument(name = "pharmacy.after_answer", skip_all, fields(case_id = %case.id, prescription_id = tracing::field::Empty))]
pub async fn after_answer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &EscrowCase,
    outcome: CaseOutcome,
) -> PharmacyResult<()> {
    if case.vertical != VERTICAL {
        return Ok(());
    }
    let Some(row) = prescriptions::Entity::find()
        .filter(prescriptions::Column::CaseId.eq(case.id.uuid()))
        .one(txn)
        .await?
    else {
        return Ok(());
    };
    let kind = match outcome {
        CaseOutcome::OrderApproved => "prescription.paid",
        CaseOutcome::OrderDenied => "prescription.payment_denied",
        CaseOutcome::Settled => "prescription.settled",
        CaseOutcome::Disputed => "prescription.payment_disputed",
    };
    events::publish_in_txn(
        txn,
        &core.clock,
        case.payee,
        kind,
        serde_json::json!({
            "prescription_number": PrescriptionNumber::from_stored(row.number),
            "amount": case.amount,
            "case_state": case.state,
        }),
    )
    .await?;
    Ok(())
}

/// What answering one of the vertical's own challenges did: a JSON summary for the answer's
/// response, or a refusal that changed the challenge (committed, then reported).
#[derive(Debug)]
pub enum VerticalAnswer {
    Applied(serde_json::Value),
    Refused(CoreError),
}

/// Answers a challenge whose purpose belongs to this vertical: a `prescription_open` consent.
#[tracing::instrument(name = "pharmacy.answer", skip_all, fields(challenge_id = %challenge, prescription_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn answer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    challenge: ChallengeId,
    code: &str,
    decision: Decision,
) -> PharmacyResult<VerticalAnswer> {
    claims::answer_consent_in_txn(txn, core, challenge, code, decision).await
}

/// Whether a timer kind is this vertical's.
pub fn handles_timer(kind: holdfast_core::TimerKind) -> bool {
    matches!(kind, EXPIRY_TIMER | CONSENT_TIMER)
}

/// Locks the prescription a timer is about (before the timer row is locked).
pub async fn lock_timer_subject_in_txn(
    txn: &DatabaseTransaction,
    _kind: holdfast_core::TimerKind,
    subject: uuid::Uuid,
) -> PharmacyResult<()> {
    prescriptions::Entity::find_by_id(subject)
        .lock_exclusive()
        .one(txn)
        .await?;
    Ok(())
}

/// Fires one of the vertical's timers.
#[tracing::instrument(name = "pharmacy.fire_timer", skip_all, fields(kind = %kind, timer_subject = %subject, prescription_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn fire_timer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    kind: holdfast_core::TimerKind,
    subject: uuid::Uuid,
) -> PharmacyResult<()> {
    match kind {
        EXPIRY_TIMER => payment::expire_in_txn(txn, core, subject).await,
        CONSENT_TIMER => claims::lapse_in_txn(txn, core, subject).await,
        other => Err(CoreError::invalid(format!("not a pharmacy timer: {other}")).into()),
    }
}
