//! Institutions (banks, card companies, department stores) and the funding sources they
//! operate. Each kind of funding source has its own rule for what a hold does: bank and
//! prepaid money moves into the institution's freezing account at once; a card's credit is
//! reserved, and only moves at settlement. "Available" is always balance plus credit limit
//! minus reservations, and a hold never takes more (the ledger's conditional updates).

use crate::cards::{self, AgeClass, Card, MappingKind, NewCard, PurchaseType};
use crate::clock::Clock;
use crate::db::MinorUnits;
use crate::entities::{credit_class_caps, institutions, parties as party_rows};
use crate::error::{CoreError, CoreResult};
use crate::holds::HoldMode;
use crate::ids::{AccountId, PartyId, TransferId};
use crate::ledger::{
    self, Account, AccountKind, Applied, Leg, NewAccount, NewTransfer, TransferKind,
};
use crate::money::{Currency, Money};
use crate::parties::{self, NewParty, Role};
use crate::phone_number::PhoneNumber;
use crate::rate::BasisPoints;
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryFilter};
use serde::{Deserialize, Serialize};
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
    db_type = "String(StringLen::N(24))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum InstitutionKind {
    Bank,
    CardCompany,
    DepartmentStore,
}

impl InstitutionKind {
    /// Which card mappings an institution of this kind issues.
    pub fn issues(self, mapping: MappingKind) -> bool {
        use MappingKind::*;
        match self {
            InstitutionKind::Bank => matches!(
                mapping,
                EcBankCreditLine | BankAccount | Prepaid | CreditLineCode
            ),
            InstitutionKind::CardCompany => matches!(
                mapping,
                CreditCard | CreditCardWithEcLine | EcCreditLineCard | CreditLineCode
            ),
            InstitutionKind::DepartmentStore => matches!(mapping, StoreCard),
        }
    }
}

/// The classes of an EC bank credit line, each with its own limit.
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
    db_type = "String(StringLen::N(24))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum CreditClass {
    Adolescent,
    CompanyPurchase,
    General,
}

impl CreditClass {
    /// The class a card's own class calls for: adolescents get the adolescent line, business
    /// purchasers the company-purchase line, everyone else the general line.
    pub fn for_card(age: AgeClass, purchase: PurchaseType) -> CreditClass {
        match (age, purchase) {
            (AgeClass::Adolescent, _) => CreditClass::Adolescent,
            (AgeClass::Adult, PurchaseType::Business) => CreditClass::CompanyPurchase,
            (AgeClass::Adult, PurchaseType::Personal) => CreditClass::General,
        }
    }
}

/// What a hold does on an account of this kind; `None` for accounts that do not fund
/// purchases.
pub fn hold_mode(kind: AccountKind) -> Option<HoldMode> {
    match kind {
        AccountKind::Prepaid | AccountKind::BankAccount | AccountKind::BankCreditLine => {
            Some(HoldMode::Move)
        }
        AccountKind::CardCredit
        | AccountKind::CardEcLine
        | AccountKind::StoreCard
        | AccountKind::CreditLineCode => Some(HoldMode::Reserve),
        AccountKind::Freezing
        | AccountKind::Withdrawal
        | AccountKind::Commission
        | AccountKind::InstitutionFee
        | AccountKind::Penalty
        | AccountKind::External
        | AccountKind::PayoutsInTransit => None,
    }
}

/// The institution that operates prepaid accounts out of the box; fixed so every instance
/// agrees on it.
pub const DEFAULT_INSTITUTION: PartyId =
    PartyId::from_uuid(Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0002));
pub const DEFAULT_INSTITUTION_CODE: &str = "9000";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Institution {
    pub party_id: PartyId,
    pub display_name: String,
    /// Four digits; the first four of every card number it issues.
    pub code: String,
    pub kind: InstitutionKind,
    /// The code of the institution whose freezing account holds this one's frozen money.
    pub freezing_pool: String,
    /// What it keeps of a settlement its card paid, in basis points.
    #[serde(rename = "card_fee_bps")]
    #[schema(value_type = i32)]
    pub card_fee: BasisPoints,
}

/// The highest card fee an institution may charge (10 %).
pub const MAX_CARD_FEE: BasisPoints = BasisPoints::of(1_000);

async fn institution_from_row(
    db: &impl ConnectionTrait,
    row: institutions::Model,
) -> CoreResult<Institution> {
    let party = parties::get_party(db, PartyId::from_uuid(row.party_id)).await?;
    let freezing_pool = if row.freezing_pool.is_empty() {
        row.code.clone()
    } else {
        row.freezing_pool
    };
    Ok(Institution {
        party_id: party.id,
        display_name: party.display_name,
        code: row.code,
        kind: row.kind,
        freezing_pool,
        card_fee: BasisPoints::new(row.card_fee_bps)?,
    })
}

pub async fn get_institution(db: &impl ConnectionTrait, party: PartyId) -> CoreResult<Institution> {
    let row = institutions::Entity::find_by_id(party.uuid())
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("institution"))?;
    institution_from_row(db, row).await
}

pub async fn institution_by_code(
    db: &impl ConnectionTrait,
    code: &str,
) -> CoreResult<Option<Institution>> {
    match institutions::Entity::find()
        .filter(institutions::Column::Code.eq(code))
        .one(db)
        .await?
    {
        Some(row) => Ok(Some(institution_from_row(db, row).await?)),
        None => Ok(None),
    }
}

pub async fn ensure_default_institution_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
) -> CoreResult<()> {
    party_rows::Entity::insert(party_rows::ActiveModel {
        id: Set(DEFAULT_INSTITUTION.uuid()),
        role: Set(Role::Institution),
        display_name: Set("Holdfast Prepaid".to_owned()),
        created_at: Set(clock.now()),
    })
    .on_conflict_do_nothing()
    .exec_without_returning(txn)
    .await?;
    institutions::Entity::insert(institutions::ActiveModel {
        party_id: Set(DEFAULT_INSTITUTION.uuid()),
        code: Set(DEFAULT_INSTITUTION_CODE.to_owned()),
        kind: Set(InstitutionKind::Bank),
        freezing_pool: Set(DEFAULT_INSTITUTION_CODE.to_owned()),
        card_fee_bps: Set(0),
        created_at: Set(clock.now()),
    })
    .on_conflict_do_nothing()
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct NewInstitution {
    pub display_name: String,
    pub code: String,
    pub kind: InstitutionKind,
    /// The code of an existing institution whose freezing account to share.
    pub shares_freezing_with: Option<String>,
    /// The largest limit granted per credit-line class and currency.
    pub credit_class_caps: Vec<(CreditClass, Money)>,
    /// What the institution keeps of a settlement its card paid (at most [`MAX_CARD_FEE`]).
    pub card_fee: BasisPoints,
}

/// Creates the institution's party and record. Its staff log in with credentials the caller
/// stores separately.
pub async fn create_institution_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    new: NewInstitution,
) -> CoreResult<Institution> {
    let code = new.code.trim().to_owned();
    if code.len() != cards::INSTITUTION_CODE_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CoreError::invalid("an institution code is 4 digits"));
    }
    if new.card_fee > MAX_CARD_FEE {
        return Err(CoreError::invalid(
            "a card fee is 0 to 1000 basis points (10 %)",
        ));
    }
    if institution_by_code(txn, &code).await?.is_some() {
        return Err(CoreError::Invalid(format!(
            "institution code {code} is taken"
        )));
    }
    let freezing_pool = match &new.shares_freezing_with {
        None => code.clone(),
        Some(other) => {
            institution_by_code(txn, other.trim())
                .await?
                .ok_or(CoreError::NotFound(
                    "institution to share a freezing account with",
                ))?
                .freezing_pool
        }
    };
    let party = parties::create_party_in_txn(
        txn,
        clock,
        NewParty {
            role: Role::Institution,
            display_name: new.display_name,
        },
    )
    .await?;
    institutions::Entity::insert(institutions::ActiveModel {
        party_id: Set(party.id.uuid()),
        code: Set(code.clone()),
        kind: Set(new.kind),
        freezing_pool: Set(freezing_pool.clone()),
        card_fee_bps: Set(new.card_fee.get()),
        created_at: Set(clock.now()),
    })
    .exec_without_returning(txn)
    .await?;
    for (class, cap) in new.credit_class_caps {
        set_credit_class_cap_in_txn(txn, party.id, class, cap).await?;
    }
    Ok(Institution {
        party_id: party.id,
        display_name: party.display_name,
        code,
        kind: new.kind,
        freezing_pool,
        card_fee: new.card_fee,
    })
}

pub async fn set_credit_class_cap_in_txn(
    txn: &DatabaseTransaction,
    institution: PartyId,
    class: CreditClass,
    cap: Money,
) -> CoreResult<()> {
    let existing = credit_class_caps::Entity::find_by_id((
        institution.uuid(),
        class,
        cap.currency().code().to_owned(),
    ))
    .one(txn)
    .await?;
    let row = credit_class_caps::ActiveModel {
        institution_party_id: Set(institution.uuid()),
        credit_class: Set(class),
        currency: Set(cap.currency().code().to_owned()),
        max_limit: Set(MinorUnits(cap.minor())),
    };
    if existing.is_some() {
        row.update(txn).await?;
    } else {
        credit_class_caps::Entity::insert(row)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

async fn credit_class_cap(
    db: &impl ConnectionTrait,
    institution: PartyId,
    class: CreditClass,
    currency: Currency,
) -> CoreResult<Option<Money>> {
    credit_class_caps::Entity::find_by_id((institution.uuid(), class, currency.code().to_owned()))
        .one(db)
        .await?
        .map(|row| Money::from_minor(row.max_limit.0, currency).map_err(CoreError::from))
        .transpose()
}

/// The freezing account that holds `institution`'s frozen money in `currency` (shared when
/// the institution joined another's pool), opened on first use.
pub async fn freezing_account_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    institution: PartyId,
    currency: Currency,
) -> CoreResult<Account> {
    freezing_shard_in_txn(txn, clock, institution, currency, 0).await
}

/// How many accounts a freezing pool spreads its holds over, per currency. Every hold places
/// money into one freezing account and settles out of it, so one account per pool would make
/// every purchase of every shopper wait for the one before it on that account's row lock;
/// shards let them run side by side. Each shard is a whole account (balance = its postings =
/// its pending holds); the pool holds their sum.
pub const FREEZING_SHARDS: u8 = 8;

/// The shard of a pool's freezing account a subject's holds use (its id's random bits pick it).
pub fn freezing_shard_of(subject: Uuid) -> u8 {
    subject.as_bytes()[15] % FREEZING_SHARDS
}

/// One shard of the freezing account of `institution`'s pool, opened on first use.
pub async fn freezing_shard_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    institution: PartyId,
    currency: Currency,
    shard: u8,
) -> CoreResult<Account> {
    let institution = get_institution(txn, institution).await?;
    let owner = if institution.freezing_pool == institution.code {
        institution.party_id
    } else {
        institution_by_code(txn, &institution.freezing_pool)
            .await?
            .ok_or(CoreError::NotFound("freezing pool"))?
            .party_id
    };
    ledger::get_or_open_keyed_account_in_txn(
        txn,
        clock,
        NewAccount {
            key: Some(ledger::keys::freezing_shard(
                &institution.freezing_pool,
                currency,
                shard % FREEZING_SHARDS,
            )),
            kind: AccountKind::Freezing,
            owner,
            institution: Some(owner),
            currency,
            credit_limit: Money::zero(currency),
            credit_class: None,
        },
    )
    .await
}

/// The funding terms of a new card.
#[derive(Debug, Clone, Default)]
pub struct FundingTerms {
    /// The credit limit of a credit line or card (EC-exclusive limit for the EC line kinds).
    pub credit_limit: Option<Money>,
    /// The normal limit of the card behind a `credit_card_with_ec_line` mapping.
    pub normal_card_limit: Option<Money>,
    /// Money paid in at once (prepaid and bank accounts).
    pub initial_deposit: Option<Money>,
}

/// Who holds a new card.
#[derive(Debug, Clone)]
pub enum Holder {
    Existing(PartyId),
    New { display_name: String },
}

/// A card issued with its funding source.
#[derive(Clone)]
pub struct IssueCard {
    pub holder: Holder,
    pub age_class: AgeClass,
    pub purchase_type: PurchaseType,
    pub mapping_kind: MappingKind,
    pub currency: Currency,
    pub phone: PhoneNumber,
    pub email: Option<String>,
    pub delivery_address: Option<String>,
    pub terms: FundingTerms,
    /// The holder also sells (auctions): give it a withdrawal account.
    pub seller: bool,
}

#[derive(Debug, Clone)]
pub struct IssuedCard {
    pub card: Card,
    pub funding: Account,
    pub linked: Option<Account>,
    pub withdrawal: Option<Account>,
}

fn account_kind_for(mapping: MappingKind) -> AccountKind {
    match mapping {
        MappingKind::EcBankCreditLine => AccountKind::BankCreditLine,
        MappingKind::BankAccount => AccountKind::BankAccount,
        MappingKind::CreditCard => AccountKind::CardCredit,
        MappingKind::CreditCardWithEcLine | MappingKind::EcCreditLineCard => {
            AccountKind::CardEcLine
        }
        MappingKind::CreditLineCode => AccountKind::CreditLineCode,
        MappingKind::StoreCard => AccountKind::StoreCard,
        MappingKind::Prepaid => AccountKind::Prepaid,
    }
}

fn limit_in(limit: Option<Money>, currency: Currency, what: &str) -> CoreResult<Money> {
    match limit {
        Some(limit) if limit.currency() == currency && !limit.is_zero() => Ok(limit),
        Some(_) => Err(CoreError::invalid(format!(
            "{what} must be more than zero, in the card's currency"
        ))),
        None => Err(CoreError::invalid(format!("this card needs {what}"))),
    }
}

/// Issues a card to a holder (created if new) together with its funding source at
/// `institution`: an account of the kind the mapping calls for, with its limit or first
/// deposit, and a withdrawal account if the holder also sells.
pub async fn issue_card_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    institution: PartyId,
    request: IssueCard,
) -> CoreResult<IssuedCard> {
    let issuer = get_institution(txn, institution).await?;
    if !issuer.kind.issues(request.mapping_kind) {
        return Err(CoreError::Invalid(format!(
            "a {:?} does not issue {:?} cards",
            issuer.kind, request.mapping_kind
        )));
    }
    let currency = request.currency;
    let holder = match request.holder {
        Holder::Existing(id) => {
            let party = parties::get_party(txn, id).await?;
            if party.role != Role::Shopper {
                return Err(CoreError::invalid("cards are issued to shoppers"));
            }
            party.id
        }
        Holder::New { display_name } => {
            parties::create_party_in_txn(
                txn,
                clock,
                NewParty {
                    role: Role::Shopper,
                    display_name,
                },
            )
            .await?
            .id
        }
    };

    let kind = account_kind_for(request.mapping_kind);
    let (credit_limit, credit_class) = match request.mapping_kind {
        MappingKind::Prepaid | MappingKind::BankAccount => (Money::zero(currency), None),
        MappingKind::EcBankCreditLine => {
            let class = CreditClass::for_card(request.age_class, request.purchase_type);
            let limit = limit_in(request.terms.credit_limit, currency, "a credit limit")?;
            let cap = credit_class_cap(txn, institution, class, currency)
                .await?
                .ok_or_else(|| {
                    CoreError::Invalid(format!(
                        "the institution offers no {class:?} credit line in {currency}"
                    ))
                })?;
            if limit.exceeds(&cap)? {
                return Err(CoreError::Invalid(format!(
                    "a {class:?} credit line is limited to {cap}"
                )));
            }
            (limit, Some(class))
        }
        _ => (
            limit_in(request.terms.credit_limit, currency, "a credit limit")?,
            None,
        ),
    };
    let funding = ledger::open_account_in_txn(
        txn,
        clock,
        NewAccount {
            key: None,
            kind,
            owner: holder,
            institution: Some(institution),
            currency,
            credit_limit,
            credit_class,
        },
    )
    .await?;
    let linked = if request.mapping_kind == MappingKind::CreditCardWithEcLine {
        let normal = limit_in(
            request.terms.normal_card_limit,
            currency,
            "a normal card limit",
        )?;
        Some(
            ledger::open_account_in_txn(
                txn,
                clock,
                NewAccount {
                    key: None,
                    kind: AccountKind::CardCredit,
                    owner: holder,
                    institution: Some(institution),
                    currency,
                    credit_limit: normal,
                    credit_class: None,
                },
            )
            .await?,
        )
    } else {
        None
    };

    let card = cards::issue_card_in_txn(
        txn,
        clock,
        NewCard {
            institution,
            institution_code: issuer.code.clone(),
            holder,
            age_class: request.age_class,
            purchase_type: request.purchase_type,
            mapping_kind: request.mapping_kind,
            funding_account: funding.id,
            linked_account: linked.as_ref().map(|a| a.id),
            phone: request.phone,
            email: request.email,
            delivery_address: request.delivery_address,
        },
    )
    .await?;
    if let Some(deposit) = request.terms.initial_deposit.filter(|d| !d.is_zero()) {
        deposit_in_txn(
            txn,
            clock,
            funding.id,
            deposit,
            &format!("card:{}:initial", card.id),
        )
        .await?;
    }
    let withdrawal = if request.seller {
        Some(withdrawal_account_in_txn(txn, clock, holder, currency).await?)
    } else {
        None
    };
    Ok(IssuedCard {
        card,
        funding: ledger::get_account(txn, funding.id).await?,
        linked,
        withdrawal,
    })
}

/// A seller's EC withdrawal account in `currency`, opened on first use.
pub async fn withdrawal_account_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    owner: PartyId,
    currency: Currency,
) -> CoreResult<Account> {
    ledger::get_or_open_keyed_account_in_txn(
        txn,
        clock,
        NewAccount {
            key: Some(ledger::keys::withdrawal(owner, currency)),
            kind: AccountKind::Withdrawal,
            owner,
            institution: None,
            currency,
            credit_limit: Money::zero(currency),
            credit_class: None,
        },
    )
    .await
}

/// Money paid in from outside (cash, a bank transfer) onto a prepaid or bank account, or a
/// repayment onto a credit line: the institution's external account is debited, so the ledger
/// still sums to zero.
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
    if hold_mode(target.kind).is_none() {
        return Err(CoreError::invalid("deposits go to funding accounts"));
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
            credit_class: None,
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

impl FromStr for CreditClass {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
            CoreError::invalid("a credit class is adolescent, company_purchase or general")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_class_decides_the_credit_line_class() {
        use AgeClass::*;
        use PurchaseType::*;
        assert_eq!(
            CreditClass::for_card(Adolescent, Personal),
            CreditClass::Adolescent
        );
        assert_eq!(
            CreditClass::for_card(Adolescent, Business),
            CreditClass::Adolescent
        );
        assert_eq!(
            CreditClass::for_card(Adult, Business),
            CreditClass::CompanyPurchase
        );
        assert_eq!(CreditClass::for_card(Adult, Personal), CreditClass::General);
    }

    #[test]
    fn every_mapping_is_issued_by_some_institution_kind_and_funds_holds() {
        for mapping in MappingKind::ALL {
            let kinds = [
                InstitutionKind::Bank,
                InstitutionKind::CardCompany,
                InstitutionKind::DepartmentStore,
            ];
            assert!(kinds.iter().any(|k| k.issues(mapping)), "{mapping:?}");
            assert!(
                hold_mode(account_kind_for(mapping)).is_some(),
                "{mapping:?}"
            );
        }
    }

    #[test]
    fn cards_reserve_and_bank_money_moves() {
        assert_eq!(hold_mode(AccountKind::CardEcLine), Some(HoldMode::Reserve));
        assert_eq!(hold_mode(AccountKind::StoreCard), Some(HoldMode::Reserve));
        assert_eq!(hold_mode(AccountKind::BankCreditLine), Some(HoldMode::Move));
        assert_eq!(hold_mode(AccountKind::Prepaid), Some(HoldMode::Move));
        assert_eq!(hold_mode(AccountKind::Freezing), None);
    }
}
