use holdfast_core::db::MinorUnits;
use sea_orm::entity::prelude::*;

/// A prescription. `notes` is personal health data: `Debug` leaves it out.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pharmacy_prescriptions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub number: String,
    pub hospital_id: Uuid,
    pub prescriber_party_id: Uuid,
    pub patient_party_id: Uuid,
    pub patient_card_id: Uuid,
    pub state: crate::state::PrescriptionState,
    pub routed_drugstore_party_id: Option<Uuid>,
    pub holder_drugstore_party_id: Option<Uuid>,
    pub claim_secret_hash: Option<String>,
    pub claimed_at: Option<DateTimeUtc>,
    pub consent_challenge_id: Option<Uuid>,
    pub consent_expires_at: Option<DateTimeUtc>,
    pub notes: Option<String>,
    pub issued_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub price: Option<MinorUnits>,
    pub commission: Option<MinorUnits>,
    pub currency: Option<String>,
    pub payment_method: Option<crate::prescriptions::PaymentMethod>,
    pub installment_months: Option<i32>,
    pub case_id: Option<Uuid>,
    pub dispensed_at: Option<DateTimeUtc>,
    pub dispensed_by_party_id: Option<Uuid>,
    pub handover: Option<crate::prescriptions::Handover>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prescription")
            .field("id", &self.id)
            .field("number", &self.number)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
