//! The double-entry ledger. Money moves only as transfers whose postings sum to zero; an
//! account's balance is the sum of its postings. Balances are credit-normal: positive means the
//! account holds money.
//!
//! # Locked and append-only accounts
//!
//! A customer's funding account is touched by its own holder's transactions only: each posting
//! updates its cached `balance` at once, with a conditional update that refuses an overdraft
//! (and holds the row lock until commit, which nobody else is waiting for).
//!
//! The shared accounts — the freezing shards every purchase moves money through, the
//! platform's commission, each seller's withdrawal account, institution fees, penalties and
//! the institutions' external accounts — are credited by many transactions at once. Locking
//! their row for the rest of each transaction made every settlement wait for the one before it,
//! so they are **append-only** ([`AccountKind::is_append_only`]): a transfer only inserts their
//! postings, unfolded, and never touches their row. Their exact balance is
//! `balance + Σ unfolded postings`, which every read here computes ([`get_account`],
//! [`accounts_of`]). The fold step ([`fold_account_in_txn`], run by a server worker) adds an
//! account's unfolded postings to its `balance` in id order and marks them folded in the same
//! transaction: crash-safe (all or nothing) and idempotent (a posting is folded only by the
//! statement that flips its flag, under the account's row lock).
//!
//! Debits of an append-only account stay safe:
//! - an unbounded (external) account may go below zero: its debits are appended;
//! - a freezing account is debited only when a hold resolves (`settle` or `unfreeze`
//!   transfers naming the hold), for money that hold itself put there; the hold's own
//!   once-only transition guards it, so these debits are appended too, and the audit proves
//!   every freezing account's exact balance equals its pending holds;
//! - every other debit (a payout or refund out of a withdrawal, commission or fee account)
//!   locks that one account's row, then checks `balance + Σ unfolded` in a second statement —
//!   a fresh snapshot, taken after any fold that held the lock has committed — and updates the
//!   folded balance directly. The lock lasts to commit, but only these rare debits and the
//!   fold take it.
//!
//! [`audit`] proves `balance` equals the account's folded postings, that no account is below
//! what it may owe counting its unfolded postings, and that locked accounts have none.
//!
//! Lock order: a transfer's legs are applied in account id order (cold updates and checked
//! debits alike), so two transfers cannot deadlock; the fold locks one account at a time and
//! skips one that is locked.

mod account;
mod auditing;
mod folding;

use account::UNFOLDED_OF_ROW;
pub use account::{
    Account, NewAccount, accounts_of, find_keyed_account, get_account,
    get_or_open_keyed_account_in_txn, keys, open_account_in_txn, signed_decimal,
};
pub use auditing::{LedgerAudit, audit};
pub use folding::{Folded, accounts_to_fold, fold_account_in_txn};

use crate::clock::Clock;
use crate::db::MinorUnits;
use crate::entities::{accounts, postings, transfers};
use crate::error::{CoreError, CoreResult};
use crate::ids::{AccountId, CaseId, HoldId, TransferId};
use crate::money::{Currency, MAX_MINOR_UNITS, Money};
use rust_decimal::Decimal;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, Condition, ConnectionTrait, DatabaseTransaction, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
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
    db_type = "String(StringLen::N(32))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// A customer's EC prepayment account: spends what was deposited.
    Prepaid,
    /// A normal bank account: spends its balance.
    BankAccount,
    /// An EC bank account with a credit line: balance plus the line's limit.
    BankCreditLine,
    /// A normal credit card's limit.
    CardCredit,
    /// An EC-exclusive credit line on a card, separate from the card's normal limit.
    CardEcLine,
    /// A department store card's limit.
    StoreCard,
    /// A credit-line code's limit.
    CreditLineCode,
    /// An institution's escrow account: holds frozen money until settlement.
    Freezing,
    /// A seller's EC withdrawal account: receives money only from a freezing account.
    Withdrawal,
    /// The platform's commission income.
    Commission,
    /// An institution's fee income.
    InstitutionFee,
    /// Penalty fees charged to a party at fault in a dispute.
    Penalty,
    /// The outside world as seen by an institution: deposits come from it, withdrawals go to
    /// it. The only kind allowed to go below zero without a credit limit.
    External,
    /// Payouts handed to a bank and not yet confirmed paid or returned, per paying
    /// institution and currency.
    PayoutsInTransit,
}

impl AccountKind {
    /// Accounts many transactions credit at once: their postings are appended unfolded and
    /// folded into the balance later (see the module docs). The rest are locked per posting.
    pub fn is_append_only(self) -> bool {
        matches!(
            self,
            AccountKind::Freezing
                | AccountKind::Withdrawal
                | AccountKind::Commission
                | AccountKind::InstitutionFee
                | AccountKind::Penalty
                | AccountKind::External
                | AccountKind::PayoutsInTransit
        )
    }
}

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
    db_type = "String(StringLen::N(32))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    Deposit,
    /// Money moved into a freezing account when a hold is placed.
    Freeze,
    /// Reserved credit drawn into the freezing account when its hold is posted.
    Capture,
    /// A hold posted: paid out to the payee and commissions, remainder returned.
    Settle,
    /// A hold voided or expired: money returned to its source.
    Unfreeze,
    /// Money paid back to a buyer after it was settled (an insurance free-look cancellation).
    Refund,
    /// A scheduled collection (a monthly premium).
    Collection,
    /// A payout leaving a withdrawal account for the bank (into payouts in transit).
    Payout,
    /// The bank confirmed a payout paid: it leaves the ledger for the outside world.
    PayoutPaid,
    /// The bank returned a payout: back to the withdrawal account it left.
    PayoutReturned,
}

/// One leg of a transfer: `amount` minor units added to (credit, positive) or taken from
/// (debit, negative) `account`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Leg {
    pub account: AccountId,
    pub amount: i64,
}

impl Leg {
    pub fn debit(account: AccountId, money: Money) -> Leg {
        Leg {
            account,
            amount: -money.minor(),
        }
    }

    pub fn credit(account: AccountId, money: Money) -> Leg {
        Leg {
            account,
            amount: money.minor(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewTransfer {
    /// Names this transfer for ever: posting it again is a no-op that returns the first one.
    pub key: String,
    pub kind: TransferKind,
    pub currency: Currency,
    pub legs: Vec<Leg>,
    pub hold: Option<HoldId>,
    pub case: Option<CaseId>,
}

/// The outcome of a command that may already have been carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied<T> {
    New(T),
    Already(T),
}

impl<T> Applied<T> {
    pub fn into_inner(self) -> T {
        match self {
            Applied::New(value) | Applied::Already(value) => value,
        }
    }

    pub fn is_new(&self) -> bool {
        matches!(self, Applied::New(_))
    }
}

pub const MAX_LEGS: usize = 16;
pub const MAX_KEY_CHARS: usize = 160;

/// Merges legs on the same account and drops those that net to zero, so each account gets
/// one posting; sorted by account so concurrent transfers lock rows in the same order and
/// cannot deadlock.
fn net_legs(legs: &[Leg]) -> CoreResult<Vec<Leg>> {
    let mut by_account: BTreeMap<AccountId, i64> = BTreeMap::new();
    for leg in legs {
        if leg.amount.unsigned_abs() > MAX_MINOR_UNITS.unsigned_abs() {
            return Err(CoreError::Money(crate::money::MoneyError::TooLarge));
        }
        let entry = by_account.entry(leg.account).or_insert(0);
        *entry = entry
            .checked_add(leg.amount)
            .ok_or(CoreError::Money(crate::money::MoneyError::TooLarge))?;
    }
    Ok(by_account
        .into_iter()
        .filter(|(_, amount)| *amount != 0)
        .map(|(account, amount)| Leg { account, amount })
        .collect())
}

/// Posts a balanced transfer inside the caller's transaction. Debits are conditional updates:
/// an account without the available funds refuses the transfer (and the caller's transaction
/// must then be rolled back). A second call with the same key and legs returns
/// `Applied::Already`; with other legs, `IdempotencyConflict`.
#[tracing::instrument(name = "ledger.post_transfer", level = "debug", skip_all, fields(case_id = transfer.case.map(tracing::field::display), hold_id = transfer.hold.map(tracing::field::display)))]
pub async fn post_transfer_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    transfer: NewTransfer,
) -> CoreResult<Applied<TransferId>> {
    if transfer.key.is_empty() || transfer.key.len() > MAX_KEY_CHARS {
        return Err(CoreError::invalid("a transfer key has 1 to 160 characters"));
    }
    if transfer.legs.len() > MAX_LEGS {
        return Err(CoreError::invalid("too many legs in one transfer"));
    }
    let legs = net_legs(&transfer.legs)?;
    // Legs are bounded by MAX_MINOR_UNITS and there are at most MAX_LEGS: no overflow.
    let sum: i64 = legs.iter().map(|leg| leg.amount).sum();
    if sum != 0 || legs.len() < 2 {
        return Err(CoreError::invalid(
            "a transfer needs at least two legs that sum to zero",
        ));
    }
    if legs.iter().any(|leg| leg.amount.abs() > MAX_MINOR_UNITS) {
        return Err(CoreError::Money(crate::money::MoneyError::TooLarge));
    }

    let id = TransferId::new();
    let now = clock.now();
    let inserted = transfers::Entity::insert(transfers::ActiveModel {
        id: Set(id.uuid()),
        idempotency_key: Set(transfer.key.clone()),
        kind: Set(transfer.kind),
        hold_id: Set(transfer.hold.map(|h| h.uuid())),
        case_id: Set(transfer.case.map(|c| c.uuid())),
        created_at: Set(now),
    })
    .on_conflict_do_nothing_on([transfers::Column::IdempotencyKey])
    .exec_without_returning(txn)
    .await?;
    if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
        return replayed_transfer(txn, &transfer, &legs).await;
    }

    let facts = account_facts(txn, &legs).await?;
    let mut folded = Vec::with_capacity(legs.len());
    for leg in &legs {
        let fact = facts
            .get(&leg.account)
            .ok_or(CoreError::NotFound("account"))?;
        if fact.currency != transfer.currency {
            return Err(CoreError::Money(
                crate::money::MoneyError::CurrencyMismatch {
                    left: fact.currency,
                    right: transfer.currency,
                },
            ));
        }
        folded.push(match posting_mode(fact, leg, &transfer) {
            PostingMode::Locked => {
                apply_leg(txn, leg, transfer.currency).await?;
                true
            }
            PostingMode::Appended => false,
            PostingMode::CheckedDebit => {
                debit_append_only_in_txn(txn, leg).await?;
                true
            }
        });
    }
    let rows = legs
        .iter()
        .zip(folded)
        .map(|(leg, folded)| postings::ActiveModel {
            id: Set(Uuid::now_v7()),
            transfer_id: Set(id.uuid()),
            account_id: Set(leg.account.uuid()),
            amount: Set(MinorUnits(leg.amount)),
            currency: Set(transfer.currency.code().to_owned()),
            folded: Set(folded),
            created_at: Set(now),
        });
    postings::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(Applied::New(id))
}

async fn replayed_transfer(
    txn: &DatabaseTransaction,
    transfer: &NewTransfer,
    legs: &[Leg],
) -> CoreResult<Applied<TransferId>> {
    let existing = transfers::Entity::find()
        .filter(transfers::Column::IdempotencyKey.eq(transfer.key.as_str()))
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("transfer"))?;
    let mut stored: Vec<Leg> = postings::Entity::find()
        .filter(postings::Column::TransferId.eq(existing.id))
        .all(txn)
        .await?
        .into_iter()
        .map(|p| Leg {
            account: AccountId::from_uuid(p.account_id),
            amount: p.amount.0,
        })
        .collect();
    stored.sort();
    let same_currency = postings::Entity::find()
        .filter(postings::Column::TransferId.eq(existing.id))
        .filter(postings::Column::Currency.ne(transfer.currency.code()))
        .one(txn)
        .await?
        .is_none();
    let same = stored == legs
        && same_currency
        && existing.kind == transfer.kind
        && existing.hold_id == transfer.hold.map(|h| h.uuid());
    if same {
        Ok(Applied::Already(TransferId::from_uuid(existing.id)))
    } else {
        Err(CoreError::IdempotencyConflict)
    }
}

/// What never changes about an account once it is opened: enough to decide how a leg posts.
#[derive(Debug, FromQueryResult)]
struct FactRow {
    id: Uuid,
    kind: AccountKind,
    currency: String,
    unbounded: bool,
    append_only: bool,
}

#[derive(Debug, Clone, Copy)]
struct AccountFacts {
    kind: AccountKind,
    currency: Currency,
    unbounded: bool,
    append_only: bool,
}

/// Facts are immutable, so a process may keep them; bounded, and simply emptied when full.
const MAX_CACHED_FACTS: usize = 100_000;

fn facts_cache() -> &'static Mutex<HashMap<AccountId, AccountFacts>> {
    static CACHE: OnceLock<Mutex<HashMap<AccountId, AccountFacts>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The facts of every leg's account: from the cache, and the rest in one read. An account
/// whose opening was rolled back may linger in the cache; a posting to it still fails (the
/// postings' foreign key, or a locked update that finds no row).
async fn account_facts(
    txn: &DatabaseTransaction,
    legs: &[Leg],
) -> CoreResult<HashMap<AccountId, AccountFacts>> {
    let mut found = HashMap::with_capacity(legs.len());
    let mut missing = Vec::new();
    {
        let cache = facts_cache()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for leg in legs {
            match cache.get(&leg.account) {
                Some(fact) => {
                    found.insert(leg.account, *fact);
                }
                None => missing.push(leg.account.uuid()),
            }
        }
    }
    if missing.is_empty() {
        return Ok(found);
    }
    let rows = accounts::Entity::find()
        .select_only()
        .columns([
            accounts::Column::Id,
            accounts::Column::Kind,
            accounts::Column::Currency,
            accounts::Column::Unbounded,
            accounts::Column::AppendOnly,
        ])
        .filter(accounts::Column::Id.is_in(missing))
        .into_model::<FactRow>()
        .all(txn)
        .await?;
    let mut cache = facts_cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if cache.len() + rows.len() > MAX_CACHED_FACTS {
        cache.clear();
    }
    for row in rows {
        let fact = AccountFacts {
            kind: row.kind,
            currency: Currency::from_str(&row.currency)?,
            unbounded: row.unbounded,
            append_only: row.append_only,
        };
        let id = AccountId::from_uuid(row.id);
        cache.insert(id, fact);
        found.insert(id, fact);
    }
    Ok(found)
}

/// How one leg reaches its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PostingMode {
    /// A locked account: its balance is updated now (a debit only if it can pay).
    Locked,
    /// An append-only account's credit, an unbounded account's debit, or a freezing account
    /// paying out the hold that put the money there: an unfolded posting, no row touched.
    Appended,
    /// Any other debit of an append-only account: checked against its exact balance under its
    /// row lock, and folded at once.
    CheckedDebit,
}

fn posting_mode(fact: &AccountFacts, leg: &Leg, transfer: &NewTransfer) -> PostingMode {
    if !fact.append_only {
        return PostingMode::Locked;
    }
    let covered_by_hold = fact.kind == AccountKind::Freezing
        && transfer.hold.is_some()
        && matches!(transfer.kind, TransferKind::Settle | TransferKind::Unfreeze);
    if leg.amount > 0 || fact.unbounded || covered_by_hold {
        PostingMode::Appended
    } else {
        PostingMode::CheckedDebit
    }
}

/// Takes an append-only account's row lock (skipping it when `skip_locked` and someone holds
/// it); `false` when it was skipped or does not exist. `FOR NO KEY UPDATE`, the lock an
/// `UPDATE` of the balance takes anyway: every transaction that appends a posting holds a `KEY
/// SHARE` lock on the account through the postings' foreign key, and `FOR UPDATE` would wait
/// for (or skip past) all of them.
async fn lock_account(
    txn: &DatabaseTransaction,
    account: AccountId,
    skip_locked: bool,
) -> CoreResult<bool> {
    let mut query = accounts::Entity::find()
        .select_only()
        .column(accounts::Column::Id)
        .filter(accounts::Column::Id.eq(account.uuid()));
    query = if skip_locked {
        query.lock_with_behavior(LockType::NoKeyUpdate, LockBehavior::SkipLocked)
    } else {
        query.lock(LockType::NoKeyUpdate)
    };
    Ok(query.into_tuple::<Uuid>().one(txn).await?.is_some())
}

/// Locks an append-only account against concurrent debits and folds, then reads its exact
/// balance in a statement of its own (see [`debit_append_only_in_txn`] for why the order
/// matters): what a debit in the same transaction may take, for "pay out everything".
pub async fn lock_and_read_in_txn(
    txn: &DatabaseTransaction,
    account: AccountId,
) -> CoreResult<Account> {
    if !lock_account(txn, account, false).await? {
        return Err(CoreError::NotFound("account"));
    }
    get_account(txn, account).await
}

/// Debits an append-only account if its exact balance covers it. The lock comes first, in a
/// statement of its own: on PostgreSQL (read committed) the check then runs on a snapshot taken
/// after whatever held the lock (a fold) committed, so folded and unfolded money cannot be
/// counted twice.
async fn debit_append_only_in_txn(txn: &DatabaseTransaction, leg: &Leg) -> CoreResult<()> {
    if !lock_account(txn, leg.account, false).await? {
        return Err(CoreError::NotFound("account"));
    }
    let needed = -leg.amount;
    let result = accounts::Entity::update_many()
        .col_expr(
            accounts::Column::Balance,
            Expr::col(accounts::Column::Balance).add(leg.amount),
        )
        .filter(accounts::Column::Id.eq(leg.account.uuid()))
        .filter(
            Condition::any()
                .add(accounts::Column::Unbounded.eq(true))
                .add(
                    Expr::col(accounts::Column::Balance)
                        .add(Expr::cust(format!("COALESCE({UNFOLDED_OF_ROW}, 0)")))
                        .sub(Expr::col(accounts::Column::Reserved))
                        .add(Expr::col(accounts::Column::CreditLimit))
                        .gte(needed),
                ),
        )
        .exec(txn)
        .await?;
    if result.rows_affected == 1 {
        return Ok(());
    }
    Err(CoreError::InsufficientFunds {
        available: get_account(txn, leg.account).await?.available(),
    })
}

async fn apply_leg(txn: &DatabaseTransaction, leg: &Leg, currency: Currency) -> CoreResult<()> {
    let mut update = accounts::Entity::update_many()
        .col_expr(
            accounts::Column::Balance,
            Expr::col(accounts::Column::Balance).add(leg.amount),
        )
        .filter(accounts::Column::Id.eq(leg.account.uuid()))
        .filter(accounts::Column::Currency.eq(currency.code()));
    if leg.amount < 0 {
        let needed = -leg.amount;
        update = update.filter(
            Condition::any()
                .add(accounts::Column::Unbounded.eq(true))
                .add(
                    Expr::col(accounts::Column::Balance)
                        .sub(Expr::col(accounts::Column::Reserved))
                        .add(Expr::col(accounts::Column::CreditLimit))
                        .gte(needed),
                ),
        );
    }
    let result = update.exec(txn).await?;
    if result.rows_affected == 1 {
        return Ok(());
    }
    let account = get_account(txn, leg.account).await?;
    if account.currency != currency {
        return Err(CoreError::Money(
            crate::money::MoneyError::CurrencyMismatch {
                left: account.currency,
                right: currency,
            },
        ));
    }
    Err(CoreError::InsufficientFunds {
        available: account.available(),
    })
}

/// Adds `amount` to the account's reservations if it is available; the account keeps its
/// balance. Used by holds that reserve credit instead of moving money, on funding accounts:
/// an append-only account is refused (its check would miss its unfolded postings).
pub async fn reserve_in_txn(
    txn: &DatabaseTransaction,
    account: AccountId,
    amount: Money,
) -> CoreResult<()> {
    let minor = amount.minor();
    let result = accounts::Entity::update_many()
        .col_expr(
            accounts::Column::Reserved,
            Expr::col(accounts::Column::Reserved).add(minor),
        )
        .filter(accounts::Column::Id.eq(account.uuid()))
        .filter(accounts::Column::Currency.eq(amount.currency().code()))
        .filter(accounts::Column::AppendOnly.eq(false))
        .filter(
            Expr::col(accounts::Column::Balance)
                .sub(Expr::col(accounts::Column::Reserved))
                .add(Expr::col(accounts::Column::CreditLimit))
                .gte(minor),
        )
        .exec(txn)
        .await?;
    if result.rows_affected == 1 {
        return Ok(());
    }
    let found = get_account(txn, account).await?;
    if found.kind.is_append_only() {
        return Err(CoreError::invalid(
            "credit is reserved on funding accounts only",
        ));
    }
    if found.currency != amount.currency() {
        return Err(CoreError::Money(
            crate::money::MoneyError::CurrencyMismatch {
                left: found.currency,
                right: amount.currency(),
            },
        ));
    }
    Err(CoreError::InsufficientFunds {
        available: found.available(),
    })
}

/// Gives back a reservation made by [`reserve_in_txn`].
pub async fn release_reservation_in_txn(
    txn: &DatabaseTransaction,
    account: AccountId,
    amount: Money,
) -> CoreResult<()> {
    let minor = amount.minor();
    let result = accounts::Entity::update_many()
        .col_expr(
            accounts::Column::Reserved,
            Expr::col(accounts::Column::Reserved).sub(minor),
        )
        .filter(accounts::Column::Id.eq(account.uuid()))
        .filter(accounts::Column::Reserved.gte(MinorUnits(minor)))
        .exec(txn)
        .await?;
    if result.rows_affected == 1 {
        Ok(())
    } else {
        Err(CoreError::invalid(
            "the account does not hold that reservation",
        ))
    }
}

/// How many unfolded postings one fold takes per account, at most.
pub const MAX_FOLD_BATCH: u64 = 1_000;
