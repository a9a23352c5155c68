//! The console's sign-in sessions. The cookie holds 32 random bytes; the table only their
//! SHA-256, so a copy of the database signs nobody in. A session without a party is a visitor's
//! (it carries the CSRF token of the sign-in forms, a card login in progress, or the phone
//! simulator's key having been given); signing in replaces it with a new one.

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
                .table("console_sessions")
                // Hex of the SHA-256 of the cookie's value.
                .col(
                    ColumnDef::new("id_hash")
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(uuid_null("party_id"))
                .col(string_null("role", 24))
                // The card a shopper signed in with.
                .col(uuid_null("card_id"))
                .col(string("csrf_token", 64))
                // The phone simulator's key was given (or the session is an operator's).
                .col(boolean("phone_access"))
                // A card login waiting for its code.
                .col(uuid_null("pending_login"))
                .col(timestamp("created_at"))
                .col(timestamp("expires_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "console_sessions",
            "console_sessions_expires",
            &["expires_at"],
        ))
        .await
    }
}
