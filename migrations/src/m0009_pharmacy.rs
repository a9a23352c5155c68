//! Prescriptions, hospitals, member drugstores, claims and the audit of reads.
//!
//! Prescription content (drug names, doses, notes) lives only in `pharmacy_prescriptions.notes`
//! and `pharmacy_prescription_items`; every other table, the escrow case and the phone texts
//! carry the prescription number and states, never content.

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
        // A hospital: an organisation record (it moves no money, so it is no party). Its code
        // goes into every prescription number it issues, with a per-hospital sequence.
        m.create_table(
            Table::create()
                .table("pharmacy_hospitals")
                .col(id("id"))
                .col(string("name", 200))
                .col(string("code", 6).unique_key().to_owned())
                .col(int("next_sequence"))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;

        // Prescriber staff, each a party of its own with a login, at one hospital.
        m.create_table(
            Table::create()
                .table("pharmacy_prescribers")
                .col(
                    ColumnDef::new("party_id")
                        .uuid()
                        .not_null()
                        .primary_key()
                        .to_owned(),
                )
                .col(uuid("hospital_id"))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "pharmacy_prescribers",
            "pharmacy_prescribers_hospital",
            &["hospital_id"],
        ))
        .await?;

        // A member drugstore is a party (the payee of its prescriptions, with its own login);
        // its pharmacists are parties linked to it. The drugstore links to itself, so one
        // look-up finds the drugstore any of its staff acts for.
        m.create_table(
            Table::create()
                .table("pharmacy_drugstores")
                .col(
                    ColumnDef::new("party_id")
                        .uuid()
                        .not_null()
                        .primary_key()
                        .to_owned(),
                )
                .col(int("commission_bps"))
                .col(timestamp("created_at"))
                .check(Expr::col("commission_bps").gte(0))
                .check(Expr::col("commission_bps").lt(10_000))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("pharmacy_drugstore_staff")
                .col(
                    ColumnDef::new("party_id")
                        .uuid()
                        .not_null()
                        .primary_key()
                        .to_owned(),
                )
                .col(uuid("drugstore_party_id"))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("pharmacy_prescriptions")
                .col(id("id"))
                // 18 characters without the hyphens, the last a MOD 37-2 check character.
                .col(string("number", 18).unique_key().to_owned())
                .col(uuid("hospital_id"))
                .col(uuid("prescriber_party_id"))
                .col(uuid("patient_party_id"))
                .col(uuid("patient_card_id"))
                .col(string("state", 24))
                // The drugstore the patient chose at prescribing time (flow A).
                .col(uuid_null("routed_drugstore_party_id"))
                // The drugstore holding the claim, or asking for the patient's consent.
                .col(uuid_null("holder_drugstore_party_id"))
                // SHA-256 of the claim secret; the secret itself is shown once, never stored.
                .col(string_null("claim_secret_hash", 64))
                .col(timestamp_null("claimed_at"))
                .col(uuid_null("consent_challenge_id"))
                .col(timestamp_null("consent_expires_at"))
                .col(text_null("notes"))
                .col(timestamp("issued_at"))
                .col(timestamp("expires_at"))
                .col(money_null(m, "price"))
                .col(money_null(m, "commission"))
                .col(string_null("currency", 3))
                .col(string_null("payment_method", 16))
                .col(
                    ColumnDef::new("installment_months")
                        .integer()
                        .null()
                        .to_owned(),
                )
                .col(uuid_null("case_id"))
                .col(timestamp_null("dispensed_at"))
                .col(uuid_null("dispensed_by_party_id"))
                .col(string_null("handover", 32))
                .col(timestamp("created_at"))
                .col(timestamp("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "pharmacy_prescriptions",
            "pharmacy_prescriptions_patient",
            &["patient_party_id", "created_at"],
        ))
        .await?;
        m.create_index(index(
            "pharmacy_prescriptions",
            "pharmacy_prescriptions_hospital",
            &["hospital_id", "created_at"],
        ))
        .await?;
        m.create_index(index(
            "pharmacy_prescriptions",
            "pharmacy_prescriptions_holder",
            &["holder_drugstore_party_id", "created_at"],
        ))
        .await?;
        m.create_index(index(
            "pharmacy_prescriptions",
            "pharmacy_prescriptions_routed",
            &["routed_drugstore_party_id", "created_at"],
        ))
        .await?;
        m.create_index(unique_index(
            "pharmacy_prescriptions",
            "pharmacy_prescriptions_case",
            &["case_id"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("pharmacy_prescription_items")
                .col(id("id"))
                .col(uuid("prescription_id"))
                .col(int("line_no"))
                .col(string("drug_code", 32))
                .col(string("name", 200))
                .col(string("strength", 64))
                .col(string("dose", 500))
                .col(int("quantity"))
                .col(string("unit", 32))
                .col(int("days"))
                .col(string("class", 16))
                .check(Expr::col("quantity").gt(0))
                .check(Expr::col("days").gt(0))
                .to_owned(),
        )
        .await?;
        m.create_index(unique_index(
            "pharmacy_prescription_items",
            "pharmacy_prescription_items_line",
            &["prescription_id", "line_no"],
        ))
        .await?;

        // Every read of a prescription (its content, its FHIR view, its existence): who, in
        // what role, when, what. Append-only; listed to the patient.
        m.create_table(
            Table::create()
                .table("pharmacy_access_log")
                .col(id("id"))
                .col(uuid("prescription_id"))
                .col(string("prescription_number", 18))
                .col(uuid("patient_party_id"))
                .col(uuid("reader_party_id"))
                .col(string("reader_role", 24))
                .col(string("reader_name", 200))
                .col(string_null("organisation", 200))
                .col(string("what", 24))
                .col(timestamp("at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "pharmacy_access_log",
            "pharmacy_access_log_patient",
            &["patient_party_id", "at"],
        ))
        .await?;

        // The prescription's workflow history (no content).
        m.create_table(
            Table::create()
                .table("pharmacy_prescription_events")
                .col(id("id"))
                .col(uuid("prescription_id"))
                .col(string("kind", 48))
                .col(string_null("from_state", 24))
                .col(string_null("to_state", 24))
                .col(uuid_null("actor_party_id"))
                .col(string_null("detail", 300))
                .col(timestamp("at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "pharmacy_prescription_events",
            "pharmacy_prescription_events_prescription",
            &["prescription_id", "at"],
        ))
        .await?;
        Ok(())
    }
}
