//! Phone challenges, the phone simulator's inbox, the transactional outbox and the durable
//! timer table.

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
                .table("challenges")
                .col(id("id"))
                .col(string("purpose", 32))
                .col(uuid("party_id"))
                .col(string("phone_e164", 20))
                .col(uuid_null("subject_id"))
                .col(money_null(m, "amount"))
                .col(string_null("currency", 3))
                .col(string_null("payee", 200))
                .col(string_null("order_number", 32))
                .col(string("digest", 64))
                .col(string("code_mac", 64))
                .col(string("status", 16))
                .col(int("failed_attempts"))
                .col(int("max_attempts"))
                .col(int("sends"))
                .col(timestamp("expires_at"))
                .col(timestamp("created_at"))
                .col(timestamp_null("resolved_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("challenges", "challenges_subject", &["subject_id"]))
            .await?;

        m.create_table(
            Table::create()
                .table("phone_inbox")
                .col(id("id"))
                .col(string("phone_e164", 20))
                .col(uuid_null("challenge_id"))
                .col(text("body"))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "phone_inbox",
            "phone_inbox_phone",
            &["phone_e164", "created_at"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("outbox")
                .col(id("id"))
                .col(string("channel", 32))
                .col(string("destination", 200))
                .col(text("payload"))
                .col(string("status", 16))
                .col(int("attempts"))
                .col(timestamp("next_attempt_at"))
                .col(timestamp_null("lease_until"))
                .col(text_null("last_error"))
                .col(timestamp("created_at"))
                .col(timestamp_null("delivered_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "outbox",
            "outbox_due",
            &["status", "next_attempt_at"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table("timers")
                .col(id("id"))
                .col(string("kind", 40))
                .col(uuid("subject_id"))
                .col(timestamp("due_at"))
                .col(string("status", 16))
                .col(int("attempts"))
                .col(timestamp_null("lease_until"))
                .col(timestamp_null("fired_at"))
                .col(text_null("last_error"))
                .col(timestamp("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("timers", "timers_due", &["status", "due_at"]))
            .await?;
        // One live timer per (kind, subject): scheduling twice is a no-op, not a second firing.
        m.get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX timers_one_pending ON timers (kind, subject_id) \
                 WHERE status = 'pending'",
            )
            .await?;
        Ok(())
    }
}
