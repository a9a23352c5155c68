use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bank_files")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub institution_party_id: Uuid,
    pub message_id: String,
    pub format: String,
    pub content: String,
    pub transfers: i32,
    pub created_at: DateTimeUtc,
    pub handed_over_at: Option<DateTimeUtc>,
}

/// The file's content names payees and their accounts: it stays out of debug output.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BankFile")
            .field("id", &self.id)
            .field("message_id", &self.message_id)
            .field("transfers", &self.transfers)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
