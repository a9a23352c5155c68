//! Payout schedules: a payee's standing order to sweep its withdrawal account to its bank once
//! a day, at a fixed hour (UTC), when the account holds at least a minimum. One row per payee
//! and currency; the sweep itself is a timer (`payout_sweep`) whose subject is the payee.

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
                .table("payout_schedules")
                // One schedule per payee: the timer's subject is the payee.
                .col(id("party_id"))
                .col(boolean("enabled"))
                .col(string("currency", 3))
                // Sweep only when the withdrawal account holds at least this (minor units).
                .col(money(m, "minimum"))
                // The hour of the day (0–23, UTC) the sweep runs at.
                .col(int("hour_utc"))
                .col(timestamp("updated_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("payout_schedules_party_fk")
                        .from("payout_schedules", "party_id")
                        .to("parties", "id"),
                )
                .to_owned(),
        )
        .await
    }
}
