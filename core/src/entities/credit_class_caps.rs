use crate::db::MinorUnits;
use sea_orm::entity::prelude::*;

/// The largest credit limit an institution grants in one credit-line class and currency.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credit_class_caps")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub institution_party_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub credit_class: crate::funding::CreditClass,
    #[sea_orm(primary_key, auto_increment = false)]
    pub currency: String,
    pub max_limit: MinorUnits,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
