use holdfast_core::db::MinorUnits;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "insurance_policies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub product_id: Uuid,
    pub insurer_party_id: Uuid,
    pub service_company_party_id: Uuid,
    pub holder_party_id: Uuid,
    pub card_id: Uuid,
    /// Issued by the insurer at its recheck: the first premium's order number.
    pub policy_number: Option<String>,
    pub state: crate::policies::PolicyState,
    pub product_name: String,
    pub coverage_amount: MinorUnits,
    pub premium: MinorUnits,
    pub currency: String,
    pub payment_plan: crate::products::PaymentPlan,
    pub term_months: i32,
    pub commission_bps: i32,
    pub grace_days: i32,
    pub free_look_days: i32,
    pub installments_collected: i32,
    pub first_case_id: Uuid,
    pub certificate_status: crate::policies::CertificateStatus,
    pub certificate_received_at: Option<DateTimeUtc>,
    pub certificate_delivered_at: Option<DateTimeUtc>,
    pub application_reference: Option<String>,
    pub free_look_ends_at: Option<DateTimeUtc>,
    pub issued_at: Option<DateTimeUtc>,
    pub next_due_at: Option<DateTimeUtc>,
    pub overdue_installment: Option<i32>,
    pub grace_ends_at: Option<DateTimeUtc>,
    pub ended_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
