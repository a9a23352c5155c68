//! Database schema for Holdfast, applied at server start with `Migrator::up(&db, None)`.
//!
//! Money columns hold integer minor units (cents, won): `NUMERIC(20,0)` on PostgreSQL and
//! `INTEGER` on SQLite, so arithmetic inside SQL (conditional balance updates, sums) is exact
//! on both. SQLite must never see a money value as REAL, which is what a plain `Decimal` column
//! would give it.

pub use sea_orm_migration::prelude::*;

mod columns;
mod m0001_parties_and_ledger;
mod m0002_phone_timers_outbox;
mod m0003_escrow;
mod m0004_idempotency;
mod m0005_retail;
mod m0006_cards_and_funding;
mod m0007_retail_complete;
mod m0008_confirmation_terms;
mod m0009_pharmacy;
mod m0010_insurance;
mod m0011_service_secrets;
mod m0012_console_sessions;
mod m0013_append_only_accounts;
mod m0015_payouts;
mod m0016_reconciliation;
mod m0017_payout_schedules;
mod m0018_simulated_bank;
mod m0019_bank_open_items;

#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_parties_and_ledger::Migration),
            Box::new(m0002_phone_timers_outbox::Migration),
            Box::new(m0003_escrow::Migration),
            Box::new(m0004_idempotency::Migration),
            Box::new(m0005_retail::Migration),
            Box::new(m0006_cards_and_funding::Migration),
            Box::new(m0007_retail_complete::Migration),
            Box::new(m0008_confirmation_terms::Migration),
            Box::new(m0009_pharmacy::Migration),
            Box::new(m0010_insurance::Migration),
            Box::new(m0011_service_secrets::Migration),
            Box::new(m0012_console_sessions::Migration),
            Box::new(m0013_append_only_accounts::Migration),
            Box::new(m0015_payouts::Migration),
            Box::new(m0016_reconciliation::Migration),
            Box::new(m0017_payout_schedules::Migration),
            Box::new(m0018_simulated_bank::Migration),
            Box::new(m0019_bank_open_items::Migration),
        ]
    }
}
