//! The bank side: the bank accounts payees are paid to, payouts out of the withdrawal
//! accounts, and (to come) the statements that come back and the daily reconciliation of the
//! accounts the ledger mirrors.

/// Text as typed or printed, upper case and without white space: how IBANs, references and
/// account identifications compare.
pub(crate) fn upper_without_spaces(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

pub mod camt;
pub mod destinations;
pub mod lists;
pub mod pain001;
pub mod payee;
pub mod payouts;
pub mod reconciliation;
pub mod runs;
pub mod schedule;
pub mod statements;
