//! Reconciliation: per institution, currency and day, the bank's closing balance of the
//! institution's own account against what the ledger says the bank should hold, and every
//! item that explains a difference.
//!
//! The ledger's side of that account is the institution's external account: every movement
//! across the bank's boundary (a deposit coming in, a payout paid, a return) posts to it, so
//! what the bank should hold is minus its balance. A movement that came from a bank entry
//! counts on the day the bank booked the entry (an end-of-day statement imported the next
//! morning changes nothing); any other counts on the day it was posted.
//!
//! The differences:
//! - *missing on our side*: a bank entry that matched nothing (waiting for an operator);
//! - *amount mismatch*: a bank entry naming a payout or an account it does not fit;
//! - *missing at the bank*: a ledger movement across the boundary no bank entry showed (a
//!   deposit recorded by hand, say).
//!
//! Nothing is corrected here: an operator resolves each item with a recorded reason, and a
//! resolved item no longer counts as open (its money, if any, stays where it is). Each run is
//! stored; a run that is not clean raises a `reconciliation.discrepancy` event.

use crate::banking::statements::EntryStatus;
use crate::clock::Clock;
use crate::db::MinorUnits;
use crate::entities::{bank_balances, bank_entries, ledger_resolutions, reconciliations};
use crate::error::{CoreError, CoreResult};
use crate::ids::PartyId;
use crate::ledger;
use crate::money::Currency;
use chrono::{DateTime, Days, NaiveDate, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, Condition, ConnectionTrait, DatabaseTransaction, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, Statement,
};
use serde::Serialize;
use utoipa::ToSchema;

/// The longest reason an operator records.
pub const MAX_NOTE_CHARS: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    MissingOnOurSide,
    MissingAtBank,
    AmountMismatch,
}

/// One open item. `amount` is signed as it moves the bank account: positive money in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub kind: DifferenceKind,
    pub amount: i64,
    /// The bank entry, for items the bank reported.
    pub bank_entry: Option<Uuid>,
    /// The ledger transfer, for movements the bank did not show.
    pub transfer: Option<Uuid>,
    /// The bank's booking day, or the day the ledger posted it.
    pub day: Option<NaiveDate>,
    /// Why the entry was not matched, when the import knew.
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconciliation {
    pub institution: PartyId,
    pub currency: Currency,
    pub day: NaiveDate,
    /// The bank's booked closing balance; `None` until its end-of-day statement is in.
    pub bank_closing: Option<i64>,
    /// What the bank should hold by the ledger at the end of the day.
    pub ledger_balance: i64,
    /// Open items up to the end of the day, oldest first.
    pub differences: Vec<Difference>,
}

impl Reconciliation {
    /// Bank closing minus the ledger's balance; `None` without a closing balance.
    pub fn balance_difference(&self) -> Option<i64> {
        self.bank_closing.map(|bank| bank - self.ledger_balance)
    }

    /// The day's statement is in, the balances agree, and no item is open.
    pub fn is_clean(&self) -> bool {
        self.balance_difference() == Some(0) && self.differences.is_empty()
    }
}

#[derive(Debug, FromQueryResult)]
struct Total {
    total: Option<MinorUnits>,
}

#[derive(Debug, FromQueryResult)]
struct Movement {
    transfer_id: Uuid,
    amount: MinorUnits,
    created_at: DateTime<Utc>,
}

/// The start of the day after `day`, in UTC: what "by the end of `day`" is cut at.
fn end_of(day: NaiveDate) -> CoreResult<DateTime<Utc>> {
    day.checked_add_days(Days::new(1))
        .and_then(|next| next.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc())
        .ok_or_else(|| CoreError::invalid("the day is out of range"))
}

/// `institution`'s books in `currency` at the end of `day`, against the bank's.
pub async fn reconcile(
    db: &impl ConnectionTrait,
    institution: PartyId,
    currency: Currency,
    day: NaiveDate,
) -> CoreResult<Reconciliation> {
    let cutoff = end_of(day)?;
    let bank_closing = bank_balances::Entity::find()
        .filter(bank_balances::Column::InstitutionPartyId.eq(institution.uuid()))
        .filter(bank_balances::Column::Currency.eq(currency.code()))
        .filter(bank_balances::Column::Day.eq(day))
        .one(db)
        .await?
        .map(|row| row.closing.0);
    let external =
        ledger::find_keyed_account(db, &ledger::keys::external(institution, currency)).await?;
    let backend = db.get_database_backend();
    let p = |n: usize| match backend {
        sea_orm::DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    };
    let (ledger_balance, missing_at_bank) = match &external {
        None => (0, Vec::new()),
        Some(external) => {
            // Linked movements count on the bank's booking day, the rest on their own.
            let sql = format!(
                "SELECT SUM(p.amount) AS total FROM postings p \
                 LEFT JOIN bank_entries e ON e.transfer_id = p.transfer_id \
                 WHERE p.account_id = {} AND ((e.id IS NOT NULL AND e.booking_date <= {}) \
                    OR (e.id IS NULL AND p.created_at < {}))",
                p(1),
                p(2),
                p(3)
            );
            let total = Total::find_by_statement(Statement::from_sql_and_values(
                backend,
                sql,
                [external.id.uuid().into(), day.into(), cutoff.into()],
            ))
            .one(db)
            .await?
            .and_then(|t| t.total)
            .map_or(0, |t| t.0);
            let sql = format!(
                "SELECT p.transfer_id AS transfer_id, p.amount AS amount, p.created_at AS created_at \
                 FROM postings p \
                 WHERE p.account_id = {} AND p.created_at < {} \
                   AND NOT EXISTS (SELECT 1 FROM bank_entries e WHERE e.transfer_id = p.transfer_id) \
                   AND NOT EXISTS (SELECT 1 FROM ledger_resolutions r WHERE r.transfer_id = p.transfer_id) \
                 ORDER BY p.created_at, p.id",
                p(1),
                p(2)
            );
            let movements = Movement::find_by_statement(Statement::from_sql_and_values(
                backend,
                sql,
                [external.id.uuid().into(), cutoff.into()],
            ))
            .all(db)
            .await?;
            // The external account's side is the mirror of the bank's: money in is a debit.
            (-total, movements)
        }
    };
    let mut differences: Vec<Difference> = bank_entries::Entity::find()
        .filter(bank_entries::Column::InstitutionPartyId.eq(institution.uuid()))
        .filter(bank_entries::Column::Currency.eq(currency.code()))
        .filter(bank_entries::Column::Status.is_in(EntryStatus::OPEN))
        .filter(
            Condition::any()
                .add(bank_entries::Column::BookingDate.lte(day))
                .add(
                    Condition::all()
                        .add(bank_entries::Column::BookingDate.is_null())
                        .add(bank_entries::Column::CreatedAt.lt(cutoff)),
                ),
        )
        .order_by_asc(bank_entries::Column::CreatedAt)
        .all(db)
        .await?
        .into_iter()
        .map(|entry| Difference {
            kind: if entry.status == EntryStatus::Mismatch {
                DifferenceKind::AmountMismatch
            } else {
                DifferenceKind::MissingOnOurSide
            },
            amount: entry.amount.0,
            bank_entry: Some(entry.id),
            transfer: None,
            day: entry.booking_date,
            note: entry.note,
        })
        .collect();
    differences.extend(missing_at_bank.into_iter().map(|movement| Difference {
        kind: DifferenceKind::MissingAtBank,
        amount: -movement.amount.0,
        bank_entry: None,
        transfer: Some(movement.transfer_id),
        day: Some(movement.created_at.date_naive()),
        note: None,
    }));
    Ok(Reconciliation {
        institution,
        currency,
        day,
        bank_closing,
        ledger_balance,
        differences,
    })
}

/// Reconciles and stores the result (a later run of the same day replaces it); a run that is
/// not clean publishes `reconciliation.discrepancy` to the institution.
pub async fn run_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    institution: PartyId,
    currency: Currency,
    day: NaiveDate,
) -> CoreResult<Reconciliation> {
    let result = reconcile(txn, institution, currency, day).await?;
    let open_items = i32::try_from(result.differences.len()).unwrap_or(i32::MAX);
    reconciliations::Entity::insert(reconciliations::ActiveModel {
        id: Set(Uuid::now_v7()),
        institution_party_id: Set(institution.uuid()),
        currency: Set(currency.code().to_owned()),
        day: Set(day),
        bank_closing: Set(result.bank_closing.map(MinorUnits)),
        ledger_balance: Set(MinorUnits(result.ledger_balance)),
        open_items: Set(open_items),
        clean: Set(result.is_clean()),
        reconciled_at: Set(clock.now()),
    })
    .on_conflict(
        OnConflict::columns([
            reconciliations::Column::InstitutionPartyId,
            reconciliations::Column::Currency,
            reconciliations::Column::Day,
        ])
        .update_columns([
            reconciliations::Column::BankClosing,
            reconciliations::Column::LedgerBalance,
            reconciliations::Column::OpenItems,
            reconciliations::Column::Clean,
            reconciliations::Column::ReconciledAt,
        ])
        .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    crate::outcomes::count(crate::outcomes::Outcome::Reconciled {
        clean: result.is_clean(),
    });
    if !result.is_clean() {
        crate::events::publish_in_txn(
            txn,
            clock,
            institution,
            "reconciliation.discrepancy",
            serde_json::json!({
                "currency": currency.code(),
                "day": day,
                "bank_closing": result.bank_closing.map(|m| ledger::signed_decimal(m, currency)),
                "ledger_balance": ledger::signed_decimal(result.ledger_balance, currency),
                "open_items": open_items,
            }),
        )
        .await?;
    }
    Ok(result)
}

/// How many of the latest runs that were not clean [`open_movements`] looks at.
pub const MAX_OPEN_MOVEMENT_RUNS: u64 = 50;

/// A ledger movement the bank never showed, still open, of `institution` in `currency`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenMovement {
    pub institution: PartyId,
    pub currency: Currency,
    /// The reconciliation day it was found open on.
    pub reconciled_day: NaiveDate,
    pub difference: Difference,
}

/// The movements missing at the bank that are still open, for an operator to resolve: each
/// institution's and currency's latest stored run that was not clean (at most
/// [`MAX_OPEN_MOVEMENT_RUNS`] runs, newest day first), reconciled again now — so a movement
/// resolved, or matched by a bank entry since, is gone. An older day's open movement is still
/// open on every later day, so the latest run shows them all.
pub async fn open_movements(db: &impl ConnectionTrait) -> CoreResult<Vec<OpenMovement>> {
    let runs = reconciliations::Entity::find()
        .filter(reconciliations::Column::Clean.eq(false))
        .order_by_desc(reconciliations::Column::Day)
        .order_by_asc(reconciliations::Column::Id)
        .limit(MAX_OPEN_MOVEMENT_RUNS)
        .all(db)
        .await?;
    let mut seen = std::collections::HashSet::new();
    let mut open = Vec::new();
    for run in runs {
        if !seen.insert((run.institution_party_id, run.currency.clone())) {
            continue;
        }
        let Ok(currency) = run.currency.parse::<Currency>() else {
            continue;
        };
        let institution = PartyId::from_uuid(run.institution_party_id);
        let day = reconcile(db, institution, currency, run.day).await?;
        open.extend(
            day.differences
                .into_iter()
                .filter(|d| d.kind == DifferenceKind::MissingAtBank)
                .map(|difference| OpenMovement {
                    institution,
                    currency,
                    reconciled_day: run.day,
                    difference,
                }),
        );
    }
    Ok(open)
}

fn checked_note(note: &str) -> CoreResult<String> {
    let note = note.trim();
    if note.is_empty() || note.chars().count() > MAX_NOTE_CHARS {
        return Err(CoreError::invalid(
            "a resolution needs a reason of 1 to 500 characters",
        ));
    }
    Ok(note.to_owned())
}

/// An operator resolves an unmatched or mismatched bank entry with a reason. The money it
/// names stays where it is (a deposit to credit by hand is made as a deposit, then resolved).
pub async fn resolve_entry_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    institution: PartyId,
    entry: Uuid,
    operator: PartyId,
    note: &str,
) -> CoreResult<()> {
    let note = checked_note(note)?;
    let updated = bank_entries::Entity::update_many()
        .col_expr(
            bank_entries::Column::Status,
            Expr::value(EntryStatus::Resolved.as_str()),
        )
        .col_expr(bank_entries::Column::Note, Expr::value(note))
        .col_expr(
            bank_entries::Column::ResolvedBy,
            Expr::value(operator.uuid()),
        )
        .col_expr(bank_entries::Column::ResolvedAt, Expr::value(clock.now()))
        .filter(bank_entries::Column::Id.eq(entry))
        .filter(bank_entries::Column::InstitutionPartyId.eq(institution.uuid()))
        .filter(bank_entries::Column::Status.is_in(EntryStatus::OPEN))
        .exec(txn)
        .await?;
    if updated.rows_affected == 1 {
        return Ok(());
    }
    match bank_entries::Entity::find_by_id(entry)
        .filter(bank_entries::Column::InstitutionPartyId.eq(institution.uuid()))
        .one(txn)
        .await?
    {
        None => Err(CoreError::NotFound("bank entry")),
        Some(row) => Err(CoreError::InvalidTransition {
            state: row.status.as_str(),
            action: "resolve it",
        }),
    }
}

/// An operator places an unmatched credit the bank booked (a shopper who mistyped the
/// reference, say) on the funding account it was meant for: a deposit, counted on the bank's
/// booking day, and the entry resolved with the reason. Returns the deposit's transfer.
pub async fn assign_entry_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    institution: PartyId,
    entry: Uuid,
    account: crate::ids::AccountId,
    operator: PartyId,
    note: &str,
) -> CoreResult<Uuid> {
    let note = checked_note(note)?;
    let row = bank_entries::Entity::find_by_id(entry)
        .filter(bank_entries::Column::InstitutionPartyId.eq(institution.uuid()))
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("bank entry"))?;
    if row.status != EntryStatus::Unmatched || row.amount.0 <= 0 {
        return Err(CoreError::InvalidTransition {
            state: row.status.as_str(),
            action: "place it on an account (only an unmatched credit can be)",
        });
    }
    let target = ledger::get_account(txn, account).await?;
    if target.institution != Some(institution) || target.currency.code() != row.currency {
        return Err(CoreError::invalid(
            "the account is at another institution or in another currency",
        ));
    }
    let amount = crate::money::Money::from_minor(row.amount.0, target.currency)?;
    let transfer =
        crate::funding::deposit_in_txn(txn, clock, account, amount, &format!("bank_entry:{entry}"))
            .await?
            .into_inner();
    let updated = bank_entries::Entity::update_many()
        .col_expr(
            bank_entries::Column::Status,
            Expr::value(EntryStatus::Resolved.as_str()),
        )
        .col_expr(
            bank_entries::Column::TransferId,
            Expr::value(transfer.uuid()),
        )
        .col_expr(bank_entries::Column::Note, Expr::value(note))
        .col_expr(
            bank_entries::Column::ResolvedBy,
            Expr::value(operator.uuid()),
        )
        .col_expr(bank_entries::Column::ResolvedAt, Expr::value(clock.now()))
        .filter(bank_entries::Column::Id.eq(entry))
        .filter(bank_entries::Column::Status.eq(EntryStatus::Unmatched))
        .exec(txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(CoreError::Conflict);
    }
    Ok(transfer.uuid())
}

/// An operator resolves a ledger movement the bank never showed, with a reason. Only a
/// movement across `institution`'s boundary (a posting to its external account) that no bank
/// entry matched; once only.
pub async fn resolve_transfer_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    institution: PartyId,
    currency: Currency,
    transfer: Uuid,
    operator: PartyId,
    note: &str,
) -> CoreResult<()> {
    let note = checked_note(note)?;
    let external = ledger::find_keyed_account(txn, &ledger::keys::external(institution, currency))
        .await?
        .ok_or(CoreError::NotFound("ledger movement"))?;
    let crosses = crate::entities::postings::Entity::find()
        .filter(crate::entities::postings::Column::TransferId.eq(transfer))
        .filter(crate::entities::postings::Column::AccountId.eq(external.id.uuid()))
        .one(txn)
        .await?
        .is_some();
    let matched = bank_entries::Entity::find()
        .filter(bank_entries::Column::TransferId.eq(transfer))
        .one(txn)
        .await?
        .is_some();
    if !crosses || matched {
        return Err(CoreError::NotFound("ledger movement"));
    }
    let inserted = ledger_resolutions::Entity::insert(ledger_resolutions::ActiveModel {
        transfer_id: Set(transfer),
        institution_party_id: Set(institution.uuid()),
        note: Set(note),
        resolved_by: Set(operator.uuid()),
        resolved_at: Set(clock.now()),
    })
    .on_conflict_do_nothing()
    .exec_without_returning(txn)
    .await?;
    if matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
        Ok(())
    } else {
        Err(CoreError::InvalidTransition {
            state: "resolved",
            action: "resolve it",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_ends_at_the_next_midnight_utc() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        assert_eq!(
            end_of(day).unwrap().to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
    }
}
