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
use crate::db::MinorUnits;
use crate::entities::{case_events, escrow_cases};
use crate::error::{CoreError, CoreResult};
use crate::funding;
use crate::holds::{self, Payout, PlaceHold};
use crate::ids::{AccountId, CaseId, ChallengeId, HoldId, PartyId};
use crate::ledger::{self, AccountKind, NewAccount, keys};
use crate::money::{Currency, Money};
use crate::order_number::OrderNumber;
use crate::outbox::{self, PhoneMessage};
use crate::outcomes::{self, Outcome, SettledBy};
use crate::parties::PLATFORM_PARTY;
use crate::phone_number::PhoneNumber;
use crate::rate::BasisPoints;
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use utoipa::ToSchema;

mod confirmation;
mod disputes;
mod open;
mod queries;
mod settlement;

pub use confirmation::*;
pub use disputes::*;
pub use open::*;
pub use queries::*;
pub use settlement::*;

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
    record_case_id(id);
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
    let case = escrow_cases::Entity::find()
        .filter(escrow_cases::Column::OrderNumber.eq(number.digits()))
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("order"))
        .and_then(EscrowCase::try_from)?;
    record_case_id(case.id);
    Ok(case)
}

/// Names the case on the span of the use case that locked it (a span that declared `case_id`;
/// others ignore it). The order number a caller quoted stays out of the trace: it is what a
/// customer hands over as proof of delivery.
pub fn record_case_id(id: CaseId) {
    tracing::Span::current().record("case_id", tracing::field::display(id));
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
    move_through_in_txn(txn, core, case, &[(to, event)], detail).await
}

/// Writes transitions that follow one another (`steps`, each the state reached and its event)
/// as one update of the case to the last, guarded by the state the first was computed from,
/// and one history entry per step; `detail` goes with the last.
async fn move_through_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    steps: &[(CaseState, &str)],
    detail: Option<String>,
) -> CoreResult<()> {
    let Some(&(to, _)) = steps.last() else {
        return Ok(());
    };
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
    let mut from = case.state;
    case.state = to;
    case.updated_at = now;
    let mut detail = detail;
    let mut events = Vec::with_capacity(steps.len());
    for (at, &(reached, kind)) in steps.iter().enumerate() {
        events.push(NewCaseEvent {
            kind,
            from: Some(from),
            to: Some(reached),
            detail: if at + 1 == steps.len() {
                detail.take()
            } else {
                None
            },
        });
        from = reached;
    }
    record_events_in_txn(txn, core, case.id, events).await
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
    record_events_in_txn(
        txn,
        core,
        case,
        vec![NewCaseEvent {
            kind,
            from,
            to,
            detail,
        }],
    )
    .await
}

/// An entry of a case's history, before it is written.
#[derive(Debug, Clone)]
pub struct NewCaseEvent<'a> {
    pub kind: &'a str,
    pub from: Option<CaseState>,
    pub to: Option<CaseState>,
    pub detail: Option<String>,
}

/// Appends several entries to a case's history in one statement (in order: their ids are
/// time-ordered as they are made here).
pub async fn record_events_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: CaseId,
    events: Vec<NewCaseEvent<'_>>,
) -> CoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let at = core.clock.now();
    let rows = events.into_iter().map(|event| case_events::ActiveModel {
        id: Set(Uuid::now_v7()),
        case_id: Set(case.uuid()),
        kind: Set(event.kind.to_owned()),
        from_state: Set(event.from.map(|s| s.as_str().to_owned())),
        to_state: Set(event.to.map(|s| s.as_str().to_owned())),
        detail: Set(event.detail),
        at: Set(at),
    });
    // Written with the transaction's other events just before it commits.
    crate::write_buffer::insert_case_events(txn, rows.collect()).await?;
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
    // Inside a writing call, its own events are read too.
    crate::write_buffer::flush_for(db).await?;
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
