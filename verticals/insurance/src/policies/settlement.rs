//! The insurer asks to be paid a premium, quoting the policy number.

use super::*;

/// The insurer quotes the policy number to be paid a premium (the oldest one held, or the
/// installment named): the holder's phone is asked to release it, and without an answer it is
/// released when the settlement period ends. Not before the certificate and the signed
/// application are recorded.
#[tracing::instrument(name = "insurance.request_settlement", skip_all, fields(installment, policy_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn request_settlement_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    insurer: PartyId,
    number: &OrderNumber,
    installment: Option<i32>,
) -> InsuranceResult<PolicyView> {
    let unlocked = find_row(txn, &PolicyRef::Number(number.clone())).await?;
    if unlocked.insurer_party_id != insurer.uuid() {
        return Err(CoreError::NotFound("policy").into());
    }
    let row = lock_row(txn, unlocked.id).await?;
    if !row.state.settles() {
        return Err(row.state.refuse("request settlement"));
    }
    if row.certificate_status != CertificateStatus::Delivered {
        return Err(InsuranceError::DocumentsMissing);
    }
    let mut chosen = None;
    for premium in premiums_of(txn, row.id).await? {
        if installment.is_some_and(|n| n != premium.installment) {
            continue;
        }
        let case = escrow::get_case(txn, CaseId::from_uuid(premium.case_id)).await?;
        if case.state == CaseState::Frozen {
            chosen = Some(premium);
            break;
        }
    }
    let premium = chosen.ok_or(InsuranceError::NothingToSettle)?;
    let mut case = escrow::lock_case_in_txn(txn, CaseId::from_uuid(premium.case_id)).await?;
    if case.state != CaseState::Frozen {
        // Whatever changes a held premium takes the policy first, which is locked: a guard.
        return Err(InsuranceError::NothingToSettle);
    }
    // What the phone is told of the delivery: the certificate's, handed over with the number.
    case.delivered_at = row.certificate_delivered_at;
    escrow::request_settlement_in_txn(txn, core, &mut case, insurer, None).await?;
    record_in_txn(
        txn,
        core,
        row.id,
        "premium_settlement_requested",
        Some(format!(
            "premium {} of {} ({}): the insurer asked to be paid",
            premium.installment,
            total_installments(&row),
            case.amount
        )),
    )
    .await?;
    view_of(txn, core, &row, insurer).await
}

// ---------------------------------------------------------------------------------------
// Free-look cancellation (the holder)
// ---------------------------------------------------------------------------------------
