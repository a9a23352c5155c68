//! Insurers, products, policies, premiums, certificates, and card-present authorisations.
//!
//! A policy's premiums are escrow cases (one per collected premium); these tables hold what
//! the escrow core does not know: the product and its terms, the policy's life (recheck,
//! certificate, monthly cycle, grace, lapse, free-look) and which case is which premium.
//! Card-present authorisations hold what a shop terminal asked and what the phone answered;
//! their money is an ordinary hold.

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
        // The platform's terms with an insurer (a party of role `insurer`).
        m.create_table(
            Table::create()
                .table("insurance_insurers")
                .col(id("party_id"))
                .col(int("commission_bps"))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("insurance_products")
                .col(id("id"))
                .col(uuid("insurer_party_id"))
                .col(uuid("service_company_party_id"))
                .col(string("name", 120))
                .col(text("coverage"))
                .col(money(m, "coverage_amount"))
                .col(money(m, "premium"))
                .col(string("currency", 3))
                .col(int("term_months"))
                .col(string("payment_plan", 16))
                .col(int("grace_days"))
                .col(int("free_look_days"))
                .col(boolean("active"))
                .col(timestamp("created_at"))
                .col(timestamp("updated_at"))
                .check(Expr::col("premium").gt(0))
                .check(Expr::col("term_months").gt(0))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "insurance_products",
            "insurance_products_insurer",
            &["insurer_party_id", "created_at"],
        ))
        .await?;

        // A policy, from the application to its end. The terms are copied from the product at
        // purchase: what the holder approved on the phone does not change with the product.
        m.create_table(
            Table::create()
                .table("insurance_policies")
                .col(id("id"))
                .col(uuid("product_id"))
                .col(uuid("insurer_party_id"))
                .col(uuid("service_company_party_id"))
                .col(uuid("holder_party_id"))
                .col(uuid("card_id"))
                .col(string_null("policy_number", 32).unique_key().to_owned())
                .col(string("state", 32))
                .col(string("product_name", 120))
                .col(money(m, "coverage_amount"))
                .col(money(m, "premium"))
                .col(string("currency", 3))
                .col(string("payment_plan", 16))
                .col(int("term_months"))
                .col(int("commission_bps"))
                .col(int("grace_days"))
                .col(int("free_look_days"))
                .col(int("installments_collected"))
                .col(uuid("first_case_id").unique_key().to_owned())
                .col(string("certificate_status", 32))
                .col(timestamp_null("certificate_received_at"))
                .col(timestamp_null("certificate_delivered_at"))
                .col(string_null("application_reference", 100))
                .col(timestamp_null("free_look_ends_at"))
                .col(timestamp_null("issued_at"))
                .col(timestamp_null("next_due_at"))
                .col(int_null("overdue_installment"))
                .col(timestamp_null("grace_ends_at"))
                .col(timestamp_null("ended_at"))
                .col(timestamp("created_at"))
                .col(timestamp("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "insurance_policies",
            "insurance_policies_holder",
            &["holder_party_id", "created_at"],
        ))
        .await?;
        m.create_index(index(
            "insurance_policies",
            "insurance_policies_insurer",
            &["insurer_party_id", "state", "created_at"],
        ))
        .await?;
        m.create_index(index(
            "insurance_policies",
            "insurance_policies_service_company",
            &["service_company_party_id", "certificate_status"],
        ))
        .await?;

        // Each collected premium is one escrow case; an installment is collected once.
        m.create_table(
            Table::create()
                .table("insurance_premiums")
                .col(id("id"))
                .col(uuid("policy_id"))
                .col(int("installment"))
                .col(uuid("case_id").unique_key().to_owned())
                .col(timestamp("due_at"))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(unique_index(
            "insurance_premiums",
            "insurance_premiums_installment",
            &["policy_id", "installment"],
        ))
        .await?;

        // The policy's timeline: what happened to it, for its holder and its insurer.
        m.create_table(
            Table::create()
                .table("insurance_policy_events")
                .col(id("id"))
                .col(uuid("policy_id"))
                .col(string("kind", 40))
                .col(text_null("detail"))
                .col(timestamp("at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "insurance_policy_events",
            "insurance_policy_events_policy",
            &["policy_id", "at"],
        ))
        .await?;

        // A shop terminal (a party of role `terminal`) and the merchant it takes payments for.
        m.create_table(
            Table::create()
                .table("card_present_terminals")
                .col(id("party_id"))
                .col(uuid("merchant_party_id"))
                .col(string("label", 60))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "card_present_terminals",
            "card_present_terminals_merchant",
            &["merchant_party_id"],
        ))
        .await?;

        // A terminal's authorisation request, named by the terminal's own id: a retry with
        // the same id is the same authorisation (the unique index), never a second payment.
        m.create_table(
            Table::create()
                .table("card_present_authorisations")
                .col(id("id"))
                .col(uuid("terminal_party_id"))
                .col(uuid("merchant_party_id"))
                .col(string("reference", 64))
                .col(uuid_null("card_id"))
                .col(string("card_masked", 24))
                .col(money(m, "amount"))
                .col(string("currency", 3))
                .col(string("status", 24))
                .col(string_null("decline_reason", 32))
                .col(uuid_null("challenge_id"))
                .col(uuid_null("armed_approval_id"))
                .col(uuid_null("hold_id"))
                .col(string_null("approval_code", 8))
                .col(money_null(m, "captured_amount"))
                .col(timestamp_null("confirm_by"))
                .col(timestamp_null("valid_until"))
                .col(timestamp("created_at"))
                .col(timestamp("updated_at"))
                .check(Expr::col("amount").gt(0))
                .to_owned(),
        )
        .await?;
        m.create_index(unique_index(
            "card_present_authorisations",
            "card_present_authorisations_reference",
            &["terminal_party_id", "reference"],
        ))
        .await?;
        m.create_index(index(
            "card_present_authorisations",
            "card_present_authorisations_card",
            &["card_id", "created_at"],
        ))
        .await?;

        // An approval the holder armed on the phone ahead of paying: one merchant, a ceiling,
        // a time window, used once.
        m.create_table(
            Table::create()
                .table("card_present_armed_approvals")
                .col(id("id"))
                .col(uuid("card_id"))
                .col(uuid("holder_party_id"))
                .col(uuid("merchant_party_id"))
                .col(money(m, "max_amount"))
                .col(string("currency", 3))
                .col(timestamp("valid_from"))
                .col(timestamp("valid_until"))
                .col(string("status", 24))
                .col(uuid_null("challenge_id"))
                .col(uuid_null("used_by_authorisation_id"))
                .col(timestamp("created_at"))
                .col(timestamp("updated_at"))
                .check(Expr::col("max_amount").gt(0))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "card_present_armed_approvals",
            "card_present_armed_approvals_card",
            &["card_id", "merchant_party_id", "status"],
        ))
        .await?;
        Ok(())
    }
}

fn int_null<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).integer().null().to_owned()
}
