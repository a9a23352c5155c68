use sea_orm::entity::prelude::*;

/// An EC card number and what it maps to. Phone, e-mail and address are personal data: they
/// leave this table only towards the phone gateway and the card's own holder.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cards")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub number: String,
    pub institution_party_id: Uuid,
    pub holder_party_id: Uuid,
    pub age_class: crate::cards::AgeClass,
    pub purchase_type: crate::cards::PurchaseType,
    pub mapping_kind: crate::cards::MappingKind,
    pub funding_account_id: Uuid,
    pub linked_account_id: Option<Uuid>,
    pub phone_e164: String,
    pub email: Option<String>,
    pub delivery_address: Option<String>,
    pub status: crate::cards::CardStatus,
    pub replaced_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Card")
            .field("id", &self.id)
            .field("mapping_kind", &self.mapping_kind)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
