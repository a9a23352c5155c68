//! Importing what the bank reports. A camt.053 or camt.054 of an institution's own account is
//! stored once (its message id), and each booked entry once (the bank's reference: the same
//! entry arrives in the day's notifications and again in its end-of-day statement). Then each
//! new entry is matched:
//! - a debit naming a sent payout's end-to-end id: the payout is paid;
//! - a credit naming one (a return): the payout is returned, the money back on the payee's
//!   withdrawal account;
//! - a credit whose remittance is an EC prepayment account's deposit reference: a deposit;
//! - anything else, or an amount that differs from what it names: left for an operator, who
//!   resolves it with a recorded reason. Nothing here corrects money on a guess.

use crate::banking::camt::{self, BankStatement, Direction, Entry, StatementKind};
use crate::banking::destinations;
use crate::banking::payouts::{self, BankOutcome};
use crate::banking::runs;
use crate::clock::Clock;
use crate::entities::{bank_balances, bank_entries, bank_statements, deposit_references};
use crate::error::{CoreError, CoreResult};
use crate::ids::{AccountId, PartyId};
use crate::ledger::{self, Applied};
use crate::money::{Currency, Money};
use rand::Rng;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryFilter};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::N(16))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum EntryStatus {
    /// Matched to a payout or a deposit it settled or created.
    Matched,
    /// Names nothing Holdfast knows: waits for an operator.
    Unmatched,
    /// Names a payout or an account, but its amount or direction does not fit: waits for an
    /// operator.
    Mismatch,
    /// An operator decided, with a reason.
    Resolved,
}

impl EntryStatus {
    /// The statuses of an entry that waits for an operator.
    pub const OPEN: [EntryStatus; 2] = [EntryStatus::Unmatched, EntryStatus::Mismatch];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryStatus::Matched => "matched",
            EntryStatus::Unmatched => "unmatched",
            EntryStatus::Mismatch => "mismatch",
            EntryStatus::Resolved => "resolved",
        }
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub entries: u32,
    /// Entries seen before (in a notification, then in the end-of-day statement).
    pub duplicates: u32,
    pub payouts_paid: u32,
    pub payouts_returned: u32,
    pub deposits: u32,
    /// Left for an operator (unmatched or mismatched).
    pub for_operator: u32,
}

// ---- deposit references (ISO 11649 creditor references) ----

/// Characters of a reference's payload: enough randomness that guessing another shopper's is
/// hopeless, short enough to type.
const REFERENCE_PAYLOAD_CHARS: usize = 12;
const BASE36: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// `payload` (1 to 21 letters and digits) as an ISO 11649 creditor reference: `RF`, two check
/// digits, the payload.
pub fn rf_reference(payload: &str) -> Option<String> {
    if !(1..=21).contains(&payload.len()) || !payload.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let remainder = mod97(&format!("{payload}RF00"))?;
    Some(format!("RF{:02}{payload}", 98 - remainder))
}

/// Whether `reference` is a well-formed ISO 11649 reference (spaces ignored, any case).
pub fn rf_valid(reference: &str) -> bool {
    let compact = super::upper_without_spaces(reference);
    if !(5..=25).contains(&compact.len()) || !compact.starts_with("RF") {
        return false;
    }
    let (head, payload) = compact.split_at(4);
    mod97(&format!("{payload}{head}")) == Some(1)
}

/// ISO 7064 MOD 97-10 over alphanumerics (A = 10 … Z = 35), as IBANs and RF references use it.
fn mod97(text: &str) -> Option<u32> {
    let mut remainder = 0u32;
    for c in text.chars() {
        let value = c.to_digit(36)?;
        remainder = if value < 10 {
            (remainder * 10 + value) % 97
        } else {
            (remainder * 100 + value) % 97
        };
    }
    Some(remainder)
}

/// The deposit reference of `account` (an EC prepayment account), made on first ask.
pub async fn deposit_reference_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    account: AccountId,
) -> CoreResult<String> {
    if let Some(row) = deposit_references::Entity::find()
        .filter(deposit_references::Column::AccountId.eq(account.uuid()))
        .one(txn)
        .await?
    {
        return Ok(row.reference);
    }
    let payload: String = {
        let mut rng = rand::rng();
        (0..REFERENCE_PAYLOAD_CHARS)
            .map(|_| char::from(BASE36[rng.random_range(0..BASE36.len())]))
            .collect()
    };
    let reference = rf_reference(&payload).ok_or(CoreError::Internal("deposit reference"))?;
    // A clash with another account's (one in 36¹²) or a concurrent first ask: the unique
    // indexes refuse it, and the caller's retry finds or makes one.
    deposit_references::Entity::insert(deposit_references::ActiveModel {
        reference: Set(reference.clone()),
        account_id: Set(account.uuid()),
        created_at: Set(clock.now()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(reference)
}

async fn account_of_reference(
    db: &impl ConnectionTrait,
    reference: &str,
) -> CoreResult<Option<AccountId>> {
    let compact = super::upper_without_spaces(reference);
    if !rf_valid(&compact) {
        return Ok(None);
    }
    Ok(deposit_references::Entity::find_by_id(compact)
        .one(db)
        .await?
        .map(|row| AccountId::from_uuid(row.account_id)))
}

// ---- import ----

/// Imports a camt.053 or camt.054 of `institution`'s own accounts. The same file again (its
/// message id) is `Applied::Already` with nothing done.
pub async fn import_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    institution: PartyId,
    xml: &str,
) -> CoreResult<Applied<ImportSummary>> {
    let statement = camt::parse(xml)?;
    let own = runs::institution_accounts(txn, institution).await?;
    // Every report must be of an account Holdfast mirrors, or the file is refused whole.
    let mut currencies = Vec::with_capacity(statement.reports.len());
    for report in &statement.reports {
        let account = own
            .iter()
            // Compared as stored: a domestic number without its hyphens.
            .find(|a| a.account.number() == destinations::compact(&report.account))
            .filter(|a| report.currency.is_none_or(|c| c == a.currency))
            .ok_or_else(|| {
                CoreError::invalid(
                    "statement: an account in it is not this institution's own account",
                )
            })?;
        currencies.push(account.currency);
    }
    let statement_id = Uuid::now_v7();
    let inserted = bank_statements::Entity::insert(bank_statements::ActiveModel {
        id: Set(statement_id),
        institution_party_id: Set(institution.uuid()),
        message_id: Set(statement.message_id.clone()),
        kind: Set(match statement.kind {
            StatementKind::EndOfDay => "end_of_day",
            StatementKind::Notification => "notification",
        }
        .to_owned()),
        entries: Set(entry_count(&statement)),
        imported_at: Set(clock.now()),
    })
    .on_conflict_do_nothing_on([
        bank_statements::Column::InstitutionPartyId,
        bank_statements::Column::MessageId,
    ])
    .exec_without_returning(txn)
    .await?;
    if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
        return Ok(Applied::Already(ImportSummary::default()));
    }
    let mut summary = ImportSummary::default();
    for (report, currency) in statement.reports.iter().zip(currencies) {
        if let Some(closing) = report.closing {
            record_balance_in_txn(txn, institution, currency, statement_id, report, closing)
                .await?;
        }
        for entry in report.entries.iter().filter(|e| e.booked) {
            summary.entries += 1;
            if entry.amount.currency() != currency {
                return Err(CoreError::invalid(
                    "statement: an entry is in another currency than its account",
                ));
            }
            let Some(row) =
                store_entry_in_txn(txn, clock, institution, statement_id, entry).await?
            else {
                summary.duplicates += 1;
                continue;
            };
            match_entry_in_txn(txn, clock, institution, row, entry, &mut summary).await?;
        }
    }
    Ok(Applied::New(summary))
}

fn entry_count(statement: &BankStatement) -> i32 {
    let count: usize = statement.reports.iter().map(|r| r.entries.len()).sum();
    i32::try_from(count).unwrap_or(i32::MAX)
}

async fn record_balance_in_txn(
    txn: &DatabaseTransaction,
    institution: PartyId,
    currency: Currency,
    statement_id: Uuid,
    report: &camt::AccountReport,
    closing: camt::Balance,
) -> CoreResult<()> {
    // A later statement of the same day (a corrected one) replaces the balance.
    bank_balances::Entity::insert(bank_balances::ActiveModel {
        id: Set(Uuid::now_v7()),
        institution_party_id: Set(institution.uuid()),
        currency: Set(currency.code().to_owned()),
        day: Set(closing.date),
        opening: Set(report.opening.map(|o| crate::db::MinorUnits(o.minor))),
        closing: Set(crate::db::MinorUnits(closing.minor)),
        statement_id: Set(statement_id),
    })
    .on_conflict(
        OnConflict::columns([
            bank_balances::Column::InstitutionPartyId,
            bank_balances::Column::Currency,
            bank_balances::Column::Day,
        ])
        .update_columns([
            bank_balances::Column::Opening,
            bank_balances::Column::Closing,
            bank_balances::Column::StatementId,
        ])
        .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Stores a booked entry; `None` when the bank reported it before (same reference).
async fn store_entry_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    institution: PartyId,
    statement_id: Uuid,
    entry: &Entry,
) -> CoreResult<Option<bank_entries::Model>> {
    let clip = |text: &Option<String>, max: usize| {
        text.as_ref()
            .map(|t| t.chars().take(max).collect::<String>())
    };
    let id = Uuid::now_v7();
    let row = bank_entries::ActiveModel {
        id: Set(id),
        statement_id: Set(statement_id),
        institution_party_id: Set(institution.uuid()),
        currency: Set(entry.amount.currency().code().to_owned()),
        reference: Set(clip(&entry.reference, 35)),
        amount: Set(crate::db::MinorUnits(entry.signed_minor())),
        booking_date: Set(entry.booking_date),
        end_to_end_id: Set(clip(&entry.end_to_end_id, 35)),
        remittance: Set(clip(&entry.remittance, 140)),
        return_reason: Set(clip(&entry.return_reason, 140)),
        status: Set(EntryStatus::Unmatched),
        transfer_id: Set(None),
        payout_id: Set(None),
        note: Set(None),
        resolved_by: Set(None),
        resolved_at: Set(None),
        created_at: Set(clock.now()),
    };
    let inserted = bank_entries::Entity::insert(row)
        .on_conflict_do_nothing_on([
            bank_entries::Column::InstitutionPartyId,
            bank_entries::Column::Currency,
            bank_entries::Column::Reference,
        ])
        .exec_without_returning(txn)
        .await?;
    if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
        return Ok(None);
    }
    Ok(bank_entries::Entity::find_by_id(id).one(txn).await?)
}

async fn match_entry_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    institution: PartyId,
    row: bank_entries::Model,
    entry: &Entry,
    summary: &mut ImportSummary,
) -> CoreResult<()> {
    let outcome = if let Some(e2e) = &entry.end_to_end_id
        && let Ok(payout) = payouts::by_end_to_end_id(txn, e2e).await
        && payout.institution == institution
    {
        let bank_outcome = match entry.direction {
            Direction::Debit if !entry.reversal => Some(BankOutcome::Paid),
            Direction::Credit => Some(BankOutcome::Returned {
                reason: entry
                    .return_reason
                    .clone()
                    .unwrap_or_else(|| "returned by the bank".to_owned()),
            }),
            Direction::Debit => None,
        };
        match bank_outcome {
            Some(bank_outcome) if payout.amount == entry.amount => {
                let paid = bank_outcome == BankOutcome::Paid;
                match payouts::record_outcome_in_txn(txn, clock, e2e, bank_outcome).await {
                    Ok(applied) => {
                        let repeated = !applied.is_new();
                        let settled = applied.into_inner();
                        let transfer = payout_transfer(txn, &settled, paid).await?;
                        // Another entry (under another bank reference, or none) reported this
                        // outcome and is linked to its transfer: linking this one too would
                        // count the money twice in the books.
                        if repeated && linked_to_an_entry(txn, transfer).await? {
                            Outcome::Mismatch(
                                "repeats an outcome of the payout another entry reported".into(),
                            )
                        } else {
                            if paid {
                                summary.payouts_paid += 1;
                            } else {
                                summary.payouts_returned += 1;
                            }
                            Outcome::Matched {
                                transfer,
                                payout: Some(settled.id.uuid()),
                            }
                        }
                    }
                    Err(CoreError::InvalidTransition { .. }) => {
                        Outcome::Mismatch("the payout cannot take this outcome in its state".into())
                    }
                    Err(other) => return Err(other),
                }
            }
            _ => Outcome::Mismatch(format!(
                "names payout {e2e}, whose amount or direction differs"
            )),
        }
    } else if entry.direction == Direction::Credit
        && !entry.reversal
        && let Some(reference) = &entry.remittance
        && let Some(account) = account_of_reference(txn, reference).await?
    {
        if row.reference.is_none() {
            // Entries are recognised when repeated (the day's statement after a notification)
            // by the bank's own reference; without one, a repeat stores again and would
            // deposit the money a second time, so an operator decides.
            Outcome::Mismatch(
                "names a deposit reference, but the bank gave the entry no reference of its \
                 own to recognise a repeat by"
                    .into(),
            )
        } else {
            deposit_from_entry(
                txn,
                clock,
                institution,
                &row,
                account,
                entry.amount,
                summary,
            )
            .await?
        }
    } else {
        Outcome::Unmatched
    };
    let (status, transfer, payout, note) = match outcome {
        Outcome::Matched { transfer, payout } => (EntryStatus::Matched, transfer, payout, None),
        Outcome::Mismatch(note) => (EntryStatus::Mismatch, None, None, Some(note)),
        Outcome::Unmatched => (EntryStatus::Unmatched, None, None, None),
    };
    if status != EntryStatus::Matched {
        summary.for_operator += 1;
    }
    bank_entries::Entity::update_many()
        .col_expr(bank_entries::Column::Status, Expr::value(status.as_str()))
        .col_expr(bank_entries::Column::TransferId, Expr::value(transfer))
        .col_expr(bank_entries::Column::PayoutId, Expr::value(payout))
        .col_expr(bank_entries::Column::Note, Expr::value(note))
        .filter(bank_entries::Column::Id.eq(row.id))
        .exec(txn)
        .await?;
    Ok(())
}

enum Outcome {
    Matched {
        transfer: Option<Uuid>,
        payout: Option<Uuid>,
    },
    Mismatch(String),
    Unmatched,
}

/// The transfer that moved a payout's money when the bank reported it.
async fn payout_transfer(
    db: &impl ConnectionTrait,
    payout: &payouts::Payout,
    paid: bool,
) -> CoreResult<Option<Uuid>> {
    let key = if paid {
        format!("payout:{}:paid", payout.id)
    } else {
        format!("payout:{}:returned", payout.id)
    };
    Ok(crate::entities::transfers::Entity::find()
        .filter(crate::entities::transfers::Column::IdempotencyKey.eq(key))
        .one(db)
        .await?
        .map(|t| t.id))
}

/// Whether a stored entry already accounts for `transfer` (the books count it through it).
async fn linked_to_an_entry(db: &impl ConnectionTrait, transfer: Option<Uuid>) -> CoreResult<bool> {
    let Some(transfer) = transfer else {
        return Ok(false);
    };
    Ok(bank_entries::Entity::find()
        .filter(bank_entries::Column::TransferId.eq(transfer))
        .count(db)
        .await?
        > 0)
}

async fn deposit_from_entry(
    txn: &DatabaseTransaction,
    clock: &Clock,
    institution: PartyId,
    row: &bank_entries::Model,
    account: AccountId,
    amount: Money,
    summary: &mut ImportSummary,
) -> CoreResult<Outcome> {
    let target = ledger::get_account(txn, account).await?;
    if target.institution != Some(institution) || target.currency != amount.currency() {
        return Ok(Outcome::Mismatch(
            "the reference is of an account at another institution or in another currency".into(),
        ));
    }
    let transfer = crate::funding::deposit_in_txn(
        txn,
        clock,
        account,
        amount,
        &format!("bank_entry:{}", row.id),
    )
    .await?
    .into_inner();
    summary.deposits += 1;
    Ok(Outcome::Matched {
        transfer: Some(transfer.uuid()),
        payout: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rf_references_carry_iso_11649_check_digits() {
        // The standard's example.
        assert_eq!(rf_reference("539007547034").unwrap(), "RF18539007547034");
        assert!(rf_valid("RF18 5390 0754 7034"));
        assert!(rf_valid("rf18539007547034"));
        assert!(!rf_valid("RF19539007547034"));
        assert!(!rf_valid("RF18539007547035"));
        assert!(!rf_valid("XX18539007547034"));
        assert!(!rf_valid("RF1"));
        for payload in ["A", "ZZZZZZZZZZZZ", "000000000000000000001"] {
            let reference = rf_reference(payload).unwrap();
            assert!(rf_valid(&reference), "{reference}");
        }
        assert_eq!(rf_reference("0000000000000000000001"), None);
        assert_eq!(rf_reference("AB-1"), None);
    }
}
