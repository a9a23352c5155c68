//! The bank side: the bank accounts payees are paid to, payouts out of the withdrawal
//! accounts, and (to come) the statements that come back and the daily reconciliation of the
//! accounts the ledger mirrors.

pub mod camt;
pub mod destinations;
pub mod pain001;
pub mod payouts;
pub mod reconciliation;
pub mod runs;
pub mod statements;
