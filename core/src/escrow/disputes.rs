//! Disputes and their mediation, a supplier's refusal, dispatch and delivery records, notes,
//! and the buyer's ways out before settlement: cancel and withdraw.

use super::*;

pub const MAX_REASON_CHARS: usize = 1_000;

pub(super) fn reason_text(reason: Option<String>) -> CoreResult<Option<String>> {
    match reason.map(|r| r.trim().to_owned()) {
        Some(r) if r.chars().count() > MAX_REASON_CHARS => Err(CoreError::invalid(format!(
            "a reason has at most {MAX_REASON_CHARS} characters"
        ))),
        Some(r) if r.is_empty() => Ok(None),
        other => Ok(other),
    }
}

pub(super) async fn dispute_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    reason: Option<String>,
) -> CoreResult<()> {
    let reason = reason_text(reason)?;
    let to = case.state.dispute()?;
    outcomes::count(Outcome::DisputeOpened(case.vertical));
    // The settlement period stops with the dispute, in the same transaction.
    crate::timers::cancel_in_txn(txn, AUTO_SETTLE_TIMER, case.id.uuid()).await?;
    if let Some(challenge) = case.settlement_challenge {
        challenge::void_in_txn(txn, &core.clock, challenge).await?;
    }
    move_to_in_txn(txn, core, case, to, "disputed", reason.clone()).await?;
    crate::events::publish_in_txn(
        txn,
        &core.clock,
        case.payee,
        "order.disputed",
        serde_json::json!({"order_number": case.order_number, "reason": reason}),
    )
    .await?;
    Ok(())
}

/// The buyer disputes a settlement request instead of approving it (from the app, with a
/// reason). The money stays frozen until an operator mediates.
#[tracing::instrument(name = "escrow.dispute", level = "debug", skip_all, fields(case_id = %case.id))]
pub async fn dispute_by_buyer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    buyer: PartyId,
    reason: String,
) -> CoreResult<()> {
    if case.payer != buyer {
        return Err(CoreError::NotFound("order"));
    }
    if reason.trim().is_empty() {
        return Err(CoreError::invalid("a dispute needs a reason"));
    }
    dispute_in_txn(txn, core, case, Some(reason)).await
}

/// An operator's decision on a dispute.
#[derive(Debug, Clone)]
pub struct Mediation {
    /// Released to the seller (minus commission and fees); the rest is refunded.
    pub to_seller: Money,
    pub penalty: Option<(Fault, Money)>,
    pub note: String,
}

/// Resolves a dispute: releases `to_seller`, refunds the rest, charges the penalty to the
/// party at fault.
#[tracing::instrument(name = "escrow.mediate", level = "debug", skip_all, fields(case_id = %case.id))]
pub async fn mediate_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    mediation: Mediation,
) -> CoreResult<PayoutSplit> {
    let note = reason_text(Some(mediation.note))?;
    let to_seller = !mediation.to_seller.is_zero();
    let to = case.state.mediate(to_seller)?;
    outcomes::count(Outcome::DisputeResolved {
        vertical: case.vertical,
        to_seller,
    });
    if to_seller {
        outcomes::count(Outcome::Settled(case.vertical, SettledBy::Mediated));
    }
    let split = split_in_txn(txn, case, mediation.to_seller, mediation.penalty).await?;
    pay_out_in_txn(txn, core, case, &split, "mediate").await?;
    let detail = format!(
        "{} to the seller, {} refunded{}{}",
        split.to_seller,
        split.refund,
        match mediation.penalty {
            Some((fault, amount)) =>
                format!(", penalty {amount} charged to the {fault:?}").to_lowercase(),
            None => String::new(),
        },
        note.map(|n| format!(": {n}")).unwrap_or_default(),
    );
    move_to_in_txn(txn, core, case, to, "mediated", Some(detail)).await?;
    publish_to_payee_in_txn(txn, core, case, "dispute.mediated", &split).await?;
    let text = format!(
        "Holdfast: the dispute on order {} is settled: {} refunded to you.",
        case.order_number, split.refund
    );
    tell_payer_in_txn(txn, core, case, text).await?;
    Ok(split)
}

/// The seller refuses an order it has not dispatched: the hold is voided.
#[tracing::instrument(name = "escrow.refuse", level = "debug", skip_all, fields(case_id = %case.id))]
pub async fn refuse_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    seller: PartyId,
    reason: Option<String>,
) -> CoreResult<()> {
    if case.payee != seller {
        return Err(CoreError::NotFound("order"));
    }
    let reason = reason_text(reason)?;
    let to = case.state.refuse()?;
    if let Some(challenge) = case.order_challenge {
        challenge::void_in_txn(txn, &core.clock, challenge).await?;
    }
    crate::timers::cancel_in_txn(txn, ORDER_DEADLINE_TIMER, case.id.uuid()).await?;
    release_hold_in_txn(txn, core, case, "refuse").await?;
    move_to_in_txn(txn, core, case, to, "refused", reason).await?;
    let text = format!(
        "Holdfast: {} refused order {}; {} returned to you.",
        case.payee_name, case.order_number, case.amount
    );
    tell_payer_in_txn(txn, core, case, text).await
}

/// The goods left the seller: no cancellation from now on.
#[tracing::instrument(name = "escrow.record_dispatch", level = "debug", skip_all, fields(case_id = %case.id))]
pub async fn record_dispatch_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
) -> CoreResult<()> {
    if case.state == CaseState::InDelivery {
        return Ok(());
    }
    let to = case.state.dispatch()?;
    move_to_in_txn(txn, core, case, to, "dispatched", None).await
}

/// The buyer handed over the order number on delivery: it must be this case's.
#[tracing::instrument(name = "escrow.record_delivery", level = "debug", skip_all, fields(case_id = %case.id))]
pub async fn record_delivery_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    handed_over: &OrderNumber,
) -> CoreResult<()> {
    if handed_over != &case.order_number {
        return Err(CoreError::invalid(
            "the order number handed over is not this order's",
        ));
    }
    let to = case.state.record_delivery()?;
    case.delivered_at = Some(core.clock.now());
    move_to_in_txn(txn, core, case, to, "delivered", None).await
}

/// [`record_delivery_in_txn`] for a case that may not have been dispatched yet (a parcel
/// delivered without an earlier tracking point): both steps in one update of the case, each
/// with its entry in the history.
#[tracing::instrument(name = "escrow.record_dispatch_and_delivery", level = "debug", skip_all, fields(case_id = %case.id))]
pub async fn record_dispatch_and_delivery_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    handed_over: &OrderNumber,
) -> CoreResult<()> {
    if case.state != CaseState::Frozen {
        return record_delivery_in_txn(txn, core, case, handed_over).await;
    }
    if handed_over != &case.order_number {
        return Err(CoreError::invalid(
            "the order number handed over is not this order's",
        ));
    }
    let dispatched = case.state.dispatch()?;
    let delivered = dispatched.record_delivery()?;
    case.delivered_at = Some(core.clock.now());
    move_through_in_txn(
        txn,
        core,
        case,
        &[(dispatched, "dispatched"), (delivered, "delivered")],
        None,
    )
    .await
}

/// Adds a line to the case's history that changes no state (a tracking point, a message).
pub async fn note_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: CaseId,
    kind: &str,
    detail: String,
) -> CoreResult<()> {
    record_event_in_txn(txn, core, case, kind, None, None, Some(detail)).await
}

/// Texts the case's buyer (on the phone of the card it paid with).
pub async fn text_buyer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &EscrowCase,
    text: String,
) -> CoreResult<()> {
    tell_payer_in_txn(txn, core, case, text).await
}

/// The buyer cancels before dispatch: the hold is voided and a pending order confirmation
/// withdrawn.
#[tracing::instrument(name = "escrow.cancel", level = "debug", skip_all, fields(case_id = %case.id))]
pub async fn cancel_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    cancelled_by: PartyId,
) -> CoreResult<()> {
    if case.payer != cancelled_by {
        return Err(CoreError::NotFound("order"));
    }
    let to = case.state.cancel()?;
    if let Some(challenge) = case.order_challenge {
        challenge::void_in_txn(txn, &core.clock, challenge).await?;
    }
    release_hold_in_txn(txn, core, case, "cancel").await?;
    move_to_in_txn(txn, core, case, to, "cancelled", None).await
}

/// Withdraws a case for a reason outside the buyer and the seller (a prescriber cancels the
/// prescription, an insurer declines at its recheck): as a cancellation, before dispatch, the
/// hold is voided and a pending confirmation withdrawn.
#[tracing::instrument(name = "escrow.withdraw", level = "debug", skip_all, fields(case_id = %case.id))]
pub async fn withdraw_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    reason: String,
) -> CoreResult<()> {
    let to = case.state.cancel()?;
    if let Some(challenge) = case.order_challenge {
        challenge::void_in_txn(txn, &core.clock, challenge).await?;
    }
    crate::timers::cancel_in_txn(txn, ORDER_DEADLINE_TIMER, case.id.uuid()).await?;
    release_hold_in_txn(txn, core, case, "withdraw").await?;
    move_to_in_txn(txn, core, case, to, "withdrawn", reason_text(Some(reason))?).await
}

/// Withdraws a case under a cooling-off right (an insurance policy's free-look period): unlike
/// [`withdraw_in_txn`] it also reaches a delivered case and one whose settlement was requested
/// — the pending settlement confirmation is voided and auto-settlement called off — and the
/// whole hold returns to the buyer. A settled or disputed case is out of its reach.
#[tracing::instrument(name = "escrow.withdraw_cooling_off", level = "debug", skip_all, fields(case_id = %case.id))]
pub async fn withdraw_cooling_off_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    reason: String,
) -> CoreResult<()> {
    let to = case.state.withdraw_cooling_off()?;
    for challenge in [case.order_challenge, case.settlement_challenge]
        .into_iter()
        .flatten()
    {
        challenge::void_in_txn(txn, &core.clock, challenge).await?;
    }
    crate::timers::cancel_in_txn(txn, ORDER_DEADLINE_TIMER, case.id.uuid()).await?;
    crate::timers::cancel_in_txn(txn, AUTO_SETTLE_TIMER, case.id.uuid()).await?;
    release_hold_in_txn(txn, core, case, "withdraw").await?;
    move_to_in_txn(txn, core, case, to, "withdrawn", reason_text(Some(reason))?).await
}
