//! The service secret, generated at first start when none is configured: one row, so that every
//! instance on one database signs and verifies with the same key, and a restart keeps it.

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
        m.create_table(
            Table::create()
                .table("service_secrets")
                // Always 1: the primary key is what makes a second insert a no-op.
                .col(ColumnDef::new("id").integer().not_null().primary_key())
                // Hex of at least 32 random bytes.
                .col(string("secret", 256))
                .col(timestamp("created_at"))
                .check(Expr::col("id").eq(1))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
