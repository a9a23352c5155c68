use holdfast_core::db::MinorUnits;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "card_present_authorisations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub terminal_party_id: Uuid,
    pub merchant_party_id: Uuid,
    /// The terminal's own id for the authorisation.
    pub reference: String,
    pub card_id: Option<Uuid>,
    pub card_masked: String,
    pub amount: MinorUnits,
    pub currency: String,
    pub status: crate::authorisations::AuthorisationStatus,
    pub decline_reason: Option<crate::authorisations::DeclineReason>,
    pub challenge_id: Option<Uuid>,
    pub armed_approval_id: Option<Uuid>,
    pub hold_id: Option<Uuid>,
    pub approval_code: Option<String>,
    pub captured_amount: Option<MinorUnits>,
    pub confirm_by: Option<DateTimeUtc>,
    pub valid_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
