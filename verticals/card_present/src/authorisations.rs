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
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DatabaseTransaction, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use utoipa::ToSchema;

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

/// Registers a terminal for `merchant` (a supplier): a party of role `terminal` that logs in
/// with its own username and password, as a merchant device.
pub async fn register_terminal_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    merchant: PartyId,
    label: &str,
    credentials: StaffCredentials,
) -> CoreResult<Terminal> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS {
        return Err(CoreError::invalid(format!(
            "a terminal label has 1 to {MAX_LABEL_CHARS} characters"
        )));
    }
    let owner = parties::get_party(txn, merchant)
        .await
        .map_err(|_| CoreError::NotFound("merchant"))?;
    if owner.role != Role::Supplier {
        return Err(CoreError::invalid(
            "terminals belong to merchants (suppliers)",
        ));
    }
    let (party, username) = onboarding::create_staff_in_txn(
        txn,
        core,
        Role::Terminal,
        &format!("{} terminal {label}", owner.display_name),
        credentials,
    )
    .await?;
    terminal_rows::Entity::insert(terminal_rows::ActiveModel {
        party_id: Set(party.id.uuid()),
        merchant_party_id: Set(merchant.uuid()),
        label: Set(label.to_owned()),
        created_at: Set(core.clock.now()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(Terminal {
        terminal_id: party.id,
        merchant_id: merchant,
        merchant_name: owner.display_name,
        label: label.to_owned(),
        username,
    })
}

async fn terminal_row(
    db: &impl ConnectionTrait,
    terminal: PartyId,
) -> CoreResult<terminal_rows::Model> {
    terminal_rows::Entity::find_by_id(terminal.uuid())
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("terminal"))
}

async fn merchant_name(db: &impl ConnectionTrait, merchant: Uuid) -> CoreResult<String> {
    Ok(parties::get_party(db, PartyId::from_uuid(merchant))
        .await?
        .display_name)
}

/// Merchants with at least one terminal, by name (for a holder arming an approval).
pub async fn merchants(db: &impl ConnectionTrait, limit: u64) -> CoreResult<Vec<Merchant>> {
    let rows = terminal_rows::Entity::find()
        .order_by_asc(terminal_rows::Column::MerchantPartyId)
        .limit(1_000)
        .all(db)
        .await?;
    let mut ids: Vec<Uuid> = rows.into_iter().map(|r| r.merchant_party_id).collect();
    ids.dedup();
    let mut list = Vec::with_capacity(ids.len());
    for id in ids {
        list.push(Merchant {
            merchant_id: PartyId::from_uuid(id),
            name: merchant_name(db, id).await?,
        });
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list.truncate(usize::try_from(limit.clamp(1, MAX_PAGE)).unwrap_or(100));
    Ok(list)
}

// ---------------------------------------------------------------------------------------
// Authorisations
// ---------------------------------------------------------------------------------------

fn money_of(minor: MinorUnits, currency: &str) -> CoreResult<Money> {
    Ok(Money::from_minor(minor.0, Currency::from_str(currency)?)?)
}

/// The binding the holder's phone confirms: amount, merchant, card.
fn authorisation_binding(row: &auth_rows::Model, merchant: &str) -> CoreResult<ChallengeBinding> {
    Ok(ChallengeBinding {
        amount: Some(money_of(row.amount, &row.currency)?),
        payee: Some(merchant.to_owned()),
        order_number: None,
        terms: Some(format!("card {} at the shop's terminal", row.card_masked)),
    })
}

async fn view_of(
    db: &impl ConnectionTrait,
    row: &auth_rows::Model,
    for_holder: bool,
    now: DateTime<Utc>,
) -> CoreResult<Authorisation> {
    let mut status = row.status;
    let mut decline_reason = row.decline_reason;
    // Shown as it stands now, even before anyone touched it since its deadline.
    if status == AuthorisationStatus::ChallengeRequired && row.confirm_by.is_some_and(|t| now >= t)
    {
        status = AuthorisationStatus::Declined;
        decline_reason = Some(DeclineReason::ConfirmationExpired);
    }
    if !for_holder {
        decline_reason = decline_reason.map(DeclineReason::for_merchant);
    }
    if status == AuthorisationStatus::Approved && row.valid_until.is_some_and(|t| now >= t) {
        status = AuthorisationStatus::Expired;
    }
    let pending_confirmation = match (for_holder, status, row.challenge_id) {
        (true, AuthorisationStatus::ChallengeRequired, Some(id)) => Some(PendingConfirmation {
            challenge_id: holdfast_core::ids::ChallengeId::from_uuid(id),
            expires_at: row.confirm_by.unwrap_or(now),
        }),
        _ => None,
    };
    // Only an approval gives a code.
    let approved = row.approval_code.is_some();
    Ok(Authorisation {
        authorisation_id: row.reference.clone(),
        status,
        decline_reason,
        amount: money_of(row.amount, &row.currency)?,
        card: row.card_masked.clone(),
        merchant_id: PartyId::from_uuid(row.merchant_party_id),
        merchant_name: merchant_name(db, row.merchant_party_id).await?,
        terminal_id: PartyId::from_uuid(row.terminal_party_id),
        approval_code: row.approval_code.clone(),
        approved_by: approved.then(|| {
            if row.armed_approval_id.is_some() {
                ApprovedBy::ArmedApproval
            } else {
                ApprovedBy::Phone
            }
        }),
        confirm_by: (status == AuthorisationStatus::ChallengeRequired)
            .then_some(row.confirm_by)
            .flatten(),
        retry_after_secs: (status == AuthorisationStatus::ChallengeRequired)
            .then_some(RETRY_AFTER_SECS),
        valid_until: (status == AuthorisationStatus::Approved)
            .then_some(row.valid_until)
            .flatten(),
        captured_amount: row
            .captured_amount
            .map(|m| money_of(m, &row.currency))
            .transpose()?,
        pending_confirmation,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

async fn find_by_reference(
    db: &impl ConnectionTrait,
    terminal: PartyId,
    reference: &str,
) -> CoreResult<Option<auth_rows::Model>> {
    // No stored id is malformed (authorise checks them), and a NUL byte is not for the
    // database to refuse: a malformed one is simply not found.
    if !well_formed_reference(reference) {
        return Ok(None);
    }
    Ok(auth_rows::Entity::find()
        .filter(auth_rows::Column::TerminalPartyId.eq(terminal.uuid()))
        .filter(auth_rows::Column::Reference.eq(reference))
        .one(db)
        .await?)
}

async fn lock_by_reference(
    txn: &DatabaseTransaction,
    terminal: PartyId,
    reference: &str,
) -> CoreResult<auth_rows::Model> {
    if !well_formed_reference(reference) {
        return Err(CoreError::NotFound("authorisation"));
    }
    auth_rows::Entity::find()
        .filter(auth_rows::Column::TerminalPartyId.eq(terminal.uuid()))
        .filter(auth_rows::Column::Reference.eq(reference))
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("authorisation"))
}

async fn lock_by_id(
    txn: &DatabaseTransaction,
    id: AuthorisationId,
) -> CoreResult<auth_rows::Model> {
    auth_rows::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("authorisation"))
}

/// The columns a step changes; everything else stays.
#[derive(Default)]
struct Change {
    status: Option<AuthorisationStatus>,
    decline_reason: Option<DeclineReason>,
    challenge: Option<Uuid>,
    armed: Option<Uuid>,
    hold: Option<Uuid>,
    approval_code: Option<String>,
    captured: Option<MinorUnits>,
    confirm_by: Option<DateTime<Utc>>,
    valid_until: Option<DateTime<Utc>>,
}

/// Writes a step, guarded by the status it was computed from.
async fn apply(
    txn: &DatabaseTransaction,
    core: &Core,
    row: &auth_rows::Model,
    change: Change,
) -> CoreResult<auth_rows::Model> {
    let mut update = auth_rows::Entity::update_many()
        .col_expr(auth_rows::Column::UpdatedAt, Expr::value(core.clock.now()))
        .filter(auth_rows::Column::Id.eq(row.id))
        .filter(auth_rows::Column::Status.eq(row.status));
    if let Some(status) = change.status {
        update = update.col_expr(auth_rows::Column::Status, Expr::value(status));
    }
    if let Some(reason) = change.decline_reason {
        update = update.col_expr(auth_rows::Column::DeclineReason, Expr::value(Some(reason)));
    }
    if let Some(challenge) = change.challenge {
        update = update.col_expr(auth_rows::Column::ChallengeId, Expr::value(Some(challenge)));
    }
    if let Some(armed) = change.armed {
        update = update.col_expr(auth_rows::Column::ArmedApprovalId, Expr::value(Some(armed)));
    }
    if let Some(hold) = change.hold {
        update = update.col_expr(auth_rows::Column::HoldId, Expr::value(Some(hold)));
    }
    if let Some(code) = change.approval_code {
        update = update.col_expr(auth_rows::Column::ApprovalCode, Expr::value(Some(code)));
    }
    if let Some(captured) = change.captured {
        update = update.col_expr(
            auth_rows::Column::CapturedAmount,
            Expr::value(Some(captured)),
        );
    }
    if let Some(at) = change.confirm_by {
        update = update.col_expr(auth_rows::Column::ConfirmBy, Expr::value(Some(at)));
    }
    if let Some(at) = change.valid_until {
        update = update.col_expr(auth_rows::Column::ValidUntil, Expr::value(Some(at)));
    }
    let result = update.exec(txn).await?;
    if result.rows_affected != 1 {
        // The row lock makes this unreachable; the guard keeps it so without one.
        return Err(CoreError::Busy);
    }
    let updated = auth_rows::Entity::find_by_id(row.id)
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("authorisation"))?;
    if let Some(status) = change.status
        && status != row.status
    {
        holdfast_core::events::publish_in_txn(
            txn,
            &core.clock,
            PartyId::from_uuid(row.merchant_party_id),
            &format!("card_present.{}", status.as_str()),
            serde_json::json!({
                "authorisation_id": updated.reference,
                "terminal_id": updated.terminal_party_id,
                "status": status,
                "decline_reason": updated.decline_reason.map(DeclineReason::for_merchant),
                "amount": money_of(updated.amount, &updated.currency)?,
                "card": updated.card_masked,
                "approval_code": updated.approval_code,
            }),
        )
        .await?;
    }
    Ok(updated)
}

fn decline(reason: DeclineReason) -> Change {
    Change {
        status: Some(AuthorisationStatus::Declined),
        decline_reason: Some(reason),
        ..Change::default()
    }
}

async fn text_holder(
    txn: &DatabaseTransaction,
    core: &Core,
    card: &Card,
    body: String,
) -> CoreResult<()> {
    outbox::enqueue_phone_in_txn(
        txn,
        &core.clock,
        PhoneMessage {
            to: card.phone.clone(),
            body,
            challenge: None,
        },
    )
    .await
}

/// Places the authorisation's hold on the card's funding source, in a savepoint: when the
/// money is not there, nothing of the attempt is kept and `None` comes back.
async fn try_hold(
    txn: &DatabaseTransaction,
    core: &Core,
    card: &Card,
    row: &auth_rows::Model,
    valid_until: DateTime<Utc>,
) -> CoreResult<Option<HoldId>> {
    let amount = money_of(row.amount, &row.currency)?;
    let funding = ledger::get_account(txn, card.funding_account).await?;
    let mode = funding::hold_mode(funding.kind)
        .ok_or_else(|| CoreError::invalid("the card's account cannot fund payments"))?;
    let institution = funding
        .institution
        .ok_or_else(|| CoreError::invalid("the funding account has no institution"))?;
    let freezing =
        funding::freezing_account_in_txn(txn, &core.clock, institution, amount.currency()).await?;
    let savepoint = txn.begin().await?;
    let placed = holds::place_hold_in_txn(
        &savepoint,
        &core.clock,
        PlaceHold {
            key: format!("card_present:{}:hold", row.id),
            funding_account: funding.id,
            freezing_account: freezing.id,
            institution,
            amount,
            mode,
            expires_at: Some(valid_until),
            case: None,
        },
    )
    .await;
    match placed {
        Ok(hold) => {
            savepoint.commit().await?;
            Ok(Some(hold.into_inner().id))
        }
        Err(CoreError::InsufficientFunds { .. }) => {
            savepoint.rollback().await?;
            Ok(None)
        }
        Err(other) => Err(other),
    }
}

/// Approves: holds the money until the capture is due, gives an approval code, and tells the
/// holder. `None` when the money is not there; then nothing changed.
async fn approve(
    txn: &DatabaseTransaction,
    core: &Core,
    card: &Card,
    row: &auth_rows::Model,
    armed: Option<Uuid>,
) -> CoreResult<Option<auth_rows::Model>> {
    let valid_until = core.clock.now() + Duration::hours(AUTHORISATION_VALIDITY_HOURS);
    let Some(hold) = try_hold(txn, core, card, row, valid_until).await? else {
        return Ok(None);
    };
    let approved = apply(
        txn,
        core,
        row,
        Change {
            status: Some(AuthorisationStatus::Approved),
            armed,
            hold: Some(hold.uuid()),
            approval_code: Some(new_approval_code()),
            valid_until: Some(valid_until),
            ..Change::default()
        },
    )
    .await?;
    holdfast_core::timers::schedule_in_txn(
        txn,
        &core.clock,
        CAPTURE_DEADLINE_TIMER,
        row.id,
        valid_until,
    )
    .await?;
    let merchant = merchant_name(txn, row.merchant_party_id).await?;
    text_holder(
        txn,
        core,
        card,
        format!(
            "Holdfast: card payment of {} to {merchant} approved (card {}, approval {}).",
            money_of(row.amount, &row.currency)?,
            row.card_masked,
            approved.approval_code.clone().unwrap_or_default()
        ),
    )
    .await?;
    Ok(Some(approved))
}

/// The holder approved on the phone but the funding source cannot cover the amount: declined,
/// and the holder (only) is told why.
async fn decline_short_of_funds(
    txn: &DatabaseTransaction,
    core: &Core,
    card: &Card,
    row: &auth_rows::Model,
) -> CoreResult<auth_rows::Model> {
    let merchant = merchant_name(txn, row.merchant_party_id).await?;
    text_holder(
        txn,
        core,
        card,
        format!(
            "Holdfast: card payment of {} to {merchant} declined: not enough money available \
             (card {}).",
            money_of(row.amount, &row.currency)?,
            row.card_masked,
        ),
    )
    .await?;
    apply(txn, core, row, decline(DeclineReason::InsufficientFunds)).await
}

/// Counts what a new authorisation of `card` would add to (the one being decided, `except`, is
/// not counted): requests within [`REQUEST_WINDOW_MINUTES`], and of those the questions still
/// open on the phone. The caller holds the card's row lock, so two requests cannot both see room
/// for one.
async fn requests_on_card_in_txn(
    txn: &DatabaseTransaction,
    card: &Card,
    except: Uuid,
    now: DateTime<Utc>,
) -> CoreResult<(u64, u64)> {
    let recent = || {
        auth_rows::Entity::find()
            .filter(auth_rows::Column::CardId.eq(card.id.uuid()))
            .filter(
                auth_rows::Column::CreatedAt.gt(now - Duration::minutes(REQUEST_WINDOW_MINUTES)),
            )
            .filter(auth_rows::Column::Id.ne(except))
    };
    let requests = recent().count(txn).await?;
    let open = recent()
        .filter(auth_rows::Column::Status.eq(AuthorisationStatus::ChallengeRequired))
        .filter(auth_rows::Column::ConfirmBy.gt(now))
        .count(txn)
        .await?;
    Ok((requests, open))
}

/// An armed approval that covers this payment now: the holder's, for this merchant, within its
/// window and ceiling. Locked; the one closing soonest is used first.
async fn matching_armed_approval(
    txn: &DatabaseTransaction,
    card: &Card,
    row: &auth_rows::Model,
    now: DateTime<Utc>,
) -> CoreResult<Option<armed_rows::Model>> {
    Ok(armed_rows::Entity::find()
        .filter(armed_rows::Column::CardId.eq(card.id.uuid()))
        .filter(armed_rows::Column::MerchantPartyId.eq(row.merchant_party_id))
        .filter(armed_rows::Column::Status.eq(ArmedStatus::Armed))
        .filter(armed_rows::Column::Currency.eq(row.currency.clone()))
        .filter(armed_rows::Column::MaxAmount.gte(row.amount))
        .filter(armed_rows::Column::ValidFrom.lte(now))
        .filter(armed_rows::Column::ValidUntil.gt(now))
        .order_by_asc(armed_rows::Column::ValidUntil)
        .lock_exclusive()
        .one(txn)
        .await?)
}

/// A terminal asks to authorise a card for an amount. The first ask of an authorisation id
/// decides: declined at once (unknown or blocked card, another currency), approved at once (an
/// armed approval matches and the money is there), or `challenge_required` while the holder's
/// phone is asked — whatever the balance, which is only looked at once the holder approved.
/// Asking again with the same id returns where it stands (approved once the phone approved);
/// the same id with another card or amount is refused. A card asked for too often
/// ([`MAX_OPEN_CONFIRMATIONS_PER_CARD`], [`MAX_REQUESTS_PER_CARD_PER_WINDOW`]) refuses a new id
/// with [`CoreError::TooManyAttempts`], records nothing and texts no one.
pub async fn authorise_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    terminal: PartyId,
    request: AuthoriseRequest,
) -> CoreResult<Authorisation> {
    let reference = valid_reference(&request.reference)?;
    if request.amount.is_zero() {
        return Err(CoreError::invalid("an authorisation is for more than zero"));
    }
    let terminal_row = terminal_row(txn, terminal).await?;
    let card = cards::find_by_number(txn, &request.card_number).await?;
    let now = core.clock.now();
    let id = AuthorisationId::new();
    // Claim the id first: whatever happens next happens once.
    let inserted = auth_rows::Entity::insert(auth_rows::ActiveModel {
        id: Set(id.uuid()),
        terminal_party_id: Set(terminal.uuid()),
        merchant_party_id: Set(terminal_row.merchant_party_id),
        reference: Set(reference.clone()),
        card_id: Set(card.as_ref().map(|c| c.id.uuid())),
        card_masked: Set(request.card_number.masked()),
        amount: Set(MinorUnits(request.amount.minor())),
        currency: Set(request.amount.currency().code().to_owned()),
        status: Set(AuthorisationStatus::ChallengeRequired),
        decline_reason: Set(None),
        challenge_id: Set(None),
        armed_approval_id: Set(None),
        hold_id: Set(None),
        approval_code: Set(None),
        captured_amount: Set(None),
        confirm_by: Set(None),
        valid_until: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict_do_nothing_on([
        auth_rows::Column::TerminalPartyId,
        auth_rows::Column::Reference,
    ])
    .exec_without_returning(txn)
    .await?;
    if !matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
        let existing = lock_by_reference(txn, terminal, &reference).await?;
        let same = existing.card_id == card.as_ref().map(|c| c.id.uuid())
            && existing.card_masked == request.card_number.masked()
            && existing.amount.0 == request.amount.minor()
            && existing.currency == request.amount.currency().code();
        if !same {
            return Err(CoreError::IdempotencyConflict);
        }
        let current = refresh_in_txn(txn, core, existing).await?;
        return view_of(txn, &current, false, core.clock.now()).await;
    }
    let row = lock_by_id(txn, id).await?;
    let decided = decide_in_txn(txn, core, row, card, request.amount).await?;
    view_of(txn, &decided, false, core.clock.now()).await
}

async fn decide_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: auth_rows::Model,
    card: Option<Card>,
    amount: Money,
) -> CoreResult<auth_rows::Model> {
    let Some(card) = card else {
        return apply(txn, core, &row, decline(DeclineReason::CardUnknown)).await;
    };
    // From here on nearly every outcome texts the holder: count the card's requests first,
    // under its row lock, so that concurrent requests are counted one after another.
    let card = cards::lock_by_number_in_txn(txn, &card.number).await?;
    let now = core.clock.now();
    let (requests, open) = requests_on_card_in_txn(txn, &card, row.id, now).await?;
    if requests >= MAX_REQUESTS_PER_CARD_PER_WINDOW {
        return Err(CoreError::TooManyAttempts);
    }
    let merchant = merchant_name(txn, row.merchant_party_id).await?;
    if card.ensure_active().is_err() {
        // Whoever holds a lost card learns nothing; its holder is told at once.
        text_holder(
            txn,
            core,
            &card,
            format!(
                "Holdfast: a card payment of {amount} to {merchant} was attempted with your \
                 blocked card {} and declined.",
                card.number.masked()
            ),
        )
        .await?;
        return apply(txn, core, &row, decline(DeclineReason::CardBlocked)).await;
    }
    let funding = ledger::get_account(txn, card.funding_account).await?;
    if funding.currency != amount.currency() {
        return apply(txn, core, &row, decline(DeclineReason::CurrencyMismatch)).await;
    }
    // No look at the balance here: a decline before the phone is asked would tell the terminal,
    // amount by amount, what the holder has.
    if let Some(armed) = matching_armed_approval(txn, &card, &row, now).await? {
        // When the money is not there nothing changed: the phone is asked below as for any
        // payment, so the terminal hears the same as without an armed approval, and the
        // approval stays armed.
        if let Some(approved) = approve(txn, core, &card, &row, Some(armed.id)).await? {
            let used = armed_rows::Entity::update_many()
                .col_expr(armed_rows::Column::Status, Expr::value(ArmedStatus::Used))
                .col_expr(
                    armed_rows::Column::UsedByAuthorisationId,
                    Expr::value(Some(row.id)),
                )
                .col_expr(armed_rows::Column::UpdatedAt, Expr::value(now))
                .filter(armed_rows::Column::Id.eq(armed.id))
                .filter(armed_rows::Column::Status.eq(ArmedStatus::Armed))
                .exec(txn)
                .await?;
            if used.rows_affected != 1 {
                // The row lock makes this unreachable; without it, all of this rolls back.
                return Err(CoreError::Conflict);
            }
            return Ok(approved);
        }
    }
    if open >= MAX_OPEN_CONFIRMATIONS_PER_CARD {
        return Err(CoreError::TooManyAttempts);
    }
    let binding = authorisation_binding(&row, &merchant)?;
    let challenge = challenge::issue_challenge_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &core.policy,
        NewChallenge {
            purpose: ChallengePurpose::CardPresent,
            party: card.holder,
            phone: card.phone.clone(),
            subject: Some(row.id),
            binding,
            note: Some("deny if you are not paying at this shop now".to_owned()),
        },
    )
    .await?;
    apply(
        txn,
        core,
        &row,
        Change {
            challenge: Some(challenge.id.uuid()),
            confirm_by: Some(challenge.expires_at),
            ..Change::default()
        },
    )
    .await
}

/// Brings a locked authorisation up to date with the clock: an unanswered phone past its
/// deadline declines it; an approval past its validity expires and its hold returns.
async fn refresh_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: auth_rows::Model,
) -> CoreResult<auth_rows::Model> {
    let now = core.clock.now();
    match row.status {
        AuthorisationStatus::ChallengeRequired if row.confirm_by.is_some_and(|t| now >= t) => {
            if let Some(challenge) = row.challenge_id {
                challenge::close_in_txn(
                    txn,
                    &core.clock,
                    holdfast_core::ids::ChallengeId::from_uuid(challenge),
                )
                .await?;
            }
            apply(txn, core, &row, decline(DeclineReason::ConfirmationExpired)).await
        }
        AuthorisationStatus::Approved if row.valid_until.is_some_and(|t| now >= t) => {
            expire_in_txn(txn, core, row).await
        }
        _ => Ok(row),
    }
}

async fn expire_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: auth_rows::Model,
) -> CoreResult<auth_rows::Model> {
    if let Some(hold) = row.hold_id {
        holds::expire_hold_in_txn(txn, &core.clock, HoldId::from_uuid(hold)).await?;
    }
    holdfast_core::timers::cancel_in_txn(txn, CAPTURE_DEADLINE_TIMER, row.id).await?;
    apply(
        txn,
        core,
        &row,
        Change {
            status: Some(AuthorisationStatus::Expired),
            ..Change::default()
        },
    )
    .await
}

/// The terminal's view of one of its authorisations, as it stands now.
pub async fn get(
    db: &impl ConnectionTrait,
    core: &Core,
    terminal: PartyId,
    reference: &str,
) -> CoreResult<Authorisation> {
    let row = find_by_reference(db, terminal, reference)
        .await?
        .ok_or(CoreError::NotFound("authorisation"))?;
    view_of(db, &row, false, core.clock.now()).await
}

/// The merchant takes the money of an approved authorisation: all of it, or less (the rest
/// returns to the card). Its withdrawal account receives the amount minus the card
/// institution's fee. Capturing again the same amount is a no-op.
pub async fn capture_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    terminal: PartyId,
    reference: &str,
    amount: Option<Money>,
) -> CoreResult<Authorisation> {
    let row = lock_by_reference(txn, terminal, reference).await?;
    let row = refresh_in_txn(txn, core, row).await?;
    let authorised = money_of(row.amount, &row.currency)?;
    let amount = amount.unwrap_or(authorised);
    if row.status == AuthorisationStatus::Captured
        && row.captured_amount.map(|m| m.0) == Some(amount.minor())
    {
        return view_of(txn, &row, false, core.clock.now()).await;
    }
    if row.status != AuthorisationStatus::Approved {
        return Err(refuse(row.status.as_str(), "capture the payment"));
    }
    if amount.is_zero() || !matches!(amount.checked_cmp(&authorised), Ok(order) if order.is_le()) {
        return Err(CoreError::invalid(
            "a capture is for more than zero and at most the authorised amount, in its currency",
        ));
    }
    let hold_id = row
        .hold_id
        .map(HoldId::from_uuid)
        .ok_or_else(|| CoreError::invalid("the authorisation holds no money"))?;
    let hold = holds::get_hold(txn, hold_id).await?;
    let currency = amount.currency();
    let fee = match (
        hold.mode,
        funding::get_institution(txn, hold.institution).await,
    ) {
        (HoldMode::Reserve, Ok(institution)) => amount.share_at(institution.card_fee)?,
        _ => Money::zero(currency),
    };
    let merchant = PartyId::from_uuid(row.merchant_party_id);
    let withdrawal =
        funding::withdrawal_account_in_txn(txn, &core.clock, merchant, currency).await?;
    let mut payouts = vec![Payout {
        account: withdrawal.id,
        amount: amount.checked_sub(&fee)?,
    }];
    if !fee.is_zero() {
        let fee_account = ledger::get_or_open_keyed_account_in_txn(
            txn,
            &core.clock,
            NewAccount {
                key: Some(keys::institution_fee(hold.institution, currency)),
                kind: AccountKind::InstitutionFee,
                owner: hold.institution,
                institution: None,
                currency,
                credit_limit: Money::zero(currency),
                credit_class: None,
            },
        )
        .await?;
        payouts.push(Payout {
            account: fee_account.id,
            amount: fee,
        });
    }
    holds::post_hold_in_txn(
        txn,
        &core.clock,
        hold_id,
        &format!("card_present:{}:capture", row.id),
        amount,
        &payouts,
    )
    .await?;
    holdfast_core::timers::cancel_in_txn(txn, CAPTURE_DEADLINE_TIMER, row.id).await?;
    let captured = apply(
        txn,
        core,
        &row,
        Change {
            status: Some(AuthorisationStatus::Captured),
            captured: Some(MinorUnits(amount.minor())),
            ..Change::default()
        },
    )
    .await?;
    if let Some(card) = row.card_id {
        let card = cards::get_card(txn, CardId::from_uuid(card)).await?;
        let merchant_name = merchant_name(txn, row.merchant_party_id).await?;
        text_holder(
            txn,
            core,
            &card,
            format!(
                "Holdfast: {amount} paid to {merchant_name} with card {} (approval {}).",
                row.card_masked,
                row.approval_code.clone().unwrap_or_default()
            ),
        )
        .await?;
    }
    view_of(txn, &captured, false, core.clock.now()).await
}

/// The terminal cancels an authorisation it will not capture: a pending phone question is
/// withdrawn, a hold returns. Voiding again is a no-op.
pub async fn void_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    terminal: PartyId,
    reference: &str,
) -> CoreResult<Authorisation> {
    let row = lock_by_reference(txn, terminal, reference).await?;
    let row = refresh_in_txn(txn, core, row).await?;
    let voided = match row.status {
        AuthorisationStatus::Voided => row,
        AuthorisationStatus::ChallengeRequired => {
            if let Some(challenge) = row.challenge_id {
                challenge::void_in_txn(
                    txn,
                    &core.clock,
                    holdfast_core::ids::ChallengeId::from_uuid(challenge),
                )
                .await?;
            }
            apply(
                txn,
                core,
                &row,
                Change {
                    status: Some(AuthorisationStatus::Voided),
                    ..Change::default()
                },
            )
            .await?
        }
        AuthorisationStatus::Approved => {
            if let Some(hold) = row.hold_id {
                holds::void_hold_in_txn(
                    txn,
                    &core.clock,
                    HoldId::from_uuid(hold),
                    &format!("card_present:{}:void", row.id),
                )
                .await?;
            }
            holdfast_core::timers::cancel_in_txn(txn, CAPTURE_DEADLINE_TIMER, row.id).await?;
            apply(
                txn,
                core,
                &row,
                Change {
                    status: Some(AuthorisationStatus::Voided),
                    ..Change::default()
                },
            )
            .await?
        }
        other => return Err(refuse(other.as_str(), "void the payment")),
    };
    view_of(txn, &voided, false, core.clock.now()).await
}

/// The newest authorisations of a terminal.
pub async fn authorisations_of_terminal(
    db: &impl ConnectionTrait,
    core: &Core,
    terminal: PartyId,
    limit: u64,
) -> CoreResult<Vec<Authorisation>> {
    let rows = auth_rows::Entity::find()
        .filter(auth_rows::Column::TerminalPartyId.eq(terminal.uuid()))
        .order_by_desc(auth_rows::Column::CreatedAt)
        .limit(limit.clamp(1, MAX_PAGE))
        .all(db)
        .await?;
    let now = core.clock.now();
    let mut list = Vec::with_capacity(rows.len());
    for row in &rows {
        list.push(view_of(db, row, false, now).await?);
    }
    Ok(list)
}

/// The newest authorisations asked on a holder's cards, with the pending phone confirmations.
pub async fn authorisations_of_holder(
    db: &impl ConnectionTrait,
    core: &Core,
    holder: PartyId,
    limit: u64,
) -> CoreResult<Vec<Authorisation>> {
    let cards: Vec<Uuid> = cards::cards_of_holder(db, holder)
        .await?
        .into_iter()
        .map(|c| c.id.uuid())
        .collect();
    if cards.is_empty() {
        return Ok(Vec::new());
    }
    let rows = auth_rows::Entity::find()
        .filter(auth_rows::Column::CardId.is_in(cards))
        .order_by_desc(auth_rows::Column::CreatedAt)
        .limit(limit.clamp(1, MAX_PAGE))
        .all(db)
        .await?;
    let now = core.clock.now();
    let mut list = Vec::with_capacity(rows.len());
    for row in &rows {
        list.push(view_of(db, row, true, now).await?);
    }
    Ok(list)
}

// ---------------------------------------------------------------------------------------
// Armed approvals
// ---------------------------------------------------------------------------------------

fn armed_binding(row: &armed_rows::Model, merchant: &str) -> CoreResult<ChallengeBinding> {
    Ok(ChallengeBinding {
        amount: Some(money_of(row.max_amount, &row.currency)?),
        payee: Some(merchant.to_owned()),
        order_number: None,
        terms: Some(format!(
            "pre-approval of one payment up to this amount, {} to {} UTC",
            row.valid_from.format("%Y-%m-%d %H:%M"),
            row.valid_until.format("%Y-%m-%d %H:%M")
        )),
    })
}

async fn armed_view(
    db: &impl ConnectionTrait,
    row: &armed_rows::Model,
    now: DateTime<Utc>,
) -> CoreResult<ArmedApproval> {
    let mut status = row.status;
    let mut pending_confirmation = None;
    match status {
        ArmedStatus::Armed if now >= row.valid_until => status = ArmedStatus::Expired,
        ArmedStatus::AwaitingConfirmation => match row.challenge_id {
            Some(id) => {
                let challenge =
                    challenge::get_challenge(db, holdfast_core::ids::ChallengeId::from_uuid(id))
                        .await?;
                if challenge.status == ChallengeStatus::Pending
                    && now < challenge.expires_at
                    && now < row.valid_until
                {
                    pending_confirmation = Some(PendingConfirmation {
                        challenge_id: challenge.id,
                        expires_at: challenge.expires_at,
                    });
                } else {
                    status = ArmedStatus::Expired;
                }
            }
            None => status = ArmedStatus::Expired,
        },
        _ => {}
    }
    let used_by = match row.used_by_authorisation_id {
        Some(id) => auth_rows::Entity::find_by_id(id)
            .one(db)
            .await?
            .map(|a| a.reference),
        None => None,
    };
    let card = cards::get_card(db, CardId::from_uuid(row.card_id)).await?;
    Ok(ArmedApproval {
        id: ArmedApprovalId::from_uuid(row.id),
        status,
        card: card.number.masked(),
        merchant_id: PartyId::from_uuid(row.merchant_party_id),
        merchant_name: merchant_name(db, row.merchant_party_id).await?,
        max_amount: money_of(row.max_amount, &row.currency)?,
        valid_from: row.valid_from,
        valid_until: row.valid_until,
        used_by,
        pending_confirmation,
        created_at: row.created_at,
    })
}

/// The holder arms an approval for one payment at `merchant`, up to a ceiling, within a time
/// window. It takes effect once confirmed on the phone (the code is bound to merchant, ceiling
/// and window); a matching terminal request is then approved at once, and uses it up.
pub async fn arm_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    holder: PartyId,
    card: CardId,
    request: ArmRequest,
) -> CoreResult<ArmedApproval> {
    let card = cards::get_card(txn, card).await?;
    card.ensure_active()?;
    if card.holder != holder {
        return Err(CoreError::Forbidden("the card belongs to someone else"));
    }
    if request.max_amount.is_zero() {
        return Err(CoreError::invalid("a ceiling is more than zero"));
    }
    if !(1..=MAX_ARM_WINDOW_MINUTES).contains(&request.valid_for_minutes) {
        return Err(CoreError::invalid(format!(
            "an armed approval lasts 1 to {MAX_ARM_WINDOW_MINUTES} minutes"
        )));
    }
    let now = core.clock.now();
    let valid_from = request.valid_from.unwrap_or(now).max(now);
    if valid_from > now + Duration::days(MAX_ARM_LEAD_DAYS) {
        return Err(CoreError::invalid(format!(
            "an armed approval starts within {MAX_ARM_LEAD_DAYS} days"
        )));
    }
    let valid_until = valid_from + Duration::minutes(request.valid_for_minutes);
    let has_terminal = terminal_rows::Entity::find()
        .filter(terminal_rows::Column::MerchantPartyId.eq(request.merchant.uuid()))
        .one(txn)
        .await?
        .is_some();
    if !has_terminal {
        return Err(CoreError::NotFound("merchant"));
    }
    let funding = ledger::get_account(txn, card.funding_account).await?;
    if funding.currency != request.max_amount.currency() {
        return Err(CoreError::Money(
            holdfast_core::money::MoneyError::CurrencyMismatch {
                left: funding.currency,
                right: request.max_amount.currency(),
            },
        ));
    }
    let id = Uuid::now_v7();
    let row = armed_rows::Model {
        id,
        card_id: card.id.uuid(),
        holder_party_id: holder.uuid(),
        merchant_party_id: request.merchant.uuid(),
        max_amount: MinorUnits(request.max_amount.minor()),
        currency: request.max_amount.currency().code().to_owned(),
        valid_from,
        valid_until,
        status: ArmedStatus::AwaitingConfirmation,
        challenge_id: None,
        used_by_authorisation_id: None,
        created_at: now,
        updated_at: now,
    };
    let merchant = merchant_name(txn, row.merchant_party_id).await?;
    let challenge = challenge::issue_challenge_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &core.policy,
        NewChallenge {
            purpose: ChallengePurpose::CardPresent,
            party: holder,
            phone: card.phone.clone(),
            subject: Some(id),
            binding: armed_binding(&row, &merchant)?,
            note: None,
        },
    )
    .await?;
    let mut active: armed_rows::ActiveModel = row.into();
    active.challenge_id = Set(Some(challenge.id.uuid()));
    armed_rows::Entity::insert(active)
        .exec_without_returning(txn)
        .await?;
    let row = armed_rows::Entity::find_by_id(id)
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("armed approval"))?;
    armed_view(txn, &row, now).await
}

async fn lock_armed(
    txn: &DatabaseTransaction,
    id: ArmedApprovalId,
) -> CoreResult<armed_rows::Model> {
    armed_rows::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("armed approval"))
}

async fn set_armed_status(
    txn: &DatabaseTransaction,
    core: &Core,
    row: &armed_rows::Model,
    status: ArmedStatus,
) -> CoreResult<armed_rows::Model> {
    armed_rows::Entity::update_many()
        .col_expr(armed_rows::Column::Status, Expr::value(status))
        .col_expr(armed_rows::Column::UpdatedAt, Expr::value(core.clock.now()))
        .filter(armed_rows::Column::Id.eq(row.id))
        .filter(armed_rows::Column::Status.eq(row.status))
        .exec(txn)
        .await?;
    lock_armed(txn, ArmedApprovalId::from_uuid(row.id)).await
}

/// The holder withdraws an armed approval before it is used.
pub async fn cancel_armed_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    holder: PartyId,
    id: ArmedApprovalId,
) -> CoreResult<ArmedApproval> {
    let row = lock_armed(txn, id).await?;
    if row.holder_party_id != holder.uuid() {
        return Err(CoreError::NotFound("armed approval"));
    }
    // A window or confirmation that ran out is recorded as such first.
    let now = core.clock.now();
    let effective = armed_view(txn, &row, now).await?.status;
    let row = if effective == ArmedStatus::Expired && row.status != ArmedStatus::Expired {
        if let Some(challenge) = row.challenge_id {
            challenge::close_in_txn(
                txn,
                &core.clock,
                holdfast_core::ids::ChallengeId::from_uuid(challenge),
            )
            .await?;
        }
        set_armed_status(txn, core, &row, ArmedStatus::Expired).await?
    } else {
        row
    };
    let row = match row.status {
        ArmedStatus::Cancelled => row,
        ArmedStatus::AwaitingConfirmation | ArmedStatus::Armed => {
            if let Some(challenge) = row.challenge_id {
                challenge::void_in_txn(
                    txn,
                    &core.clock,
                    holdfast_core::ids::ChallengeId::from_uuid(challenge),
                )
                .await?;
            }
            set_armed_status(txn, core, &row, ArmedStatus::Cancelled).await?
        }
        ArmedStatus::Used => return Err(refuse("used", "cancel the armed approval")),
        ArmedStatus::Denied => return Err(refuse("denied", "cancel the armed approval")),
        ArmedStatus::Expired => return Err(refuse("expired", "cancel the armed approval")),
    };
    armed_view(txn, &row, core.clock.now()).await
}

/// A holder's armed approvals, newest first.
pub async fn armed_approvals_of(
    db: &impl ConnectionTrait,
    core: &Core,
    holder: PartyId,
    limit: u64,
) -> CoreResult<Vec<ArmedApproval>> {
    let rows = armed_rows::Entity::find()
        .filter(armed_rows::Column::HolderPartyId.eq(holder.uuid()))
        .order_by_desc(armed_rows::Column::CreatedAt)
        .limit(limit.clamp(1, MAX_PAGE))
        .all(db)
        .await?;
    let now = core.clock.now();
    let mut list = Vec::with_capacity(rows.len());
    for row in &rows {
        list.push(armed_view(db, row, now).await?);
    }
    Ok(list)
}

// ---------------------------------------------------------------------------------------
// The phone's answer
// ---------------------------------------------------------------------------------------

/// Answers a `card_present` challenge, as the holder's phone does: for a terminal's
/// authorisation (approve places the hold; deny or an expired code declines it) or for an
/// approval being armed.
pub async fn answer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    challenge_id: holdfast_core::ids::ChallengeId,
    code: &str,
    decision: Decision,
) -> CoreResult<Answered> {
    challenge::parse_code(code)?;
    let unlocked = challenge::get_challenge(txn, challenge_id).await?;
    let subject = unlocked
        .subject
        .filter(|_| unlocked.purpose == ChallengePurpose::CardPresent)
        .ok_or(CoreError::NotFound("challenge"))?;
    if auth_rows::Entity::find_by_id(subject)
        .one(txn)
        .await?
        .is_some()
    {
        answer_authorisation_in_txn(txn, core, challenge_id, subject, code, decision).await
    } else {
        answer_armed_in_txn(txn, core, challenge_id, subject, code, decision).await
    }
}

async fn answer_authorisation_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    challenge_id: holdfast_core::ids::ChallengeId,
    subject: Uuid,
    code: &str,
    decision: Decision,
) -> CoreResult<Answered> {
    // Lock order: the authorisation, then its challenge, then (placing it) the hold.
    let row = lock_by_id(txn, AuthorisationId::from_uuid(subject)).await?;
    let challenge = challenge::lock_challenge_in_txn(txn, challenge_id).await?;
    if row.challenge_id != Some(challenge_id.uuid()) {
        return Err(CoreError::NotFound("challenge"));
    }
    let card_id = row
        .card_id
        .map(CardId::from_uuid)
        .ok_or(CoreError::NotFound("card"))?;
    let card = cards::get_card(txn, card_id).await?;
    if card.ensure_active().is_err() {
        // Blocked while the phone was asked: nobody may approve with it now.
        if row.status == AuthorisationStatus::ChallengeRequired {
            challenge::void_in_txn(txn, &core.clock, challenge_id).await?;
            apply(txn, core, &row, decline(DeclineReason::CardBlocked)).await?;
        }
        return Ok(Answered::Refused(CoreError::CardNotActive));
    }
    let merchant = merchant_name(txn, row.merchant_party_id).await?;
    let answer = challenge::answer_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &challenge,
        code,
        decision,
        &authorisation_binding(&row, &merchant)?,
    )
    .await?;
    let outcome = match answer {
        Answer::Approved(_) if row.status == AuthorisationStatus::ChallengeRequired => {
            match approve(txn, core, &card, &row, None).await? {
                Some(approved) => approved,
                None => decline_short_of_funds(txn, core, &card, &row).await?,
            }
        }
        Answer::Denied(_) if row.status == AuthorisationStatus::ChallengeRequired => {
            apply(txn, core, &row, decline(DeclineReason::DeniedOnPhone)).await?
        }
        Answer::Expired(_) => {
            if row.status == AuthorisationStatus::ChallengeRequired {
                apply(txn, core, &row, decline(DeclineReason::ConfirmationExpired)).await?;
            }
            return Ok(Answered::Refused(CoreError::ChallengeExpired));
        }
        Answer::Locked => {
            if row.status == AuthorisationStatus::ChallengeRequired {
                apply(txn, core, &row, decline(DeclineReason::ConfirmationLocked)).await?;
            }
            return Ok(Answered::Refused(CoreError::ChallengeLocked));
        }
        Answer::Approved(_) | Answer::Denied(_) => {
            // The terminal voided it while the phone was asked; the challenge was voided too,
            // so this is unreachable, but an answer must never revive it.
            return Ok(Answered::Refused(CoreError::ChallengeClosed {
                status: row.status.as_str(),
            }));
        }
        refused => {
            return Ok(Answered::Refused(
                challenge::answer_error(&refused).unwrap_or(CoreError::ChallengeNotAnswerable),
            ));
        }
    };
    let view = view_of(txn, &outcome, true, core.clock.now()).await?;
    Ok(Answered::Applied(serde_json::json!({
        "authorisation": view,
    })))
}

async fn answer_armed_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    challenge_id: holdfast_core::ids::ChallengeId,
    subject: Uuid,
    code: &str,
    decision: Decision,
) -> CoreResult<Answered> {
    let row = lock_armed(txn, ArmedApprovalId::from_uuid(subject)).await?;
    let challenge = challenge::lock_challenge_in_txn(txn, challenge_id).await?;
    if row.challenge_id != Some(challenge_id.uuid()) {
        return Err(CoreError::NotFound("challenge"));
    }
    let card = cards::get_card(txn, CardId::from_uuid(row.card_id)).await?;
    card.ensure_active()?;
    let merchant = merchant_name(txn, row.merchant_party_id).await?;
    let answer = challenge::answer_in_txn(
        txn,
        &core.clock,
        &core.keys,
        &challenge,
        code,
        decision,
        &armed_binding(&row, &merchant)?,
    )
    .await?;
    let waiting = row.status == ArmedStatus::AwaitingConfirmation;
    let updated = match answer {
        Answer::Approved(_) if waiting => {
            if core.clock.now() >= row.valid_until {
                set_armed_status(txn, core, &row, ArmedStatus::Expired).await?
            } else {
                set_armed_status(txn, core, &row, ArmedStatus::Armed).await?
            }
        }
        Answer::Denied(_) if waiting => {
            set_armed_status(txn, core, &row, ArmedStatus::Denied).await?
        }
        Answer::Expired(_) | Answer::Locked => {
            if waiting {
                set_armed_status(txn, core, &row, ArmedStatus::Expired).await?;
            }
            return Ok(Answered::Refused(
                challenge::answer_error(&answer).unwrap_or(CoreError::ChallengeExpired),
            ));
        }
        Answer::Approved(_) | Answer::Denied(_) => {
            return Ok(Answered::Refused(CoreError::ChallengeClosed {
                status: "cancelled",
            }));
        }
        refused => {
            return Ok(Answered::Refused(
                challenge::answer_error(&refused).unwrap_or(CoreError::ChallengeNotAnswerable),
            ));
        }
    };
    let view = armed_view(txn, &updated, core.clock.now()).await?;
    Ok(Answered::Applied(
        serde_json::json!({ "armed_approval": view }),
    ))
}

// ---------------------------------------------------------------------------------------
// Timers
// ---------------------------------------------------------------------------------------

/// Whether a timer kind is card-present's.
pub fn is_timer(kind: holdfast_core::TimerKind) -> bool {
    kind == CAPTURE_DEADLINE_TIMER
}

/// Locks the authorisation a timer is about (before the timer row).
pub async fn lock_timer_subject_in_txn(txn: &DatabaseTransaction, subject: Uuid) -> CoreResult<()> {
    lock_by_id(txn, AuthorisationId::from_uuid(subject))
        .await
        .map(|_| ())
}

/// An approval never captured in time: its hold returns. One that moved on is left alone.
pub async fn fire_timer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    kind: holdfast_core::TimerKind,
    subject: Uuid,
) -> CoreResult<()> {
    if !is_timer(kind) {
        return Err(CoreError::invalid(format!(
            "not a card-present timer: {kind}"
        )));
    }
    let row = lock_by_id(txn, AuthorisationId::from_uuid(subject)).await?;
    refresh_in_txn(txn, core, row).await.map(|_| ())
}

// ---------------------------------------------------------------------------------------
// The same, each in a transaction of its own
// ---------------------------------------------------------------------------------------

/// [`register_terminal_in_txn`] in a transaction of its own (the password is hashed before).
pub async fn register_terminal(
    db: &DatabaseConnection,
    core: &Core,
    merchant: PartyId,
    label: &str,
    username: &str,
    password: &str,
) -> CoreResult<Terminal> {
    let credentials = StaffCredentials::hash(&core.passwords, username, password, None).await?;
    let txn = holdfast_core::db::begin_write(db).await?;
    let result = register_terminal_in_txn(&txn, core, merchant, label, credentials).await?;
    txn.commit().await?;
    core.wake_outbox();
    Ok(result)
}

/// [`authorise_in_txn`] in a transaction of its own.
pub async fn authorise(
    db: &DatabaseConnection,
    core: &Core,
    terminal: PartyId,
    request: AuthoriseRequest,
) -> CoreResult<Authorisation> {
    let txn = holdfast_core::db::begin_write(db).await?;
    let result = authorise_in_txn(&txn, core, terminal, request).await?;
    txn.commit().await?;
    core.wake_outbox();
    Ok(result)
}

/// [`capture_in_txn`] in a transaction of its own.
pub async fn capture(
    db: &DatabaseConnection,
    core: &Core,
    terminal: PartyId,
    reference: &str,
    amount: Option<Money>,
) -> CoreResult<Authorisation> {
    let txn = holdfast_core::db::begin_write(db).await?;
    let result = capture_in_txn(&txn, core, terminal, reference, amount).await?;
    txn.commit().await?;
    core.wake_outbox();
    Ok(result)
}

/// [`void_in_txn`] in a transaction of its own.
pub async fn void(
    db: &DatabaseConnection,
    core: &Core,
    terminal: PartyId,
    reference: &str,
) -> CoreResult<Authorisation> {
    let txn = holdfast_core::db::begin_write(db).await?;
    let result = void_in_txn(&txn, core, terminal, reference).await?;
    txn.commit().await?;
    core.wake_outbox();
    Ok(result)
}

/// [`arm_in_txn`] in a transaction of its own.
pub async fn arm(
    db: &DatabaseConnection,
    core: &Core,
    holder: PartyId,
    card: CardId,
    request: ArmRequest,
) -> CoreResult<ArmedApproval> {
    let txn = holdfast_core::db::begin_write(db).await?;
    let result = arm_in_txn(&txn, core, holder, card, request).await?;
    txn.commit().await?;
    core.wake_outbox();
    Ok(result)
}

/// [`cancel_armed_in_txn`] in a transaction of its own.
pub async fn cancel_armed(
    db: &DatabaseConnection,
    core: &Core,
    holder: PartyId,
    id: ArmedApprovalId,
) -> CoreResult<ArmedApproval> {
    let txn = holdfast_core::db::begin_write(db).await?;
    let result = cancel_armed_in_txn(&txn, core, holder, id).await?;
    txn.commit().await?;
    core.wake_outbox();
    Ok(result)
}

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
