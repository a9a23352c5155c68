//! Institutions of every kind and their shared freezing pools, the caps of the credit-line
//! classes, funding-source kinds, and EC card numbers mapped to phone and funding source.

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
        // A phone belongs to a card mapping now, not to a party.
        m.alter_table(
            Table::alter()
                .table("parties")
                .drop_column("phone_e164")
                .to_owned(),
        )
        .await?;
        // Password logins lock for a while after repeated failures.
        m.alter_table(
            Table::alter()
                .table("credentials")
                .add_column(int("failed_logins").default(0).to_owned())
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("credentials")
                .add_column(timestamp_null("locked_until"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "challenges",
            "challenges_party",
            &["party_id", "purpose", "created_at"],
        ))
        .await?;
        // A bank, card company or department store; `freezing_pool` names the freezing
        // account it uses — its own code, or the code of the institution it shares one with.
        m.alter_table(
            Table::alter()
                .table("institutions")
                .add_column(string("kind", 24).default("bank").to_owned())
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("institutions")
                .add_column(string("freezing_pool", 8).default("").to_owned())
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("credit_class_caps")
                .col(uuid("institution_party_id"))
                .col(string("credit_class", 24))
                .col(string("currency", 3))
                .col(money(m, "max_limit"))
                .primary_key(
                    Index::create()
                        .col("institution_party_id")
                        .col("credit_class")
                        .col("currency"),
                )
                .to_owned(),
        )
        .await?;

        m.alter_table(
            Table::alter()
                .table("accounts")
                .add_column(string_null("credit_class", 24))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("cards")
                .col(id("id"))
                .col(string("number", 16).unique_key().to_owned())
                .col(uuid("institution_party_id"))
                .col(uuid("holder_party_id"))
                .col(string("age_class", 16))
                .col(string("purchase_type", 16))
                .col(string("mapping_kind", 40))
                .col(uuid("funding_account_id"))
                .col(uuid_null("linked_account_id"))
                .col(string("phone_e164", 20))
                .col(string_null("email", 254))
                .col(text_null("delivery_address"))
                .col(string("status", 16))
                .col(uuid_null("replaced_by"))
                .col(timestamp("created_at"))
                .col(timestamp("updated_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("cards_funding_account")
                        .from("cards", "funding_account_id")
                        .to("accounts", "id"),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(index("cards", "cards_holder", &["holder_party_id"]))
            .await?;
        m.create_index(index(
            "cards",
            "cards_institution",
            &["institution_party_id"],
        ))
        .await?;

        m.alter_table(
            Table::alter()
                .table("escrow_cases")
                .add_column(uuid_null("payer_card_id"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("retail_commodities")
                .add_column(string("audience", 16).default("all").to_owned())
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
