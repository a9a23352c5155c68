use crate::db::MinorUnits;
use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "challenges")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub purpose: crate::challenge::ChallengePurpose,
    pub party_id: Uuid,
    pub phone_e164: String,
    pub subject_id: Option<Uuid>,
    pub amount: Option<MinorUnits>,
    pub currency: Option<String>,
    pub payee: Option<String>,
    pub order_number: Option<String>,
    pub digest: String,
    pub code_mac: String,
    pub status: crate::challenge::ChallengeStatus,
    pub failed_attempts: i32,
    pub max_attempts: i32,
    pub sends: i32,
    pub expires_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
    pub note: Option<String>,
    pub terms: Option<String>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenge")
            .field("id", &self.id)
            .field("purpose", &self.purpose)
            .field("status", &self.status)
            .field("failed_attempts", &self.failed_attempts)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
