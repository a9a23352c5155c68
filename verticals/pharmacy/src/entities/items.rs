use sea_orm::entity::prelude::*;

/// One item of a prescription: personal health data, so `Debug` shows only its place.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pharmacy_prescription_items")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub prescription_id: Uuid,
    pub line_no: i32,
    pub drug_code: String,
    pub name: String,
    pub strength: String,
    pub dose: String,
    pub quantity: i32,
    pub unit: String,
    pub days: i32,
    pub class: crate::prescriptions::DrugClass,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrescriptionItem")
            .field("prescription_id", &self.prescription_id)
            .field("line_no", &self.line_no)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
