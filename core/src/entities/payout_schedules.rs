use crate::db::MinorUnits;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payout_schedules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub party_id: Uuid,
    pub enabled: bool,
    pub currency: String,
    pub minimum: MinorUnits,
    pub hour_utc: i32,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
