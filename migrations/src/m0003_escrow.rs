//! Escrow cases (one per order, whatever the vertical) and their append-only event log.

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
                .table("escrow_cases")
                .col(id("id"))
                .col(string("order_number", 20).unique_key().to_owned())
                .col(string("vertical", 24))
                .col(uuid("payer_party_id"))
                .col(uuid("funding_account_id"))
                .col(uuid("payee_party_id"))
                .col(uuid("payee_account_id"))
                .col(string("payee_name", 200))
                .col(money(m, "amount"))
                .col(money(m, "commission"))
                .col(string("currency", 3))
                .col(string("state", 32))
                .col(uuid_null("hold_id"))
                .col(uuid_null("order_challenge_id"))
                .col(uuid_null("settlement_challenge_id"))
                .col(timestamp("created_at"))
                .col(timestamp("updated_at"))
                .check(Expr::col("amount").gt(0))
                .check(Expr::col("commission").gte(0))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "escrow_cases",
            "escrow_cases_payer",
            &["payer_party_id"],
        ))
        .await?;
        m.create_index(index(
            "escrow_cases",
            "escrow_cases_payee",
            &["payee_party_id"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("case_events")
                .col(id("id"))
                .col(uuid("case_id"))
                .col(string("kind", 40))
                .col(string_null("from_state", 32))
                .col(string_null("to_state", 32))
                .col(text_null("detail"))
                .col(timestamp("at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("case_events", "case_events_case", &["case_id", "at"]))
            .await?;
        Ok(())
    }
}
