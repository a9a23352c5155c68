//! Opening a case: the order's money held, its order number drawn, the buyer's phone asked —
//! or, for a buyer who consented ahead (a monthly premium), held at once.

use super::*;

/// Everything a vertical decides about an order before it is put in escrow.
#[derive(Debug, Clone)]
pub struct OpenCase {
    pub vertical: crate::vertical::Vertical,
    pub payer: PartyId,
    /// The card the buyer pays with; its phone confirms and its funding source pays.
    pub payer_card: CardId,
    pub payee: PartyId,
    pub payee_name: String,
    pub amount: Money,
    /// The platform's share, paid out of `amount` at settlement.
    pub commission: Money,
    /// What the first confirmation is for: `Order` (retail), `Payment` (a priced
    /// prescription), `Policy` (an insurance purchase).
    pub confirmation: ChallengePurpose,
    /// Further terms the phone shows and the code binds (a payment method…).
    pub terms: Option<String>,
}

/// Whether a purpose is the first confirmation of a case (the buyer's "yes" to the order).
pub fn is_order_confirmation(purpose: ChallengePurpose) -> bool {
    matches!(
        purpose,
        ChallengePurpose::Order | ChallengePurpose::Payment | ChallengePurpose::Policy
    )
}

/// Opens a case: holds the money, and asks the buyer's phone to approve the exact amount,
/// payee and order number.
pub async fn open_case_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    open: OpenCase,
) -> CoreResult<(EscrowCase, Challenge)> {
    let card = cards::get_card(txn, open.payer_card).await?;
    open_case_with_card_in_txn(txn, core, open, card).await
}

/// [`open_case_in_txn`] with the payer's card read already in this transaction (by the
/// caller's own checks): the card is checked again here, not read again.
pub async fn open_case_with_card_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    open: OpenCase,
    card: cards::Card,
) -> CoreResult<(EscrowCase, Challenge)> {
    if open.amount.is_zero() {
        return Err(CoreError::invalid("an order must be for more than zero"));
    }
    // Less than the amount, in its currency (another currency does not compare).
    if open.commission.checked_cmp(&open.amount) != Ok(std::cmp::Ordering::Less) {
        return Err(CoreError::invalid(
            "the commission must be less than the amount, in its currency",
        ));
    }
    if !is_order_confirmation(open.confirmation) {
        return Err(CoreError::invalid(
            "a case opens with an order, payment or policy confirmation",
        ));
    }
    let confirmation = open.confirmation;
    let (mut case, card) = hold_new_case_in_txn(txn, core, open, card, Opening::Asking).await?;
    let challenge = challenge::issue_challenge_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &core.policy,
        NewChallenge {
            purpose: confirmation,
            party: case.payer,
            phone: card.phone,
            subject: Some(case.id.uuid()),
            binding: case.binding(),
            note: None,
        },
    )
    .await?;
    case.order_challenge = Some(challenge.id);
    insert_case_in_txn(txn, &case).await?;
    crate::timers::schedule_in_txn(
        txn,
        &core.clock,
        ORDER_DEADLINE_TIMER,
        case.id.uuid(),
        challenge.expires_at,
    )
    .await?;
    record_events_in_txn(
        txn,
        core,
        case.id,
        vec![
            NewCaseEvent {
                kind: "opened",
                from: None,
                to: Some(case.state),
                detail: None,
            },
            confirmation::confirmation_sent(&challenge),
        ],
    )
    .await?;
    Ok((case, challenge))
}

/// How a case opens: asking the buyer's phone, or on a consent the buyer gave before.
#[derive(Debug, Clone, Copy)]
enum Opening {
    Asking,
    Preauthorised,
}

/// The steps every opening shares: the card pays for its holder, the buyer, in the amount's
/// currency; the money is held on its funding source (until the confirmation's deadline when
/// the phone is asked, with no deadline on a consent given before); an order number is drawn.
/// Returns the case, not yet written ([`insert_case_in_txn`]), and the card.
async fn hold_new_case_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    open: OpenCase,
    card: cards::Card,
    opening: Opening,
) -> CoreResult<(EscrowCase, cards::Card)> {
    let clock = &core.clock;
    let currency = open.amount.currency();
    card.ensure_active()?;
    if card.id != open.payer_card || card.holder != open.payer {
        return Err(CoreError::Forbidden("the card belongs to someone else"));
    }
    let funding = ledger::get_account(txn, card.funding_account).await?;
    if funding.currency != currency {
        return Err(CoreError::Money(
            crate::money::MoneyError::CurrencyMismatch {
                left: funding.currency,
                right: currency,
            },
        ));
    }
    let mode = funding::hold_mode(funding.kind).ok_or_else(|| {
        CoreError::invalid(match opening {
            Opening::Asking => "the card's account cannot fund purchases",
            Opening::Preauthorised => "the card's account cannot fund payments",
        })
    })?;
    let institution = funding
        .institution
        .ok_or_else(|| CoreError::invalid("the funding account has no institution"))?;
    let id = CaseId::new();
    // The use case's span names the case it opened.
    tracing::Span::current().record("case_id", tracing::field::display(id));
    let freezing = funding::freezing_shard_in_txn(
        txn,
        clock,
        institution,
        currency,
        funding::freezing_shard_of(id.uuid()),
    )
    .await?;
    let payee_account = withdrawal_account_in_txn(txn, core, open.payee, currency).await?;
    let order_number = unused_order_number(txn).await?;
    let now = clock.now();
    let (state, hold_expires_at) = match opening {
        Opening::Asking => (
            CaseState::AwaitingOrderConfirmation,
            Some(now + core.policy.ttl(open.confirmation)),
        ),
        Opening::Preauthorised => (CaseState::Frozen, None),
    };
    let hold = holds::place_hold_in_txn(
        txn,
        clock,
        PlaceHold {
            key: format!("case:{id}:hold"),
            funding_account: funding.id,
            freezing_account: freezing.id,
            institution,
            amount: open.amount,
            mode,
            expires_at: hold_expires_at,
            case: Some(id),
        },
    )
    .await?
    .into_inner();
    let case = EscrowCase {
        id,
        order_number,
        vertical: open.vertical,
        payer: open.payer,
        funding_account: funding.id,
        payee: open.payee,
        payee_account: payee_account.id,
        payee_name: open.payee_name,
        amount: open.amount,
        commission: open.commission,
        state,
        hold: Some(hold.id),
        order_challenge: None,
        settlement_challenge: None,
        payer_card: Some(card.id),
        settlement_amount: None,
        delivered_at: None,
        terms: open.terms,
        created_at: now,
        updated_at: now,
    };
    Ok((case, card))
}

/// Writes a new case's row.
async fn insert_case_in_txn(txn: &DatabaseTransaction, case: &EscrowCase) -> CoreResult<()> {
    escrow_cases::Entity::insert(escrow_cases::ActiveModel {
        id: Set(case.id.uuid()),
        order_number: Set(case.order_number.digits().to_owned()),
        vertical: Set(case.vertical),
        payer_party_id: Set(case.payer.uuid()),
        funding_account_id: Set(case.funding_account.uuid()),
        payee_party_id: Set(case.payee.uuid()),
        payee_account_id: Set(case.payee_account.uuid()),
        payee_name: Set(case.payee_name.clone()),
        amount: Set(MinorUnits(case.amount.minor())),
        commission: Set(MinorUnits(case.commission.minor())),
        currency: Set(case.amount.currency().code().to_owned()),
        state: Set(case.state),
        hold_id: Set(case.hold.map(|hold| hold.uuid())),
        order_challenge_id: Set(case.order_challenge.map(|challenge| challenge.uuid())),
        settlement_challenge_id: Set(case.settlement_challenge.map(|challenge| challenge.uuid())),
        payer_card_id: Set(case.payer_card.map(|card| card.uuid())),
        settlement_amount: Set(case
            .settlement_amount
            .map(|amount| MinorUnits(amount.minor()))),
        delivered_at: Set(case.delivered_at),
        terms: Set(case.terms.clone()),
        created_at: Set(case.created_at),
        updated_at: Set(case.updated_at),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// The payee's EC withdrawal account in `currency`, opened on first use.
pub async fn withdrawal_account_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    payee: PartyId,
    currency: Currency,
) -> CoreResult<ledger::Account> {
    funding::withdrawal_account_in_txn(txn, &core.clock, payee, currency).await
}

/// The platform's commission account in `currency`, opened on first use.
pub async fn commission_account_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    currency: Currency,
) -> CoreResult<ledger::Account> {
    ledger::get_or_open_keyed_account_in_txn(
        txn,
        &core.clock,
        NewAccount {
            key: Some(keys::commission(currency)),
            kind: AccountKind::Commission,
            owner: PLATFORM_PARTY,
            institution: None,
            currency,
            credit_limit: Money::zero(currency),
            credit_class: None,
        },
    )
    .await
}

pub(super) async fn unused_order_number(txn: &DatabaseTransaction) -> CoreResult<OrderNumber> {
    // 10^11 numbers: a clash is rare, and the unique index stays the final guard.
    for _ in 0..8 {
        let candidate = OrderNumber::generate();
        let taken = escrow_cases::Entity::find()
            .filter(escrow_cases::Column::OrderNumber.eq(candidate.digits()))
            .one(txn)
            .await?
            .is_some();
        if !taken {
            return Ok(candidate);
        }
    }
    Err(CoreError::Busy)
}

/// Opens a case whose buyer already consented to it (a monthly premium under a policy the
/// holder confirmed on the phone; PSD2 exempts recurring payments of the same amount to the
/// same payee): the money is held at once and the case starts frozen, without a new
/// confirmation. `authority` names the consent it rests on.
pub async fn open_preauthorised_case_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    open: OpenCase,
    authority: String,
) -> CoreResult<EscrowCase> {
    let currency = open.amount.currency();
    if open.amount.is_zero()
        || open.commission.currency() != currency
        || open.commission.checked_cmp(&open.amount) != Ok(std::cmp::Ordering::Less)
    {
        return Err(CoreError::invalid(
            "a case is for more than zero, with a commission less than its amount",
        ));
    }
    let card = cards::get_card(txn, open.payer_card).await?;
    let (case, _) = hold_new_case_in_txn(txn, core, open, card, Opening::Preauthorised).await?;
    insert_case_in_txn(txn, &case).await?;
    record_event_in_txn(
        txn,
        core,
        case.id,
        "opened_preauthorised",
        None,
        Some(CaseState::Frozen),
        Some(reason_text(Some(authority))?.unwrap_or_default()),
    )
    .await?;
    get_case(txn, case.id).await
}
