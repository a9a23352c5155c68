//! Daily reconciliation of each institution's own bank account against the ledger: the result
//! of each run per institution, currency and day, and the operators' recorded resolutions of
//! ledger movements the bank never showed (a bank entry's resolution is kept on the entry).

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
                .table("reconciliations")
                .col(id("id"))
                .col(uuid("institution_party_id"))
                .col(string("currency", 3))
                .col(ColumnDef::new("day").date().not_null().to_owned())
                // NULL until the bank's end-of-day statement for the day is in.
                .col(money_null(m, "bank_closing"))
                // What the bank should hold by the ledger: minus the institution's external
                // account, entries counted on the day the bank booked them.
                .col(money(m, "ledger_balance"))
                .col(int("open_items"))
                .col(boolean("clean"))
                .col(timestamp("reconciled_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(unique_index(
            "reconciliations",
            "reconciliations_day",
            &["institution_party_id", "currency", "day"],
        ))
        .await?;
        m.create_table(
            Table::create()
                .table("ledger_resolutions")
                .col(
                    ColumnDef::new("transfer_id")
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(uuid("institution_party_id"))
                .col(string("note", 500))
                .col(uuid("resolved_by"))
                .col(timestamp("resolved_at"))
                .to_owned(),
        )
        .await
    }
}
