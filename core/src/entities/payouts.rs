use crate::db::MinorUnits;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payouts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub party_id: Uuid,
    pub idempotency_key: String,
    pub destination_id: Uuid,
    pub institution_party_id: Uuid,
    pub withdrawal_account_id: Uuid,
    pub currency: String,
    pub requested_amount: Option<MinorUnits>,
    pub amount: MinorUnits,
    pub status: crate::banking::payouts::PayoutStatus,
    pub end_to_end_id: String,
    pub return_reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
    pub settled_at: Option<DateTimeUtc>,
    pub bank_file_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
