//! The terms a confirmation binds besides amount, payee and order number (a payment method:
//! lump sum, installments…), on the challenge and on the case it confirms.

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
        m.alter_table(
            Table::alter()
                .table("challenges")
                .add_column(string_null("terms", 200))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("escrow_cases")
                .add_column(string_null("terms", 200))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
