//! The holder's free-look cancellation: every premium paid or held comes back exactly once.

use super::*;

/// What a free-look cancellation did.
#[derive(Debug)]
pub enum CancelOutcome {
    Cancelled(Box<Cancellation>),
    /// A premium paid to the insurer could not be taken back: its money has left the
    /// insurer's account (or the platform's), and the platform cannot return what it does not
    /// hold. Nothing moved; the attempt is on the policy's timeline — so the right it exercised
    /// outlives the period — and the insurer was told what to return. Commit, then report.
    Blocked(InsuranceError),
}

/// The holder cancels within the free-look period (or, before the issue, while the insurer
/// rechecks): every premium returns to the card's funding source — held ones are released,
/// settled ones taken back from the insurer (and the platform's commission and any card fee
/// with them), ones awaiting settlement withdrawn. If a settled premium has since been paid
/// out of the insurer's account, nothing moves ([`CancelOutcome::Blocked`]); the holder may
/// ask again once the insurer has returned it, even after the period, since it asked in time.
#[tracing::instrument(name = "insurance.cancel", skip_all, fields(policy_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn cancel_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    holder: PartyId,
    policy: &PolicyRef,
) -> InsuranceResult<CancelOutcome> {
    let unlocked = find_row(txn, policy).await?;
    if unlocked.holder_party_id != holder.uuid() {
        return Err(CoreError::NotFound("policy").into());
    }
    // The policy first: the cycle collects a premium only under this lock, so the premiums
    // read now are all there are.
    let row = lock_row(txn, unlocked.id).await?;
    let premiums = premiums_of(txn, row.id).await?;
    let mut cases = Vec::with_capacity(premiums.len());
    for premium in &premiums {
        cases.push(escrow::lock_case_in_txn(txn, CaseId::from_uuid(premium.case_id)).await?);
    }
    let to = row.state.cancel()?;
    let now = core.clock.now();
    if let Some(ends) = free_look_end(&row)
        && now >= ends
        && !blocked_before_in_txn(txn, row.id, ends).await?
    {
        return Err(InsuranceError::FreeLookEnded { ended_at: ends });
    }
    let currency = Currency::from_str(&row.currency)?;
    let reason = format!("free-look cancellation of policy {}", number_of(&row));
    // In a savepoint: a premium that cannot be taken back undoes what the others returned.
    let savepoint = txn.begin().await?;
    let returned =
        match return_premiums_in_txn(&savepoint, core, &premiums, &mut cases, currency, &reason)
            .await
        {
            Ok(returned) => {
                savepoint.commit().await?;
                returned
            }
            Err(InsuranceError::PremiumPaidOut {
                installment,
                amount,
            }) => {
                savepoint.rollback().await?;
                return blocked_in_txn(txn, core, &row, installment, amount).await;
            }
            Err(error) => return Err(error),
        };
    let mut active: policies::ActiveModel = row.clone().into();
    active.state = Set(to);
    active.ended_at = Set(Some(now));
    active.next_due_at = Set(None);
    active.grace_ends_at = Set(None);
    let row = save_in_txn(txn, core, active).await?;
    for kind in [
        RECHECK_DEADLINE_TIMER,
        crate::cycle::PREMIUM_DUE_TIMER,
        crate::cycle::GRACE_END_TIMER,
        crate::cycle::TERM_END_TIMER,
    ] {
        timers::cancel_in_txn(txn, kind, row.id).await?;
    }
    record_in_txn(
        txn,
        core,
        row.id,
        "cancelled",
        Some(format!("free-look cancellation: {returned} returned")),
    )
    .await?;
    text_holder_in_txn(
        txn,
        core,
        &row,
        format!(
            "Holdfast: policy {} cancelled within the free-look period; {returned} returned to you.",
            number_of(&row)
        ),
    )
    .await?;
    publish_in_txn(
        txn,
        core,
        row.insurer_party_id,
        "policy.cancelled",
        serde_json::json!({
            "policy_id": row.id,
            "policy_number": row.policy_number,
            "returned": returned,
            "reason": "free_look",
        }),
    )
    .await?;
    Ok(CancelOutcome::Cancelled(Box::new(Cancellation {
        policy: view_of(txn, core, &row, holder).await?,
        returned,
    })))
}

/// Returns every premium of a cancelled policy to the holder; what came back.
pub(super) async fn return_premiums_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    premiums: &[premiums::Model],
    cases: &mut [EscrowCase],
    currency: Currency,
    reason: &str,
) -> InsuranceResult<Money> {
    let mut returned = Money::zero(currency);
    for (premium, case) in premiums.iter().zip(cases.iter_mut()) {
        let back = match case.state {
            // Held, or asked for but not yet paid: the whole hold returns, and a pending
            // settlement confirmation is voided with its auto-settlement.
            CaseState::AwaitingOrderConfirmation
            | CaseState::Frozen
            | CaseState::InDelivery
            | CaseState::Delivered
            | CaseState::SettlementRequested => {
                escrow::withdraw_cooling_off_in_txn(txn, core, case, reason.to_owned()).await?;
                case.amount
            }
            // The holder denied a settlement: the cancellation right decides the dispute.
            CaseState::Disputed => refund_in_full_in_txn(txn, core, case, reason).await?.refund,
            // Paid: taken back from the insurer, the platform and any card institution — as
            // long as they still hold it; the ledger lets no account go below zero.
            CaseState::Settled => {
                match escrow::reverse_settlement_in_txn(txn, core, case, reason.to_owned()).await {
                    Ok(back) => back,
                    Err(CoreError::InsufficientFunds { .. }) => {
                        return Err(InsuranceError::PremiumPaidOut {
                            installment: premium.installment,
                            amount: case.amount_to_settle(),
                        });
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            // Already back with the holder (or never taken).
            CaseState::Denied
            | CaseState::Expired
            | CaseState::Cancelled
            | CaseState::Refunded
            | CaseState::Refused => Money::zero(currency),
        };
        returned = returned.checked_add(&back)?;
    }
    Ok(returned)
}

/// The policy's timeline line that records a cancellation blocked by a premium paid out.
pub(super) const CANCELLATION_BLOCKED: &str = "cancellation_blocked";

/// Whether the holder asked to cancel before `ends` and was blocked by a premium paid out.
pub(super) async fn blocked_before_in_txn(
    txn: &DatabaseTransaction,
    policy: Uuid,
    ends: DateTime<Utc>,
) -> InsuranceResult<bool> {
    Ok(policy_events::Entity::find()
        .filter(policy_events::Column::PolicyId.eq(policy))
        .filter(policy_events::Column::Kind.eq(CANCELLATION_BLOCKED))
        .filter(policy_events::Column::At.lt(ends))
        .one(txn)
        .await?
        .is_some())
}

/// Records a cancellation a paid-out premium blocked, and tells the insurer what to return.
pub(super) async fn blocked_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: &policies::Model,
    installment: i32,
    amount: Money,
) -> InsuranceResult<CancelOutcome> {
    record_in_txn(
        txn,
        core,
        row.id,
        CANCELLATION_BLOCKED,
        Some(format!(
            "free-look cancellation asked for; premium {installment} ({amount}) was paid out \
             and must be returned first"
        )),
    )
    .await?;
    publish_in_txn(
        txn,
        core,
        row.insurer_party_id,
        "policy.cancellation_blocked",
        serde_json::json!({
            "policy_number": row.policy_number,
            "installment": installment,
            "amount": amount,
            "requested_at": core.clock.now(),
        }),
    )
    .await?;
    Ok(CancelOutcome::Blocked(InsuranceError::PremiumPaidOut {
        installment,
        amount,
    }))
}

pub(super) async fn refund_in_full_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    reason: &str,
) -> InsuranceResult<PayoutSplit> {
    Ok(escrow::mediate_in_txn(
        txn,
        core,
        case,
        Mediation {
            to_seller: Money::zero(case.amount.currency()),
            penalty: None,
            note: reason.to_owned(),
        },
    )
    .await?)
}
