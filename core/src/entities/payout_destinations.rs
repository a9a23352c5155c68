use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payout_destinations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub party_id: Uuid,
    pub scheme: crate::banking::destinations::Scheme,
    pub iban: Option<String>,
    pub bank_code: Option<String>,
    pub account_number: Option<String>,
    pub holder_name: String,
    pub status: crate::banking::destinations::DestinationStatus,
    pub created_at: DateTimeUtc,
    pub confirmed_at: Option<DateTimeUtc>,
    pub ended_at: Option<DateTimeUtc>,
}

/// Account numbers and the holder's name stay out of debug output (and so out of logs).
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayoutDestination")
            .field("id", &self.id)
            .field("scheme", &self.scheme)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
