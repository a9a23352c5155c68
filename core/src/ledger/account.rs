//! Accounts: opening one (once, by key, for the well-known accounts), and reading one exactly —
//! the folded balance plus the postings not yet folded, in one statement.

use super::AccountKind;
use crate::clock::Clock;
use crate::db::MinorUnits;
use crate::entities::accounts;
use crate::error::{CoreError, CoreResult};
use crate::ids::{AccountId, PartyId};
use crate::money::{Currency, MAX_MINOR_UNITS, Money};
use rust_decimal::Decimal;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, Select,
};
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub kind: AccountKind,
    pub owner: PartyId,
    pub institution: Option<PartyId>,
    pub currency: Currency,
    /// Signed minor units, exact: the folded balance plus any unfolded postings. Negative only
    /// for a drawn credit line or an external account.
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

/// An account row with the sum of its unfolded postings, read in one statement (one
/// snapshot: a fold that commits meanwhile moves money from one to the other atomically).
#[derive(Debug, FromQueryResult)]
struct AccountRow {
    id: Uuid,
    kind: AccountKind,
    owner_party_id: Uuid,
    institution_party_id: Option<Uuid>,
    currency: String,
    balance: MinorUnits,
    reserved: MinorUnits,
    credit_limit: MinorUnits,
    unbounded: bool,
    credit_class: Option<crate::funding::CreditClass>,
    unfolded: Option<MinorUnits>,
}

/// The sum of the unfolded postings of the `accounts` row in scope (NULL when none), for
/// selects and conditional updates on `accounts`.
pub(super) const UNFOLDED_OF_ROW: &str = "(SELECT SUM(p.amount) FROM postings p \
     WHERE p.account_id = accounts.id AND p.folded = false)";

fn exact_accounts() -> Select<accounts::Entity> {
    accounts::Entity::find().column_as(Expr::cust(UNFOLDED_OF_ROW), "unfolded")
}

impl TryFrom<AccountRow> for Account {
    type Error = CoreError;

    fn try_from(row: AccountRow) -> CoreResult<Self> {
        let balance = row
            .balance
            .0
            .checked_add(row.unfolded.map_or(0, |u| u.0))
            .ok_or(CoreError::Money(crate::money::MoneyError::TooLarge))?;
        Ok(Account {
            id: AccountId::from_uuid(row.id),
            kind: row.kind,
            owner: PartyId::from_uuid(row.owner_party_id),
            institution: row.institution_party_id.map(PartyId::from_uuid),
            currency: Currency::from_str(&row.currency)?,
            balance,
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
        append_only: Set(new.kind.is_append_only()),
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
    exact_accounts()
        .filter(accounts::Column::AccountKey.eq(key))
        .into_model::<AccountRow>()
        .one(db)
        .await?
        .map(Account::try_from)
        .transpose()
}

/// The account with its exact balance (folded plus unfolded postings).
pub async fn get_account(db: &impl ConnectionTrait, id: AccountId) -> CoreResult<Account> {
    exact_accounts()
        .filter(accounts::Column::Id.eq(id.uuid()))
        .into_model::<AccountRow>()
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("account"))
        .and_then(Account::try_from)
}

pub async fn accounts_of(db: &impl ConnectionTrait, owner: PartyId) -> CoreResult<Vec<Account>> {
    exact_accounts()
        .filter(accounts::Column::OwnerPartyId.eq(owner.uuid()))
        .order_by_asc(accounts::Column::Id)
        .limit(100)
        .into_model::<AccountRow>()
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
    pub fn payouts_in_transit(institution: PartyId, currency: Currency) -> String {
        format!("payouts_in_transit:{institution}:{currency}")
    }
    pub fn institution_fee(institution: PartyId, currency: Currency) -> String {
        format!("institution_fee:{institution}:{currency}")
    }
    pub fn penalty(currency: Currency) -> String {
        format!("penalty:{currency}")
    }
}
