//! Funding sources and the institutions that operate them. For now: the EC prepayment
//! account, operated by the built-in prepaid institution.

use crate::clock::Clock;
use crate::entities::{institutions, parties as party_rows};
use crate::error::{CoreError, CoreResult};
use crate::ids::{AccountId, PartyId, TransferId};
use crate::ledger::{
    self, Account, AccountKind, Applied, Leg, NewAccount, NewTransfer, TransferKind,
};
use crate::money::{Currency, Money};
use crate::parties::Role;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, DatabaseTransaction};

/// The institution that operates prepaid accounts until banks and card companies are
/// onboarded; fixed so every instance agrees on it.
pub const DEFAULT_INSTITUTION: PartyId =
    PartyId::from_uuid(Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0002));
pub const DEFAULT_INSTITUTION_CODE: &str = "HF01";

pub async fn ensure_default_institution_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
) -> CoreResult<()> {
    party_rows::Entity::insert(party_rows::ActiveModel {
        id: Set(DEFAULT_INSTITUTION.uuid()),
        role: Set(Role::Institution),
        display_name: Set("Holdfast Prepaid".to_owned()),
        phone_e164: Set(None),
        created_at: Set(clock.now()),
    })
    .on_conflict_do_nothing()
    .exec_without_returning(txn)
    .await?;
    institutions::Entity::insert(institutions::ActiveModel {
        party_id: Set(DEFAULT_INSTITUTION.uuid()),
        code: Set(DEFAULT_INSTITUTION_CODE.to_owned()),
        created_at: Set(clock.now()),
    })
    .on_conflict_do_nothing()
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Opens an EC prepayment account for `owner` at `institution`.
pub async fn open_prepaid_account_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    owner: PartyId,
    institution: PartyId,
    currency: Currency,
) -> CoreResult<Account> {
    ledger::open_account_in_txn(
        txn,
        clock,
        NewAccount {
            key: None,
            kind: AccountKind::Prepaid,
            owner,
            institution: Some(institution),
            currency,
            credit_limit: Money::zero(currency),
        },
    )
    .await
}

/// Money paid in from outside (cash, a bank transfer) onto a customer's prepaid account: the
/// institution's external account is debited, so the ledger still sums to zero.
pub async fn deposit_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    account: AccountId,
    amount: Money,
    key: &str,
) -> CoreResult<Applied<TransferId>> {
    if amount.is_zero() {
        return Err(CoreError::invalid("a deposit must be more than zero"));
    }
    let target = ledger::get_account(txn, account).await?;
    if target.kind != AccountKind::Prepaid {
        return Err(CoreError::invalid("deposits go to prepaid accounts"));
    }
    let institution = target
        .institution
        .ok_or_else(|| CoreError::invalid("the account has no institution"))?;
    let external = ledger::get_or_open_keyed_account_in_txn(
        txn,
        clock,
        NewAccount {
            key: Some(ledger::keys::external(institution, amount.currency())),
            kind: AccountKind::External,
            owner: institution,
            institution: Some(institution),
            currency: amount.currency(),
            credit_limit: Money::zero(amount.currency()),
        },
    )
    .await?;
    ledger::post_transfer_in_txn(
        txn,
        clock,
        NewTransfer {
            key: key.to_owned(),
            kind: TransferKind::Deposit,
            currency: amount.currency(),
            legs: vec![
                Leg::debit(external.id, amount),
                Leg::credit(account, amount),
            ],
            hold: None,
            case: None,
        },
    )
    .await
}

/// The first prepaid account `owner` has in `currency`.
pub async fn prepaid_account_of(
    db: &impl sea_orm::ConnectionTrait,
    owner: PartyId,
    currency: Currency,
) -> CoreResult<Option<Account>> {
    Ok(ledger::accounts_of(db, owner)
        .await?
        .into_iter()
        .find(|a| a.kind == AccountKind::Prepaid && a.currency == currency))
}
