//! Stored first answers of requests that carried an `Idempotency-Key`.

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
                .table("idempotency_records")
                .col(string("scope", 80))
                .col(string("key", 255))
                .col(string("fingerprint", 64))
                .col(int("status_code"))
                .col(text("response_body"))
                .col(timestamp("created_at"))
                .primary_key(Index::create().col("scope").col("key"))
                .to_owned(),
        )
        .await
    }
}
