use holdfast_core::db::MinorUnits;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "retail_commodities")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub supplier_party_id: Uuid,
    pub name: String,
    pub manufacturer: String,
    pub description: String,
    pub price: MinorUnits,
    pub currency: String,
    /// Commission in basis points (1/100 of a percent) of the price.
    pub commission_bps: i32,
    pub active: bool,
    pub audience: crate::catalogue::Audience,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
