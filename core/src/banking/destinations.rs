//! Payout destinations: the bank account a payee (a supplier, drugstore, insurer, a shopper
//! selling at auction) is paid to. Registering or changing one gives a `pending` destination;
//! only the payee's confirmation makes it `active`, and the destination active before it
//! becomes `superseded`. A payee has at most one of each (partial unique indexes), and no row
//! is ever deleted: the list is the history.
//!
//! The confirmation is the payee's second channel: a supplier, drugstore or insurer gives its
//! second password (checked by the caller); a card holder has none, so its card's phone is
//! asked instead ([`register_on_phone_in_txn`]): approving the `payout_destination` challenge
//! confirms the destination, denying it (or locking it with wrong codes, or letting it expire)
//! cancels it. Lock order in an answer: the destination, then its challenge.

use crate::cards;
use crate::cards::CardId;
use crate::challenge::{self, Answer, ChallengeBinding, ChallengePurpose, Decision, NewChallenge};
use crate::clock::Clock;
use crate::entities::payout_destinations as rows;
use crate::error::{CoreError, CoreResult};
use crate::ids::{ChallengeId, PartyId, PayoutDestinationId};
use crate::paging::{ListFilter, Page, Paged};
use chrono::{DateTime, Utc};
use iban::{Iban, IbanLike, ParseBaseIbanError, ParseIbanError};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryFilter, QuerySelect};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use utoipa::ToSchema;

/// How the account is numbered.
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
pub enum Scheme {
    /// An International Bank Account Number (ISO 13616).
    Iban,
    /// A domestic account number with its bank's code (a Korean bank code, a US routing
    /// number, a sort code...).
    Domestic,
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
    db_type = "String(StringLen::N(16))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum DestinationStatus {
    /// Registered, waiting for the payee's confirmation; payouts do not go here yet.
    Pending,
    /// Where payouts go.
    Active,
    /// Was active until the payee confirmed another.
    Superseded,
    /// Replaced or withdrawn before it was confirmed.
    Cancelled,
}

impl DestinationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationStatus::Pending => "pending",
            DestinationStatus::Active => "active",
            DestinationStatus::Superseded => "superseded",
            DestinationStatus::Cancelled => "cancelled",
        }
    }
}

/// The longest bank code and domestic account number accepted (an IBAN is at most 34).
pub const MAX_BANK_CODE_CHARS: usize = 11;
pub const MAX_ACCOUNT_NUMBER_CHARS: usize = 34;
/// The longest holder name a credit transfer carries (ISO 20022 `Max140Text`).
pub const MAX_HOLDER_NAME_CHARS: usize = 140;

/// A checked bank account number.
#[derive(Clone, PartialEq, Eq)]
pub enum BankAccount {
    /// An IBAN whose country format and mod-97 check passed, in electronic form.
    Iban(String),
    Domestic {
        bank_code: String,
        account_number: String,
    },
}

impl BankAccount {
    /// Checks an IBAN as typed: spaces allowed (the printed form), letters in any case.
    pub fn iban(typed: &str) -> CoreResult<BankAccount> {
        match Iban::from_str(&super::upper_without_spaces(typed)) {
            Ok(iban) => Ok(BankAccount::Iban(iban.electronic_str().to_owned())),
            Err(ParseIbanError::InvalidBaseIban {
                source: ParseBaseIbanError::InvalidChecksum,
            }) => Err(CoreError::InvalidBankAccount(
                "the IBAN's check digits do not match: a character is mistyped",
            )),
            Err(ParseIbanError::UnknownCountry(_)) => Err(CoreError::InvalidBankAccount(
                "the IBAN's country has no IBAN format",
            )),
            Err(_) => Err(CoreError::InvalidBankAccount(
                "not an IBAN: two letters, two check digits and the account, as the bank gave it",
            )),
        }
    }

    /// Checks a domestic account: a bank code of 2 to 11 letters or digits, and an account
    /// number of 4 to 34, written with or without spaces and hyphens.
    pub fn domestic(bank_code: &str, account_number: &str) -> CoreResult<BankAccount> {
        let bank_code = compact(bank_code);
        let account_number = compact(account_number);
        if !(2..=MAX_BANK_CODE_CHARS).contains(&bank_code.len())
            || !bank_code.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(CoreError::InvalidBankAccount(
                "a bank code is 2 to 11 letters or digits",
            ));
        }
        if !(4..=MAX_ACCOUNT_NUMBER_CHARS).contains(&account_number.len())
            || !account_number.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(CoreError::InvalidBankAccount(
                "an account number is 4 to 34 letters or digits (spaces and hyphens are ignored)",
            ));
        }
        Ok(BankAccount::Domestic {
            bank_code,
            account_number,
        })
    }

    /// The account as a payee typed it: an IBAN, or a bank code and an account number (a
    /// field left empty counts as not given).
    pub fn typed(
        iban: Option<&str>,
        bank_code: Option<&str>,
        account_number: Option<&str>,
    ) -> CoreResult<BankAccount> {
        fn given(field: Option<&str>) -> Option<&str> {
            field.filter(|text| !text.trim().is_empty())
        }
        match (given(iban), given(bank_code), given(account_number)) {
            (Some(iban), None, None) => BankAccount::iban(iban),
            (None, Some(bank_code), Some(account_number)) => {
                BankAccount::domestic(bank_code, account_number)
            }
            _ => Err(CoreError::InvalidBankAccount(
                "give either an IBAN, or a bank code and an account number",
            )),
        }
    }

    pub fn scheme(&self) -> Scheme {
        match self {
            BankAccount::Iban(_) => Scheme::Iban,
            BankAccount::Domestic { .. } => Scheme::Domestic,
        }
    }

    /// The account from its stored columns (an IBAN, or a bank code and account number).
    pub fn from_columns(
        scheme: Scheme,
        iban: Option<String>,
        bank_code: Option<String>,
        account_number: Option<String>,
    ) -> CoreResult<BankAccount> {
        match (scheme, iban, bank_code, account_number) {
            (Scheme::Iban, Some(iban), _, _) => Ok(BankAccount::Iban(iban)),
            (Scheme::Domestic, _, Some(bank_code), Some(account_number)) => {
                Ok(BankAccount::Domestic {
                    bank_code,
                    account_number,
                })
            }
            _ => Err(CoreError::Internal(
                "a stored bank account lacks its number",
            )),
        }
    }

    /// The stored columns: IBAN, bank code, account number.
    pub fn to_columns(&self) -> (Option<String>, Option<String>, Option<String>) {
        match self {
            BankAccount::Iban(iban) => (Some(iban.clone()), None, None),
            BankAccount::Domestic {
                bank_code,
                account_number,
            } => (None, Some(bank_code.clone()), Some(account_number.clone())),
        }
    }

    /// The IBAN, or the domestic account number, as stored (compact, upper case).
    pub fn number(&self) -> &str {
        match self {
            BankAccount::Iban(iban) => iban,
            BankAccount::Domestic { account_number, .. } => account_number,
        }
    }

    /// The account's last four characters, for showing which account without showing it.
    pub fn last_four(&self) -> &str {
        let number = self.number();
        &number[number.len().saturating_sub(4)..]
    }
}

impl std::fmt::Debug for BankAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} account …{}", self.scheme(), self.last_four())
    }
}

/// Upper case, without the spaces and hyphens people write account numbers with.
pub(crate) fn compact(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

#[derive(Clone, PartialEq, Eq)]
pub struct Destination {
    pub id: PayoutDestinationId,
    pub party: PartyId,
    pub account: BankAccount,
    pub holder_name: String,
    pub status: DestinationStatus,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    /// When it was superseded or cancelled.
    pub ended_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("id", &self.id)
            .field("account", &self.account)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl TryFrom<rows::Model> for Destination {
    type Error = CoreError;

    fn try_from(row: rows::Model) -> CoreResult<Self> {
        let account =
            BankAccount::from_columns(row.scheme, row.iban, row.bank_code, row.account_number)?;
        Ok(Destination {
            id: PayoutDestinationId::from_uuid(row.id),
            party: PartyId::from_uuid(row.party_id),
            account,
            holder_name: row.holder_name,
            status: row.status,
            created_at: row.created_at,
            confirmed_at: row.confirmed_at,
            ended_at: row.ended_at,
        })
    }
}

/// Registers `account` as where `party` wants to be paid: a pending destination, which
/// replaces (cancels) a pending one registered before. The active destination, if any, stays
/// in use until this one is confirmed.
pub async fn register_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    party: PartyId,
    account: BankAccount,
    holder_name: &str,
) -> CoreResult<Destination> {
    let holder_name = holder_name.trim();
    if holder_name.is_empty() || holder_name.chars().count() > MAX_HOLDER_NAME_CHARS {
        return Err(CoreError::invalid(
            "the account holder's name is 1 to 140 characters",
        ));
    }
    let now = clock.now();
    end_in_txn(
        txn,
        party,
        DestinationStatus::Pending,
        DestinationStatus::Cancelled,
        now,
    )
    .await?;
    let (iban, bank_code, account_number) = account.to_columns();
    let row = rows::ActiveModel {
        id: Set(PayoutDestinationId::new().uuid()),
        party_id: Set(party.uuid()),
        scheme: Set(account.scheme()),
        iban: Set(iban),
        bank_code: Set(bank_code),
        account_number: Set(account_number),
        holder_name: Set(holder_name.to_owned()),
        status: Set(DestinationStatus::Pending),
        created_at: Set(now),
        confirmed_at: Set(None),
        ended_at: Set(None),
    }
    .insert(txn)
    .await?;
    Destination::try_from(row)
}

/// Makes the pending destination `id` of `party` its active one, superseding the one before.
/// The caller has checked the payee's confirmation (its second password). Confirming a
/// destination that is not pending — confirmed already, cancelled, another payee's — changes
/// nothing and is refused.
pub async fn confirm_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    party: PartyId,
    id: PayoutDestinationId,
) -> CoreResult<Destination> {
    let pending = get(txn, party, id).await?;
    if pending.status != DestinationStatus::Pending {
        return Err(not_pending(pending.status, "confirm it"));
    }
    let now = clock.now();
    // The active one ends first: the index allows one active row per payee.
    end_in_txn(
        txn,
        party,
        DestinationStatus::Active,
        DestinationStatus::Superseded,
        now,
    )
    .await?;
    let updated = rows::Entity::update_many()
        .col_expr(
            rows::Column::Status,
            Expr::value(DestinationStatus::Active.as_str()),
        )
        .col_expr(rows::Column::ConfirmedAt, Expr::value(now))
        .filter(rows::Column::Id.eq(id.uuid()))
        .filter(rows::Column::Status.eq(DestinationStatus::Pending))
        .exec(txn)
        .await?;
    if updated.rows_affected != 1 {
        // A concurrent confirmation or registration got there first.
        return Err(CoreError::Conflict);
    }
    get(txn, party, id).await
}

/// Withdraws a pending destination before it is confirmed.
pub async fn cancel_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    party: PartyId,
    id: PayoutDestinationId,
) -> CoreResult<Destination> {
    let pending = get(txn, party, id).await?;
    if pending.status != DestinationStatus::Pending {
        return Err(not_pending(pending.status, "cancel it"));
    }
    let updated = rows::Entity::update_many()
        .col_expr(
            rows::Column::Status,
            Expr::value(DestinationStatus::Cancelled.as_str()),
        )
        .col_expr(rows::Column::EndedAt, Expr::value(clock.now()))
        .filter(rows::Column::Id.eq(id.uuid()))
        .filter(rows::Column::Status.eq(DestinationStatus::Pending))
        .exec(txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(CoreError::Conflict);
    }
    get(txn, party, id).await
}

fn not_pending(status: DestinationStatus, action: &'static str) -> CoreError {
    CoreError::InvalidTransition {
        state: status.as_str(),
        action,
    }
}

/// Moves `party`'s destination in `from` (at most one) to `to`.
async fn end_in_txn(
    txn: &DatabaseTransaction,
    party: PartyId,
    from: DestinationStatus,
    to: DestinationStatus,
    now: DateTime<Utc>,
) -> CoreResult<()> {
    rows::Entity::update_many()
        .col_expr(rows::Column::Status, Expr::value(to.as_str()))
        .col_expr(rows::Column::EndedAt, Expr::value(now))
        .filter(rows::Column::PartyId.eq(party.uuid()))
        .filter(rows::Column::Status.eq(from))
        .exec(txn)
        .await?;
    Ok(())
}

/// `party`'s destination `id`; another payee's is not found.
pub async fn get(
    db: &impl ConnectionTrait,
    party: PartyId,
    id: PayoutDestinationId,
) -> CoreResult<Destination> {
    rows::Entity::find_by_id(id.uuid())
        .filter(rows::Column::PartyId.eq(party.uuid()))
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("payout destination"))
        .and_then(Destination::try_from)
}

/// Where `party` is paid now, if it has confirmed a destination.
pub async fn active(db: &impl ConnectionTrait, party: PartyId) -> CoreResult<Option<Destination>> {
    rows::Entity::find()
        .filter(rows::Column::PartyId.eq(party.uuid()))
        .filter(rows::Column::Status.eq(DestinationStatus::Active))
        .one(db)
        .await?
        .map(Destination::try_from)
        .transpose()
}

/// `party`'s destinations, newest first: its history of registrations, confirmations and
/// changes.
pub async fn history(
    db: &impl ConnectionTrait,
    party: PartyId,
    filter: &ListFilter<DestinationStatus>,
    page: &Page,
) -> CoreResult<Paged<Destination>> {
    let mut select = rows::Entity::find()
        .filter(rows::Column::PartyId.eq(party.uuid()))
        .filter(filter.created.condition(rows::Column::CreatedAt));
    if let Some(status) = filter.state {
        select = select.filter(rows::Column::Status.eq(status));
    }
    let rows = page
        .apply(select, rows::Column::CreatedAt, rows::Column::Id)
        .all(db)
        .await?;
    page.finish(rows, |row| (row.created_at, row.id))
        .try_map(Destination::try_from)
}

/// What the phone shows for a destination: the account by its last four characters (the
/// bank's code too for a domestic one), never the whole number.
pub fn phone_binding(destination: &Destination) -> ChallengeBinding {
    let account = match &destination.account {
        BankAccount::Iban(_) => format!("IBAN …{}", destination.account.last_four()),
        BankAccount::Domestic { bank_code, .. } => {
            format!(
                "bank {bank_code} account …{}",
                destination.account.last_four()
            )
        }
    };
    ChallengeBinding {
        payee: Some(account),
        ..ChallengeBinding::default()
    }
}

/// A card holder's registration, confirmed on its card's phone rather than with a second
/// password: the pending destination and the challenge sent to the phone.
#[derive(Clone, Debug)]
pub struct PhoneRegistration {
    pub destination: Destination,
    pub challenge: ChallengeId,
}

/// Registers `account` for the holder of `card` (as [`register_in_txn`]) and asks the card's
/// phone to confirm it. The card must be active and the holder's.
pub async fn register_on_phone_in_txn(
    txn: &DatabaseTransaction,
    core: &crate::Core,
    card: CardId,
    account: BankAccount,
    holder_name: &str,
) -> CoreResult<PhoneRegistration> {
    let card = cards::get_card(txn, card).await?;
    card.ensure_active()?;
    let destination = register_in_txn(txn, &core.clock, card.holder, account, holder_name).await?;
    let challenge = challenge::issue_challenge_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &core.policy,
        NewChallenge {
            purpose: ChallengePurpose::PayoutDestination,
            party: card.holder,
            phone: card.phone,
            subject: Some(destination.id.uuid()),
            binding: phone_binding(&destination),
            note: None,
        },
    )
    .await?;
    Ok(PhoneRegistration {
        destination,
        challenge: challenge.id,
    })
}

/// What answering a `payout_destination` challenge did: the destination confirmed or
/// cancelled, or a refusal that changed the challenge (or the destination), to be committed
/// and then reported.
#[derive(Debug)]
pub enum PhoneAnswer {
    Applied(Destination),
    Refused(CoreError),
}

/// Answers a `payout_destination` challenge, as the card's phone does: approving confirms the
/// pending destination; denying it, locking the code or answering after it expired cancels
/// it. A destination no longer pending (cancelled, or replaced by a newer registration) can
/// no longer be confirmed: its challenge is voided.
#[tracing::instrument(name = "payee.answer_destination", skip_all, fields(challenge_id = %challenge_id))]
pub async fn answer_on_phone_in_txn(
    txn: &DatabaseTransaction,
    core: &crate::Core,
    challenge_id: ChallengeId,
    code: &str,
    decision: Decision,
) -> CoreResult<PhoneAnswer> {
    challenge::parse_code(code)?;
    let unlocked = challenge::get_challenge(txn, challenge_id).await?;
    let subject = unlocked
        .subject
        .filter(|_| unlocked.purpose == ChallengePurpose::PayoutDestination)
        .ok_or(CoreError::NotFound("challenge"))?;
    let id = PayoutDestinationId::from_uuid(subject);
    let destination = rows::Entity::find_by_id(id.uuid())
        .filter(rows::Column::PartyId.eq(unlocked.party.uuid()))
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("payout destination"))
        .and_then(Destination::try_from)?;
    let challenge = challenge::lock_challenge_in_txn(txn, challenge_id).await?;
    if destination.status != DestinationStatus::Pending
        && challenge.status == challenge::ChallengeStatus::Pending
    {
        challenge::void_in_txn(txn, &core.clock, challenge_id).await?;
        return Ok(PhoneAnswer::Refused(CoreError::ChallengeClosed {
            status: destination.status.as_str(),
        }));
    }
    let answer = challenge::answer_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &challenge,
        code,
        decision,
        &phone_binding(&destination),
    )
    .await?;
    let party = destination.party;
    Ok(match answer {
        Answer::Approved(_) => {
            PhoneAnswer::Applied(confirm_in_txn(txn, &core.clock, party, id).await?)
        }
        Answer::Denied(_) => {
            PhoneAnswer::Applied(cancel_in_txn(txn, &core.clock, party, id).await?)
        }
        Answer::Expired(_) | Answer::Locked => {
            cancel_in_txn(txn, &core.clock, party, id).await?;
            PhoneAnswer::Refused(
                challenge::answer_error(&answer).unwrap_or(CoreError::ChallengeExpired),
            )
        }
        refused => PhoneAnswer::Refused(
            challenge::answer_error(&refused).unwrap_or(CoreError::ChallengeNotAnswerable),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_iban_is_checked_and_kept_in_electronic_form() {
        let account = BankAccount::iban("de44 5001 0517 5407 3249 31").unwrap();
        assert_eq!(
            account,
            BankAccount::Iban("DE44500105175407324931".to_owned())
        );
        assert_eq!(account.last_four(), "4931");
        assert_eq!(format!("{account:?}"), "Iban account …4931");
    }

    #[test]
    fn a_mistyped_iban_is_refused_with_the_reason() {
        // One digit changed: the mod-97 check fails.
        let error = BankAccount::iban("DE44500105175407324932").unwrap_err();
        assert_eq!(error.code(), "invalid_bank_account");
        assert!(error.to_string().contains("check digits"), "{error}");
        // Wrong length for Germany.
        assert!(BankAccount::iban("DE4450010517540732493").is_err());
        assert!(BankAccount::iban("XX44500105175407324931").is_err());
        assert!(BankAccount::iban("").is_err());
    }

    #[test]
    fn a_domestic_account_needs_a_bank_code_and_a_number() {
        let account = BankAccount::domestic("088", "110-123-456789").unwrap();
        assert_eq!(
            account,
            BankAccount::Domestic {
                bank_code: "088".to_owned(),
                account_number: "110123456789".to_owned(),
            }
        );
        assert!(BankAccount::domestic("8", "110123456789").is_err());
        assert!(BankAccount::domestic("088", "12").is_err());
        assert!(BankAccount::domestic("088", "1101234567$89").is_err());
        assert!(BankAccount::domestic("088", &"1".repeat(35)).is_err());
    }
}
