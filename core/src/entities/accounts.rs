use crate::db::MinorUnits;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_key: Option<String>,
    pub kind: crate::ledger::AccountKind,
    pub owner_party_id: Uuid,
    pub institution_party_id: Option<Uuid>,
    pub currency: String,
    pub balance: MinorUnits,
    pub reserved: MinorUnits,
    pub credit_limit: MinorUnits,
    pub unbounded: bool,
    /// Credited (and some debits) by appending unfolded postings; see `ledger`.
    pub append_only: bool,
    pub credit_class: Option<crate::funding::CreditClass>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
