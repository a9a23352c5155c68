use crate::db::MinorUnits;
use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bank_entries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub statement_id: Uuid,
    pub institution_party_id: Uuid,
    pub currency: String,
    pub reference: Option<String>,
    pub amount: MinorUnits,
    pub booking_date: Option<Date>,
    pub end_to_end_id: Option<String>,
    pub remittance: Option<String>,
    pub return_reason: Option<String>,
    pub status: crate::banking::statements::EntryStatus,
    pub transfer_id: Option<Uuid>,
    pub payout_id: Option<Uuid>,
    pub note: Option<String>,
    pub resolved_by: Option<Uuid>,
    pub resolved_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

/// Remittance text may name a person: it stays out of debug output.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BankEntry")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("amount", &self.amount)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
