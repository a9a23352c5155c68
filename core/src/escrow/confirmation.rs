//! The buyer's answers on the phone: to the order (approve, deny, or silence until it expires)
//! and to the settlement request (approve, dispute, or silence until it settles by itself);
//! the case's timers; asking for settlement and renewing its code.

use super::*;

/// Records in the timeline that a confirmation went to the phone (never its code).
pub(super) async fn note_confirmation_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: CaseId,
    challenge: &Challenge,
) -> CoreResult<()> {
    record_events_in_txn(txn, core, case, vec![confirmation_sent(challenge)]).await
}

/// The history's entry for a confirmation sent to the phone.
pub(super) fn confirmation_sent(challenge: &Challenge) -> NewCaseEvent<'static> {
    let detail = format!(
        "{} confirmation sent to the phone: {}, valid until {} UTC",
        challenge.purpose.as_str(),
        challenge
            .binding
            .amount
            .map(|a| a.to_string())
            .unwrap_or_default(),
        challenge.expires_at.format("%Y-%m-%d %H:%M")
    );
    NewCaseEvent {
        kind: "confirmation_sent",
        from: None,
        to: None,
        detail: Some(detail),
    }
}

/// Approval of the order: the money stays frozen, no longer on a deadline.
pub(super) async fn approve_order_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
) -> CoreResult<()> {
    let to = case.state.approve_order()?;
    let hold = hold_of(case).await?;
    holds::clear_expiry_in_txn(txn, hold).await?;
    crate::timers::cancel_in_txn(txn, ORDER_DEADLINE_TIMER, case.id.uuid()).await?;
    move_to_in_txn(txn, core, case, to, "order_approved", None).await
}

pub(super) async fn release_hold_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &EscrowCase,
    reason: &str,
) -> CoreResult<()> {
    let hold = hold_of(case).await?;
    holds::void_hold_in_txn(
        txn,
        &core.clock,
        hold,
        &format!("case:{}:{reason}", case.id),
    )
    .await?;
    Ok(())
}

pub(super) async fn deny_order_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
) -> CoreResult<()> {
    let to = case.state.deny_order()?;
    release_hold_in_txn(txn, core, case, "deny").await?;
    move_to_in_txn(txn, core, case, to, "order_denied", None).await
}

pub(super) async fn expire_order_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
) -> CoreResult<()> {
    let to = case.state.expire_order()?;
    let hold = hold_of(case).await?;
    holds::expire_hold_in_txn(txn, &core.clock, hold).await?;
    move_to_in_txn(txn, core, case, to, "order_expired", None).await
}

/// What an answer to a case's challenge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseOutcome {
    OrderApproved,
    OrderDenied,
    Settled,
    Disputed,
}

/// What an answer did: either a transition, or a refusal that still changed the challenge (a
/// wrong code counted, a lock-out, an expiry) and so must be committed before it is reported.
#[derive(Debug)]
pub enum AnswerEffect {
    Applied(Box<EscrowCase>, CaseOutcome),
    Refused(CoreError),
}

/// Answers the order or settlement challenge of a case, as the buyer's phone does.
#[tracing::instrument(name = "escrow.answer", level = "debug", skip_all, fields(challenge_id = %challenge_id, case_id = tracing::field::Empty))]
pub async fn answer_case_challenge_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    challenge_id: ChallengeId,
    code: &str,
    decision: Decision,
) -> CoreResult<AnswerEffect> {
    challenge::parse_code(code)?;
    let unlocked = challenge::get_challenge(txn, challenge_id).await?;
    answer_read_case_challenge_in_txn(txn, core, &unlocked, code, decision).await
}

/// [`answer_case_challenge_in_txn`] for a caller that has read the challenge already (without
/// a lock: it is only used to find the case, and is locked and read again after the case).
#[tracing::instrument(name = "escrow.answer", level = "debug", skip_all, fields(challenge_id = %unlocked.id, case_id = tracing::field::Empty))]
pub async fn answer_read_case_challenge_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    unlocked: &Challenge,
    code: &str,
    decision: Decision,
) -> CoreResult<AnswerEffect> {
    challenge::parse_code(code)?;
    let challenge_id = unlocked.id;
    // Lock order: the case, then its challenge (as cancelling and the timers do).
    let case_id = unlocked
        .subject
        .map(CaseId::from_uuid)
        .filter(|_| {
            is_order_confirmation(unlocked.purpose)
                || unlocked.purpose == ChallengePurpose::Settlement
        })
        .ok_or(CoreError::NotFound("challenge"))?;
    let mut case = lock_case_in_txn(txn, case_id).await?;
    let challenge = challenge::lock_challenge_in_txn(txn, challenge_id).await?;
    if let Some(card) = case.payer_card {
        cards::get_card(txn, card).await?.ensure_active()?;
    }
    let answer = challenge::answer_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &challenge,
        code,
        decision,
        &case.binding_for(challenge.purpose),
    )
    .await?;
    let outcome = match (&answer, challenge.purpose) {
        (Answer::Approved(_), purpose) if is_order_confirmation(purpose) => {
            approve_order_in_txn(txn, core, &mut case).await?;
            CaseOutcome::OrderApproved
        }
        (Answer::Denied(_), purpose) if is_order_confirmation(purpose) => {
            deny_order_in_txn(txn, core, &mut case).await?;
            CaseOutcome::OrderDenied
        }
        (Answer::Approved(_), _) => {
            settle_in_txn(txn, core, &mut case, SettledBy::Approved).await?;
            CaseOutcome::Settled
        }
        (Answer::Denied(_), _) => {
            dispute_in_txn(txn, core, &mut case, Some("denied on the phone".to_owned())).await?;
            CaseOutcome::Disputed
        }
        (Answer::Expired(_), purpose) if is_order_confirmation(purpose) => {
            // The order's deadline is the code's: it expires now rather than at the timer.
            if case.state == CaseState::AwaitingOrderConfirmation {
                expire_order_in_txn(txn, core, &mut case).await?;
            }
            return Ok(AnswerEffect::Refused(CoreError::ChallengeExpired));
        }
        (refused, _) => {
            return Ok(AnswerEffect::Refused(
                challenge::answer_error(refused).unwrap_or(CoreError::ChallengeNotAnswerable),
            ));
        }
    };
    Ok(AnswerEffect::Applied(Box::new(case), outcome))
}

/// The buyer's order confirmation deadline: an order still unanswered then expires and its
/// money returns, whatever became of its code (expired, locked by wrong tries…).
pub const ORDER_DEADLINE_TIMER: crate::timers::TimerKind =
    crate::timers::TimerKind::CaseOrderDeadline;
/// The end of the settlement period: a settlement request neither approved nor disputed by
/// then is paid out.
pub const AUTO_SETTLE_TIMER: crate::timers::TimerKind = crate::timers::TimerKind::CaseAutoSettle;

/// Whether a timer kind is one of the escrow case's.
pub fn is_case_timer(kind: crate::timers::TimerKind) -> bool {
    matches!(kind, ORDER_DEADLINE_TIMER | AUTO_SETTLE_TIMER)
}

/// Locks the case a case timer is about (timers lock their subject first).
pub async fn lock_timer_subject_in_txn(txn: &DatabaseTransaction, subject: Uuid) -> CoreResult<()> {
    lock_case_in_txn(txn, CaseId::from_uuid(subject))
        .await
        .map(|_| ())
}

/// Fires a case timer; a case that moved on meanwhile (approved, cancelled, disputed) is left
/// alone.
#[tracing::instrument(name = "escrow.fire_timer", level = "debug", skip_all, fields(kind = %kind, timer_subject = %subject, case_id = tracing::field::Empty))]
pub async fn fire_timer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    kind: crate::timers::TimerKind,
    subject: Uuid,
) -> CoreResult<()> {
    let mut case = lock_case_in_txn(txn, CaseId::from_uuid(subject)).await?;
    match kind {
        ORDER_DEADLINE_TIMER if case.state == CaseState::AwaitingOrderConfirmation => {
            if let Some(challenge) = case.order_challenge {
                challenge::close_in_txn(txn, &core.clock, challenge).await?;
            }
            expire_order_in_txn(txn, core, &mut case).await
        }
        AUTO_SETTLE_TIMER if case.state == CaseState::SettlementRequested => {
            if let Some(challenge) = case.settlement_challenge {
                challenge::close_in_txn(txn, &core.clock, challenge).await?;
            }
            settle_in_txn(txn, core, &mut case, SettledBy::AutoSettled).await
        }
        ORDER_DEADLINE_TIMER | AUTO_SETTLE_TIMER => Ok(()),
        other => Err(CoreError::invalid(format!("not a case timer: {other}"))),
    }
}

/// What the buyer is told of the delivery when asked to release the money.
pub(super) fn delivery_evidence(case: &EscrowCase) -> String {
    match case.delivered_at {
        Some(at) => format!("delivered {} UTC", at.format("%Y-%m-%d %H:%M")),
        None => "NO DELIVERY RECORDED: deny if you did not receive it".to_owned(),
    }
}

/// The seller asks to be paid, quoting the order number, for all of the order or part of it
/// (the rest then returns to the buyer): the buyer's phone is asked to release that amount,
/// and is told what is known of the delivery. Without an answer the money is released when
/// the settlement period ends. Only the case's payee may ask.
#[tracing::instrument(name = "escrow.request_settlement", level = "debug", skip_all, fields(case_id = %case.id))]
pub async fn request_settlement_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    requested_by: PartyId,
    amount: Option<Money>,
) -> CoreResult<Challenge> {
    if case.payee != requested_by {
        return Err(CoreError::NotFound("order"));
    }
    let to = case.state.request_settlement()?;
    if let Some(amount) = amount
        && (amount.is_zero()
            || !matches!(amount.checked_cmp(&case.amount), Ok(order) if order.is_le()))
    {
        return Err(CoreError::invalid(
            "a settlement is for more than zero and at most the order's amount, in its currency",
        ));
    }
    case.settlement_amount = amount.filter(|a| *a != case.amount);
    let phone = payer_phone_in_txn(txn, case)
        .await?
        .ok_or_else(|| CoreError::invalid("the buyer has no phone to confirm on"))?;
    let challenge = challenge::issue_challenge_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &core.policy,
        NewChallenge {
            purpose: ChallengePurpose::Settlement,
            party: case.payer,
            phone,
            subject: Some(case.id.uuid()),
            binding: case.binding_for(ChallengePurpose::Settlement),
            note: Some(delivery_evidence(case)),
        },
    )
    .await?;
    case.settlement_challenge = Some(challenge.id);
    note_confirmation_in_txn(txn, core, case.id, &challenge).await?;
    let deadline = core.clock.now() + core.auto_settle;
    crate::timers::schedule_in_txn(
        txn,
        &core.clock,
        AUTO_SETTLE_TIMER,
        case.id.uuid(),
        deadline,
    )
    .await?;
    move_to_in_txn(
        txn,
        core,
        case,
        to,
        "settlement_requested",
        Some(format!(
            "{} requested ({}); released by itself at {deadline} unless disputed",
            case.amount_to_settle(),
            delivery_evidence(case)
        )),
    )
    .await?;
    crate::events::publish_in_txn(
        txn,
        &core.clock,
        case.payee,
        "settlement.requested",
        serde_json::json!({
            "order_number": case.order_number,
            "amount": case.amount_to_settle(),
            "auto_settles_at": deadline,
        }),
    )
    .await?;
    Ok(challenge)
}

/// How many fresh settlement confirmations a buyer may ask for on one request.
pub const MAX_SETTLEMENT_CONFIRMATIONS: usize = 5;

/// Sends the buyer a fresh settlement confirmation when the last one can no longer be
/// answered (expired, locked by wrong tries): the settlement period runs on regardless, so
/// this only lets the buyer answer before it ends.
#[tracing::instrument(name = "escrow.renew_settlement_confirmation", level = "debug", skip_all, fields(case_id = %case.id))]
pub async fn renew_settlement_confirmation_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    requested_by: PartyId,
) -> CoreResult<Challenge> {
    if case.payer != requested_by {
        return Err(CoreError::NotFound("order"));
    }
    if case.state != CaseState::SettlementRequested {
        return Err(case
            .state
            .refuse_action("renew the settlement confirmation")
            .into());
    }
    if let Some(current) = case.settlement_challenge {
        let current = challenge::lock_challenge_in_txn(txn, current).await?;
        let answerable = current.status == challenge::ChallengeStatus::Pending
            && core.clock.now() < current.expires_at;
        if answerable {
            return Ok(current);
        }
    }
    let issued = events(txn, case.id)
        .await?
        .iter()
        .filter(|e| e.kind == "settlement_confirmation_renewed")
        .count();
    if issued >= MAX_SETTLEMENT_CONFIRMATIONS {
        return Err(CoreError::ResendLimit);
    }
    let phone = payer_phone_in_txn(txn, case)
        .await?
        .ok_or_else(|| CoreError::invalid("the buyer has no phone to confirm on"))?;
    let challenge = challenge::issue_challenge_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &core.policy,
        NewChallenge {
            purpose: ChallengePurpose::Settlement,
            party: case.payer,
            phone,
            subject: Some(case.id.uuid()),
            binding: case.binding_for(ChallengePurpose::Settlement),
            note: Some(delivery_evidence(case)),
        },
    )
    .await?;
    case.settlement_challenge = Some(challenge.id);
    escrow_cases::Entity::update_many()
        .col_expr(
            escrow_cases::Column::SettlementChallengeId,
            Expr::value(Some(challenge.id.uuid())),
        )
        .filter(escrow_cases::Column::Id.eq(case.id.uuid()))
        .exec(txn)
        .await?;
    record_events_in_txn(
        txn,
        core,
        case.id,
        vec![
            NewCaseEvent {
                kind: "settlement_confirmation_renewed",
                from: None,
                to: None,
                detail: None,
            },
            confirmation_sent(&challenge),
        ],
    )
    .await?;
    Ok(challenge)
}
