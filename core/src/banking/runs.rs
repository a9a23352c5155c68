//! Bank runs: the pending payouts of an institution, written into one ISO 20022 credit
//! transfer file per currency, sent from the institution's own account at its bank, and handed
//! to the bank through a [`BankGateway`]. Preparing a run claims its payouts (`pending` →
//! `sent`) and stores the file in one transaction; handing it over happens after the commit
//! and is repeated for a file not yet taken (after a crash) — harmless, because a bank refuses
//! a message id it has already seen. So a payout is in exactly one file, and sent once.

use crate::banking::destinations::{self, BankAccount};
use crate::banking::pain001::{self, CreditTransfer, Debtor, Initiation};
use crate::banking::payouts::{self, Payout, PayoutStatus};
use crate::clock::Clock;
use crate::entities::{
    bank_files, institution_bank_accounts as accounts_rows, payout_destinations,
    payouts as payout_rows,
};
use crate::error::{CoreError, CoreResult};
use crate::ids::PartyId;
use crate::money::Currency;
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryFilter, QueryOrder, QuerySelect,
};
use std::collections::HashMap;
use std::str::FromStr;

/// The most payouts one file carries; a larger backlog goes out in the next run.
pub const MAX_RUN_PAYOUTS: u64 = 1_000;

/// The name the files give the party initiating them.
const INITIATING_PARTY: &str = "Holdfast";

/// An institution's own account at its bank, in one currency: where payouts leave from and
/// deposits arrive, mirrored in the ledger by the institution's external account.
#[derive(Clone, PartialEq, Eq)]
pub struct InstitutionBankAccount {
    pub institution: PartyId,
    pub currency: Currency,
    pub account: BankAccount,
    pub bic: Option<String>,
    pub holder_name: String,
}

impl std::fmt::Debug for InstitutionBankAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstitutionBankAccount")
            .field("institution", &self.institution)
            .field("currency", &self.currency)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl TryFrom<accounts_rows::Model> for InstitutionBankAccount {
    type Error = CoreError;

    fn try_from(row: accounts_rows::Model) -> CoreResult<Self> {
        Ok(InstitutionBankAccount {
            institution: PartyId::from_uuid(row.institution_party_id),
            currency: Currency::from_str(&row.currency)?,
            account: BankAccount::from_columns(
                row.scheme,
                row.iban,
                row.bank_code,
                row.account_number,
            )?,
            bic: row.bic,
            holder_name: row.holder_name,
        })
    }
}

/// Sets (or replaces) `account.institution`'s own account in `account.currency`.
pub async fn set_institution_account_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    account: &InstitutionBankAccount,
) -> CoreResult<()> {
    if let Some(bic) = &account.bic
        && !valid_bic(bic)
    {
        return Err(CoreError::InvalidBankAccount(
            "a BIC is 8 or 11 upper-case letters and digits",
        ));
    }
    let holder_name = account.holder_name.trim();
    if holder_name.is_empty() || holder_name.chars().count() > destinations::MAX_HOLDER_NAME_CHARS {
        return Err(CoreError::invalid(
            "the account holder's name is 1 to 140 characters",
        ));
    }
    let (iban, bank_code, account_number) = account.account.to_columns();
    let now = clock.now();
    accounts_rows::Entity::insert(accounts_rows::ActiveModel {
        id: Set(Uuid::now_v7()),
        institution_party_id: Set(account.institution.uuid()),
        currency: Set(account.currency.code().to_owned()),
        scheme: Set(account.account.scheme()),
        iban: Set(iban),
        bank_code: Set(bank_code),
        account_number: Set(account_number),
        bic: Set(account.bic.clone()),
        holder_name: Set(holder_name.to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([
            accounts_rows::Column::InstitutionPartyId,
            accounts_rows::Column::Currency,
        ])
        .update_columns([
            accounts_rows::Column::Scheme,
            accounts_rows::Column::Iban,
            accounts_rows::Column::BankCode,
            accounts_rows::Column::AccountNumber,
            accounts_rows::Column::Bic,
            accounts_rows::Column::HolderName,
            accounts_rows::Column::UpdatedAt,
        ])
        .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// ISO 9362's shape: bank (4), country (2), location (2), and optionally a branch (3).
fn valid_bic(bic: &str) -> bool {
    matches!(bic.len(), 8 | 11)
        && bic
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// `institution`'s own accounts, one per currency.
pub async fn institution_accounts(
    db: &impl ConnectionTrait,
    institution: PartyId,
) -> CoreResult<Vec<InstitutionBankAccount>> {
    accounts_rows::Entity::find()
        .filter(accounts_rows::Column::InstitutionPartyId.eq(institution.uuid()))
        .order_by_asc(accounts_rows::Column::Currency)
        .all(db)
        .await?
        .into_iter()
        .map(InstitutionBankAccount::try_from)
        .collect()
}

/// A credit transfer file, as stored and handed to the bank.
#[derive(Clone, PartialEq, Eq)]
pub struct BankFile {
    pub id: Uuid,
    pub institution: PartyId,
    pub message_id: String,
    /// `pain.001.001.09`.
    pub format: String,
    pub content: String,
    pub transfers: u32,
    pub created_at: DateTime<Utc>,
    pub handed_over_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for BankFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BankFile")
            .field("id", &self.id)
            .field("message_id", &self.message_id)
            .field("transfers", &self.transfers)
            .finish_non_exhaustive()
    }
}

impl From<bank_files::Model> for BankFile {
    fn from(row: bank_files::Model) -> Self {
        BankFile {
            id: row.id,
            institution: PartyId::from_uuid(row.institution_party_id),
            message_id: row.message_id,
            format: row.format,
            content: row.content,
            transfers: u32::try_from(row.transfers).unwrap_or(0),
            created_at: row.created_at,
            handed_over_at: row.handed_over_at,
        }
    }
}

/// Why a bank gateway did not take a file; the file is handed over again later.
#[derive(Debug, thiserror::Error)]
pub enum BankGatewayError {
    #[error("the bank could not be reached: {0}")]
    Unreachable(String),
    #[error("the bank refused the file: {0}")]
    Refused(String),
}

/// Where credit transfer files go: a bank's file channel (EBICS, SFTP, an API), or the
/// simulator in development. Taking the same message id twice must be harmless (banks refuse
/// duplicates).
#[async_trait::async_trait]
pub trait BankGateway: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;

    async fn hand_over(&self, file: &BankFile) -> Result<(), BankGatewayError>;
}

/// Claims `institution`'s pending payouts (at most [`MAX_RUN_PAYOUTS`] per currency, oldest
/// first) in each currency it has an account in, and writes one file per currency. A payout
/// another run claimed meanwhile is left out; a currency without an institution account waits.
/// Returns the files, to hand over after the commit.
pub async fn prepare_run_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    institution: PartyId,
) -> CoreResult<Vec<BankFile>> {
    let mut files = Vec::new();
    for account in institution_accounts(txn, institution).await? {
        let pending: Vec<_> = payout_rows::Entity::find()
            .select_only()
            .column(payout_rows::Column::Id)
            .filter(payout_rows::Column::InstitutionPartyId.eq(institution.uuid()))
            .filter(payout_rows::Column::Currency.eq(account.currency.code()))
            .filter(payout_rows::Column::Status.eq(PayoutStatus::Pending))
            .order_by_asc(payout_rows::Column::CreatedAt)
            .order_by_asc(payout_rows::Column::Id)
            .limit(MAX_RUN_PAYOUTS)
            .into_tuple::<Uuid>()
            .all(txn)
            .await?
            .into_iter()
            .map(crate::ids::PayoutId::from_uuid)
            .collect();
        let claimed = payouts::mark_sent_in_txn(txn, clock, &pending).await?;
        if claimed.is_empty() {
            continue;
        }
        files.push(write_file_in_txn(txn, clock, &account, &claimed).await?);
    }
    Ok(files)
}

async fn write_file_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    account: &InstitutionBankAccount,
    claimed: &[Payout],
) -> CoreResult<BankFile> {
    let destinations: HashMap<Uuid, destinations::Destination> =
        payout_destinations::Entity::find()
            .filter(
                payout_destinations::Column::Id.is_in(claimed.iter().map(|p| p.destination.uuid())),
            )
            .all(txn)
            .await?
            .into_iter()
            .map(|row| destinations::Destination::try_from(row).map(|d| (d.id.uuid(), d)))
            .collect::<CoreResult<_>>()?;
    let transfers = claimed
        .iter()
        .map(|payout| {
            let destination = destinations
                .get(&payout.destination.uuid())
                .ok_or(CoreError::Internal("a payout's destination is missing"))?;
            Ok(CreditTransfer {
                end_to_end_id: payout.end_to_end_id.clone(),
                amount: payout.amount,
                creditor_name: destination.holder_name.clone(),
                creditor_account: destination.account.clone(),
                remittance: format!("Holdfast payout {}", payout.end_to_end_id),
            })
        })
        .collect::<CoreResult<Vec<_>>>()?;
    let id = Uuid::now_v7();
    let now = clock.now();
    let initiation = Initiation {
        message_id: format!("HF{}", id.simple()).to_ascii_uppercase(),
        created_at: now,
        execution_date: now.date_naive(),
        initiating_party: INITIATING_PARTY.to_owned(),
        debtor: Debtor {
            name: account.holder_name.clone(),
            account: account.account.clone(),
            bic: account.bic.clone(),
        },
        transfers,
    };
    let content = pain001::write(&initiation)?;
    let row = bank_files::ActiveModel {
        id: Set(id),
        institution_party_id: Set(account.institution.uuid()),
        message_id: Set(initiation.message_id),
        format: Set("pain.001.001.09".to_owned()),
        content: Set(content),
        transfers: Set(i32::try_from(claimed.len()).unwrap_or(i32::MAX)),
        created_at: Set(now),
        handed_over_at: Set(None),
    }
    .insert(txn)
    .await?;
    payout_rows::Entity::update_many()
        .col_expr(payout_rows::Column::BankFileId, Expr::value(id))
        .filter(payout_rows::Column::Id.is_in(claimed.iter().map(|p| p.id.uuid())))
        .exec(txn)
        .await?;
    Ok(BankFile::from(row))
}

/// Files the bank has not taken yet, oldest first.
pub async fn files_to_hand_over(
    db: &impl ConnectionTrait,
    limit: u64,
) -> CoreResult<Vec<BankFile>> {
    Ok(bank_files::Entity::find()
        .filter(bank_files::Column::HandedOverAt.is_null())
        .order_by_asc(bank_files::Column::CreatedAt)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(BankFile::from)
        .collect())
}

/// Records that the bank took the file.
pub async fn mark_handed_over_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    file: Uuid,
) -> CoreResult<()> {
    bank_files::Entity::update_many()
        .col_expr(bank_files::Column::HandedOverAt, Expr::value(clock.now()))
        .filter(bank_files::Column::Id.eq(file))
        .filter(bank_files::Column::HandedOverAt.is_null())
        .exec(txn)
        .await?;
    Ok(())
}

/// The payouts a file carries.
pub async fn payouts_in_file(db: &impl ConnectionTrait, file: Uuid) -> CoreResult<Vec<Payout>> {
    payout_rows::Entity::find()
        .filter(payout_rows::Column::BankFileId.eq(file))
        .order_by_asc(payout_rows::Column::CreatedAt)
        .all(db)
        .await?
        .into_iter()
        .map(Payout::try_from)
        .collect()
}
