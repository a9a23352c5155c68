use crate::db::MinorUnits;
use sea_orm::entity::prelude::*;

/// One leg of a transfer: a signed change to one account (credit positive, debit negative).
/// The legs of a transfer sum to zero.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "postings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub transfer_id: Uuid,
    pub account_id: Uuid,
    pub amount: MinorUnits,
    pub currency: String,
    /// In the account's cached balance already (always, for an account that is not
    /// append-only); an unfolded posting waits for the fold step.
    pub folded: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
