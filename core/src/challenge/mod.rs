//! Out-of-band confirmation on the phone.
//!
//! A challenge binds what the person is shown — amount, payee, order number — through a
//! digest (PSD2 dynamic linking): the code is accepted only while the thing being confirmed
//! still matches, and any change voids it. Codes are 6 random digits, stored only as a MAC,
//! accepted once, valid for a limited time, and locked after a few wrong tries; sending the
//! code again does not reset that count (NIST SP 800-63B).

use crate::clock::Clock;
use crate::db::MinorUnits;
use crate::entities::challenges;
use crate::error::{CoreError, CoreResult};
use crate::ids::{ChallengeId, PartyId};
use crate::money::{Currency, Money};
use crate::outbox::{self, PhoneMessage};
use crate::outcomes::{ChallengeOutcome, Outcome};
use crate::phone_number::PhoneNumber;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, FromQueryResult, QueryFilter,
    QuerySelect, Statement,
};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::str::FromStr;
use utoipa::ToSchema;

mod binding;
mod logins;

pub use binding::*;
pub use logins::*;

pub type HmacSha256 = Hmac<Sha256>;

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
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
pub enum ChallengePurpose {
    Order,
    Settlement,
    PrescriptionOpen,
    Payment,
    CardPresent,
    Policy,
    Login,
    /// A card holder who sells confirming the bank account its payouts go to.
    PayoutDestination,
}

impl ChallengePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengePurpose::Order => "order",
            ChallengePurpose::Settlement => "settlement",
            ChallengePurpose::PrescriptionOpen => "prescription_open",
            ChallengePurpose::Payment => "payment",
            ChallengePurpose::CardPresent => "card_present",
            ChallengePurpose::Policy => "policy",
            ChallengePurpose::Login => "login",
            ChallengePurpose::PayoutDestination => "payout_destination",
        }
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
    db_type = "String(StringLen::N(16))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeStatus {
    Pending,
    Approved,
    Denied,
    Expired,
    /// Too many wrong codes: final.
    Locked,
    /// What it confirmed changed after it was sent: final.
    Voided,
}

impl ChallengeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeStatus::Pending => "pending",
            ChallengeStatus::Approved => "approved",
            ChallengeStatus::Denied => "denied",
            ChallengeStatus::Expired => "expired",
            ChallengeStatus::Locked => "locked",
            ChallengeStatus::Voided => "voided",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Deny,
}

pub const CODE_DIGITS: usize = 6;
pub const MAX_FAILED_ATTEMPTS: i32 = 5;
pub const MAX_SENDS: i32 = 3;

/// The longest a code may live (PSD2 RTS, NIST SP 800-63B).
pub const MAX_TTL_SECS: i64 = 600;

/// How long a code lives (per purpose, at most ten minutes) and how many tries it gets.
#[derive(Clone, Debug)]
pub struct ChallengePolicy {
    ttl_secs: std::collections::BTreeMap<ChallengePurpose, i64>,
    pub max_failed_attempts: i32,
    /// Wrong codes a party may enter across all its login challenges within
    /// [`FAILURE_WINDOW_MINUTES`] before logins are refused (NIST: count per account, not per
    /// code).
    pub max_login_failures: i32,
    /// Login challenges a party may be sent within [`FAILURE_WINDOW_MINUTES`].
    pub max_login_challenges: u64,
}

pub const FAILURE_WINDOW_MINUTES: i64 = 60;

impl Default for ChallengePolicy {
    fn default() -> Self {
        ChallengePolicy {
            ttl_secs: [(ChallengePurpose::Login, 300)].into_iter().collect(),
            max_failed_attempts: MAX_FAILED_ATTEMPTS,
            max_login_failures: 10,
            max_login_challenges: 10,
        }
    }
}

impl ChallengePolicy {
    /// The code lifetime for `purpose` (ten minutes unless configured shorter).
    pub fn ttl(&self, purpose: ChallengePurpose) -> Duration {
        Duration::seconds(self.ttl_secs.get(&purpose).copied().unwrap_or(MAX_TTL_SECS))
    }

    /// Sets the code lifetime for `purpose`, 30 seconds to ten minutes.
    pub fn set_ttl(&mut self, purpose: ChallengePurpose, secs: i64) -> CoreResult<()> {
        if !(30..=MAX_TTL_SECS).contains(&secs) {
            return Err(CoreError::invalid(format!(
                "a code lives 30 to {MAX_TTL_SECS} seconds"
            )));
        }
        self.ttl_secs.insert(purpose, secs);
        Ok(())
    }

    /// Parses `order=300,login=120`.
    pub fn with_ttls(mut self, spec: &str) -> CoreResult<ChallengePolicy> {
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (purpose, secs) = pair
                .split_once('=')
                .ok_or_else(|| CoreError::invalid("write purpose=seconds, e.g. order=300"))?;
            let purpose: ChallengePurpose =
                serde_json::from_value(serde_json::Value::String(purpose.trim().to_owned()))
                    .map_err(|_| CoreError::invalid(format!("unknown purpose '{purpose}'")))?;
            let secs = secs
                .trim()
                .parse::<i64>()
                .map_err(|_| CoreError::invalid("seconds must be a number"))?;
            self.set_ttl(purpose, secs)?;
        }
        Ok(self)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub id: ChallengeId,
    pub purpose: ChallengePurpose,
    pub party: PartyId,
    pub phone: PhoneNumber,
    pub subject: Option<Uuid>,
    pub binding: ChallengeBinding,
    pub digest: String,
    pub status: ChallengeStatus,
    pub failed_attempts: i32,
    pub max_attempts: i32,
    pub sends: i32,
    pub expires_at: DateTime<Utc>,
    pub note: Option<String>,
    code_mac: String,
}

impl TryFrom<challenges::Model> for Challenge {
    type Error = CoreError;

    fn try_from(row: challenges::Model) -> CoreResult<Self> {
        let amount = match (row.amount, row.currency.as_deref()) {
            (Some(minor), Some(code)) => {
                Some(Money::from_minor(minor.0, Currency::from_str(code)?)?)
            }
            _ => None,
        };
        Ok(Challenge {
            id: ChallengeId::from_uuid(row.id),
            purpose: row.purpose,
            party: PartyId::from_uuid(row.party_id),
            phone: PhoneNumber::from_stored(row.phone_e164),
            subject: row.subject_id,
            binding: ChallengeBinding {
                amount,
                payee: row.payee,
                order_number: row.order_number,
                terms: row.terms,
            },
            digest: row.digest,
            status: row.status,
            failed_attempts: row.failed_attempts,
            max_attempts: row.max_attempts,
            sends: row.sends,
            expires_at: row.expires_at,
            note: row.note,
            code_mac: row.code_mac,
        })
    }
}

#[derive(Clone, Debug)]
pub struct NewChallenge {
    pub purpose: ChallengePurpose,
    pub party: PartyId,
    pub phone: PhoneNumber,
    pub subject: Option<Uuid>,
    pub binding: ChallengeBinding,
    /// Shown with the confirmation (what is known of the delivery, say); not part of what the
    /// code is bound to.
    pub note: Option<String>,
}

fn new_code() -> String {
    let value: u32 = rand::rng().random_range(0..1_000_000);
    format!("{value:06}")
}

/// What the phone shows. It names amount, payee and order number, so the person approves
/// exactly what they see.
fn message_text(challenge: &Challenge, code: &str) -> String {
    let binding = &challenge.binding;
    let what = match challenge.purpose {
        ChallengePurpose::Order => "Approve order",
        ChallengePurpose::Settlement => "Release payment for order",
        ChallengePurpose::PrescriptionOpen => "Allow opening prescription",
        ChallengePurpose::Payment => "Pay",
        ChallengePurpose::CardPresent => "Approve card payment",
        ChallengePurpose::Policy => "Buy policy",
        ChallengePurpose::Login => "Log in to Holdfast",
        ChallengePurpose::PayoutDestination => "Send your payouts",
    };
    let mut text = format!("Holdfast: {what}");
    if let Some(number) = &binding.order_number {
        text.push_str(&format!(" {number}"));
    }
    if let Some(amount) = &binding.amount {
        text.push_str(&format!(", {amount}"));
    }
    if let Some(payee) = &binding.payee {
        text.push_str(&format!(" to {payee}"));
    }
    if let Some(terms) = &binding.terms {
        text.push_str(&format!(", {terms}"));
    }
    if let Some(note) = &challenge.note {
        text.push_str(&format!(" ({note})"));
    }
    text.push_str(&format!(
        ". Code {code}, valid until {} UTC. Never share this code.",
        challenge.expires_at.format("%Y-%m-%d %H:%M")
    ));
    text
}

/// Creates the challenge, queues its message to the phone and schedules its expiry, all in
/// the caller's transaction.
#[tracing::instrument(name = "challenge.issue", level = "debug", skip_all, fields(purpose = ?new.purpose, challenge_id = tracing::field::Empty))]
pub async fn issue_challenge_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    keys: &ChallengeKeys,
    policy: &ChallengePolicy,
    new: NewChallenge,
) -> CoreResult<Challenge> {
    if new.purpose == ChallengePurpose::Login {
        prepare_login_in_txn(txn, clock, policy, LoginsOf::Party(new.party)).await?;
    }
    let id = ChallengeId::new();
    tracing::Span::current().record("challenge_id", tracing::field::display(id));
    let now = clock.now();
    let digest = new.binding.digest(new.purpose, new.party);
    let code = new_code();
    let code_mac = hex::encode(keys.code_mac(id, &digest, &code).finalize().into_bytes());
    let expires_at = now + policy.ttl(new.purpose);
    let row = challenges::ActiveModel {
        id: Set(id.uuid()),
        purpose: Set(new.purpose),
        party_id: Set(new.party.uuid()),
        phone_e164: Set(new.phone.e164().to_owned()),
        subject_id: Set(new.subject),
        amount: Set(new.binding.amount.map(|m| MinorUnits(m.minor()))),
        currency: Set(new.binding.amount.map(|m| m.currency().code().to_owned())),
        payee: Set(new.binding.payee.clone()),
        order_number: Set(new.binding.order_number.clone()),
        digest: Set(digest),
        code_mac: Set(code_mac),
        status: Set(ChallengeStatus::Pending),
        failed_attempts: Set(0),
        max_attempts: Set(policy.max_failed_attempts),
        sends: Set(1),
        expires_at: Set(expires_at),
        created_at: Set(now),
        resolved_at: Set(None),
        note: Set(new.note.map(|n| n.chars().take(300).collect())),
        terms: Set(new.binding.terms.clone()),
    };
    // The row as written comes back with the insert (RETURNING): no second read.
    let challenge = Challenge::try_from(row.insert(txn).await?)?;
    send_code_in_txn(txn, clock, &challenge, &code).await?;
    Ok(challenge)
}

async fn send_code_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    challenge: &Challenge,
    code: &str,
) -> CoreResult<()> {
    outbox::enqueue_phone_in_txn(
        txn,
        clock,
        PhoneMessage {
            to: challenge.phone.clone(),
            body: message_text(challenge, code),
            challenge: Some(challenge.id),
        },
    )
    .await
}

pub async fn get_challenge(db: &impl ConnectionTrait, id: ChallengeId) -> CoreResult<Challenge> {
    challenges::Entity::find_by_id(id.uuid())
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("challenge"))
        .and_then(Challenge::try_from)
}

/// Reads the challenge and locks its row until the transaction ends, so that two answers
/// cannot both be counted.
pub async fn lock_challenge_in_txn(
    txn: &DatabaseTransaction,
    id: ChallengeId,
) -> CoreResult<Challenge> {
    challenges::Entity::find_by_id(id.uuid())
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("challenge"))
        .and_then(Challenge::try_from)
}

/// The result of checking an answer. Every variant but the first two changed the challenge's
/// state too, and the caller must commit that before reporting the failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Approved(Challenge),
    Denied(Challenge),
    WrongCode { attempts_left: i32 },
    Locked,
    Expired(Challenge),
    BindingMismatch,
}

/// Accepts a code of exactly six digits; anything else is refused before it is counted.
pub fn parse_code(code: &str) -> CoreResult<&str> {
    let code = code.trim();
    if code.len() == CODE_DIGITS && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(code)
    } else {
        Err(CoreError::invalid("a code is exactly 6 digits"))
    }
}

fn closed_error(status: ChallengeStatus) -> CoreError {
    match status {
        ChallengeStatus::Expired => CoreError::ChallengeExpired,
        ChallengeStatus::Locked => CoreError::ChallengeLocked,
        other => CoreError::ChallengeClosed {
            status: other.as_str(),
        },
    }
}

/// The one place a challenge's answer (or its clock) is written, and so where its outcome is
/// counted.
async fn set_status(
    txn: &DatabaseTransaction,
    clock: &Clock,
    challenge: &Challenge,
    status: ChallengeStatus,
    failed_attempts: i32,
) -> CoreResult<()> {
    let id = challenge.id;
    let outcome = match status {
        ChallengeStatus::Pending => ChallengeOutcome::WrongCode,
        ChallengeStatus::Approved => ChallengeOutcome::Approved,
        ChallengeStatus::Denied => ChallengeOutcome::Denied,
        ChallengeStatus::Locked => ChallengeOutcome::Locked,
        ChallengeStatus::Expired => ChallengeOutcome::Expired,
        ChallengeStatus::Voided => ChallengeOutcome::Voided,
    };
    crate::outcomes::count(Outcome::Challenge(challenge.purpose, outcome));
    let resolved_at = (status != ChallengeStatus::Pending).then(|| clock.now());
    challenges::ActiveModel {
        id: Set(id.uuid()),
        status: Set(status),
        failed_attempts: Set(failed_attempts),
        resolved_at: Set(resolved_at),
        ..Default::default()
    }
    .update(txn)
    .await?;
    Ok(())
}

/// Checks an answer against a challenge locked by [`lock_challenge_in_txn`]. `current` is
/// what the challenge confirms as it stands now; if it differs from what was shown, the code
/// is void whatever it is.
#[tracing::instrument(name = "challenge.answer", level = "debug", skip_all, fields(challenge_id = %challenge.id))]
pub async fn answer_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    keys: &ChallengeKeys,
    challenge: &Challenge,
    code: &str,
    decision: Decision,
    current: &ChallengeBinding,
) -> CoreResult<Answer> {
    let code = parse_code(code)?;
    if challenge.status != ChallengeStatus::Pending {
        return Err(closed_error(challenge.status));
    }

    if clock.now() >= challenge.expires_at {
        set_status(
            txn,
            clock,
            challenge,
            ChallengeStatus::Expired,
            challenge.failed_attempts,
        )
        .await?;
        let mut expired = challenge.clone();
        expired.status = ChallengeStatus::Expired;
        return Ok(Answer::Expired(expired));
    }
    let stored_digest_holds =
        challenge.binding.digest(challenge.purpose, challenge.party) == challenge.digest;
    if !stored_digest_holds
        || current.digest(challenge.purpose, challenge.party) != challenge.digest
    {
        set_status(
            txn,
            clock,
            challenge,
            ChallengeStatus::Voided,
            challenge.failed_attempts,
        )
        .await?;
        return Ok(Answer::BindingMismatch);
    }
    let expected = hex::decode(&challenge.code_mac).unwrap_or_default();
    let code_is_right = keys
        .code_mac(challenge.id, &challenge.digest, code)
        .verify_slice(&expected)
        .is_ok();
    if !code_is_right {
        let failed = challenge.failed_attempts + 1;
        if failed >= challenge.max_attempts {
            set_status(txn, clock, challenge, ChallengeStatus::Locked, failed).await?;
            return Ok(Answer::Locked);
        }
        set_status(txn, clock, challenge, ChallengeStatus::Pending, failed).await?;
        return Ok(Answer::WrongCode {
            attempts_left: challenge.max_attempts - failed,
        });
    }
    let status = match decision {
        Decision::Approve => ChallengeStatus::Approved,
        Decision::Deny => ChallengeStatus::Denied,
    };
    set_status(txn, clock, challenge, status, challenge.failed_attempts).await?;
    let mut resolved = challenge.clone();
    resolved.status = status;
    Ok(match decision {
        Decision::Approve => Answer::Approved(resolved),
        Decision::Deny => Answer::Denied(resolved),
    })
}

/// Turns a failed answer into the error to report (after the caller committed its effect).
pub fn answer_error(answer: &Answer) -> Option<CoreError> {
    match answer {
        Answer::Approved(_) | Answer::Denied(_) => None,
        Answer::WrongCode { attempts_left } => Some(CoreError::WrongCode {
            attempts_left: *attempts_left,
        }),
        Answer::Locked => Some(CoreError::ChallengeLocked),
        Answer::Expired(_) => Some(CoreError::ChallengeExpired),
        Answer::BindingMismatch => Some(CoreError::ChallengeBindingMismatch),
    }
}

/// Sends a fresh code for a pending challenge. The old code stops working; the failure count
/// and the deadline stay as they were.
#[tracing::instrument(name = "challenge.resend", level = "debug", skip_all, fields(challenge_id = %id))]
pub async fn resend_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    keys: &ChallengeKeys,
    id: ChallengeId,
) -> CoreResult<Challenge> {
    let challenge = lock_challenge_in_txn(txn, id).await?;
    if challenge.status != ChallengeStatus::Pending {
        return Err(closed_error(challenge.status));
    }
    if clock.now() >= challenge.expires_at {
        return Err(CoreError::ChallengeExpired);
    }
    if challenge.sends >= MAX_SENDS {
        return Err(CoreError::ResendLimit);
    }
    let code = new_code();
    let decoy = is_decoy(&challenge);
    let code_mac = if decoy {
        unmatchable_mac()
    } else {
        hex::encode(
            keys.code_mac(id, &challenge.digest, &code)
                .finalize()
                .into_bytes(),
        )
    };
    challenges::ActiveModel {
        id: Set(id.uuid()),
        code_mac: Set(code_mac),
        sends: Set(challenge.sends + 1),
        ..Default::default()
    }
    .update(txn)
    .await?;
    let challenge = get_challenge(txn, id).await?;
    if !decoy {
        send_code_in_txn(txn, clock, &challenge, &code).await?;
    }
    Ok(challenge)
}

/// Marks a pending challenge whose deadline passed as expired. `None` if it was not pending or
/// not yet due.
#[tracing::instrument(name = "challenge.expire", level = "debug", skip_all, fields(challenge_id = %id))]
pub async fn expire_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    id: ChallengeId,
) -> CoreResult<Option<Challenge>> {
    let challenge = lock_challenge_in_txn(txn, id).await?;
    if challenge.status != ChallengeStatus::Pending || clock.now() < challenge.expires_at {
        return Ok(None);
    }
    set_status(
        txn,
        clock,
        &challenge,
        ChallengeStatus::Expired,
        challenge.failed_attempts,
    )
    .await?;
    let mut expired = challenge;
    expired.status = ChallengeStatus::Expired;
    Ok(Some(expired))
}

/// Voids a pending challenge because what it confirms is gone (an order cancelled before the
/// answer). No-op for one already resolved.
#[tracing::instrument(name = "challenge.void", level = "debug", skip_all, fields(challenge_id = %id))]
pub async fn void_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    id: ChallengeId,
) -> CoreResult<()> {
    let challenge = lock_challenge_in_txn(txn, id).await?;
    if challenge.status == ChallengeStatus::Pending {
        set_status(
            txn,
            clock,
            &challenge,
            ChallengeStatus::Voided,
            challenge.failed_attempts,
        )
        .await?;
    }
    Ok(())
}

/// Closes a pending challenge whose subject reached its deadline: expired if its own time is
/// up, voided if the deadline came first.
#[tracing::instrument(name = "challenge.close", level = "debug", skip_all, fields(challenge_id = %id))]
pub async fn close_in_txn(
    txn: &DatabaseTransaction,
    clock: &Clock,
    id: ChallengeId,
) -> CoreResult<()> {
    if expire_in_txn(txn, clock, id).await?.is_none() {
        void_in_txn(txn, clock, id).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_amount_or_payee_changes_the_digest() {
        let party = PartyId::new();
        let base = ChallengeBinding {
            amount: Some(Money::parse("25.00", Currency::USD).unwrap()),
            payee: Some("Acme".into()),
            order_number: Some("1234".into()),
            terms: None,
        };
        let digest = base.digest(ChallengePurpose::Order, party);
        let mut other_amount = base.clone();
        other_amount.amount = Some(Money::parse("25.01", Currency::USD).unwrap());
        let mut other_payee = base.clone();
        other_payee.payee = Some("Acme2".into());
        assert_ne!(other_amount.digest(ChallengePurpose::Order, party), digest);
        assert_ne!(other_payee.digest(ChallengePurpose::Order, party), digest);
        let mut other_terms = base.clone();
        other_terms.terms = Some("3 monthly installments".into());
        assert_ne!(other_terms.digest(ChallengePurpose::Order, party), digest);
        assert_ne!(base.digest(ChallengePurpose::Settlement, party), digest);
        assert_ne!(base.digest(ChallengePurpose::Order, PartyId::new()), digest);
        assert_eq!(base.digest(ChallengePurpose::Order, party), digest);
    }

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..100 {
            let code = new_code();
            assert!(parse_code(&code).is_ok(), "{code}");
        }
        assert!(parse_code("12345").is_err());
        assert!(parse_code("12345a").is_err());
        assert!(parse_code("1234567").is_err());
    }
}
