use crate::db::MinorUnits;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "holds")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub idempotency_key: String,
    pub funding_account_id: Uuid,
    pub freezing_account_id: Uuid,
    pub institution_party_id: Uuid,
    pub amount: MinorUnits,
    pub currency: String,
    pub mode: crate::holds::HoldMode,
    pub status: crate::holds::HoldStatus,
    pub expires_at: Option<DateTimeUtc>,
    pub posted_amount: Option<MinorUnits>,
    pub resolution_key: Option<String>,
    pub resolved_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
