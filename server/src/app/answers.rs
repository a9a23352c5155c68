//! Answering a phone challenge, whatever it confirms. The challenge's purpose says who owns
//! it: an escrow case (an order, a settlement, a prescription's payment, a policy), a
//! vertical's own question (opening a prescription, a card-present authorisation), or a
//! login. A case's answer is followed, in the same transaction, by its vertical's own step.

use super::AppResult;
use crate::api::payee::DestinationView;
use holdfast_card_present as card_present;
use holdfast_core::banking::destinations;
use holdfast_core::challenge::{self, Challenge, ChallengePurpose, Decision};
use holdfast_core::escrow::{self, AnswerEffect, CaseOutcome, EscrowCase};
use holdfast_core::ids::{CaseId, ChallengeId};
use holdfast_core::{Core, CoreError, Vertical};
use sea_orm::DatabaseTransaction;

/// Which path answers a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerRoute {
    /// A login: answered without an idempotency record (its response carries a token).
    Login,
    /// An escrow case's confirmation.
    Case,
    /// A vertical's own question.
    Vertical,
}

pub fn route_of(purpose: ChallengePurpose) -> AnswerRoute {
    match purpose {
        ChallengePurpose::Login => AnswerRoute::Login,
        ChallengePurpose::Order
        | ChallengePurpose::Settlement
        | ChallengePurpose::Payment
        | ChallengePurpose::Policy => AnswerRoute::Case,
        ChallengePurpose::PrescriptionOpen
        | ChallengePurpose::CardPresent
        | ChallengePurpose::PayoutDestination => AnswerRoute::Vertical,
    }
}

/// Answers an order, settlement, payment or policy confirmation: locks what the case's
/// vertical locks before a case (insurance: the policy), lets core apply the answer to the
/// case, then runs the vertical's follow-up (a parcel, a prescription's state, a policy…).
#[tracing::instrument(name = "app.answer_case", skip_all, fields(challenge_id = %challenge_id, case_id = tracing::field::Empty))]
pub async fn answer_case_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    challenge_id: ChallengeId,
    code: &str,
    decision: Decision,
) -> AppResult<AnswerEffect> {
    let unlocked = challenge::get_challenge(txn, challenge_id).await?;
    answer_read_case_in_txn(txn, core, &unlocked, code, decision).await
}

/// [`answer_case_in_txn`] for a caller that read the challenge already, without a lock (the
/// API handler, to route the answer): only its purpose and subject are used before it is
/// locked and read again, and neither ever changes.
#[tracing::instrument(name = "app.answer_case", skip_all, fields(challenge_id = %unlocked.id, case_id = tracing::field::Empty))]
pub async fn answer_read_case_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    unlocked: &Challenge,
    code: &str,
    decision: Decision,
) -> AppResult<AnswerEffect> {
    if let Some(vertical) = vertical_of(txn, unlocked).await? {
        lock_before_case_in_txn(txn, vertical, unlocked.id).await?;
    }
    let effect =
        escrow::answer_read_case_challenge_in_txn(txn, core, unlocked, code, decision).await?;
    if let AnswerEffect::Applied(case, outcome) = &effect {
        after_case_answer_in_txn(txn, core, case, *outcome).await?;
    }
    Ok(effect)
}

/// The vertical of the case a challenge confirms; a case's vertical never changes, so it is
/// read without a lock.
async fn vertical_of(
    txn: &DatabaseTransaction,
    challenge: &Challenge,
) -> AppResult<Option<Vertical>> {
    let Some(subject) = challenge.subject else {
        return Ok(None);
    };
    match escrow::get_case(txn, CaseId::from_uuid(subject)).await {
        Ok(case) => Ok(Some(case.vertical)),
        Err(CoreError::NotFound(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The house lock order: a vertical's own row before the case.
async fn lock_before_case_in_txn(
    txn: &DatabaseTransaction,
    vertical: Vertical,
    challenge_id: ChallengeId,
) -> AppResult<()> {
    match vertical {
        Vertical::Insurance => {
            holdfast_insurance::hooks::lock_answer_subject_in_txn(txn, challenge_id).await?
        }
        // Retail orders and prescriptions take their own rows after the case in an answer;
        // card-present authorisations have no escrow case.
        Vertical::Retail | Vertical::Pharmacy | Vertical::CardPresent => {}
    }
    Ok(())
}

/// The vertical's own step after an answer changed one of its cases.
#[tracing::instrument(name = "app.after_case_answer", skip_all, fields(case_id = %case.id))]
pub async fn after_case_answer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &EscrowCase,
    outcome: CaseOutcome,
) -> AppResult<()> {
    match case.vertical {
        Vertical::Retail => {
            holdfast_retail::orders::after_answer_in_txn(txn, core, case, outcome).await?
        }
        Vertical::Pharmacy => {
            holdfast_pharmacy::hooks::after_answer_in_txn(txn, core, case, outcome).await?
        }
        Vertical::Insurance => {
            holdfast_insurance::hooks::after_answer_in_txn(txn, core, case, outcome).await?
        }
        Vertical::CardPresent => {}
    }
    Ok(())
}

/// What answering a vertical's own question did: a summary for the response, or a refusal
/// that changed the challenge (to be committed, then reported).
#[derive(Debug)]
pub enum VerticalAnswer {
    Applied(serde_json::Value),
    Refused(CoreError),
}

/// Answers a question a vertical (or a payee's bank account) asked on the phone: a patient's
/// consent to open a prescription, a card-present authorisation, a card holder's payout
/// destination.
#[tracing::instrument(name = "app.answer", skip_all, fields(challenge_id = %challenge_id, purpose = ?purpose))]
pub async fn answer_vertical_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    purpose: ChallengePurpose,
    challenge_id: ChallengeId,
    code: &str,
    decision: Decision,
) -> AppResult<VerticalAnswer> {
    Ok(match purpose {
        ChallengePurpose::PrescriptionOpen => {
            match holdfast_pharmacy::hooks::answer_in_txn(txn, core, challenge_id, code, decision)
                .await?
            {
                holdfast_pharmacy::hooks::VerticalAnswer::Applied(v) => VerticalAnswer::Applied(v),
                holdfast_pharmacy::hooks::VerticalAnswer::Refused(e) => VerticalAnswer::Refused(e),
            }
        }
        ChallengePurpose::CardPresent => {
            match card_present::answer_in_txn(txn, core, challenge_id, code, decision).await? {
                card_present::Answered::Applied(v) => VerticalAnswer::Applied(v),
                card_present::Answered::Refused(e) => VerticalAnswer::Refused(e),
            }
        }
        ChallengePurpose::PayoutDestination => {
            match destinations::answer_on_phone_in_txn(txn, core, challenge_id, code, decision)
                .await?
            {
                destinations::PhoneAnswer::Applied(destination) => {
                    VerticalAnswer::Applied(serde_json::json!({
                        "payout_destination": DestinationView::from(destination),
                    }))
                }
                destinations::PhoneAnswer::Refused(e) => VerticalAnswer::Refused(e),
            }
        }
        ChallengePurpose::Order
        | ChallengePurpose::Settlement
        | ChallengePurpose::Payment
        | ChallengePurpose::Policy
        | ChallengePurpose::Login => VerticalAnswer::Refused(CoreError::ChallengeNotAnswerable),
    })
}
