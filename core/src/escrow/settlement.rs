//! Paying out: how a case's money splits between the seller, the platform's commission, the
//! institution's card fee, a penalty and the buyer's refund; the settlement itself and its
//! reversal.

use super::*;

/// Who an operator found at fault in a dispute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    Buyer,
    Seller,
}

/// How much of the frozen money goes where when a case pays out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayoutSplit {
    pub to_seller: Money,
    pub commission: Money,
    pub institution_fee: Money,
    pub penalty: Money,
    pub seller_net: Money,
    pub refund: Money,
}

/// Splits the case's money: `to_seller` is released to the seller side (minus the platform's
/// commission and, for card funding, the institution's fee, both prorated to the released
/// part), the rest returns to the buyer; a penalty is taken from the share of the party at
/// fault. Every part adds up to the case's amount.
#[tracing::instrument(name = "escrow.settle", level = "debug", skip_all, fields(case_id = %case.id))]
pub async fn split_in_txn(
    txn: &DatabaseTransaction,
    case: &EscrowCase,
    to_seller: Money,
    penalty: Option<(Fault, Money)>,
) -> CoreResult<PayoutSplit> {
    let zero = Money::zero(case.amount.currency());
    let refund = case
        .amount
        .checked_sub(&to_seller)
        .map_err(|_| CoreError::invalid("cannot release more than the order's amount"))?;
    let commission = if to_seller.is_zero() {
        zero
    } else {
        case.commission.prorate(&to_seller, &case.amount)?
    };
    let funding = ledger::get_account(txn, case.funding_account).await?;
    let fee_rate = match (funding::hold_mode(funding.kind), funding.institution) {
        (Some(holds::HoldMode::Reserve), Some(institution)) => {
            funding::get_institution(txn, institution).await?.card_fee
        }
        _ => BasisPoints::ZERO,
    };
    let institution_fee = to_seller.share_at(fee_rate)?;
    let mut seller_net = to_seller
        .checked_sub(&commission)?
        .checked_sub(&institution_fee)
        .map_err(|_| CoreError::invalid("commission and fee exceed the released amount"))?;
    let mut refund_net = refund;
    let penalty_amount = match penalty {
        None => zero,
        Some((fault, amount)) => {
            let share = match fault {
                Fault::Seller => &mut seller_net,
                Fault::Buyer => &mut refund_net,
            };
            *share = share.checked_sub(&amount).map_err(|_| {
                CoreError::invalid("a penalty cannot exceed the share of the party at fault")
            })?;
            amount
        }
    };
    Ok(PayoutSplit {
        to_seller,
        commission,
        institution_fee,
        penalty: penalty_amount,
        seller_net,
        refund: refund_net,
    })
}

pub(super) async fn keyed_platform_account(
    txn: &DatabaseTransaction,
    core: &Core,
    key: String,
    kind: AccountKind,
    owner: PartyId,
    currency: Currency,
) -> CoreResult<ledger::Account> {
    ledger::get_or_open_keyed_account_in_txn(
        txn,
        &core.clock,
        NewAccount {
            key: Some(key),
            kind,
            owner,
            institution: None,
            currency,
            credit_limit: Money::zero(currency),
            credit_class: None,
        },
    )
    .await
}

/// Pays the case out out of the freezing account: the seller's withdrawal account, the
/// platform's commission, the card institution's fee and any penalty, in one transfer; the
/// rest of the hold returns to the buyer. A split that releases nothing voids the hold.
pub(super) async fn pay_out_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    split: &PayoutSplit,
    key_suffix: &str,
) -> CoreResult<()> {
    let hold = hold_of(case).await?;
    let currency = case.amount.currency();
    // Everything that leaves the buyer: the seller's part and, if the buyer is at fault, the
    // penalty out of the refund. The hold returns the rest.
    let posted = split
        .seller_net
        .checked_add(&split.commission)?
        .checked_add(&split.institution_fee)?
        .checked_add(&split.penalty)?;
    if posted.is_zero() {
        holds::void_hold_in_txn(
            txn,
            &core.clock,
            hold,
            &format!("case:{}:{key_suffix}", case.id),
        )
        .await?;
        return Ok(());
    }
    let mut payouts = vec![Payout {
        account: case.payee_account,
        amount: split.seller_net,
    }];
    if !split.commission.is_zero() {
        let account = commission_account_in_txn(txn, core, currency).await?;
        payouts.push(Payout {
            account: account.id,
            amount: split.commission,
        });
    }
    if !split.institution_fee.is_zero() {
        let funding = ledger::get_account(txn, case.funding_account).await?;
        let institution = funding
            .institution
            .ok_or_else(|| CoreError::invalid("the funding account has no institution"))?;
        let account = keyed_platform_account(
            txn,
            core,
            keys::institution_fee(institution, currency),
            AccountKind::InstitutionFee,
            institution,
            currency,
        )
        .await?;
        payouts.push(Payout {
            account: account.id,
            amount: split.institution_fee,
        });
    }
    if !split.penalty.is_zero() {
        let account = keyed_platform_account(
            txn,
            core,
            keys::penalty(currency),
            AccountKind::Penalty,
            PLATFORM_PARTY,
            currency,
        )
        .await?;
        payouts.push(Payout {
            account: account.id,
            amount: split.penalty,
        });
    }
    holds::post_hold_in_txn(
        txn,
        &core.clock,
        hold,
        &format!("case:{}:{key_suffix}", case.id),
        posted,
        &payouts,
    )
    .await?;
    Ok(())
}

/// Settles the amount the seller asked for (the buyer approved, or the settlement period
/// ended); any rest of the order returns to the buyer.
pub(super) async fn settle_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    how: SettledBy,
) -> CoreResult<()> {
    let to = case.state.settle()?;
    outcomes::count(Outcome::Settled(case.vertical, how));
    crate::timers::cancel_in_txn(txn, AUTO_SETTLE_TIMER, case.id.uuid()).await?;
    let split = split_in_txn(txn, case, case.amount_to_settle(), None).await?;
    pay_out_in_txn(txn, core, case, &split, "settle").await?;
    move_to_in_txn(
        txn,
        core,
        case,
        to,
        match how {
            SettledBy::Approved => "settled_on_approval",
            SettledBy::AutoSettled => "auto_settled",
            SettledBy::Mediated => "mediated",
        },
        Some(format!(
            "{} paid, {} returned",
            split.to_seller, split.refund
        )),
    )
    .await?;
    publish_to_payee_in_txn(txn, core, case, "order.settled", &split).await?;
    let text = format!(
        "Holdfast: {} paid to {} for order {}.",
        split.to_seller, case.payee_name, case.order_number
    );
    tell_payer_in_txn(txn, core, case, text).await
}

pub(super) async fn publish_to_payee_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &EscrowCase,
    kind: &str,
    split: &PayoutSplit,
) -> CoreResult<()> {
    crate::events::publish_in_txn(
        txn,
        &core.clock,
        case.payee,
        kind,
        serde_json::json!({
            "order_number": case.order_number,
            "state": case.state,
            "released": split.to_seller,
            "payout": split.seller_net,
            "commission": split.commission,
            "institution_fee": split.institution_fee,
            "penalty": split.penalty,
            "returned_to_buyer": split.refund,
        }),
    )
    .await?;
    Ok(())
}

/// Pays a settled case back to its buyer in full: what the payee, the platform and the card
/// institution received from it is taken back (from their accounts, so the payee must still
/// hold it) and returned to the buyer's funding source. Used for cancellations within a
/// cooling-off period; `reason` goes to the timeline.
#[tracing::instrument(name = "escrow.reverse_settlement", level = "debug", skip_all, fields(case_id = %case.id))]
pub async fn reverse_settlement_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    reason: String,
) -> CoreResult<Money> {
    let to = case.state.reverse()?;
    let hold = hold_of(case).await?;
    let settle_key = format!("hold:{hold}:settle");
    let settled = crate::entities::transfers::Entity::find()
        .filter(crate::entities::transfers::Column::IdempotencyKey.eq(settle_key))
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("settlement transfer"))?;
    let postings = crate::entities::postings::Entity::find()
        .filter(crate::entities::postings::Column::TransferId.eq(settled.id))
        .all(txn)
        .await?;
    let currency = case.amount.currency();
    let mut legs = Vec::new();
    let mut returned = Money::zero(currency);
    for posting in postings {
        let account = AccountId::from_uuid(posting.account_id);
        // Every credit of the settlement but the remainder that already went back to the buyer.
        if posting.amount.0 > 0 && account != case.funding_account {
            let amount = Money::from_minor(posting.amount.0, currency)?;
            legs.push(ledger::Leg::debit(account, amount));
            returned = returned.checked_add(&amount)?;
        }
    }
    if returned.is_zero() {
        return Err(CoreError::invalid("nothing of this case was paid out"));
    }
    legs.push(ledger::Leg::credit(case.funding_account, returned));
    ledger::post_transfer_in_txn(
        txn,
        &core.clock,
        ledger::NewTransfer {
            key: format!("case:{}:reverse", case.id),
            kind: ledger::TransferKind::Refund,
            currency,
            legs,
            hold: Some(hold),
            case: Some(case.id),
        },
    )
    .await?;
    move_to_in_txn(
        txn,
        core,
        case,
        to,
        "settlement_reversed",
        Some(format!(
            "{returned} returned: {}",
            reason_text(Some(reason))?.unwrap_or_default()
        )),
    )
    .await?;
    let text = format!(
        "Holdfast: {returned} returned to you for order {}.",
        case.order_number
    );
    tell_payer_in_txn(txn, core, case, text).await?;
    Ok(returned)
}
