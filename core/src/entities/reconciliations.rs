use crate::db::MinorUnits;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reconciliations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub institution_party_id: Uuid,
    pub currency: String,
    pub day: Date,
    pub bank_closing: Option<MinorUnits>,
    pub ledger_balance: MinorUnits,
    pub open_items: i32,
    pub clean: bool,
    pub reconciled_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
