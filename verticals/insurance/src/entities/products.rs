use holdfast_core::db::MinorUnits;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "insurance_products")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub insurer_party_id: Uuid,
    pub service_company_party_id: Uuid,
    pub name: String,
    pub coverage: String,
    pub coverage_amount: MinorUnits,
    pub premium: MinorUnits,
    pub currency: String,
    pub term_months: i32,
    pub payment_plan: crate::products::PaymentPlan,
    pub grace_days: i32,
    pub free_look_days: i32,
    pub active: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
