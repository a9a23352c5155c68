//! Auctions: a card holder who also sells lists a commodity with a reserve price and a closing
//! time; other card holders bid with their card session. When the auction closes (a durable
//! timer) the highest bid becomes an order on the winner's card: held, confirmed on the
//! winner's phone, and settled into the seller's withdrawal account like any order. Bids hold
//! no money; a winner whose card cannot pay at the close leaves the auction unsold.

use crate::catalogue::{self, Audience, CommodityId, NewCommodity};
use crate::entities::{auctions, bids, commodities};
use crate::error::{RetailError, RetailResult};
use crate::orders::{self, OrderView, PricedLine};
use crate::sellers;
use chrono::{DateTime, Duration, Utc};
use holdfast_core::cards::{self, CardId};
use holdfast_core::db::MinorUnits;
use holdfast_core::ids::{Id, IdKind, PartyId};
use holdfast_core::{Core, CoreError, Currency, Money, timers};
use sea_orm::entity::prelude::*;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use utoipa::ToSchema;

#[derive(Debug)]
pub enum AuctionKind {}
impl IdKind for AuctionKind {
    const NAME: &'static str = "auction";
}
pub type AuctionId = Id<AuctionKind>;

pub const CLOSE_TIMER: holdfast_core::TimerKind = holdfast_core::TimerKind::RetailAuctionClose;
pub const MIN_DURATION_SECS: i64 = 60;
pub const MAX_DURATION_SECS: i64 = 30 * 24 * 3600;

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
    db_type = "String(StringLen::N(16))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum AuctionStatus {
    Open,
    /// Closed with a winner: its order is in escrow.
    Sold,
    /// Closed without a valid bid, or the winner could not pay.
    Unsold,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuctionView {
    pub id: AuctionId,
    pub commodity_id: CommodityId,
    pub name: String,
    pub description: String,
    pub seller_id: PartyId,
    pub reserve_price: Money,
    pub highest_bid: Option<Money>,
    pub bids: u64,
    pub closes_at: DateTime<Utc>,
    pub status: AuctionStatus,
    /// Once sold: the winner's order.
    pub order_number: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewAuction {
    pub name: String,
    pub description: String,
    pub reserve_price: Money,
    pub audience: Audience,
    pub duration: Duration,
}

/// Lists a commodity for auction. The commodity is not for sale at a fixed price.
#[tracing::instrument(name = "retail.open_auction", skip_all)]
pub async fn open_auction_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    seller: PartyId,
    new: NewAuction,
) -> RetailResult<AuctionView> {
    let seconds = new.duration.num_seconds();
    if !(MIN_DURATION_SECS..=MAX_DURATION_SECS).contains(&seconds) {
        return Err(CoreError::invalid(format!(
            "an auction runs {MIN_DURATION_SECS} seconds to 30 days"
        ))
        .into());
    }
    let commodity = catalogue::create_commodity_in_txn(
        txn,
        core,
        seller,
        NewCommodity {
            name: new.name,
            manufacturer: String::new(),
            description: new.description,
            price: new.reserve_price,
            audience: new.audience,
        },
    )
    .await?;
    // Only bids buy it.
    commodities::ActiveModel {
        id: Set(commodity.id.uuid()),
        active: Set(false),
        ..Default::default()
    }
    .update(txn)
    .await?;
    let id = AuctionId::new();
    let closes_at = core.clock.now() + new.duration;
    auctions::Entity::insert(auctions::ActiveModel {
        id: Set(id.uuid()),
        commodity_id: Set(commodity.id.uuid()),
        seller_party_id: Set(seller.uuid()),
        reserve_price: Set(MinorUnits(new.reserve_price.minor())),
        currency: Set(new.reserve_price.currency().code().to_owned()),
        closes_at: Set(closes_at),
        status: Set(AuctionStatus::Open),
        winning_bid_id: Set(None),
        order_number: Set(None),
        created_at: Set(core.clock.now()),
    })
    .exec_without_returning(txn)
    .await?;
    timers::schedule_in_txn(txn, &core.clock, CLOSE_TIMER, id.uuid(), closes_at).await?;
    get_auction(txn, id).await
}

async fn view_of(db: &impl ConnectionTrait, row: auctions::Model) -> RetailResult<AuctionView> {
    let currency = Currency::from_str(&row.currency).map_err(CoreError::from)?;
    let commodity = catalogue::get_commodity(db, CommodityId::from_uuid(row.commodity_id)).await?;
    let all_bids = bids::Entity::find()
        .filter(bids::Column::AuctionId.eq(row.id))
        .all(db)
        .await?;
    let highest = all_bids.iter().map(|b| b.amount.0).max();
    Ok(AuctionView {
        id: AuctionId::from_uuid(row.id),
        commodity_id: commodity.id,
        name: commodity.name,
        description: commodity.description,
        seller_id: PartyId::from_uuid(row.seller_party_id),
        reserve_price: Money::from_minor(row.reserve_price.0, currency)?,
        highest_bid: highest
            .map(|h| Money::from_minor(h, currency))
            .transpose()?,
        bids: all_bids.len() as u64,
        closes_at: row.closes_at,
        status: row.status,
        order_number: row.order_number,
    })
}

pub async fn get_auction(db: &impl ConnectionTrait, id: AuctionId) -> RetailResult<AuctionView> {
    let row = auctions::Entity::find_by_id(id.uuid())
        .one(db)
        .await?
        .ok_or(RetailError::Core(CoreError::NotFound("auction")))?;
    view_of(db, row).await
}

/// Open auctions a card of this class may bid in, closing soonest first.
pub async fn open_auctions(
    db: &impl ConnectionTrait,
    viewer: catalogue::Viewer,
    limit: u64,
) -> RetailResult<Vec<AuctionView>> {
    let rows = auctions::Entity::find()
        .filter(auctions::Column::Status.eq(AuctionStatus::Open))
        .order_by_asc(auctions::Column::ClosesAt)
        .limit(limit.clamp(1, 100))
        .all(db)
        .await?;
    let mut views = Vec::new();
    for row in rows {
        let commodity =
            catalogue::get_commodity(db, CommodityId::from_uuid(row.commodity_id)).await?;
        let visible = match viewer {
            catalogue::Viewer::Card(age, purchase) => commodity.audience.admits(age, purchase),
            catalogue::Viewer::Staff => true,
        };
        if visible {
            views.push(view_of(db, row).await?);
        }
    }
    Ok(views)
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BidView {
    pub auction: AuctionView,
    pub amount: Money,
}

/// Bids on an open auction with the bidder's card: at least the reserve, more than the
/// highest bid so far, before the close.
#[tracing::instrument(name = "retail.bid", skip_all, fields(auction_id = %auction))]
pub async fn bid_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    bidder: PartyId,
    card: CardId,
    auction: AuctionId,
    amount: Money,
) -> RetailResult<BidView> {
    let row = auctions::Entity::find_by_id(auction.uuid())
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(RetailError::Core(CoreError::NotFound("auction")))?;
    let card = cards::get_card(txn, card).await?;
    card.ensure_active()?;
    if card.holder != bidder {
        return Err(CoreError::Forbidden("the card belongs to someone else").into());
    }
    if row.seller_party_id == bidder.uuid() {
        return Err(CoreError::invalid("a seller cannot bid on its own auction").into());
    }
    if row.status != AuctionStatus::Open || core.clock.now() >= row.closes_at {
        return Err(CoreError::InvalidTransition {
            state: "closed",
            action: "bid",
        }
        .into());
    }
    let commodity = catalogue::get_commodity(txn, CommodityId::from_uuid(row.commodity_id)).await?;
    if !commodity
        .audience
        .admits(card.age_class, card.purchase_type)
    {
        return Err(RetailError::NotForThisCard(row.commodity_id));
    }
    if amount.currency().code() != row.currency {
        return Err(
            CoreError::Money(holdfast_core::money::MoneyError::CurrencyMismatch {
                left: amount.currency(),
                right: commodity.price.currency(),
            })
            .into(),
        );
    }
    let highest = bids::Entity::find()
        .filter(bids::Column::AuctionId.eq(row.id))
        .order_by_desc(bids::Column::Amount)
        .one(txn)
        .await?
        .map(|b| b.amount.0);
    if amount.minor() < row.reserve_price.0 || highest.is_some_and(|h| amount.minor() <= h) {
        return Err(CoreError::invalid(
            "a bid is at least the reserve and more than the highest bid",
        )
        .into());
    }
    bids::Entity::insert(bids::ActiveModel {
        id: Set(Uuid::now_v7()),
        auction_id: Set(row.id),
        bidder_party_id: Set(bidder.uuid()),
        card_id: Set(card.id.uuid()),
        amount: Set(MinorUnits(amount.minor())),
        created_at: Set(core.clock.now()),
    })
    .exec_without_returning(txn)
    .await?;
    let view = view_of(txn, row).await?;
    Ok(BidView {
        auction: view,
        amount,
    })
}

/// Locks the auction a close timer is about (timers lock their subject first).
pub async fn lock_in_txn(txn: &DatabaseTransaction, auction: Uuid) -> RetailResult<()> {
    auctions::Entity::find_by_id(auction)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(RetailError::Core(CoreError::NotFound("auction")))?;
    Ok(())
}

/// Closes an auction: the highest bid becomes the winner's order (held on its card and sent
/// to its phone for confirmation), or the auction goes unsold.
#[tracing::instrument(name = "retail.close_auction", skip_all, fields(auction_id = %auction, case_id = tracing::field::Empty))]
pub async fn close_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    auction: Uuid,
) -> RetailResult<Option<OrderView>> {
    let row = auctions::Entity::find_by_id(auction)
        .one(txn)
        .await?
        .ok_or(RetailError::Core(CoreError::NotFound("auction")))?;
    if row.status != AuctionStatus::Open {
        return Ok(None);
    }
    let winner = bids::Entity::find()
        .filter(bids::Column::AuctionId.eq(row.id))
        .order_by_desc(bids::Column::Amount)
        .one(txn)
        .await?;
    let mut outcome = auctions::ActiveModel {
        id: Set(row.id),
        status: Set(AuctionStatus::Unsold),
        ..Default::default()
    };
    let mut order = None;
    if let Some(bid) = winner {
        let card = cards::get_card(txn, CardId::from_uuid(bid.card_id)).await?;
        let commodity =
            catalogue::get_commodity(txn, CommodityId::from_uuid(row.commodity_id)).await?;
        let price = Money::from_minor(bid.amount.0, commodity.price.currency())?;
        let terms = sellers::terms_of(txn, PartyId::from_uuid(row.seller_party_id)).await?;
        let line = PricedLine {
            commodity_id: commodity.id,
            name: commodity.name.clone(),
            unit_price: price,
            quantity: 1,
            commission: terms.commission.of(price)?,
        };
        // A savepoint: if the winner's card cannot pay, the attempt leaves no trace.
        let attempt = sea_orm::TransactionTrait::begin(txn).await?;
        let placed = match card.ensure_active() {
            Ok(()) => {
                orders::open_order_in_txn(
                    &attempt,
                    core,
                    PartyId::from_uuid(bid.bidder_party_id),
                    &card,
                    PartyId::from_uuid(row.seller_party_id),
                    vec![line],
                )
                .await
            }
            Err(error) => Err(error.into()),
        };
        match placed {
            Ok(view) => {
                attempt.commit().await?;
                outcome.status = Set(AuctionStatus::Sold);
                outcome.winning_bid_id = Set(Some(bid.id));
                outcome.order_number = Set(Some(view.order_number.digits().to_owned()));
                order = Some(view);
            }
            Err(RetailError::Core(
                error @ (CoreError::InsufficientFunds { .. } | CoreError::CardNotActive),
            )) => {
                attempt.rollback().await?;
                tracing::info!(auction = %row.id, code = error.code(), "auction winner could not pay");
            }
            Err(other) => return Err(other),
        }
    }
    outcome.update(txn).await?;
    Ok(order)
}

/// The seller's auctions: every status.
pub async fn auctions_of(
    db: &impl ConnectionTrait,
    seller: PartyId,
    limit: u64,
) -> RetailResult<Vec<AuctionView>> {
    let rows = auctions::Entity::find()
        .filter(auctions::Column::SellerPartyId.eq(seller.uuid()))
        .order_by_desc(auctions::Column::CreatedAt)
        .limit(limit.clamp(1, 100))
        .all(db)
        .await?;
    let mut views = Vec::new();
    for row in rows {
        views.push(view_of(db, row).await?);
    }
    Ok(views)
}
