//! Storage rows, one module per table. These are the database's shape, not the API's: use
//! cases turn them into domain types before anything leaves the crate.

pub mod accounts;
pub mod bank_balances;
pub mod bank_entries;
pub mod bank_files;
pub mod bank_statements;
pub mod cards;
pub mod case_events;
pub mod challenges;
pub mod credentials;
pub mod credit_class_caps;
pub mod deposit_references;
pub mod escrow_cases;
pub mod holds;
pub mod institution_bank_accounts;
pub mod institutions;
pub mod ledger_resolutions;
pub mod outbox;
pub mod parties;
pub mod party_events;
pub mod payout_destinations;
pub mod payout_schedules;
pub mod payouts;
pub mod phone_inbox;
pub mod postings;
pub mod reconciliations;
pub mod timers;
pub mod transfers;
pub mod webhook_endpoints;
