//! Bank entries waiting for an operator, counted across institutions at every `/metrics`
//! scrape: an index led by the status, so the count reads the open entries only (the
//! institution-led index serves one institution's lists).

use crate::columns::*;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(index("bank_entries", "bank_entries_open", &["status"]))
            .await
    }
}
