use crate::db::MinorUnits;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "escrow_cases")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub order_number: String,
    pub vertical: crate::vertical::Vertical,
    pub payer_party_id: Uuid,
    pub funding_account_id: Uuid,
    pub payee_party_id: Uuid,
    pub payee_account_id: Uuid,
    pub payee_name: String,
    pub amount: MinorUnits,
    pub commission: MinorUnits,
    pub currency: String,
    pub state: crate::escrow::CaseState,
    pub hold_id: Option<Uuid>,
    pub order_challenge_id: Option<Uuid>,
    pub settlement_challenge_id: Option<Uuid>,
    pub payer_card_id: Option<Uuid>,
    pub settlement_amount: Option<MinorUnits>,
    pub delivered_at: Option<DateTimeUtc>,
    pub terms: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
