//! Bringing parties in: operators (from the bootstrap), suppliers and shoppers (by an
//! operator).

use crate::Core;
use crate::cards::{AgeClass, MappingKind, PurchaseType};
use crate::error::{CoreError, CoreResult};
use crate::funding::{
    self, DEFAULT_INSTITUTION, FundingTerms, Holder, Institution, IssueCard, IssuedCard,
    NewInstitution,
};
use crate::ids::{PartyId, TransferId};
use crate::ledger::{Account, Applied};
use crate::money::{Currency, Money};
use crate::parties::{self, NewParty, Party, Role};
use crate::passwords::PasswordWork;
use crate::phone_number::PhoneNumber;
use sea_orm::DatabaseTransaction;

/// An institution and the username its staff log in with.
pub async fn create_institution_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    new: NewInstitution,
    credentials: StaffCredentials,
) -> CoreResult<(Institution, String)> {
    let institution = funding::create_institution_in_txn(txn, &core.clock, new).await?;
    let username = parties::store_credentials_in_txn(
        txn,
        &core.clock,
        institution.party_id,
        &credentials.username,
        credentials.password_hash,
        credentials.second_password_hash,
    )
    .await?;
    Ok((institution, username))
}

/// A username with its password (and optional second password) already hashed.
#[derive(Clone)]
pub struct StaffCredentials {
    pub username: String,
    password_hash: String,
    second_password_hash: Option<String>,
}

impl std::fmt::Debug for StaffCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaffCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl StaffCredentials {
    /// Hashes the passwords (slow on purpose: do it outside any transaction), off the async
    /// workers.
    pub async fn hash(
        work: &PasswordWork,
        username: &str,
        password: &str,
        second_password: Option<&str>,
    ) -> CoreResult<StaffCredentials> {
        let second_password_hash = match second_password {
            Some(second) => Some(parties::hash_password_off_thread(work, second).await?),
            None => None,
        };
        Ok(StaffCredentials {
            username: username.to_owned(),
            password_hash: parties::hash_password_off_thread(work, password).await?,
            second_password_hash,
        })
    }
}

/// A party that logs in with a username and password: staff of any role but shopper.
pub async fn create_staff_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    role: Role,
    display_name: &str,
    credentials: StaffCredentials,
) -> CoreResult<(Party, String)> {
    if matches!(role, Role::Shopper | Role::Platform) {
        return Err(CoreError::invalid(
            "shoppers log in with a card, not a password",
        ));
    }
    let party = parties::create_party_in_txn(
        txn,
        &core.clock,
        NewParty {
            role,
            display_name: display_name.to_owned(),
        },
    )
    .await?;
    let username = parties::store_credentials_in_txn(
        txn,
        &core.clock,
        party.id,
        &credentials.username,
        credentials.password_hash,
        credentials.second_password_hash,
    )
    .await?;
    Ok((party, username))
}

#[derive(Debug, Clone)]
pub struct NewShopper {
    pub display_name: String,
    pub phone: PhoneNumber,
    pub currency: Currency,
    pub initial_deposit: Option<Money>,
    /// Where parcels go; only the carrier of an order sees it.
    pub delivery_address: Option<String>,
}

/// A shopper with an adult, personal EC card mapped to a prepayment account at the built-in
/// institution, funded with the initial deposit if one is given.
pub async fn onboard_shopper_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    new: NewShopper,
) -> CoreResult<IssuedCard> {
    if let Some(deposit) = &new.initial_deposit
        && deposit.currency() != new.currency
    {
        return Err(CoreError::invalid(
            "the deposit must be in the account's currency",
        ));
    }
    funding::issue_card_in_txn(
        txn,
        &core.clock,
        DEFAULT_INSTITUTION,
        IssueCard {
            holder: Holder::New {
                display_name: new.display_name,
            },
            age_class: AgeClass::Adult,
            purchase_type: PurchaseType::Personal,
            mapping_kind: MappingKind::Prepaid,
            currency: new.currency,
            phone: new.phone,
            email: None,
            delivery_address: new.delivery_address,
            terms: FundingTerms {
                initial_deposit: new.initial_deposit,
                ..FundingTerms::default()
            },
            seller: false,
        },
    )
    .await
}

/// Pays `amount` into a funding account: an operator may pay into any, an institution into
/// the accounts it operates. `key` makes a retry harmless.
pub async fn pay_in_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    by: PartyId,
    by_operator: bool,
    account: crate::ids::AccountId,
    amount: Money,
    key: &str,
) -> CoreResult<(Applied<TransferId>, Account)> {
    let target = crate::ledger::get_account(txn, account).await?;
    if !by_operator && target.institution != Some(by) {
        return Err(CoreError::NotFound("account"));
    }
    let applied = funding::deposit_in_txn(txn, &core.clock, account, amount, key).await?;
    let account = crate::ledger::get_account(txn, account).await?;
    Ok((applied, account))
}
