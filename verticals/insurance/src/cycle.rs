//! The monthly premium cycle. A durable timer per policy falls due each month: the premium is
//! collected under the consent the holder gave on the phone at purchase (a card's credit line
//! is reduced by it; a bank account's automatic transfer freezes it), as an escrow case of its
//! own. A collection that fails starts a grace period with notice to the phone; the holder may
//! pay during it (top up, then retry), and a last attempt is made when it ends; unpaid, the
//! policy lapses. After the last premium the term runs out and the policy matures. Once a
//! policy has lapsed or matured, the insurer has [`SETTLEMENT_WINDOW_DAYS`] to ask for the
//! premiums still held for it; then they return to the holder.

use crate::VERTICAL;
use crate::entities::{policies, premiums};
use crate::error::InsuranceResult;
use crate::policies::{
    self as policy, CertificateStatus, PolicyRef, PolicyState, PolicyView, commission_on, due_date,
    number_of, premium_of, record_in_txn, save_in_txn, term_end, text_holder_in_txn,
    total_installments,
};
use chrono::{DateTime, Duration, Utc};
use holdfast_core::cards::{self, CardId, CardStatus};
use holdfast_core::challenge::ChallengePurpose;
use holdfast_core::escrow::{self, CaseState, EscrowCase, OpenCase};
use holdfast_core::ids::{CaseId, PartyId};
use holdfast_core::money::MoneyError;
use holdfast_core::{Core, CoreError, Money, timers};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, DatabaseTransaction, TransactionTrait};

/// A premium falls due.
pub const PREMIUM_DUE_TIMER: holdfast_core::TimerKind =
    holdfast_core::TimerKind::InsurancePremiumDue;
/// The grace period after a failed collection ends.
pub const GRACE_END_TIMER: holdfast_core::TimerKind = holdfast_core::TimerKind::InsuranceGraceEnd;
/// The term ends.
pub const TERM_END_TIMER: holdfast_core::TimerKind = holdfast_core::TimerKind::InsuranceTermEnd;
/// The insurer's time to ask for the premiums held for an ended policy runs out.
pub const UNCLAIMED_TIMER: holdfast_core::TimerKind =
    holdfast_core::TimerKind::InsuranceUnclaimedPremiums;
/// How long after a policy lapses or matures the insurer may still ask to be paid the premiums
/// held for it; what it has not asked for by then returns to the holder, so that no premium
/// stays frozen for ever (a certificate never delivered, an insurer that never asks). Ninety
/// days leaves room for a late delivery to be recorded and the settlement asked for — each a
/// day's back-office work — without keeping a holder's bank money or credit line tied up for
/// more than a quarter after the cover ended. A premium whose settlement is under way (asked
/// for, or disputed) is left to that: the settlement period or the operator ends it.
pub const SETTLEMENT_WINDOW_DAYS: i64 = 90;

/// Why a collection failed, for the phone and the insurer; `None` for a fault of ours (the
/// timer is then retried rather than the holder put in grace).
fn collection_failure(error: &CoreError) -> Option<&'static str> {
    match error {
        CoreError::InsufficientFunds { .. } => Some("not enough funds"),
        CoreError::CardNotActive => Some("the card is blocked or replaced"),
        CoreError::Money(MoneyError::CurrencyMismatch { .. }) => {
            Some("the card's account is in another currency")
        }
        CoreError::Forbidden(_) => Some("the card no longer belongs to the holder"),
        _ => None,
    }
}

/// The card that pays the policy now: a card its institution replaced with a new number
/// passes the policy on to the new one (a blocked card does not: its holder must act).
async fn current_card_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: &policies::Model,
) -> InsuranceResult<CardId> {
    let mut card = cards::get_card(txn, CardId::from_uuid(row.card_id)).await?;
    for _ in 0..MAX_REPLACEMENTS {
        match (card.status, card.replaced_by) {
            (CardStatus::Replaced, Some(next)) => card = cards::get_card(txn, next).await?,
            _ => break,
        }
    }
    if card.id.uuid() != row.card_id && card.holder.uuid() == row.holder_party_id {
        let mut active: policies::ActiveModel = row.clone().into();
        active.card_id = Set(card.id.uuid());
        save_in_txn(txn, core, active).await?;
        record_in_txn(
            txn,
            core,
            row.id,
            "card_replaced",
            Some(format!(
                "premiums are collected from the new card {}",
                card.number.masked()
            )),
        )
        .await?;
    }
    Ok(card.id)
}

/// How many replacements of a card a policy follows.
const MAX_REPLACEMENTS: usize = 8;

/// Collects installment `n` under the policy's standing consent, in a savepoint: on a failure
/// the holder can do something about, nothing of the attempt is kept and the reason comes
/// back.
async fn collect_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: &policies::Model,
    installment: i32,
) -> InsuranceResult<Result<EscrowCase, CoreError>> {
    let premium = premium_of(row)?;
    let card = current_card_in_txn(txn, core, row).await?;
    let insurer =
        holdfast_core::parties::get_party(txn, PartyId::from_uuid(row.insurer_party_id)).await?;
    let number = number_of(row);
    let total = total_installments(row);
    let open = OpenCase {
        vertical: VERTICAL,
        payer: PartyId::from_uuid(row.holder_party_id),
        payer_card: card,
        payee: insurer.id,
        payee_name: insurer.display_name,
        amount: premium,
        commission: commission_on(row, premium)?,
        confirmation: ChallengePurpose::Policy,
        terms: Some(format!("policy {number}: premium {installment} of {total}")),
    };
    let authority = format!(
        "premium {installment} of {total} of policy {number}, under the purchase the holder \
         approved on the phone on {} UTC",
        row.created_at.format("%Y-%m-%d %H:%M")
    );
    let savepoint = txn.begin().await?;
    match escrow::open_preauthorised_case_in_txn(&savepoint, core, open, authority).await {
        Ok(case) => {
            savepoint.commit().await?;
            Ok(Ok(case))
        }
        Err(error) if collection_failure(&error).is_some() => {
            savepoint.rollback().await?;
            Ok(Err(error))
        }
        Err(error) => Err(error.into()),
    }
}

/// After installment `n` was collected: the next one falls due a month later, or, after the
/// last, the term's end.
pub(crate) async fn schedule_next_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: policies::Model,
) -> InsuranceResult<policies::Model> {
    let Some(issued_at) = row.issued_at else {
        return Ok(row);
    };
    let collected = row.installments_collected;
    let next_due =
        (collected < total_installments(&row)).then(|| due_date(issued_at, collected + 1));
    let mut active: policies::ActiveModel = row.clone().into();
    active.next_due_at = Set(next_due);
    let row = save_in_txn(txn, core, active).await?;
    match next_due {
        Some(due) => {
            timers::schedule_in_txn(txn, &core.clock, PREMIUM_DUE_TIMER, row.id, due).await?;
        }
        None => {
            let ends = term_end(&row).unwrap_or(issued_at);
            timers::schedule_in_txn(txn, &core.clock, TERM_END_TIMER, row.id, ends).await?;
        }
    }
    Ok(row)
}

/// Records a collected premium and tells the holder and the insurer.
async fn collected_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: policies::Model,
    installment: i32,
    case: &EscrowCase,
) -> InsuranceResult<policies::Model> {
    let issued_at = row.issued_at.unwrap_or(case.created_at);
    premiums::Entity::insert(premiums::ActiveModel {
        id: Set(Uuid::now_v7()),
        policy_id: Set(row.id),
        installment: Set(installment),
        case_id: Set(case.id.uuid()),
        due_at: Set(due_date(issued_at, installment)),
        created_at: Set(core.clock.now()),
    })
    .exec_without_returning(txn)
    .await?;
    let mut active: policies::ActiveModel = row.clone().into();
    active.installments_collected = Set(installment);
    let row = save_in_txn(txn, core, active).await?;
    let total = total_installments(&row);
    let number = number_of(&row);
    record_in_txn(
        txn,
        core,
        row.id,
        "premium_collected",
        Some(format!(
            "premium {installment} of {total} ({}) held for the insurer",
            case.amount
        )),
    )
    .await?;
    escrow::text_buyer_in_txn(
        txn,
        core,
        case,
        format!(
            "Holdfast: premium {installment} of {total} of policy {number} ({}, order {}) is \
             held for {}; it is paid when they ask and you confirm.",
            case.amount, case.order_number, case.payee_name
        ),
    )
    .await?;
    policy::publish_in_txn(
        txn,
        core,
        row.insurer_party_id,
        "premium.collected",
        serde_json::json!({
            "policy_number": row.policy_number,
            "installment": installment,
            "order_number": case.order_number,
            "amount": case.amount,
        }),
    )
    .await?;
    schedule_next_in_txn(txn, core, row).await
}

/// A premium fell due: collect it, or start the grace period.
#[tracing::instrument(name = "insurance.premium_due", skip_all, fields(policy_id = %policy_id, case_id = tracing::field::Empty))]
pub(crate) async fn premium_due_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    policy_id: Uuid,
) -> InsuranceResult<()> {
    let row = policy::lock_row(txn, policy_id).await?;
    let installment = row.installments_collected + 1;
    if row.state != PolicyState::InForce || installment > total_installments(&row) {
        return Ok(());
    }
    match collect_in_txn(txn, core, &row, installment).await? {
        Ok(case) => {
            collected_in_txn(txn, core, row, installment, &case).await?;
        }
        Err(error) => {
            let reason = collection_failure(&error).unwrap_or("refused");
            let to = row.state.miss_premium()?;
            let grace_ends_at = core.clock.now() + Duration::days(i64::from(row.grace_days));
            let mut active: policies::ActiveModel = row.clone().into();
            active.state = Set(to);
            active.overdue_installment = Set(Some(installment));
            active.grace_ends_at = Set(Some(grace_ends_at));
            active.next_due_at = Set(None);
            let row = save_in_txn(txn, core, active).await?;
            timers::schedule_in_txn(txn, &core.clock, GRACE_END_TIMER, row.id, grace_ends_at)
                .await?;
            let premium = premium_of(&row)?;
            record_in_txn(
                txn,
                core,
                row.id,
                "premium_failed",
                Some(format!(
                    "premium {installment} ({premium}) not collected: {reason}; grace until {} UTC",
                    grace_ends_at.format("%Y-%m-%d %H:%M")
                )),
            )
            .await?;
            text_holder_in_txn(
                txn,
                core,
                &row,
                format!(
                    "Holdfast: premium {installment} of policy {} ({premium}) could not be \
                     collected ({reason}). Pay it by {} UTC, or the policy lapses.",
                    number_of(&row),
                    grace_ends_at.format("%Y-%m-%d %H:%M")
                ),
            )
            .await?;
            policy::publish_in_txn(
                txn,
                core,
                row.insurer_party_id,
                "premium.failed",
                serde_json::json!({
                    "policy_number": row.policy_number,
                    "installment": installment,
                    "grace_ends_at": grace_ends_at,
                }),
            )
            .await?;
        }
    }
    Ok(())
}

/// The overdue premium was paid during grace: the policy is in force again, and the cycle
/// goes on from where it was (a premium already due falls due at once).
async fn cured_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: policies::Model,
    installment: i32,
    case: &EscrowCase,
) -> InsuranceResult<policies::Model> {
    let to = row.state.cure()?;
    let mut active: policies::ActiveModel = row.clone().into();
    active.state = Set(to);
    active.overdue_installment = Set(None);
    active.grace_ends_at = Set(None);
    let row = save_in_txn(txn, core, active).await?;
    timers::cancel_in_txn(txn, GRACE_END_TIMER, row.id).await?;
    record_in_txn(
        txn,
        core,
        row.id,
        "grace_cured",
        Some(format!("overdue premium {installment} paid")),
    )
    .await?;
    collected_in_txn(txn, core, row, installment, case).await
}

/// The holder pays the overdue premium during grace (after topping up the funding source):
/// collected at once, or refused with the reason.
#[tracing::instrument(name = "insurance.pay_overdue", skip_all, fields(policy_id = tracing::field::Empty, case_id = tracing::field::Empty))]
pub async fn pay_overdue_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    holder: PartyId,
    policy_ref: &PolicyRef,
) -> InsuranceResult<PolicyView> {
    let unlocked = policy::find_row(txn, policy_ref).await?;
    if unlocked.holder_party_id != holder.uuid() {
        return Err(CoreError::NotFound("policy").into());
    }
    let row = policy::lock_row(txn, unlocked.id).await?;
    row.state.cure()?;
    let installment = row
        .overdue_installment
        .unwrap_or(row.installments_collected + 1);
    let case = collect_in_txn(txn, core, &row, installment).await??;
    let row = cured_in_txn(txn, core, row, installment, &case).await?;
    policy::view_of(txn, core, &row, holder).await
}

/// The grace period ended: a last attempt, then the lapse.
#[tracing::instrument(name = "insurance.grace_end", skip_all, fields(policy_id = %policy_id))]
pub(crate) async fn grace_end_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    policy_id: Uuid,
) -> InsuranceResult<()> {
    let row = policy::lock_row(txn, policy_id).await?;
    if row.state != PolicyState::Grace {
        return Ok(());
    }
    let installment = row
        .overdue_installment
        .unwrap_or(row.installments_collected + 1);
    if let Ok(case) = collect_in_txn(txn, core, &row, installment).await? {
        cured_in_txn(txn, core, row, installment, &case).await?;
        return Ok(());
    }
    let to = row.state.lapse()?;
    let now = core.clock.now();
    let mut active: policies::ActiveModel = row.clone().into();
    active.state = Set(to);
    active.ended_at = Set(Some(now));
    active.next_due_at = Set(None);
    let row = save_in_txn(txn, core, active).await?;
    for kind in [PREMIUM_DUE_TIMER, TERM_END_TIMER] {
        timers::cancel_in_txn(txn, kind, row.id).await?;
    }
    let settle_by = schedule_unclaimed_in_txn(txn, core, row.id).await?;
    record_in_txn(
        txn,
        core,
        row.id,
        "lapsed",
        Some(format!(
            "premium {installment} unpaid at the end of the grace period"
        )),
    )
    .await?;
    text_holder_in_txn(
        txn,
        core,
        &row,
        format!(
            "Holdfast: policy {} has lapsed: premium {installment} was not paid by the end of \
             the grace period.",
            number_of(&row)
        ),
    )
    .await?;
    policy::publish_in_txn(
        txn,
        core,
        row.insurer_party_id,
        "policy.lapsed",
        serde_json::json!({
            "policy_number": row.policy_number,
            "unpaid_installment": installment,
            "lapsed_at": now,
            "settle_held_premiums_by": settle_by,
        }),
    )
    .await?;
    Ok(())
}

/// The term ended with every premium collected.
#[tracing::instrument(name = "insurance.term_end", skip_all, fields(policy_id = %policy_id))]
pub(crate) async fn term_end_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    policy_id: Uuid,
) -> InsuranceResult<()> {
    let row = policy::lock_row(txn, policy_id).await?;
    if row.state != PolicyState::InForce {
        // In grace, the grace period decides; anything else has ended already.
        return Ok(());
    }
    let to = row.state.mature()?;
    let mut active: policies::ActiveModel = row.clone().into();
    active.state = Set(to);
    active.ended_at = Set(Some(core.clock.now()));
    active.next_due_at = Set(None);
    let row = save_in_txn(txn, core, active).await?;
    let settle_by = schedule_unclaimed_in_txn(txn, core, row.id).await?;
    record_in_txn(
        txn,
        core,
        row.id,
        "matured",
        Some("the term ended".to_owned()),
    )
    .await?;
    policy::publish_in_txn(
        txn,
        core,
        row.insurer_party_id,
        "policy.matured",
        serde_json::json!({
            "policy_number": row.policy_number,
            "matured_at": row.ended_at,
            "settle_held_premiums_by": settle_by,
        }),
    )
    .await?;
    let note = if row.certificate_status == CertificateStatus::Delivered {
        ""
    } else {
        " (the certificate was never recorded as delivered)"
    };
    text_holder_in_txn(
        txn,
        core,
        &row,
        format!(
            "Holdfast: policy {} reached the end of its term{note}.",
            number_of(&row)
        ),
    )
    .await?;
    Ok(())
}

/// The policy ended (lapsed or matured): the insurer has [`SETTLEMENT_WINDOW_DAYS`] to ask for
/// what is held for it. Returns when the window closes.
async fn schedule_unclaimed_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    policy_id: Uuid,
) -> InsuranceResult<DateTime<Utc>> {
    let at = core.clock.now() + Duration::days(SETTLEMENT_WINDOW_DAYS);
    timers::schedule_in_txn(txn, &core.clock, UNCLAIMED_TIMER, policy_id, at).await?;
    Ok(at)
}

/// The settlement window of an ended policy closed: every premium still simply held (nobody
/// asked for it) returns to the holder's funding source. Locks the policy (the timer did),
/// then the premiums' cases by installment.
#[tracing::instrument(name = "insurance.unclaimed", skip_all, fields(policy_id = %policy_id))]
pub(crate) async fn unclaimed_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    policy_id: Uuid,
) -> InsuranceResult<()> {
    let row = policy::lock_row(txn, policy_id).await?;
    if !matches!(row.state, PolicyState::Lapsed | PolicyState::Matured) {
        return Ok(());
    }
    let currency = premium_of(&row)?.currency();
    let mut returned = Money::zero(currency);
    let mut installments = Vec::new();
    for premium in policy::premiums_of(txn, row.id).await? {
        let mut case = escrow::lock_case_in_txn(txn, CaseId::from_uuid(premium.case_id)).await?;
        if case.state != CaseState::Frozen {
            continue;
        }
        escrow::withdraw_in_txn(
            txn,
            core,
            &mut case,
            format!(
                "not claimed by the insurer within {SETTLEMENT_WINDOW_DAYS} days of the \
                 policy's end"
            ),
        )
        .await?;
        returned = returned.checked_add(&case.amount)?;
        installments.push(premium.installment);
    }
    if installments.is_empty() {
        return Ok(());
    }
    let list = installments
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    record_in_txn(
        txn,
        core,
        row.id,
        "unclaimed_premiums_returned",
        Some(format!(
            "premiums {list} ({returned}) not claimed by the insurer within \
             {SETTLEMENT_WINDOW_DAYS} days of the policy's end: returned to the holder"
        )),
    )
    .await?;
    text_holder_in_txn(
        txn,
        core,
        &row,
        format!(
            "Holdfast: {returned} held for policy {} was not claimed by the insurer within \
             {SETTLEMENT_WINDOW_DAYS} days of the policy's end and is returned to you.",
            number_of(&row)
        ),
    )
    .await?;
    policy::publish_in_txn(
        txn,
        core,
        row.insurer_party_id,
        "premiums.returned",
        serde_json::json!({
            "policy_number": row.policy_number,
            "installments": installments,
            "returned": returned,
            "reason": "not_claimed",
        }),
    )
    .await?;
    Ok(())
}
