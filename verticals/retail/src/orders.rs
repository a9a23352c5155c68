//! Orders: a shopper's lines from one supplier, paid through an escrow case.

use crate::VERTICAL;
use crate::catalogue::{self, CommodityId};
use crate::distribution::{self, ParcelSummary};
use crate::entities::{order_lines, orders};
use crate::error::{RetailError, RetailResult};
use crate::sellers;
use chrono::{DateTime, Utc};
use holdfast_core::cards::{self, CardId};
use holdfast_core::challenge::{self, ChallengeStatus};
use holdfast_core::db::MinorUnits;
use holdfast_core::escrow::{
    self, CaseEvent, CaseOutcome, CaseState, EscrowCase, Mediation, OpenCase, PayoutSplit,
};
use holdfast_core::events;
use holdfast_core::ids::{ChallengeId, PartyId};
use holdfast_core::order_number::OrderNumber;
use holdfast_core::paging::{ListFilter, Page, Paged};
use holdfast_core::parties::{self, Role};
use holdfast_core::{Core, CoreError, Currency, Money};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const MAX_LINES: usize = 50;
pub const MAX_QUANTITY: u32 = 1_000;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderLineRequest {
    pub commodity_id: CommodityId,
    /// 1 to 1000 (`MAX_QUANTITY`).
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlaceOrder {
    /// 1 to 50 lines (`MAX_LINES`).
    #[schema(min_items = 1, max_items = 50)]
    pub lines: Vec<OrderLineRequest>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderLine {
    pub commodity_id: CommodityId,
    pub name: String,
    pub unit_price: Money,
    pub quantity: u32,
}

/// The pending phone confirmation of an order, for the shopper to answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PendingConfirmation {
    pub challenge_id: ChallengeId,
    pub expires_at: DateTime<Utc>,
}

/// An order as a shopper or its supplier sees it. It names no personal data of the shopper.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderView {
    pub order_number: OrderNumber,
    pub state: CaseState,
    pub total: Money,
    /// The card that pays, masked: all a seller learns of the buyer.
    #[schema(example = "9000-21••-••••-7897")]
    pub card: String,
    pub supplier_id: PartyId,
    pub supplier_name: String,
    pub lines: Vec<OrderLine>,
    /// What the seller asked to be paid, when it asked for part of the order.
    pub settlement_amount: Option<Money>,
    /// When the buyer handed the order number over on delivery.
    pub delivered_at: Option<DateTime<Utc>>,
    pub parcel: Option<ParcelSummary>,
    /// Present, for the shopper only, while its phone is asked to confirm (the order or the
    /// settlement).
    pub pending_confirmation: Option<PendingConfirmation>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderSummary {
    pub order_number: OrderNumber,
    pub state: CaseState,
    pub total: Money,
    pub supplier_name: String,
    pub created_at: DateTime<Utc>,
}

pub(crate) struct PricedLine {
    pub(crate) commodity_id: CommodityId,
    pub(crate) name: String,
    pub(crate) unit_price: Money,
    pub(crate) quantity: u32,
    pub(crate) commission: Money,
}

/// Places an order paid with `card`: prices the lines from the catalogue (only what the card's
/// class may buy), holds the total on the card's funding source and asks the card's phone to
/// approve.
#[tracing::instrument(name = "retail.place_order", skip_all, fields(case_id = tracing::field::Empty))]
pub async fn place_order_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    shopper: PartyId,
    card: CardId,
    order: PlaceOrder,
) -> RetailResult<OrderView> {
    let card = cards::get_card(txn, card).await?;
    card.ensure_active()?;
    if card.holder != shopper {
        return Err(CoreError::Forbidden("the card belongs to someone else").into());
    }
    if order.lines.is_empty() || order.lines.len() > MAX_LINES {
        return Err(RetailError::LineCount { max: MAX_LINES });
    }
    let mut priced = Vec::with_capacity(order.lines.len());
    let mut supplier: Option<PartyId> = None;
    let mut currency: Option<Currency> = None;
    for line in &order.lines {
        if line.quantity == 0 || line.quantity > MAX_QUANTITY {
            return Err(RetailError::Quantity { max: MAX_QUANTITY });
        }
        let commodity = catalogue::get_commodity(txn, line.commodity_id)
            .await
            .map_err(|_| RetailError::Unavailable(line.commodity_id.uuid()))?;
        if !commodity.active {
            return Err(RetailError::Unavailable(line.commodity_id.uuid()));
        }
        if !commodity
            .audience
            .admits(card.age_class, card.purchase_type)
        {
            return Err(RetailError::NotForThisCard(line.commodity_id.uuid()));
        }
        if *supplier.get_or_insert(commodity.supplier_id) != commodity.supplier_id {
            return Err(RetailError::MixedSuppliers);
        }
        if *currency.get_or_insert(commodity.price.currency()) != commodity.price.currency() {
            return Err(RetailError::MixedCurrencies);
        }
        let line_total = commodity.price.checked_mul(line.quantity)?;
        priced.push(PricedLine {
            commodity_id: commodity.id,
            name: commodity.name.clone(),
            unit_price: commodity.price,
            quantity: line.quantity,
            commission: commodity.rate.of(line_total)?,
        });
    }
    let (Some(supplier), Some(_)) = (supplier, currency) else {
        return Err(RetailError::LineCount { max: MAX_LINES });
    };
    open_order_in_txn(txn, core, shopper, &card, supplier, priced).await
}

/// Puts priced lines of one seller in escrow for `buyer`, paid with `card`: the order, its
/// lines, the hold and the phone confirmation. Shared by orders and won auctions.
pub(crate) async fn open_order_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    shopper: PartyId,
    card: &cards::Card,
    supplier: PartyId,
    priced: Vec<PricedLine>,
) -> RetailResult<OrderView> {
    let currency = priced
        .first()
        .map(|line| line.unit_price.currency())
        .ok_or(RetailError::LineCount { max: MAX_LINES })?;
    let mut total = Money::zero(currency);
    let mut commission = Money::zero(currency);
    for line in &priced {
        total = total.checked_add(&line.unit_price.checked_mul(line.quantity)?)?;
        commission = commission.checked_add(&line.commission)?;
    }

    let seller = parties::get_party(txn, supplier).await?;
    let (case, challenge) = escrow::open_case_with_card_in_txn(
        txn,
        core,
        OpenCase {
            vertical: VERTICAL,
            payer: shopper,
            payer_card: card.id,
            payee: supplier,
            payee_name: seller.display_name.clone(),
            amount: total,
            commission,
            confirmation: holdfast_core::challenge::ChallengePurpose::Order,
            terms: None,
        },
        card.clone(),
    )
    .await?;

    let order_id = Uuid::now_v7();
    orders::ActiveModel {
        id: Set(order_id),
        case_id: Set(case.id.uuid()),
        shopper_party_id: Set(shopper.uuid()),
        supplier_party_id: Set(supplier.uuid()),
        created_at: Set(core.clock.now()),
    }
    .insert(txn)
    .await?;
    let rows = priced
        .iter()
        .zip(1..)
        .map(|(line, line_no)| order_lines::ActiveModel {
            id: Set(Uuid::now_v7()),
            order_id: Set(order_id),
            line_no: Set(line_no),
            commodity_id: Set(line.commodity_id.uuid()),
            name: Set(line.name.clone()),
            unit_price: Set(MinorUnits(line.unit_price.minor())),
            quantity: Set(i32::try_from(line.quantity).unwrap_or(i32::MAX)),
            commission: Set(MinorUnits(line.commission.minor())),
        });
    order_lines::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;

    Ok(OrderView {
        order_number: case.order_number.clone(),
        state: case.state,
        total,
        card: card.number.masked(),
        supplier_id: supplier,
        supplier_name: seller.display_name,
        settlement_amount: None,
        delivered_at: None,
        parcel: None,
        lines: priced
            .into_iter()
            .map(|line| OrderLine {
                commodity_id: line.commodity_id,
                name: line.name,
                unit_price: line.unit_price,
                quantity: line.quantity,
            })
            .collect(),
        pending_confirmation: Some(PendingConfirmation {
            challenge_id: challenge.id,
            expires_at: challenge.expires_at,
        }),
        created_at: case.created_at,
        updated_at: case.updated_at,
    })
}

/// Whether `viewer` may see the case: its buyer, its seller, or an operator. Anyone else is
/// told it does not exist.
fn may_see(case: &EscrowCase, viewer: PartyId, role: Role) -> bool {
    role == Role::Operator || case.payer == viewer || case.payee == viewer
}

/// The order as `viewer` sees it: only its buyer learns the id of a pending confirmation (a
/// seller who had it could spend the buyer's tries with wrong codes).
async fn view_of(
    db: &impl ConnectionTrait,
    case: &EscrowCase,
    viewer: PartyId,
) -> RetailResult<OrderView> {
    let lines = lines_of(db, case).await?;
    let pending = match case.state {
        _ if viewer != case.payer => None,
        CaseState::AwaitingOrderConfirmation => case.order_challenge,
        CaseState::SettlementRequested => case.settlement_challenge,
        _ => None,
    };
    let pending_confirmation = match pending {
        Some(id) => {
            let challenge = challenge::get_challenge(db, id).await?;
            (challenge.status == ChallengeStatus::Pending).then_some(PendingConfirmation {
                challenge_id: challenge.id,
                expires_at: challenge.expires_at,
            })
        }
        None => None,
    };
    let card = match case.payer_card {
        Some(card) => cards::get_card(db, card).await?.number.masked(),
        None => String::new(),
    };
    Ok(OrderView {
        order_number: case.order_number.clone(),
        state: case.state,
        total: case.amount,
        card,
        supplier_id: case.payee,
        supplier_name: case.payee_name.clone(),
        lines,
        settlement_amount: case.settlement_amount,
        delivered_at: case.delivered_at,
        parcel: distribution::summary_of(db, case).await?,
        pending_confirmation,
        created_at: case.created_at,
        updated_at: case.updated_at,
    })
}

/// The order's lines, read in one statement by its case (an order always has at least one).
async fn lines_of(db: &impl ConnectionTrait, case: &EscrowCase) -> RetailResult<Vec<OrderLine>> {
    let currency = case.amount.currency();
    let order_of_case = sea_orm::sea_query::Query::select()
        .column(orders::Column::Id)
        .from(orders::Entity)
        .and_where(orders::Column::CaseId.eq(case.id.uuid()))
        .to_owned();
    let lines = order_lines::Entity::find()
        .filter(order_lines::Column::OrderId.in_subquery(order_of_case))
        .order_by_asc(order_lines::Column::LineNo)
        .all(db)
        .await?
        .into_iter()
        .map(|row| {
            Ok(OrderLine {
                commodity_id: CommodityId::from_uuid(row.commodity_id),
                name: row.name,
                unit_price: Money::from_minor(row.unit_price.0, currency)?,
                quantity: u32::try_from(row.quantity).unwrap_or(0),
            })
        })
        .collect::<RetailResult<Vec<_>>>()?;
    if lines.is_empty() {
        return Err(RetailError::Core(CoreError::NotFound("order")));
    }
    Ok(lines)
}

async fn retail_case(
    db: &impl ConnectionTrait,
    number: &OrderNumber,
    viewer: PartyId,
    role: Role,
) -> RetailResult<EscrowCase> {
    escrow::find_case_by_number(db, number)
        .await?
        .filter(|case| case.vertical == VERTICAL && may_see(case, viewer, role))
        .ok_or(RetailError::Core(CoreError::NotFound("order")))
}

pub async fn get_order(
    db: &impl ConnectionTrait,
    viewer: PartyId,
    role: Role,
    number: &OrderNumber,
) -> RetailResult<OrderView> {
    let case = retail_case(db, number, viewer, role).await?;
    view_of(db, &case, viewer).await
}

/// The order's history: every state change, oldest first.
pub async fn order_history(
    db: &impl ConnectionTrait,
    viewer: PartyId,
    role: Role,
    number: &OrderNumber,
) -> RetailResult<Vec<CaseEvent>> {
    let case = retail_case(db, number, viewer, role).await?;
    Ok(escrow::events(db, case.id).await?)
}

/// The newest orders the party placed (a shopper) or must fill (a supplier).
pub async fn list_orders(
    db: &impl ConnectionTrait,
    party: PartyId,
    filter: &ListFilter<CaseState>,
    page: &Page,
) -> RetailResult<Paged<OrderSummary>> {
    Ok(escrow::cases_of(db, party, VERTICAL, filter, page)
        .await?
        .map(|case| OrderSummary {
            order_number: case.order_number,
            state: case.state,
            total: case.amount,
            supplier_name: case.payee_name,
            created_at: case.created_at,
        }))
}

/// The supplier quotes the order number to be paid; the shopper's phone is asked to release
/// the money.
#[tracing::instrument(name = "retail.request_settlement", skip_all, fields(case_id = tracing::field::Empty))]
pub async fn request_settlement_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    supplier: PartyId,
    number: &OrderNumber,
    amount: Option<Money>,
) -> RetailResult<OrderView> {
    let mut case = seller_case_in_txn(txn, supplier, number).await?;
    escrow::request_settlement_in_txn(txn, core, &mut case, supplier, amount).await?;
    view_of(txn, &case, supplier).await
}

/// The shopper asks for a fresh settlement confirmation when the last one can no longer be
/// answered (expired or locked); the settlement period runs on regardless.
#[tracing::instrument(name = "retail.renew_settlement_confirmation", skip_all, fields(case_id = tracing::field::Empty))]
pub async fn renew_settlement_confirmation_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    shopper: PartyId,
    number: &OrderNumber,
) -> RetailResult<OrderView> {
    let mut case = buyer_case_in_txn(txn, shopper, number).await?;
    escrow::renew_settlement_confirmation_in_txn(txn, core, &mut case, shopper).await?;
    view_of(txn, &case, shopper).await
}

/// The shopper cancels before dispatch; the held money returns.
#[tracing::instrument(name = "retail.cancel_order", skip_all, fields(case_id = tracing::field::Empty))]
pub async fn cancel_order_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    shopper: PartyId,
    number: &OrderNumber,
) -> RetailResult<OrderView> {
    let mut case = buyer_case_in_txn(txn, shopper, number).await?;
    escrow::cancel_in_txn(txn, core, &mut case, shopper).await?;
    distribution::withdraw_in_txn(txn, core, &case).await?;
    events::publish_in_txn(
        txn,
        &core.clock,
        case.payee,
        "order.cancelled",
        serde_json::json!({"order_number": case.order_number}),
    )
    .await?;
    view_of(txn, &case, shopper).await
}

/// Locks a retail case its buyer acts on; anyone else is told it does not exist.
async fn buyer_case_in_txn(
    txn: &DatabaseTransaction,
    buyer: PartyId,
    number: &OrderNumber,
) -> RetailResult<EscrowCase> {
    let case = escrow::lock_case_by_number_in_txn(txn, number).await?;
    if case.vertical != VERTICAL || case.payer != buyer {
        return Err(CoreError::NotFound("order").into());
    }
    Ok(case)
}

/// Locks a retail case its seller acts on.
async fn seller_case_in_txn(
    txn: &DatabaseTransaction,
    seller: PartyId,
    number: &OrderNumber,
) -> RetailResult<EscrowCase> {
    let case = escrow::lock_case_by_number_in_txn(txn, number).await?;
    if case.vertical != VERTICAL || case.payee != seller {
        return Err(CoreError::NotFound("order").into());
    }
    Ok(case)
}

/// What retail does when an answer on the phone changed one of its cases: a confirmed order
/// gets its parcel (to the seller's carrier), and the seller and carrier are told.
#[tracing::instrument(name = "retail.after_answer", skip_all, fields(case_id = %case.id))]
pub async fn after_answer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &EscrowCase,
    outcome: CaseOutcome,
) -> RetailResult<()> {
    if case.vertical != VERTICAL || outcome != CaseOutcome::OrderApproved {
        return Ok(());
    }
    let card = match case.payer_card {
        Some(card) => Some(cards::get_card(txn, card).await?),
        None => None,
    };
    let destination = card
        .as_ref()
        .and_then(|c| c.delivery_address.clone())
        .unwrap_or_else(|| "collection from the seller".to_owned());
    let terms = sellers::terms_of(txn, case.payee).await?;
    distribution::open_parcel_in_txn(txn, core, case, destination, terms.default_distributor)
        .await?;
    // What the seller is told: the card it already read, and the lines (not the whole view).
    events::publish_in_txn(
        txn,
        &core.clock,
        case.payee,
        "order.confirmed",
        serde_json::json!({
            "order_number": case.order_number,
            "card": card.map(|c| c.number.masked()).unwrap_or_default(),
            "total": case.amount,
            "lines": lines_of(txn, case).await?,
        }),
    )
    .await?;
    Ok(())
}

/// The seller gives the order's parcel to a carrier (before pickup).
#[tracing::instrument(name = "retail.assign_carrier", skip_all, fields(case_id = tracing::field::Empty))]
pub async fn assign_carrier_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    seller: PartyId,
    number: &OrderNumber,
    distributor: PartyId,
) -> RetailResult<OrderView> {
    let case = seller_case_in_txn(txn, seller, number).await?;
    distribution::assign_in_txn(txn, core, &case, distributor).await?;
    let view = view_of(txn, &case, seller).await?;
    Ok(view)
}

/// The seller refuses an order it has not dispatched; the buyer's money returns.
#[tracing::instrument(name = "retail.refuse_order", skip_all, fields(case_id = tracing::field::Empty))]
pub async fn refuse_order_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    seller: PartyId,
    number: &OrderNumber,
    reason: Option<String>,
) -> RetailResult<OrderView> {
    let mut case = seller_case_in_txn(txn, seller, number).await?;
    escrow::refuse_in_txn(txn, core, &mut case, seller, reason).await?;
    distribution::withdraw_in_txn(txn, core, &case).await?;
    view_of(txn, &case, seller).await
}

/// The buyer disputes a settlement request, with a reason: the money stays frozen until an
/// operator mediates.
#[tracing::instrument(name = "retail.dispute_order", skip_all, fields(case_id = tracing::field::Empty))]
pub async fn dispute_order_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    buyer: PartyId,
    number: &OrderNumber,
    reason: String,
) -> RetailResult<OrderView> {
    let mut case = buyer_case_in_txn(txn, buyer, number).await?;
    escrow::dispute_by_buyer_in_txn(txn, core, &mut case, buyer, reason).await?;
    let view = view_of(txn, &case, buyer).await?;
    Ok(view)
}

/// An operator's mediation of a disputed order.
#[tracing::instrument(name = "retail.mediate_order", skip_all, fields(case_id = tracing::field::Empty))]
pub async fn mediate_order_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    number: &OrderNumber,
    mediation: Mediation,
) -> RetailResult<(OrderView, PayoutSplit)> {
    let mut case = escrow::lock_case_by_number_in_txn(txn, number).await?;
    if case.vertical != VERTICAL {
        return Err(CoreError::NotFound("order").into());
    }
    let split = escrow::mediate_in_txn(txn, core, &mut case, mediation).await?;
    let view = view_of(txn, &case, case.payee).await?;
    Ok((view, split))
}

/// The disputed retail orders waiting for an operator, oldest first.
pub async fn disputed_orders(
    db: &impl ConnectionTrait,
    limit: u64,
) -> RetailResult<Vec<OrderSummary>> {
    Ok(
        escrow::cases_in_state(db, VERTICAL, CaseState::Disputed, limit)
            .await?
            .into_iter()
            .map(|case| OrderSummary {
                order_number: case.order_number,
                state: case.state,
                total: case.amount,
                supplier_name: case.payee_name,
                created_at: case.created_at,
            })
            .collect(),
    )
}
