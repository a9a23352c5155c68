use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pharmacy_access_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub prescription_id: Uuid,
    pub prescription_number: String,
    pub patient_party_id: Uuid,
    pub reader_party_id: Uuid,
    pub reader_role: String,
    pub reader_name: String,
    pub organisation: Option<String>,
    pub what: String,
    pub at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
