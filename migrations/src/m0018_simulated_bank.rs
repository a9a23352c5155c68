//! The simulated bank's own books (development, tests and the demo): the credit transfer files
//! it took, the entries it booked on its customers' accounts, and the statements it wrote. It
//! stands for a separate system, so it keeps its own tables and writes them in transactions of
//! its own; Holdfast's tables learn of it only through the statements it hands back.

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
        // One row per file taken: the key that makes the same message id booked once.
        m.create_table(
            Table::create()
                .table("simulated_bank_messages")
                .col(
                    ColumnDef::new("message_id")
                        .string_len(35)
                        .not_null()
                        .primary_key(),
                )
                .col(uuid("institution_party_id"))
                .col(int("transfers"))
                .col(timestamp("received_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("simulated_bank_entries")
                .col(id("id"))
                .col(uuid("institution_party_id"))
                .col(string("account", 34))
                .col(string("currency", 3))
                // The bank's reference: a return's is derived from the debit it returns, so
                // a payout is returned at most once.
                .col(string("reference", 35))
                // Signed minor units as they move the account: a debit is negative.
                .col(ColumnDef::new("amount").big_integer().not_null().to_owned())
                .col(ColumnDef::new("booking_date").date().not_null().to_owned())
                .col(string_null("end_to_end_id", 35))
                .col(string_null("remittance", 140))
                .col(string_null("return_reason", 140))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(unique_index(
            "simulated_bank_entries",
            "simulated_bank_entries_reference",
            &["reference"],
        ))
        .await?;
        m.create_index(index(
            "simulated_bank_entries",
            "simulated_bank_entries_day",
            &["institution_party_id", "booking_date"],
        ))
        .await?;
        m.create_table(
            Table::create()
                .table("simulated_bank_statements")
                .col(
                    ColumnDef::new("message_id")
                        .string_len(35)
                        .not_null()
                        .primary_key(),
                )
                .col(uuid("institution_party_id"))
                // `notification` (camt.054) or `end_of_day` (camt.053).
                .col(string("kind", 16))
                .col(text("xml"))
                .col(timestamp("created_at"))
                // When Holdfast imported it; NULL until then (handed again after a crash).
                .col(timestamp_null("delivered_at"))
                .to_owned(),
        )
        .await
    }
}
