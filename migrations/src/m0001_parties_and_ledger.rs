//! Parties (every role), their credentials, institutions, and the double-entry ledger:
//! accounts, transfers (journal entries), postings, and holds.

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
                .table("parties")
                .col(id("id"))
                .col(string("role", 24))
                .col(string("display_name", 200))
                .col(string_null("phone_e164", 20))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("parties", "parties_role", &["role"]))
            .await?;

        m.create_table(
            Table::create()
                .table("credentials")
                .col(id("party_id"))
                .col(string("username", 64).unique_key().to_owned())
                .col(string("password_hash", 255))
                .col(string_null("second_password_hash", 255))
                .col(timestamp("created_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("credentials_party")
                        .from("credentials", "party_id")
                        .to("parties", "id"),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("institutions")
                .col(id("party_id"))
                .col(string("code", 8).unique_key().to_owned())
                .col(timestamp("created_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("institutions_party")
                        .from("institutions", "party_id")
                        .to("parties", "id"),
                )
                .to_owned(),
        )
        .await?;

        // Balances are cached here and proven against the postings by the ledger audit.
        // `balance` is credit-normal: what the account holds (negative for a drawn credit line or
        // an external source account).
        m.create_table(
            Table::create()
                .table("accounts")
                .col(id("id"))
                .col(string_null("account_key", 160).unique_key().to_owned())
                .col(string("kind", 32))
                .col(uuid("owner_party_id"))
                .col(uuid_null("institution_party_id"))
                .col(string("currency", 3))
                .col(money(m, "balance"))
                .col(money(m, "reserved"))
                .col(money(m, "credit_limit"))
                .col(boolean("unbounded"))
                .col(timestamp("created_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("accounts_owner")
                        .from("accounts", "owner_party_id")
                        .to("parties", "id"),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(index("accounts", "accounts_owner", &["owner_party_id"]))
            .await?;

        m.create_table(
            Table::create()
                .table("transfers")
                .col(id("id"))
                .col(string("idempotency_key", 160).unique_key().to_owned())
                .col(string("kind", 32))
                .col(uuid_null("hold_id"))
                .col(uuid_null("case_id"))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("transfers", "transfers_case", &["case_id"]))
            .await?;

        m.create_table(
            Table::create()
                .table("postings")
                .col(id("id"))
                .col(uuid("transfer_id"))
                .col(uuid("account_id"))
                .col(money(m, "amount"))
                .col(string("currency", 3))
                .col(timestamp("created_at"))
                .check(Expr::col("amount").ne(0))
                .foreign_key(
                    ForeignKey::create()
                        .name("postings_transfer")
                        .from("postings", "transfer_id")
                        .to("transfers", "id"),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("postings_account")
                        .from("postings", "account_id")
                        .to("accounts", "id"),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(index("postings", "postings_account", &["account_id"]))
            .await?;
        m.create_index(index("postings", "postings_transfer", &["transfer_id"]))
            .await?;

        m.create_table(
            Table::create()
                .table("holds")
                .col(id("id"))
                .col(string("idempotency_key", 160).unique_key().to_owned())
                .col(uuid("funding_account_id"))
                .col(uuid("freezing_account_id"))
                .col(uuid("institution_party_id"))
                .col(money(m, "amount"))
                .col(string("currency", 3))
                .col(string("mode", 16))
                .col(string("status", 16))
                .col(timestamp_null("expires_at"))
                .col(money_null(m, "posted_amount"))
                .col(string_null("resolution_key", 160))
                .col(timestamp_null("resolved_at"))
                .col(timestamp("created_at"))
                .check(Expr::col("amount").gt(0))
                .foreign_key(
                    ForeignKey::create()
                        .name("holds_funding_account")
                        .from("holds", "funding_account_id")
                        .to("accounts", "id"),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("holds_freezing_account")
                        .from("holds", "freezing_account_id")
                        .to("accounts", "id"),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "holds",
            "holds_status_expiry",
            &["status", "expires_at"],
        ))
        .await?;
        m.create_index(index(
            "holds",
            "holds_funding_account",
            &["funding_account_id"],
        ))
        .await?;
        Ok(())
    }
}
