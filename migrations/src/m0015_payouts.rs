//! Payouts. Where a payee is paid: the bank account its withdrawal account pays out to. A
//! registered or changed destination is `pending` until the payee confirms it; confirming
//! supersedes the one active before it. Rows are never deleted, so the table is the
//! destination's history. A payout moves money from a withdrawal account into the paying
//! institution's payouts-in-transit account until the bank reports it paid or returned. A
//! bank run writes the pending payouts of one institution into a credit transfer file, sent
//! from the institution's own account at its bank (the account the ledger mirrors as the
//! institution's external account).

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
                .table("payout_destinations")
                .col(id("id"))
                .col(uuid("party_id"))
                // `iban` or `domestic`.
                .col(string("scheme", 16))
                // The IBAN in electronic form (no spaces, upper case), for `iban`.
                .col(string_null("iban", 34))
                // The bank's code and the account's number, for `domestic`.
                .col(string_null("bank_code", 16))
                .col(string_null("account_number", 34))
                .col(string("holder_name", 140))
                // `pending`, `active`, `superseded` or `cancelled`.
                .col(string("status", 16))
                .col(timestamp("created_at"))
                .col(timestamp_null("confirmed_at"))
                .col(timestamp_null("ended_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("payout_destinations_party_fk")
                        .from("payout_destinations", "party_id")
                        .to("parties", "id"),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "payout_destinations",
            "payout_destinations_party",
            &["party_id", "created_at"],
        ))
        .await?;
        // One active and one pending destination per payee at most: the uniqueness a
        // confirmation race relies on (both databases support partial indexes).
        let db = m.get_connection();
        db.execute_unprepared(
            "CREATE UNIQUE INDEX payout_destinations_one_active ON payout_destinations \
             (party_id) WHERE status = 'active'",
        )
        .await?;
        db.execute_unprepared(
            "CREATE UNIQUE INDEX payout_destinations_one_pending ON payout_destinations \
             (party_id) WHERE status = 'pending'",
        )
        .await?;

        m.create_table(
            Table::create()
                .table("payouts")
                .col(id("id"))
                .col(uuid("party_id"))
                // The payee's key for this request: a retry finds the first payout.
                .col(string("idempotency_key", 160))
                .col(uuid("destination_id"))
                // The bank that sends the money (the debtor's agent of the credit transfer).
                .col(uuid("institution_party_id"))
                .col(uuid("withdrawal_account_id"))
                .col(string("currency", 3))
                // What was asked: an amount, or NULL for everything on the account.
                .col(money_null(m, "requested_amount"))
                .col(money(m, "amount"))
                // `pending`, `sent`, `paid` or `returned`.
                .col(string("status", 16))
                // ISO 20022 end-to-end id (at most 35 characters): statements name the payout by it.
                .col(string("end_to_end_id", 35))
                .col(string_null("return_reason", 140))
                .col(timestamp("created_at"))
                .col(timestamp_null("sent_at"))
                .col(timestamp_null("settled_at"))
                // The credit transfer file that carried it.
                .col(uuid_null("bank_file_id"))
                .foreign_key(
                    ForeignKey::create()
                        .name("payouts_destination_fk")
                        .from("payouts", "destination_id")
                        .to("payout_destinations", "id"),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(unique_index(
            "payouts",
            "payouts_idempotency",
            &["party_id", "idempotency_key"],
        ))
        .await?;
        m.create_index(unique_index(
            "payouts",
            "payouts_end_to_end",
            &["end_to_end_id"],
        ))
        .await?;
        m.create_index(index(
            "payouts",
            "payouts_party",
            &["party_id", "created_at"],
        ))
        .await?;
        m.create_index(index(
            "payouts",
            "payouts_status",
            &["institution_party_id", "status", "created_at"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("institution_bank_accounts")
                .col(id("id"))
                .col(uuid("institution_party_id"))
                .col(string("currency", 3))
                .col(string("scheme", 16))
                .col(string_null("iban", 34))
                .col(string_null("bank_code", 16))
                .col(string_null("account_number", 34))
                .col(string_null("bic", 11))
                .col(string("holder_name", 140))
                .col(timestamp("created_at"))
                .col(timestamp("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(unique_index(
            "institution_bank_accounts",
            "institution_bank_accounts_one",
            &["institution_party_id", "currency"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("bank_files")
                .col(id("id"))
                .col(uuid("institution_party_id"))
                // The file's ISO 20022 message id: a bank refuses one it has seen.
                .col(string("message_id", 35))
                .col(string("format", 24))
                .col(text("content"))
                .col(int("transfers"))
                .col(timestamp("created_at"))
                // When the bank gateway took it; NULL until then (handed over again after a crash).
                .col(timestamp_null("handed_over_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(unique_index(
            "bank_files",
            "bank_files_message",
            &["message_id"],
        ))
        .await?;
        m.create_index(index(
            "bank_files",
            "bank_files_institution",
            &["institution_party_id", "created_at"],
        ))
        .await?;

        // The reference a shopper puts on a bank transfer to its EC prepayment account (ISO
        // 11649 `RF…`), one per account.
        m.create_table(
            Table::create()
                .table("deposit_references")
                .col(
                    ColumnDef::new("reference")
                        .string_len(25)
                        .not_null()
                        .primary_key(),
                )
                .col(uuid("account_id"))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(unique_index(
            "deposit_references",
            "deposit_references_account",
            &["account_id"],
        ))
        .await?;

        // Statements imported (camt.053 and camt.054): a message id once per institution.
        m.create_table(
            Table::create()
                .table("bank_statements")
                .col(id("id"))
                .col(uuid("institution_party_id"))
                .col(string("message_id", 35))
                // `end_of_day` or `notification`.
                .col(string("kind", 16))
                .col(int("entries"))
                .col(timestamp("imported_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(unique_index(
            "bank_statements",
            "bank_statements_message",
            &["institution_party_id", "message_id"],
        ))
        .await?;

        // Each booked entry the bank reported, once (by the bank's reference), and what became
        // of it: matched to a payout or a deposit, or waiting for an operator.
        m.create_table(
            Table::create()
                .table("bank_entries")
                .col(id("id"))
                .col(uuid("statement_id"))
                .col(uuid("institution_party_id"))
                .col(string("currency", 3))
                .col(string_null("reference", 35))
                // Signed minor units: negative for a debit.
                .col(money(m, "amount"))
                .col(ColumnDef::new("booking_date").date().null().to_owned())
                .col(string_null("end_to_end_id", 35))
                .col(string_null("remittance", 140))
                .col(string_null("return_reason", 140))
                // `matched`, `unmatched`, `mismatch` or `resolved`.
                .col(string("status", 16))
                .col(uuid_null("transfer_id"))
                .col(uuid_null("payout_id"))
                .col(string_null("note", 500))
                .col(uuid_null("resolved_by"))
                .col(timestamp_null("resolved_at"))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(unique_index(
            "bank_entries",
            "bank_entries_reference",
            &["institution_party_id", "currency", "reference"],
        ))
        .await?;
        m.create_index(index(
            "bank_entries",
            "bank_entries_status",
            &["institution_party_id", "status", "created_at"],
        ))
        .await?;

        // The bank's booked balances of an institution's account, per day (camt.053).
        m.create_table(
            Table::create()
                .table("bank_balances")
                .col(id("id"))
                .col(uuid("institution_party_id"))
                .col(string("currency", 3))
                .col(ColumnDef::new("day").date().not_null().to_owned())
                .col(money_null(m, "opening"))
                .col(money(m, "closing"))
                .col(uuid("statement_id"))
                .to_owned(),
        )
        .await?;
        m.create_index(unique_index(
            "bank_balances",
            "bank_balances_day",
            &["institution_party_id", "currency", "day"],
        ))
        .await?;
        Ok(())
    }
}
