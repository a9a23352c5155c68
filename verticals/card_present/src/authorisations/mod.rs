//! Card-present authorisation: a shop terminal asks to authorise a card for an amount, and the
//! card holder's phone must confirm before the card company approves.
//!
//! A terminal cannot wait minutes for a phone (card networks allow about two seconds), so the
//! first answer is `challenge_required` while the holder's phone is asked; the terminal asks
//! again with the same authorisation id, and once the phone approved, that retry is approved.
//! A holder may also arm an approval ahead, on the phone: one merchant, a ceiling, a time
//! window, used once; a matching request is then approved at once.
//!
//! ```text
//! authorise ─┬─ too many requests on the card ───────────────────→ refused (nothing recorded)
//!            ├─ unknown / blocked card ──────────────────────────→ declined (nothing held)
//!            ├─ an armed approval matches and the money is there → approved (hold placed)
//!            └─→ challenge_required ─phone approves→ approved ─capture→ captured
//!                   │ denied, short of funds,                    │ void → voided
//!                   │   expired, locked → declined               │ validity ends → expired
//!                   │ terminal gives up → voided
//! ```
//! An approval places an ordinary hold on the card's funding source (reserved on a credit
//! line, frozen for bank and prepaid money); the capture pays the merchant's withdrawal account
//! minus the card institution's fee. The terminal's authorisation id is unique per terminal: a
//! retry is the same authorisation, never a second payment, and a different card or amount
//! under a used id is refused.
//!
//! A merchant never learns the holder's balance: the money is only looked at once the holder
//! approved on the phone (or armed an approval), and a payment the money cannot cover is then
//! declined to the terminal as `not_approved`, exactly like a holder's "no"; the holder sees
//! the real reason. Asking the phone for every amount is bounded per card
//! ([`MAX_OPEN_CONFIRMATIONS_PER_CARD`], [`MAX_REQUESTS_PER_CARD_PER_WINDOW`]), so a terminal
//! cannot bury the holder in questions until one is approved out of fatigue.
//!
//! Lock order: the authorisation, then (deciding a new one) its card, then an armed approval,
//! then a challenge, then the hold — as escrow cases do (case, challenge, hold). A card is
//! otherwise locked only by blocking, unblocking and replacing it, which lock nothing else.

use crate::entities::{
    armed_approvals as armed_rows, authorisations as auth_rows, terminals as terminal_rows,
};
use chrono::{DateTime, Duration, Utc};
use holdfast_core::Core;
use holdfast_core::cards::{self, Card, CardId, CardNumber};
use holdfast_core::challenge::{
    self, Answer, ChallengeBinding, ChallengePurpose, ChallengeStatus, Decision, NewChallenge,
};
use holdfast_core::db::MinorUnits;
use holdfast_core::error::{CoreError, CoreResult};
use holdfast_core::funding;
use holdfast_core::holds::{self, HoldMode, Payout, PlaceHold};
use holdfast_core::ids::{HoldId, Id, IdKind, PartyId};
use holdfast_core::ledger::{self, AccountKind, NewAccount, keys};
use holdfast_core::money::{Currency, Money};
use holdfast_core::onboarding::{self, StaffCredentials};
use holdfast_core::outbox::{self, PhoneMessage};
use holdfast_core::parties::{self, Role};
use rand::Rng;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use utoipa::ToSchema;

mod answers;
mod armed;
mod authorise;
mod capture;
mod terminals;
mod views;

pub use answers::*;
pub use armed::*;
pub use authorise::*;
pub use capture::*;
pub use terminals::*;
use views::*;

#[derive(Debug)]
pub enum AuthorisationKind {}
impl IdKind for AuthorisationKind {
    const NAME: &'static str = "authorisation";
}
/// An authorisation's own id (terminals name theirs with a reference of their own).
pub type AuthorisationId = Id<AuthorisationKind>;

#[derive(Debug)]
pub enum ArmedApprovalKind {}
impl IdKind for ArmedApprovalKind {
    const NAME: &'static str = "armed_approval";
}
pub type ArmedApprovalId = Id<ArmedApprovalKind>;

/// How long an approved authorisation holds the money before it must be captured (card-present
/// authorisations are valid for about two days).
pub const AUTHORISATION_VALIDITY_HOURS: i64 = 48;
/// The longest window an armed approval may cover.
pub const MAX_ARM_WINDOW_MINUTES: i64 = 24 * 60;
/// How far ahead an armed approval may start.
pub const MAX_ARM_LEAD_DAYS: i64 = 7;
pub const MAX_REFERENCE_CHARS: usize = 64;
pub const MAX_LABEL_CHARS: usize = 60;
/// A terminal's label, as a request carries it.
pub type TerminalLabel = holdfast_core::text::Text<1, MAX_LABEL_CHARS>;
/// A terminal's own id for a payment (its character set is checked by [`authorise_in_txn`]).
pub type AuthorisationReference = holdfast_core::text::Text<1, MAX_REFERENCE_CHARS>;
pub const MAX_PAGE: u64 = 100;
/// What a terminal is told to wait before asking again while the phone is asked.
pub const RETRY_AFTER_SECS: u32 = 5;
/// Terminals' questions a card's phone may have open at once. One for the till in use and one
/// for a till that asks again under a new id before the first was answered or voided (a
/// restarted till, the next shop); more would only pile up codes for a tired holder to approve
/// one to make them stop (NIST SP 800-63B-4 §3.1.3: limit the number of pushes).
pub const MAX_OPEN_CONFIRMATIONS_PER_CARD: u64 = 2;
/// New authorisation ids a card may be asked for within [`REQUEST_WINDOW_MINUTES`], whatever
/// became of them: each one texts the holder (a question, an approval notice, a blocked-card
/// alert). A shopper declined and paying again, or paying at a few tills in a row, stays under
/// it; a terminal flooding the phone gets five texts through per window, not one per request.
pub const MAX_REQUESTS_PER_CARD_PER_WINDOW: u64 = 5;
/// The window of [`MAX_REQUESTS_PER_CARD_PER_WINDOW`]: the longest a phone code lives, so every
/// question still open was asked within it.
pub const REQUEST_WINDOW_MINUTES: i64 = 10;
const _: () = assert!(REQUEST_WINDOW_MINUTES * 60 >= challenge::MAX_TTL_SECS);

/// An approved authorisation whose validity ended without a capture: its hold expires.
pub const CAPTURE_DEADLINE_TIMER: holdfast_core::TimerKind =
    holdfast_core::TimerKind::CardPresentCaptureDeadline;

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
pub enum AuthorisationStatus {
    /// The holder's phone has been asked; ask again with the same authorisation id.
    ChallengeRequired,
    /// The card company approved: the amount is held for the merchant.
    Approved,
    /// Refused; nothing is held (`decline_reason` says why).
    Declined,
    /// The merchant took the money (all of it, or less).
    Captured,
    /// The terminal cancelled it; whatever was held returned.
    Voided,
    /// Approved but never captured in time; the hold returned.
    Expired,
}

impl AuthorisationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorisationStatus::ChallengeRequired => "challenge_required",
            AuthorisationStatus::Approved => "approved",
            AuthorisationStatus::Declined => "declined",
            AuthorisationStatus::Captured => "captured",
            AuthorisationStatus::Voided => "voided",
            AuthorisationStatus::Expired => "expired",
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
    db_type = "String(StringLen::N(32))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    /// No EC card has this number.
    CardUnknown,
    /// The card is blocked (reported lost or stolen) or replaced.
    CardBlocked,
    /// The card's funding source is in another currency.
    CurrencyMismatch,
    /// The holder approved on the phone, but the funding source could not cover the amount
    /// (shown to the holder only; the terminal and merchant see `not_approved`).
    InsufficientFunds,
    /// The holder said no on the phone (shown to the holder only; the terminal and merchant
    /// see `not_approved`).
    DeniedOnPhone,
    /// The phone did not answer in time.
    ConfirmationExpired,
    /// Too many wrong codes on the phone.
    ConfirmationLocked,
    /// What the terminal and merchant are told for `denied_on_phone` and
    /// `insufficient_funds`: both come when the holder answers, and telling them apart would
    /// let a terminal find the holder's balance by trying amounts.
    NotApproved,
    /// What the terminal and merchant are told for `card_unknown` and `card_blocked`: telling
    /// them apart would let any till find out which card numbers exist.
    CardDeclined,
}

impl DeclineReason {
    /// The reason as a terminal or merchant may see it: never whether the money was there.
    pub fn for_merchant(self) -> DeclineReason {
        match self {
            DeclineReason::InsufficientFunds | DeclineReason::DeniedOnPhone => {
                DeclineReason::NotApproved
            }
            DeclineReason::CardUnknown | DeclineReason::CardBlocked => DeclineReason::CardDeclined,
            other => other,
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
    db_type = "String(StringLen::N(24))",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum ArmedStatus {
    /// Waiting for the holder's code on the phone.
    AwaitingConfirmation,
    /// Confirmed: a matching terminal request within the window is approved at once.
    Armed,
    /// A terminal request used it.
    Used,
    Denied,
    /// The window (or the confirmation) ran out unused.
    Expired,
    Cancelled,
}

/// How an approved authorisation was approved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovedBy {
    /// The holder approved this very request on the phone.
    Phone,
    /// An approval the holder armed ahead on the phone.
    ArmedApproval,
}

/// The pending phone confirmation, shown to the card holder only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = CardPresentPendingConfirmation)]
pub struct PendingConfirmation {
    pub challenge_id: holdfast_core::ids::ChallengeId,
    pub expires_at: DateTime<Utc>,
}

/// An authorisation as its terminal (or the card's holder) sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Authorisation {
    /// The terminal's own id for it.
    pub authorisation_id: String,
    pub status: AuthorisationStatus,
    /// Why it was declined. A terminal sees `not_approved` both for a holder's "no" and for
    /// money that was not there; the holder sees which.
    pub decline_reason: Option<DeclineReason>,
    pub amount: Money,
    /// The card, masked: all a merchant learns of the holder.
    #[schema(example = "9000-21••-••••-7897")]
    pub card: String,
    pub merchant_id: PartyId,
    pub merchant_name: String,
    pub terminal_id: PartyId,
    /// Given once approved; the terminal prints it on the receipt.
    pub approval_code: Option<String>,
    pub approved_by: Option<ApprovedBy>,
    /// While `challenge_required`: when the phone's answer is due.
    pub confirm_by: Option<DateTime<Utc>>,
    /// While `challenge_required`: wait this long before asking again.
    pub retry_after_secs: Option<u32>,
    /// While `approved`: the capture is due by then, or the hold returns.
    pub valid_until: Option<DateTime<Utc>>,
    pub captured_amount: Option<Money>,
    /// For the card's holder only, while its phone is asked.
    pub pending_confirmation: Option<PendingConfirmation>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An approval armed ahead of a payment, as its holder sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ArmedApproval {
    pub id: ArmedApprovalId,
    pub status: ArmedStatus,
    pub card: String,
    pub merchant_id: PartyId,
    pub merchant_name: String,
    /// The most a matching payment may be.
    pub max_amount: Money,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    /// The terminal's id of the payment that used it.
    pub used_by: Option<String>,
    pub pending_confirmation: Option<PendingConfirmation>,
    pub created_at: DateTime<Utc>,
}

/// A shop terminal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Terminal {
    pub terminal_id: PartyId,
    pub merchant_id: PartyId,
    pub merchant_name: String,
    pub label: String,
    pub username: String,
}

/// A merchant that takes card-present payments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Merchant {
    pub merchant_id: PartyId,
    pub name: String,
}

/// What a terminal asks.
#[derive(Clone, Debug)]
pub struct AuthoriseRequest {
    /// The terminal's own id for this payment: asking again with it is a retry.
    pub reference: String,
    pub card_number: CardNumber,
    pub amount: Money,
}

/// What the holder arms on the phone.
#[derive(Clone, Debug)]
pub struct ArmRequest {
    pub merchant: PartyId,
    pub max_amount: Money,
    /// Now when absent.
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_for_minutes: i64,
}

/// What answering a `card_present` challenge did: a JSON summary for the response, or a
/// refusal that changed the challenge (committed, then reported).
#[derive(Debug)]
pub enum Answered {
    Applied(serde_json::Value),
    Refused(CoreError),
}

fn refuse(state: &'static str, action: &'static str) -> CoreError {
    CoreError::InvalidTransition { state, action }
}

fn well_formed_reference(reference: &str) -> bool {
    !reference.is_empty()
        && reference.len() <= MAX_REFERENCE_CHARS
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn valid_reference(reference: &str) -> CoreResult<String> {
    let reference = reference.trim();
    if well_formed_reference(reference) {
        Ok(reference.to_owned())
    } else {
        Err(CoreError::invalid(format!(
            "an authorisation id is 1 to {MAX_REFERENCE_CHARS} letters, digits or - _ . :"
        )))
    }
}

fn new_approval_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..6)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Terminals and merchants
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorisation_ids_are_short_plain_tokens() {
        assert!(valid_reference("T1-2026-05-01:0001").is_ok());
        assert!(valid_reference("").is_err());
        assert!(valid_reference("has space").is_err());
        assert!(valid_reference(&"x".repeat(MAX_REFERENCE_CHARS + 1)).is_err());
    }

    #[test]
    fn approval_codes_are_six_unambiguous_characters() {
        for _ in 0..100 {
            let code = new_approval_code();
            assert_eq!(code.len(), 6);
            assert!(!code.contains(['0', 'O', '1', 'I']));
        }
    }
}
