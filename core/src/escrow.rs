//! The escrow case: the money of one order, from the buyer's first "yes" to settlement.
//!
//! ```text
//! awaiting_order_confirmation ─approve→ frozen ─dispatch→ in_delivery ─deliver→ delivered
//!        │ deny / expire / cancel          │ cancel                                  │
//!        ▼                                 ▼                                         ▼
//!   denied / expired / cancelled       cancelled              settlement_requested (also from
//!                                                              frozen / in_delivery)
//!                                                              │ approve or silence  │ dispute
//!                                                              ▼                     ▼
//!                                                           settled              disputed
//!                                                                        ─mediate→ settled | refunded
//! ```
//! The state machine is pure ([`CaseState`]'s methods); the `*_in_txn` functions apply a
//! transition together with its money movement and messages, in the caller's transaction.

use crate::Core;
use crate::cards::{self, CardId};
use crate::challenge::{
    self, Answer, Challenge, ChallengeBinding, ChallengePurpose, Decision, NewChallenge,
};
use crate::db::{self, MinorUnits};
use crate::entities::{case_events, escrow_cases};
use crate::error::{CoreError, CoreResult};
use crate::funding;
use crate::holds::{self, Payout, PlaceHold};
use crate::ids::{AccountId, CaseId, ChallengeId, HoldId, PartyId};
use crate::ledger::{self, AccountKind, NewAccount, keys};
use crate::money::{Currency, Money};
use crate::order_number::OrderNumber;
use crate::outbox::{self, PhoneMessage};
use crate::parties::PLATFORM_PARTY;
use crate::phone_number::PhoneNumber;
use crate::rate::BasisPoints;
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DatabaseTransaction, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use utoipa::ToSchema;

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::N(32))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    /// The buyer's phone has been asked to approve the order; the money is already held.
    AwaitingOrderConfirmation,
    /// Approved: the money sits in the freezing account.
    Frozen,
    InDelivery,
    /// The buyer handed the order number over on delivery.
    Delivered,
    /// The seller quoted the order number to be paid; the buyer's phone has been asked.
    SettlementRequested,
    Settled,
    Denied,
    Expired,
    Cancelled,
    /// The buyer disputed the settlement: the money stays frozen until an operator mediates.
    Disputed,
    Refunded,
    /// The seller refused the order before dispatch; the money returned.
    Refused,
}

impl CaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::AwaitingOrderConfirmation => "awaiting_order_confirmation",
            CaseState::Frozen => "frozen",
            CaseState::InDelivery => "in_delivery",
            CaseState::Delivered => "delivered",
            CaseState::SettlementRequested => "settlement_requested",
            CaseState::Settled => "settled",
            CaseState::Denied => "denied",
            CaseState::Expired => "expired",
            CaseState::Cancelled => "cancelled",
            CaseState::Disputed => "disputed",
            CaseState::Refunded => "refunded",
            CaseState::Refused => "refused",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            CaseState::Settled
                | CaseState::Denied
                | CaseState::Expired
                | CaseState::Cancelled
                | CaseState::Refunded
                | CaseState::Refused
        )
    }

    fn refuse_action(self, action: &'static str) -> TransitionError {
        TransitionError {
            state: self,
            action,
        }
    }

    pub fn approve_order(self) -> Result<CaseState, TransitionError> {
        match self {
            CaseState::AwaitingOrderConfirmation => Ok(CaseState::Frozen),
            _ => Err(self.refuse_action("approve the order")),
        }
    }

    pub fn deny_order(self) -> Result<CaseState, TransitionError> {
        match self {
            CaseState::AwaitingOrderConfirmation => Ok(CaseState::Denied),
            _ => Err(self.refuse_action("deny the order")),
        }
    }

    pub fn expire_order(self) -> Result<CaseState, TransitionError> {
        match self {
            CaseState::AwaitingOrderConfirmation => Ok(CaseState::Expired),
            _ => Err(self.refuse_action("expire the order")),
        }
    }

    /// The buyer may cancel until the goods leave the seller.
    pub fn cancel(self) -> Result<CaseState, TransitionError> {
        match self {
            CaseState::AwaitingOrderConfirmation | CaseState::Frozen => Ok(CaseState::Cancelled),
            _ => Err(self.refuse_action("cancel the order")),
        }
    }

    /// A buyer's statutory right to withdraw (an insurance free-look period, a cooling-off
    /// period) reaches past delivery: anything not yet settled or in dispute returns.
    pub fn withdraw_cooling_off(self) -> Result<CaseState, TransitionError> {
        match self {
            CaseState::AwaitingOrderConfirmation
            | CaseState::Frozen
            | CaseState::InDelivery
            | CaseState::Delivered
            | CaseState::SettlementRequested => Ok(CaseState::Cancelled),
            _ => Err(self.refuse_action("withdraw from the order")),
        }
    }

    /// The seller may refuse an order it has not dispatched.
    pub fn refuse(self) -> Result<CaseState, TransitionError> {
        match self {
            CaseState::AwaitingOrderConfirmation | CaseState::Frozen => Ok(CaseState::Refused),
            _ => Err(self.refuse_action("refuse the order")),
        }
    }

    pub fn dispatch(self) -> Result<CaseState, TransitionError> {
        match self {
            CaseState::Frozen | CaseState::InDelivery => Ok(CaseState::InDelivery),
            _ => Err(self.refuse_action("dispatch the order")),
        }
    }

    pub fn record_delivery(self) -> Result<CaseState, TransitionError> {
        match self {
            CaseState::Frozen | CaseState::InDelivery => Ok(CaseState::Delivered),
            _ => Err(self.refuse_action("record the delivery")),
        }
    }

    pub fn request_settlement(self) -> Result<CaseState, TransitionError> {
        match self {
            CaseState::Frozen | CaseState::InDelivery | CaseState::Delivered => {
                Ok(CaseState::SettlementRequested)
            }
            _ => Err(self.refuse_action("request settlement")),
        }
    }

    /// The buyer approved, or did not answer in time.
    pub fn settle(self) -> Result<CaseState, TransitionError> {
        match self {
            CaseState::SettlementRequested => Ok(CaseState::Settled),
            _ => Err(self.refuse_action("settle")),
        }
    }

    pub fn dispute(self) -> Result<CaseState, TransitionError> {
        match self {
            CaseState::SettlementRequested => Ok(CaseState::Disputed),
            _ => Err(self.refuse_action("dispute")),
        }
    }

    /// An operator's mediation: to the seller (settled) or back to the buyer, in full or in
    /// part (refunded when nothing at all reaches the seller).
    pub fn mediate(self, paid_to_seller: bool) -> Result<CaseState, TransitionError> {
        match self {
            CaseState::Disputed if paid_to_seller => Ok(CaseState::Settled),
            CaseState::Disputed => Ok(CaseState::Refunded),
            _ => Err(self.refuse_action("mediate")),
        }
    }

    /// A settled case paid back to the buyer (a cancellation within a cooling-off period).
    pub fn reverse(self) -> Result<CaseState, TransitionError> {
        match self {
            CaseState::Settled => Ok(CaseState::Refunded),
            _ => Err(self.refuse_action("reverse the settlement")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not allowed while the order is {}: {action}", state.as_str())]
pub struct TransitionError {
    pub state: CaseState,
    pub action: &'static str,
}

impl From<TransitionError> for CoreError {
    fn from(error: TransitionError) -> Self {
        CoreError::InvalidTransition {
            state: error.state.as_str(),
            action: error.action,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscrowCase {
    pub id: CaseId,
    pub order_number: OrderNumber,
    pub vertical: crate::vertical::Vertical,
    pub payer: PartyId,
    pub funding_account: AccountId,
    pub payee: PartyId,
    pub payee_account: AccountId,
    pub payee_name: String,
    pub amount: Money,
    pub commission: Money,
    pub state: CaseState,
    pub hold: Option<HoldId>,
    pub order_challenge: Option<ChallengeId>,
    pub settlement_challenge: Option<ChallengeId>,
    /// The card the buyer paid with: its phone confirms, and a blocked card cannot.
    pub payer_card: Option<CardId>,
    /// What the seller asked to be paid: all of the order, or part of it.
    pub settlement_amount: Option<Money>,
    /// When the buyer handed the order number over on delivery.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Terms the buyer approved besides the amount (a payment method…).
    pub terms: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<escrow_cases::Model> for EscrowCase {
    type Error = CoreError;

    fn try_from(row: escrow_cases::Model) -> CoreResult<Self> {
        let currency = Currency::from_str(&row.currency)?;
        Ok(EscrowCase {
            id: CaseId::from_uuid(row.id),
            order_number: OrderNumber::from_stored(row.order_number),
            vertical: row.vertical,
            payer: PartyId::from_uuid(row.payer_party_id),
            funding_account: AccountId::from_uuid(row.funding_account_id),
            payee: PartyId::from_uuid(row.payee_party_id),
            payee_account: AccountId::from_uuid(row.payee_account_id),
            payee_name: row.payee_name,
            amount: Money::from_minor(row.amount.0, currency)?,
            commission: Money::from_minor(row.commission.0, currency)?,
            state: row.state,
            hold: row.hold_id.map(HoldId::from_uuid),
            order_challenge: row.order_challenge_id.map(ChallengeId::from_uuid),
            settlement_challenge: row.settlement_challenge_id.map(ChallengeId::from_uuid),
            payer_card: row.payer_card_id.map(CardId::from_uuid),
            settlement_amount: row
                .settlement_amount
                .map(|m| Money::from_minor(m.0, currency))
                .transpose()?,
            delivered_at: row.delivered_at,
            terms: row.terms,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

impl EscrowCase {
    /// What the payee receives on full settlement.
    pub fn payout(&self) -> CoreResult<Money> {
        Ok(self.amount.checked_sub(&self.commission)?)
    }

    /// What the seller is asking for: the requested part, or the whole order.
    pub fn amount_to_settle(&self) -> Money {
        self.settlement_amount.unwrap_or(self.amount)
    }

    /// What the buyer's phone confirms for `purpose`: amount, payee and order number. A
    /// settlement confirms the amount the seller asked for.
    pub fn binding_for(&self, purpose: ChallengePurpose) -> ChallengeBinding {
        let amount = match purpose {
            ChallengePurpose::Settlement => self.amount_to_settle(),
            _ => self.amount,
        };
        ChallengeBinding {
            amount: Some(amount),
            payee: Some(self.payee_name.clone()),
            order_number: Some(self.order_number.to_string()),
            terms: match purpose {
                ChallengePurpose::Settlement => None,
                _ => self.terms.clone(),
            },
        }
    }

    /// The order's binding (what the buyer approved when ordering).
    pub fn binding(&self) -> ChallengeBinding {
        self.binding_for(ChallengePurpose::Order)
    }
}

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
    let clock = &core.clock;
    let currency = open.amount.currency();
    if open.amount.is_zero() {
        return Err(CoreError::invalid("an order must be for more than zero"));
    }
    // Less than the amount, in its currency (another currency does not compare).
    if open.commission.checked_cmp(&open.amount) != Ok(std::cmp::Ordering::Less) {
        return Err(CoreError::invalid(
            "the commission must be less than the amount, in its currency",
        ));
    }
    let card = cards::get_card(txn, open.payer_card).await?;
    card.ensure_active()?;
    if card.holder != open.payer {
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
    let mode = funding::hold_mode(funding.kind)
        .ok_or_else(|| CoreError::invalid("the card's account cannot fund purchases"))?;
    let institution = funding
        .institution
        .ok_or_else(|| CoreError::invalid("the funding account has no institution"))?;
    let id = CaseId::new();
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
    if !is_order_confirmation(open.confirmation) {
        return Err(CoreError::invalid(
            "a case opens with an order, payment or policy confirmation",
        ));
    }
    let order_ttl = core.policy.ttl(open.confirmation);
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
            expires_at: Some(now + order_ttl),
            case: Some(id),
        },
    )
    .await?
    .into_inner();

    let mut case = EscrowCase {
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
        state: CaseState::AwaitingOrderConfirmation,
        hold: Some(hold.id),
        order_challenge: None,
        settlement_challenge: None,
        payer_card: Some(card.id),
        settlement_amount: None,
        delivered_at: None,
        terms: open.terms.clone(),
        created_at: now,
        updated_at: now,
    };
    let challenge = challenge::issue_challenge_in_txn(
        txn,
        clock,
        &core.keys,
        &core.policy,
        NewChallenge {
            purpose: open.confirmation,
            party: open.payer,
            phone: card.phone.clone(),
            subject: Some(id.uuid()),
            binding: case.binding(),
            note: None,
        },
    )
    .await?;
    case.order_challenge = Some(challenge.id);

    escrow_cases::Entity::insert(escrow_cases::ActiveModel {
        id: Set(id.uuid()),
        order_number: Set(case.order_number.digits().to_owned()),
        vertical: Set(case.vertical),
        payer_party_id: Set(case.payer.uuid()),
        funding_account_id: Set(case.funding_account.uuid()),
        payee_party_id: Set(case.payee.uuid()),
        payee_account_id: Set(case.payee_account.uuid()),
        payee_name: Set(case.payee_name.clone()),
        amount: Set(MinorUnits(case.amount.minor())),
        commission: Set(MinorUnits(case.commission.minor())),
        currency: Set(currency.code().to_owned()),
        state: Set(case.state),
        hold_id: Set(Some(hold.id.uuid())),
        order_challenge_id: Set(Some(challenge.id.uuid())),
        settlement_challenge_id: Set(None),
        payer_card_id: Set(Some(card.id.uuid())),
        settlement_amount: Set(None),
        delivered_at: Set(None),
        terms: Set(case.terms.clone()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    crate::timers::schedule_in_txn(
        txn,
        clock,
        ORDER_DEADLINE_TIMER,
        id.uuid(),
        challenge.expires_at,
    )
    .await?;
    record_event_in_txn(txn, core, id, "opened", None, Some(case.state), None).await?;
    note_confirmation_in_txn(txn, core, id, &challenge).await?;
    Ok((case, challenge))
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

async fn unused_order_number(txn: &DatabaseTransaction) -> CoreResult<OrderNumber> {
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

pub async fn get_case(db: &impl ConnectionTrait, id: CaseId) -> CoreResult<EscrowCase> {
    escrow_cases::Entity::find_by_id(id.uuid())
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("order"))
        .and_then(EscrowCase::try_from)
}

pub async fn find_case_by_number(
    db: &impl ConnectionTrait,
    number: &OrderNumber,
) -> CoreResult<Option<EscrowCase>> {
    escrow_cases::Entity::find()
        .filter(escrow_cases::Column::OrderNumber.eq(number.digits()))
        .one(db)
        .await?
        .map(EscrowCase::try_from)
        .transpose()
}

/// Reads the case and locks it until the transaction ends: every transition starts here.
pub async fn lock_case_in_txn(txn: &DatabaseTransaction, id: CaseId) -> CoreResult<EscrowCase> {
    escrow_cases::Entity::find_by_id(id.uuid())
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("order"))
        .and_then(EscrowCase::try_from)
}

pub async fn lock_case_by_number_in_txn(
    txn: &DatabaseTransaction,
    number: &OrderNumber,
) -> CoreResult<EscrowCase> {
    escrow_cases::Entity::find()
        .filter(escrow_cases::Column::OrderNumber.eq(number.digits()))
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("order"))
        .and_then(EscrowCase::try_from)
}

/// Writes a transition, guarded by the state it was computed from.
async fn move_to_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    to: CaseState,
    event: &str,
    detail: Option<String>,
) -> CoreResult<()> {
    let now = core.clock.now();
    let result = escrow_cases::Entity::update_many()
        .col_expr(escrow_cases::Column::State, Expr::value(to))
        .col_expr(escrow_cases::Column::UpdatedAt, Expr::value(now))
        .col_expr(
            escrow_cases::Column::SettlementChallengeId,
            Expr::value(case.settlement_challenge.map(|c| c.uuid())),
        )
        .col_expr(
            escrow_cases::Column::SettlementAmount,
            Expr::value(case.settlement_amount.map(|m| MinorUnits(m.minor()))),
        )
        .col_expr(
            escrow_cases::Column::DeliveredAt,
            Expr::value(case.delivered_at),
        )
        .filter(escrow_cases::Column::Id.eq(case.id.uuid()))
        .filter(escrow_cases::Column::State.eq(case.state))
        .exec(txn)
        .await?;
    if result.rows_affected != 1 {
        // The row lock makes this unreachable; the guard keeps it so without one.
        return Err(CoreError::Busy);
    }
    let from = case.state;
    case.state = to;
    case.updated_at = now;
    record_event_in_txn(txn, core, case.id, event, Some(from), Some(to), detail).await
}

pub async fn record_event_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: CaseId,
    kind: &str,
    from: Option<CaseState>,
    to: Option<CaseState>,
    detail: Option<String>,
) -> CoreResult<()> {
    case_events::Entity::insert(case_events::ActiveModel {
        id: Set(Uuid::now_v7()),
        case_id: Set(case.uuid()),
        kind: Set(kind.to_owned()),
        from_state: Set(from.map(|s| s.as_str().to_owned())),
        to_state: Set(to.map(|s| s.as_str().to_owned())),
        detail: Set(detail),
        at: Set(core.clock.now()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CaseEvent {
    pub kind: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

pub const MAX_EVENTS: u64 = 200;

/// The case's history, oldest first.
pub async fn events(db: &impl ConnectionTrait, case: CaseId) -> CoreResult<Vec<CaseEvent>> {
    Ok(case_events::Entity::find()
        .filter(case_events::Column::CaseId.eq(case.uuid()))
        .order_by_asc(case_events::Column::At)
        .order_by_asc(case_events::Column::Id)
        .limit(MAX_EVENTS)
        .all(db)
        .await?
        .into_iter()
        .map(|row| CaseEvent {
            kind: row.kind,
            from_state: row.from_state,
            to_state: row.to_state,
            detail: row.detail,
            at: row.at,
        })
        .collect())
}

async fn hold_of(case: &EscrowCase) -> CoreResult<HoldId> {
    case.hold
        .ok_or_else(|| CoreError::invalid("the order holds no money"))
}

/// The phone that confirms for the case's buyer: the one mapped to the card it paid with.
async fn payer_phone_in_txn(
    txn: &DatabaseTransaction,
    case: &EscrowCase,
) -> CoreResult<Option<PhoneNumber>> {
    match case.payer_card {
        Some(card) => Ok(Some(cards::get_card(txn, card).await?.phone)),
        None => Ok(None),
    }
}

async fn tell_payer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &EscrowCase,
    text: String,
) -> CoreResult<()> {
    if let Some(phone) = payer_phone_in_txn(txn, case).await? {
        // The buyer's timeline keeps every text it was sent about the order.
        record_event_in_txn(
            txn,
            core,
            case.id,
            "message",
            None,
            None,
            Some(text.clone()),
        )
        .await?;
        outbox::enqueue_phone_in_txn(
            txn,
            &core.clock,
            PhoneMessage {
                to: phone,
                body: text,
                challenge: None,
            },
        )
        .await?;
    }
    Ok(())
}

/// Records in the timeline that a confirmation went to the phone (never its code).
async fn note_confirmation_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: CaseId,
    challenge: &Challenge,
) -> CoreResult<()> {
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
    record_event_in_txn(
        txn,
        core,
        case,
        "confirmation_sent",
        None,
        None,
        Some(detail),
    )
    .await
}

/// Approval of the order: the money stays frozen, no longer on a deadline.
async fn approve_order_in_txn(
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

async fn release_hold_in_txn(
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

async fn deny_order_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
) -> CoreResult<()> {
    let to = case.state.deny_order()?;
    release_hold_in_txn(txn, core, case, "deny").await?;
    move_to_in_txn(txn, core, case, to, "order_denied", None).await
}

async fn expire_order_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
) -> CoreResult<()> {
    let to = case.state.expire_order()?;
    let hold = hold_of(case).await?;
    holds::expire_hold_in_txn(txn, &core.clock, hold).await?;
    move_to_in_txn(txn, core, case, to, "order_expired", None).await
}

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

async fn keyed_platform_account(
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
async fn pay_out_in_txn(
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
async fn settle_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    how: &str,
) -> CoreResult<()> {
    let to = case.state.settle()?;
    crate::timers::cancel_in_txn(txn, AUTO_SETTLE_TIMER, case.id.uuid()).await?;
    let split = split_in_txn(txn, case, case.amount_to_settle(), None).await?;
    pay_out_in_txn(txn, core, case, &split, "settle").await?;
    move_to_in_txn(
        txn,
        core,
        case,
        to,
        how,
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

async fn publish_to_payee_in_txn(
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

pub const MAX_REASON_CHARS: usize = 1_000;

fn reason_text(reason: Option<String>) -> CoreResult<Option<String>> {
    match reason.map(|r| r.trim().to_owned()) {
        Some(r) if r.chars().count() > MAX_REASON_CHARS => Err(CoreError::invalid(format!(
            "a reason has at most {MAX_REASON_CHARS} characters"
        ))),
        Some(r) if r.is_empty() => Ok(None),
        other => Ok(other),
    }
}

async fn dispute_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    reason: Option<String>,
) -> CoreResult<()> {
    let reason = reason_text(reason)?;
    let to = case.state.dispute()?;
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
pub async fn mediate_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    mediation: Mediation,
) -> CoreResult<PayoutSplit> {
    let note = reason_text(Some(mediation.note))?;
    let to = case.state.mediate(!mediation.to_seller.is_zero())?;
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
pub async fn answer_case_challenge_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    challenge_id: ChallengeId,
    code: &str,
    decision: Decision,
) -> CoreResult<AnswerEffect> {
    challenge::parse_code(code)?;
    // Lock order: the case, then its challenge (as cancelling and the timers do).
    let unlocked = challenge::get_challenge(txn, challenge_id).await?;
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
            settle_in_txn(txn, core, &mut case, "settled_on_approval").await?;
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

/// [`answer_case_challenge_in_txn`] in a transaction of its own; a refusal is committed, then
/// returned as the error.
pub async fn answer_case_challenge(
    db: &DatabaseConnection,
    core: &Core,
    challenge_id: ChallengeId,
    code: &str,
    decision: Decision,
) -> CoreResult<(EscrowCase, CaseOutcome)> {
    let txn = db::begin_write(db).await?;
    let effect = answer_case_challenge_in_txn(&txn, core, challenge_id, code, decision).await?;
    txn.commit().await?;
    core.wake_outbox();
    match effect {
        AnswerEffect::Applied(case, outcome) => Ok((*case, outcome)),
        AnswerEffect::Refused(error) => Err(error),
    }
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
            settle_in_txn(txn, core, &mut case, "auto_settled").await
        }
        ORDER_DEADLINE_TIMER | AUTO_SETTLE_TIMER => Ok(()),
        other => Err(CoreError::invalid(format!("not a case timer: {other}"))),
    }
}

/// What the buyer is told of the delivery when asked to release the money.
fn delivery_evidence(case: &EscrowCase) -> String {
    match case.delivered_at {
        Some(at) => format!("delivered {} UTC", at.format("%Y-%m-%d %H:%M")),
        None => "NO DELIVERY RECORDED: deny if you did not receive it".to_owned(),
    }
}

/// The seller asks to be paid, quoting the order number, for all of the order or part of it
/// (the rest then returns to the buyer): the buyer's phone is asked to release that amount,
/// and is told what is known of the delivery. Without an answer the money is released when
/// the settlement period ends. Only the case's payee may ask.
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
    record_event_in_txn(
        txn,
        core,
        case.id,
        "settlement_confirmation_renewed",
        None,
        None,
        None,
    )
    .await?;
    note_confirmation_in_txn(txn, core, case.id, &challenge).await?;
    Ok(challenge)
}

/// The buyer cancels before dispatch: the hold is voided and a pending order confirmation
/// withdrawn.
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
    let clock = &core.clock;
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
    card.ensure_active()?;
    if card.holder != open.payer {
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
    let mode = funding::hold_mode(funding.kind)
        .ok_or_else(|| CoreError::invalid("the card's account cannot fund payments"))?;
    let institution = funding
        .institution
        .ok_or_else(|| CoreError::invalid("the funding account has no institution"))?;
    let id = CaseId::new();
    let freezing = funding::freezing_shard_in_txn(
        txn,
        clock,
        institution,
        currency,
        funding::freezing_shard_of(id.uuid()),
    )
    .await?;
    let payee_account = withdrawal_account_in_txn(txn, core, open.payee, currency).await?;
    let now = clock.now();
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
            expires_at: None,
            case: Some(id),
        },
    )
    .await?
    .into_inner();
    let order_number = unused_order_number(txn).await?;
    escrow_cases::Entity::insert(escrow_cases::ActiveModel {
        id: Set(id.uuid()),
        order_number: Set(order_number.digits().to_owned()),
        vertical: Set(open.vertical),
        payer_party_id: Set(open.payer.uuid()),
        funding_account_id: Set(funding.id.uuid()),
        payee_party_id: Set(open.payee.uuid()),
        payee_account_id: Set(payee_account.id.uuid()),
        payee_name: Set(open.payee_name.clone()),
        amount: Set(MinorUnits(open.amount.minor())),
        commission: Set(MinorUnits(open.commission.minor())),
        currency: Set(currency.code().to_owned()),
        state: Set(CaseState::Frozen),
        hold_id: Set(Some(hold.id.uuid())),
        order_challenge_id: Set(None),
        settlement_challenge_id: Set(None),
        payer_card_id: Set(Some(card.id.uuid())),
        settlement_amount: Set(None),
        delivered_at: Set(None),
        terms: Set(open.terms.clone()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    record_event_in_txn(
        txn,
        core,
        id,
        "opened_preauthorised",
        None,
        Some(CaseState::Frozen),
        Some(reason_text(Some(authority))?.unwrap_or_default()),
    )
    .await?;
    get_case(txn, id).await
}

/// Pays a settled case back to its buyer in full: what the payee, the platform and the card
/// institution received from it is taken back (from their accounts, so the payee must still
/// hold it) and returned to the buyer's funding source. Used for cancellations within a
/// cooling-off period; `reason` goes to the timeline.
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

/// The oldest cases of `vertical` in `state` (an operator's queue).
pub async fn cases_in_state(
    db: &impl ConnectionTrait,
    vertical: crate::vertical::Vertical,
    state: CaseState,
    limit: u64,
) -> CoreResult<Vec<EscrowCase>> {
    escrow_cases::Entity::find()
        .filter(escrow_cases::Column::Vertical.eq(vertical))
        .filter(escrow_cases::Column::State.eq(state))
        .order_by_asc(escrow_cases::Column::UpdatedAt)
        .limit(limit.clamp(1, 100))
        .all(db)
        .await?
        .into_iter()
        .map(EscrowCase::try_from)
        .collect()
}

/// Disputed cases of every vertical, the longest waiting first: the operator's mediation queue.
pub async fn disputed_cases(db: &impl ConnectionTrait, limit: u64) -> CoreResult<Vec<EscrowCase>> {
    escrow_cases::Entity::find()
        .filter(escrow_cases::Column::State.eq(CaseState::Disputed))
        .order_by_asc(escrow_cases::Column::UpdatedAt)
        .limit(limit.clamp(1, 100))
        .all(db)
        .await?
        .into_iter()
        .map(EscrowCase::try_from)
        .collect()
}

/// The most recent cases of a party in `vertical`, as payer or payee, newest first.
pub async fn cases_of(
    db: &impl ConnectionTrait,
    party: PartyId,
    vertical: crate::vertical::Vertical,
    limit: u64,
) -> CoreResult<Vec<EscrowCase>> {
    use sea_orm::Condition;
    escrow_cases::Entity::find()
        .filter(
            Condition::any()
                .add(escrow_cases::Column::PayerPartyId.eq(party.uuid()))
                .add(escrow_cases::Column::PayeePartyId.eq(party.uuid())),
        )
        .filter(escrow_cases::Column::Vertical.eq(vertical))
        .order_by_desc(escrow_cases::Column::CreatedAt)
        .limit(limit.clamp(1, 100))
        .all(db)
        .await?
        .into_iter()
        .map(EscrowCase::try_from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::CaseState::*;

    #[test]
    fn the_happy_path_runs_from_order_to_settlement() {
        let state = AwaitingOrderConfirmation.approve_order().unwrap();
        assert_eq!(state, Frozen);
        let state = state.dispatch().unwrap().record_delivery().unwrap();
        assert_eq!(state, Delivered);
        let state = state.request_settlement().unwrap().settle().unwrap();
        assert_eq!(state, Settled);
    }

    #[test]
    fn final_states_accept_no_transition() {
        for state in [Settled, Denied, Expired, Cancelled, Refunded, Refused] {
            assert!(state.is_final());
            assert!(state.approve_order().is_err());
            assert!(state.cancel().is_err());
            assert!(state.request_settlement().is_err());
            assert!(state.settle().is_err());
            assert!(state.dispute().is_err());
            assert!(state.mediate(true).is_err());
        }
    }

    #[test]
    fn an_order_can_be_cancelled_only_before_dispatch() {
        assert_eq!(AwaitingOrderConfirmation.cancel(), Ok(Cancelled));
        assert_eq!(Frozen.cancel(), Ok(Cancelled));
        assert!(InDelivery.cancel().is_err());
        assert!(SettlementRequested.cancel().is_err());
    }

    #[test]
    fn settlement_is_reached_only_through_a_request_or_a_mediation() {
        assert!(Frozen.settle().is_err());
        assert!(Delivered.settle().is_err());
        assert_eq!(SettlementRequested.settle(), Ok(Settled));
        assert_eq!(Disputed.mediate(true), Ok(Settled));
        assert_eq!(Disputed.mediate(false), Ok(Refunded));
        assert!(Disputed.settle().is_err());
    }
}
