use holdfast_core::db::MinorUnits;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "retail_auctions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub commodity_id: Uuid,
    pub seller_party_id: Uuid,
    pub reserve_price: MinorUnits,
    pub currency: String,
    pub closes_at: DateTimeUtc,
    pub status: crate::auctions::AuctionStatus,
    pub winning_bid_id: Option<Uuid>,
    pub order_number: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
