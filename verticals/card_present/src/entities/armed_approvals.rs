use holdfast_core::db::MinorUnits;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "card_present_armed_approvals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub card_id: Uuid,
    pub holder_party_id: Uuid,
    pub merchant_party_id: Uuid,
    pub max_amount: MinorUnits,
    pub currency: String,
    pub valid_from: DateTimeUtc,
    pub valid_until: DateTimeUtc,
    pub status: crate::authorisations::ArmedStatus,
    pub challenge_id: Option<Uuid>,
    pub used_by_authorisation_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
