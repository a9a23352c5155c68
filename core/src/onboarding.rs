//! Bringing parties in: operators (from the bootstrap), suppliers and shoppers (by an
//! operator).

use crate::error::{CoreError, CoreResult};
use crate::funding::{self, DEFAULT_INSTITUTION};
use crate::ids::{PartyId, TransferId};
use crate::ledger::{Account, Applied};
use crate::money::{Currency, Money};
use crate::parties::{self, NewParty, Party, Role};
use crate::phone_number::PhoneNumber;
use crate::{Core, db};
use sea_orm::{DatabaseConnection, DatabaseTransaction};

/// Creates an operator with a username and password. Used by the bootstrap command only: the
/// API has no way to create the first operator.
pub async fn create_operator(
    db: &DatabaseConnection,
    core: &Core,
    display_name: &str,
    username: &str,
    password: &str,
) -> CoreResult<(Party, String)> {
    create_with_credentials(
        db,
        core,
        Role::Operator,
        display_name,
        username,
        password,
        None,
    )
    .await
}

#[derive(Debug, Clone)]
pub struct NewSupplier {
    pub display_name: String,
    pub username: String,
    pub password: String,
    /// Guards changes to the supplier's information.
    pub second_password: Option<String>,
}

pub async fn onboard_supplier(
    db: &DatabaseConnection,
    core: &Core,
    new: NewSupplier,
) -> CoreResult<(Party, String)> {
    create_with_credentials(
        db,
        core,
        Role::Supplier,
        &new.display_name,
        &new.username,
        &new.password,
        new.second_password.as_deref(),
    )
    .await
}

async fn create_with_credentials(
    db: &DatabaseConnection,
    core: &Core,
    role: Role,
    display_name: &str,
    username: &str,
    password: &str,
    second_password: Option<&str>,
) -> CoreResult<(Party, String)> {
    // Hash before the transaction: argon2 takes tens of milliseconds, and SQLite's write lock
    // should not wait on it.
    let password_hash = parties::hash_password(password)?;
    let second_hash = second_password.map(parties::hash_password).transpose()?;
    let txn = db::begin_write(db).await?;
    let party = parties::create_party_in_txn(
        &txn,
        &core.clock,
        NewParty {
            role,
            display_name: display_name.to_owned(),
            phone: None,
        },
    )
    .await?;
    let username = parties::store_credentials_in_txn(
        &txn,
        &core.clock,
        party.id,
        username,
        password_hash,
        second_hash,
    )
    .await?;
    txn.commit().await?;
    Ok((party, username))
}

#[derive(Debug, Clone)]
pub struct NewShopper {
    pub display_name: String,
    pub phone: PhoneNumber,
    pub currency: Currency,
    pub initial_deposit: Option<Money>,
}

/// A shopper with a phone and an EC prepayment account at the built-in institution, funded
/// with the initial deposit if one is given.
pub async fn onboard_shopper_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    new: NewShopper,
) -> CoreResult<(Party, Account)> {
    let party = parties::create_party_in_txn(
        txn,
        &core.clock,
        NewParty {
            role: Role::Shopper,
            display_name: new.display_name,
            phone: Some(new.phone),
        },
    )
    .await?;
    let account = funding::open_prepaid_account_in_txn(
        txn,
        &core.clock,
        party.id,
        DEFAULT_INSTITUTION,
        new.currency,
    )
    .await?;
    if let Some(deposit) = new.initial_deposit.filter(|d| !d.is_zero()) {
        if deposit.currency() != new.currency {
            return Err(CoreError::invalid(
                "the deposit must be in the account's currency",
            ));
        }
        funding::deposit_in_txn(
            txn,
            &core.clock,
            account.id,
            deposit,
            &format!("onboarding:{}", party.id),
        )
        .await?;
    }
    let account = crate::ledger::get_account(txn, account.id).await?;
    Ok((party, account))
}

/// [`onboard_shopper_in_txn`] in a transaction of its own.
pub async fn onboard_shopper(
    db: &DatabaseConnection,
    core: &Core,
    new: NewShopper,
) -> CoreResult<(Party, Account)> {
    let txn = db::begin_write(db).await?;
    let created = onboard_shopper_in_txn(&txn, core, new).await?;
    txn.commit().await?;
    Ok(created)
}

/// Pays `amount` into the shopper's prepaid account in that currency. `key` makes a retry
/// harmless.
pub async fn deposit_for_shopper_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    shopper: PartyId,
    amount: Money,
    key: &str,
) -> CoreResult<(Applied<TransferId>, Account)> {
    let account = funding::prepaid_account_of(txn, shopper, amount.currency())
        .await?
        .ok_or(CoreError::NotFound("prepaid account"))?;
    let applied = funding::deposit_in_txn(txn, &core.clock, account.id, amount, key).await?;
    let account = crate::ledger::get_account(txn, account.id).await?;
    Ok((applied, account))
}
