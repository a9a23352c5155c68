//! The double-entry ledger. Money moves only as transfers whose postings sum to zero; an
//! account's balance is the sum of its postings, cached on the account row and proven equal by
//! [`audit`]. Balances are credit-normal: positive means the account holds money.

use crate::clock::Clock;
use crate::db::MinorUnits;
use crate::entities::{accounts, postings, transfers};
use crate::error::{CoreError, CoreResult};
use crate::ids::{AccountId, CaseId, HoldId, PartyId, TransferId};
use crate::money::{Currency, MAX_MINOR_UNITS, Money};
use rust_decimal::Decimal;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, Condition, ConnectionTrait, DatabaseTransaction, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, Statement,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::str::FromStr;
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
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub kind: AccountKind,
    pub owner: PartyId,
    pub institution: Option<PartyId>,
    pub currency: Currency,
    /// Signed minor units; negative only for a drawn credit line or an external account.
    pub balance: i64,
    /// Minor units reserved by pending holds that do not move money.
    pub reserved: i64,
    pub credit_limit: i64,
    pub unbounded: bool,
    pub credit_class: Option<crate::funding::CreditClass>,
}

impl Account {
    /// What a hold or debit may take now: balance plus credit limit minus reservations.
    pub fn available(&self) -> Money {
        let available = self.balance - self.reserved + self.credit_limit;
        Money::from_minor(available.clamp(0, MAX_MINOR_UNITS), self.currency)
            .unwrap_or_else(|_| Money::zero(self.currency))
    }
}

impl TryFrom<accounts::Model> for Account {
    type Error = CoreError;

    fn try_from(row: accounts::Model) -> CoreResult<Self> {
        Ok(Account {
            id: AccountId::from_uuid(row.id),
            kind: row.kind,
            owner: PartyId::from_uuid(row.owner_party_id),
            institution: row.institution_party_id.map(PartyId::from_uuid),
            currency: Currency::from_str(&row.currency)?,
            balance: row.balance.0,
            reserved: row.reserved.0,
            credit_limit: row.credit_limit.0,
            unbounded: row.unbounded,
            credit_class: row.credit_class,
        })
    }
}

/// A signed amount as a decimal string (`"-12.50"`), for showing balances that may be negative.
pub fn signed_decimal(minor: i64, currency: Currency) -> String {
    Decimal::new(minor, currency.scale()).to_string()
}

#[derive(Debug, Clone)]
pub struct NewAccount {
    /// A unique name for accounts that must exist once (`commission:USD`); `None` for
    /// customer accounts.
    pub key: Option<String>,
    pub kind: AccountKind,
    pub owner: PartyId,
    pub institution: Option<PartyId>,
    pub currency: Currency,
    pub credit_limit: Money,
    pub credit_class: Option<crate::funding::CreditClass>,
}

pub async fn open_account_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    new: NewAccount,
) -> CoreResult<Account> {
    if new.credit_limit.currency() != new.currency {
        return Err(CoreError::invalid(
            "the credit limit must be in the account's currency",
        ));
    }
    let id = AccountId::new();
    let row = account_row(id, &new, clock);
    accounts::Entity::insert(row)
        .exec_without_returning(txn)
        .await?;
    get_account(txn, id).await
}

fn account_row(id: AccountId, new: &NewAccount, clock: &Clock) -> accounts::ActiveModel {
    accounts::ActiveModel {
        id: Set(id.uuid()),
        account_key: Set(new.key.clone()),
        kind: Set(new.kind),
        owner_party_id: Set(new.owner.uuid()),
        institution_party_id: Set(new.institution.map(|i| i.uuid())),
        currency: Set(new.currency.code().to_owned()),
        balance: Set(MinorUnits(0)),
        reserved: Set(MinorUnits(0)),
        credit_limit: Set(MinorUnits(new.credit_limit.minor())),
        unbounded: Set(new.kind == AccountKind::External),
        credit_class: Set(new.credit_class),
        created_at: Set(clock.now()),
    }
}

/// The account named `key`, opened now if it does not exist yet. Concurrent callers end up
/// with the same account: the unique key decides.
pub async fn get_or_open_keyed_account_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    new: NewAccount,
) -> CoreResult<Account> {
    let key = new
        .key
        .clone()
        .ok_or_else(|| CoreError::invalid("a keyed account needs a key"))?;
    if let Some(existing) = find_keyed_account(txn, &key).await? {
        return Ok(existing);
    }
    accounts::Entity::insert(account_row(AccountId::new(), &new, clock))
        .on_conflict_do_nothing_on([accounts::Column::AccountKey])
        .exec_without_returning(txn)
        .await?;
    find_keyed_account(txn, &key)
        .await?
        .ok_or(CoreError::NotFound("account"))
}

pub async fn find_keyed_account(
    db: &impl ConnectionTrait,
    key: &str,
) -> CoreResult<Option<Account>> {
    accounts::Entity::find()
        .filter(accounts::Column::AccountKey.eq(key))
        .one(db)
        .await?
        .map(Account::try_from)
        .transpose()
}

pub async fn get_account(db: &impl ConnectionTrait, id: AccountId) -> CoreResult<Account> {
    accounts::Entity::find_by_id(id.uuid())
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("account"))
        .and_then(Account::try_from)
}

pub async fn accounts_of(db: &impl ConnectionTrait, owner: PartyId) -> CoreResult<Vec<Account>> {
    accounts::Entity::find()
        .filter(accounts::Column::OwnerPartyId.eq(owner.uuid()))
        .order_by_asc(accounts::Column::Id)
        .limit(100)
        .all(db)
        .await?
        .into_iter()
        .map(Account::try_from)
        .collect()
}

/// The well-known accounts, by key.
pub mod keys {
    use crate::ids::PartyId;
    use crate::money::Currency;

    pub fn commission(currency: Currency) -> String {
        format!("commission:{currency}")
    }
    /// Several institutions may share one freezing account: the pool is named by the code
    /// of the institution that owns it.
    pub fn freezing(pool_code: &str, currency: Currency) -> String {
        format!("freezing:{pool_code}:{currency}")
    }
    /// One shard of a pool's freezing account (shard 0 is the pool's first account).
    pub fn freezing_shard(pool_code: &str, currency: Currency, shard: u8) -> String {
        match shard {
            0 => freezing(pool_code, currency),
            n => format!("freezing:{pool_code}:{currency}:{n}"),
        }
    }
    pub fn external(institution: PartyId, currency: Currency) -> String {
        format!("external:{institution}:{currency}")
    }
    pub fn withdrawal(owner: PartyId, currency: Currency) -> String {
        format!("withdrawal:{owner}:{currency}")
    }
    pub fn institution_fee(institution: PartyId, currency: Currency) -> String {
        format!("institution_fee:{institution}:{currency}")
    }
    pub fn penalty(currency: Currency) -> String {
        format!("penalty:{currency}")
    }
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

    for leg in &legs {
        apply_leg(txn, leg, transfer.currency).await?;
    }
    let rows = legs.iter().map(|leg| postings::ActiveModel {
        id: Set(Uuid::now_v7()),
        transfer_id: Set(id.uuid()),
        account_id: Set(leg.account.uuid()),
        amount: Set(MinorUnits(leg.amount)),
        currency: Set(transfer.currency.code().to_owned()),
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
/// balance. Used by holds that reserve credit instead of moving money.
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

/// What the ledger audit found. Every list is empty and every total zero on a healthy ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct LedgerAudit {
    pub transfers: u64,
    pub postings: u64,
    /// Transfers whose postings do not sum to zero.
    pub unbalanced_transfers: Vec<String>,
    /// Accounts whose cached balance differs from the sum of their postings.
    pub balance_mismatches: Vec<String>,
    /// Accounts below zero available without being allowed to be.
    pub overdrawn_accounts: Vec<String>,
    /// Per currency, the sum of every account's balance (zero: money is neither created nor
    /// destroyed, only moved).
    pub net_by_currency: BTreeMap<String, String>,
    /// Accounts whose reservations differ from their pending reserving holds.
    pub reservation_mismatches: Vec<String>,
    /// Freezing accounts whose balance differs from the money of their pending holds.
    pub freezing_mismatches: Vec<String>,
}

impl LedgerAudit {
    pub fn is_clean(&self) -> bool {
        self.unbalanced_transfers.is_empty()
            && self.balance_mismatches.is_empty()
            && self.overdrawn_accounts.is_empty()
            && self.reservation_mismatches.is_empty()
            && self.freezing_mismatches.is_empty()
            && self
                .net_by_currency
                .values()
                .all(|net| Decimal::from_str(net).map(|d| d.is_zero()).unwrap_or(false))
    }
}

#[derive(Debug, FromQueryResult)]
struct IdRow {
    id: Uuid,
}

#[derive(Debug, FromQueryResult)]
struct NetRow {
    currency: String,
    net: Option<MinorUnits>,
}

#[derive(Debug, FromQueryResult)]
struct CountRow {
    n: i64,
}

/// Proves the ledger's invariants from the rows themselves.
pub async fn audit(db: &impl ConnectionTrait) -> CoreResult<LedgerAudit> {
    let backend = db.get_database_backend();
    let ids = |sql: &str| Statement::from_string(backend, sql.to_owned());
    let list = |rows: Vec<IdRow>| rows.into_iter().map(|r| r.id.to_string()).collect();

    let unbalanced = IdRow::find_by_statement(ids(
        "SELECT transfer_id AS id FROM postings GROUP BY transfer_id HAVING SUM(amount) <> 0",
    ))
    .all(db)
    .await?;
    let mismatched = IdRow::find_by_statement(ids(
        "SELECT a.id AS id FROM accounts a LEFT JOIN postings p ON p.account_id = a.id \
         GROUP BY a.id, a.balance HAVING a.balance <> COALESCE(SUM(p.amount), 0)",
    ))
    .all(db)
    .await?;
    let overdrawn =
        IdRow::find_by_statement(ids("SELECT id FROM accounts WHERE unbounded = false \
         AND (balance - reserved + credit_limit < 0 OR reserved < 0)"))
        .all(db)
        .await?;
    let reservations =
        IdRow::find_by_statement(ids("SELECT a.id AS id FROM accounts a LEFT JOIN holds h \
         ON h.funding_account_id = a.id AND h.status = 'pending' AND h.mode = 'reserve' \
         GROUP BY a.id, a.reserved HAVING a.reserved <> COALESCE(SUM(h.amount), 0)"))
        .all(db)
        .await?;
    let freezing =
        IdRow::find_by_statement(ids("SELECT a.id AS id FROM accounts a LEFT JOIN holds h \
         ON h.freezing_account_id = a.id AND h.status = 'pending' AND h.mode = 'move' \
         WHERE a.kind = 'freezing' \
         GROUP BY a.id, a.balance HAVING a.balance <> COALESCE(SUM(h.amount), 0)"))
        .all(db)
        .await?;
    let nets = NetRow::find_by_statement(ids(
        "SELECT currency, SUM(balance) AS net FROM accounts GROUP BY currency",
    ))
    .all(db)
    .await?;
    let transfers = CountRow::find_by_statement(ids("SELECT COUNT(*) AS n FROM transfers"))
        .one(db)
        .await?
        .map_or(0, |r| r.n);
    let postings = CountRow::find_by_statement(ids("SELECT COUNT(*) AS n FROM postings"))
        .one(db)
        .await?
        .map_or(0, |r| r.n);

    let mut net_by_currency = BTreeMap::new();
    for row in nets {
        let currency = Currency::from_str(&row.currency)?;
        net_by_currency.insert(
            row.currency,
            signed_decimal(row.net.map_or(0, |n| n.0), currency),
        );
    }
    Ok(LedgerAudit {
        transfers: u64::try_from(transfers).unwrap_or(0),
        postings: u64::try_from(postings).unwrap_or(0),
        unbalanced_transfers: list(unbalanced),
        balance_mismatches: list(mismatched),
        overdrawn_accounts: list(overdrawn),
        net_by_currency,
        reservation_mismatches: list(reservations),
        freezing_mismatches: list(freezing),
    })
}
