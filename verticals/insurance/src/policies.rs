//! Policies: the purchase confirmed on the phone, the insurer's recheck issuing the policy
//! number, the certificate the service company delivers against the signed application, the
//! insurer's settlement requests, and the holder's free-look cancellation.
//!
//! ```text
//! awaiting_confirmation ─phone approves→ awaiting_recheck ─insurer issues→ in_force ⇄ grace
//!   │ phone denies / no answer              │ insurer declines (or no recheck)    │       │
//!   ▼                                        ▼                                    │       ▼
//! not_taken                               declined                               │    lapsed
//!                                                                                ├─ term ends → matured
//!   awaiting_recheck, in_force, grace ── holder cancels within the free-look ──→ cancelled
//! ```
//! Every premium is an escrow case of its own: the first is opened by the purchase and
//! confirmed as a `policy` challenge; the monthly ones are opened by the cycle under that
//! consent ([`crate::cycle`]). A premium is settled when the insurer quotes the policy number
//! and the holder's phone approves (or does not answer in time) — never before the
//! certificate and the signed application are recorded.
//!
//! Lock order — the house rule, a vertical's own row before the case: the policy, then its
//! premium cases by installment, then what the core locks under a case (its challenge, its
//! hold, the accounts it moves money between). Every use case and timer of this vertical
//! follows it; a phone answer does too, because the server calls
//! [`crate::hooks::lock_answer_subject_in_txn`] before the core locks the case. The paths that
//! touch a premium's case without this vertical (the core's auto-settlement and order
//! deadline, an operator's mediation) never take the policy, so they cannot close a circle.
//! The monthly cycle holds the policy while it reserves or moves the next premium on the
//! card's funding account; an answer taking the policy last — after the core had written that
//! same account — deadlocked against it on PostgreSQL.

use crate::VERTICAL;
use crate::entities::{policies, policy_events, premiums};
use crate::error::{InsuranceError, InsuranceResult};
use crate::products::{self, PaymentPlan, ProductId};
use chrono::{DateTime, Duration, Months, Utc};
use holdfast_core::cards::{self, CardId};
use holdfast_core::challenge::{self, ChallengePurpose, ChallengeStatus};
use holdfast_core::db::MinorUnits;
use holdfast_core::entities::escrow_cases;
use holdfast_core::escrow::{
    self, CaseEvent, CaseState, EscrowCase, Mediation, OpenCase, PayoutSplit,
};
use holdfast_core::events;
use holdfast_core::funding;
use holdfast_core::holds::HoldMode;
use holdfast_core::ids::{CaseId, ChallengeId, PartyId};
use holdfast_core::ledger;
use holdfast_core::order_number::OrderNumber;
use holdfast_core::parties::{self, Role};
use holdfast_core::{BasisPoints, Core, CoreError, Currency, Money, timers};
use sea_orm::entity::prelude::*;
use sea_orm::{
    ActiveValue::Set, Condition, ConnectionTrait, DatabaseTransaction, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::str::FromStr;
use utoipa::ToSchema;

/// The insurer has this long to recheck an application before it is declined by itself and
/// the first premium returned.
pub const RECHECK_DAYS: i64 = 7;
/// How long after its issue the certificate may take to reach the holder: if the service
/// company has not recorded its delivery by then, the free-look period starts anyway, as if
/// it had been delivered that day. Thirty days is several times what a courier needs (so an
/// honest delivery never shortens the holder's period), it echoes the Korean standard terms
/// (no withdrawal once 30 days have passed since the application), and it keeps the full
/// refund from staying open for the whole term when a delivery is never recorded (at most
/// 30 + `free_look_days` days after issue). A constant rather than a product setting: products
/// have no column for it (that would take a migration).
pub const CERTIFICATE_DELIVERY_DAYS: i64 = 30;
pub const MAX_REASON_CHARS: usize = 500;
pub const MAX_APPLICATION_REFERENCE_CHARS: usize = 100;
pub type RecheckReason = holdfast_core::text::MultilineText<1, MAX_REASON_CHARS>;
pub type ApplicationReference = holdfast_core::text::Text<1, MAX_APPLICATION_REFERENCE_CHARS>;
pub const MAX_PAGE: u64 = 100;

/// Fires when the application's phone confirmation is due: an unanswered one is not taken.
pub const CONFIRMATION_DEADLINE_TIMER: holdfast_core::TimerKind =
    holdfast_core::TimerKind::InsuranceConfirmationDeadline;
/// Fires when the insurer's recheck is due.
pub const RECHECK_DEADLINE_TIMER: holdfast_core::TimerKind =
    holdfast_core::TimerKind::InsuranceRecheckDeadline;

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
pub enum PolicyState {
    /// The holder's phone has been asked to approve product, insurer and premium; the first
    /// premium is held.
    AwaitingConfirmation,
    /// Approved on the phone; the insurer rechecks the application.
    AwaitingRecheck,
    /// Issued: the policy number was sent to the phone; premiums are collected monthly.
    InForce,
    /// A premium could not be collected; the holder was given notice to pay.
    Grace,
    /// The grace period ended unpaid. Final.
    Lapsed,
    /// The term ended. Final.
    Matured,
    /// Cancelled by the holder within the free-look period; every premium returned. Final.
    Cancelled,
    /// The insurer declined the application; the first premium returned. Final.
    Declined,
    /// The holder denied it on the phone, or did not answer. Final.
    NotTaken,
}

impl PolicyState {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyState::AwaitingConfirmation => "awaiting_confirmation",
            PolicyState::AwaitingRecheck => "awaiting_recheck",
            PolicyState::InForce => "in_force",
            PolicyState::Grace => "grace",
            PolicyState::Lapsed => "lapsed",
            PolicyState::Matured => "matured",
            PolicyState::Cancelled => "cancelled",
            PolicyState::Declined => "declined",
            PolicyState::NotTaken => "not_taken",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            PolicyState::Lapsed
                | PolicyState::Matured
                | PolicyState::Cancelled
                | PolicyState::Declined
                | PolicyState::NotTaken
        )
    }

    fn refuse(self, action: &'static str) -> InsuranceError {
        InsuranceError::PolicyState {
            state: self.as_str(),
            action,
        }
    }

    pub fn confirm(self) -> InsuranceResult<PolicyState> {
        match self {
            PolicyState::AwaitingConfirmation => Ok(PolicyState::AwaitingRecheck),
            _ => Err(self.refuse("confirm the application")),
        }
    }

    pub fn not_taken(self) -> InsuranceResult<PolicyState> {
        match self {
            PolicyState::AwaitingConfirmation => Ok(PolicyState::NotTaken),
            _ => Err(self.refuse("drop the application")),
        }
    }

    pub fn issue(self) -> InsuranceResult<PolicyState> {
        match self {
            PolicyState::AwaitingRecheck => Ok(PolicyState::InForce),
            _ => Err(self.refuse("issue the policy")),
        }
    }

    pub fn decline(self) -> InsuranceResult<PolicyState> {
        match self {
            PolicyState::AwaitingRecheck => Ok(PolicyState::Declined),
            _ => Err(self.refuse("decline the application")),
        }
    }

    pub fn miss_premium(self) -> InsuranceResult<PolicyState> {
        match self {
            PolicyState::InForce => Ok(PolicyState::Grace),
            _ => Err(self.refuse("start a grace period")),
        }
    }

    pub fn cure(self) -> InsuranceResult<PolicyState> {
        match self {
            PolicyState::Grace => Ok(PolicyState::InForce),
            _ => Err(self.refuse("pay an overdue premium")),
        }
    }

    pub fn lapse(self) -> InsuranceResult<PolicyState> {
        match self {
            PolicyState::Grace => Ok(PolicyState::Lapsed),
            _ => Err(self.refuse("lapse")),
        }
    }

    pub fn mature(self) -> InsuranceResult<PolicyState> {
        match self {
            PolicyState::InForce => Ok(PolicyState::Matured),
            _ => Err(self.refuse("end the term")),
        }
    }

    /// The holder may cancel from the recheck on, while the policy lives (the free-look
    /// period itself is checked against the certificate's delivery).
    pub fn cancel(self) -> InsuranceResult<PolicyState> {
        match self {
            PolicyState::AwaitingRecheck | PolicyState::InForce | PolicyState::Grace => {
                Ok(PolicyState::Cancelled)
            }
            _ => Err(self.refuse("cancel the policy")),
        }
    }

    /// Whether the insurer may ask to be paid a premium held for this policy.
    fn settles(self) -> bool {
        matches!(
            self,
            PolicyState::InForce | PolicyState::Grace | PolicyState::Lapsed | PolicyState::Matured
        )
    }
}

/// Where the insurer's certificate is.
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
pub enum CertificateStatus {
    /// No policy yet.
    NotIssued,
    /// Issued; the service company is to fetch it from the insurer.
    AwaitingPickup,
    /// The service company has it, on its way to the holder.
    WithServiceCompany,
    /// Delivered; the signed application and the policy number were collected and recorded.
    Delivered,
}

impl CertificateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::NotIssued => "not_issued",
            CertificateStatus::AwaitingPickup => "awaiting_pickup",
            CertificateStatus::WithServiceCompany => "with_service_company",
            CertificateStatus::Delivered => "delivered",
        }
    }
}

/// How the premiums are collected, from the card's funding source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Collection {
    /// A card's credit line is reduced by each premium (reserved until settlement).
    CreditLineReservation,
    /// Each premium moves from the bank (or prepaid) account into the freezing account.
    AutomaticTransfer,
}

/// A policy named by its id (before the insurer issued its number) or its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyRef {
    Id(Uuid),
    Number(OrderNumber),
}

impl FromStr for PolicyRef {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(id) = Uuid::parse_str(s.trim()) {
            return Ok(PolicyRef::Id(id));
        }
        OrderNumber::parse(s)
            .map(PolicyRef::Number)
            .map_err(|_| CoreError::invalid("a policy is named by its id or its 12-digit number"))
    }
}

/// A phone confirmation waiting for the holder.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PolicyPendingConfirmation)]
pub struct PendingConfirmation {
    pub challenge_id: ChallengeId,
    pub purpose: ChallengePurpose,
    pub expires_at: DateTime<Utc>,
}

/// One collected premium.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PremiumView {
    pub installment: i32,
    /// The escrow order number of this premium (what a dispute is mediated under).
    pub order_number: OrderNumber,
    pub amount: Money,
    /// Where the premium's money stands: `frozen` (held), `settlement_requested`, `settled`
    /// (paid to the insurer), `refunded` or `cancelled` (returned to the holder)…
    pub state: CaseState,
    pub due_at: DateTime<Utc>,
    /// For the holder only, while its phone is asked to release this premium.
    pub pending_confirmation: Option<PendingConfirmation>,
}

/// A policy as its holder, its insurer or an operator sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyView {
    pub policy_id: Uuid,
    /// Issued by the insurer at its recheck and texted to the holder: the application's order
    /// number (the first premium's), which the phone showed with the purchase.
    pub policy_number: Option<OrderNumber>,
    pub state: PolicyState,
    pub product_id: ProductId,
    pub product_name: String,
    pub coverage_amount: Money,
    pub insurer_id: PartyId,
    pub insurer_name: String,
    pub service_company_id: PartyId,
    pub premium: Money,
    pub payment_plan: PaymentPlan,
    pub term_months: i32,
    /// How many premiums the term has, and how many were collected.
    pub installments: i32,
    pub installments_collected: i32,
    pub collection: Collection,
    /// The card that pays, masked.
    #[schema(example = "9000-21••-••••-7897")]
    pub card: String,
    pub issued_at: Option<DateTime<Utc>>,
    pub next_premium_due_at: Option<DateTime<Utc>>,
    pub overdue_installment: Option<i32>,
    pub grace_ends_at: Option<DateTime<Utc>>,
    pub certificate_status: CertificateStatus,
    pub certificate_delivered_at: Option<DateTime<Utc>>,
    /// The signed application the service company collected.
    pub application_reference: Option<String>,
    /// The holder may cancel with every premium returned until then: `free_look_days` after
    /// the certificate's delivery, or after the delivery deadline (30 days after issue) if the
    /// certificate was not recorded by then. Set from the issue on (the latest it can be, until
    /// a delivery brings it forward); before the issue an application may always be cancelled.
    pub free_look_ends_at: Option<DateTime<Utc>>,
    pub grace_days: i32,
    pub free_look_days: i32,
    pub premiums: Vec<PremiumView>,
    /// For the holder only, while its phone is asked to approve the purchase.
    pub pending_confirmation: Option<PendingConfirmation>,
    pub ended_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a free-look cancellation returned.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Cancellation {
    pub policy: PolicyView,
    /// Every premium paid or held, back on the card's funding source.
    pub returned: Money,
}

/// A line of the policy's timeline: the policy's own events and those of its premiums'
/// escrow cases (state changes, texts and confirmations sent to the phone — never a code).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyEvent {
    pub at: DateTime<Utc>,
    pub kind: String,
    /// The premium it concerns, if any.
    pub installment: Option<i32>,
    pub to_state: Option<String>,
    pub detail: Option<String>,
}

/// A certificate the service company is to deliver. It names no payment data.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CertificateTask {
    pub policy_number: OrderNumber,
    pub product_name: String,
    pub insurer_name: String,
    pub certificate_status: CertificateStatus,
    /// Where to deliver it: the holder's delivery address.
    pub destination: String,
    pub issued_at: Option<DateTime<Utc>>,
    pub certificate_delivered_at: Option<DateTime<Utc>>,
}

pub(crate) fn money(minor: MinorUnits, currency: &str) -> InsuranceResult<Money> {
    Ok(Money::from_minor(minor.0, Currency::from_str(currency)?)?)
}

pub(crate) fn premium_of(row: &policies::Model) -> InsuranceResult<Money> {
    money(row.premium, &row.currency)
}

/// How many premiums the whole term takes.
pub(crate) fn total_installments(row: &policies::Model) -> i32 {
    match row.payment_plan {
        PaymentPlan::Monthly => row.term_months,
        PaymentPlan::LumpSum => 1,
    }
}

/// When installment `n` (from 1) is due: a calendar month apart from the issue.
pub(crate) fn due_date(issued_at: DateTime<Utc>, installment: i32) -> DateTime<Utc> {
    let months = u32::try_from(installment.saturating_sub(1)).unwrap_or(0);
    issued_at
        .checked_add_months(Months::new(months))
        .unwrap_or(issued_at)
}

/// When the free-look period of a policy issued at `issued_at` ends: `free_look_days` after
/// the certificate's delivery, or after the delivery deadline if that came first (a delivery
/// recorded after the deadline does not open the period again).
pub(crate) fn free_look_end_from(
    issued_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    free_look_days: i32,
) -> DateTime<Utc> {
    let deadline = issued_at + Duration::days(CERTIFICATE_DELIVERY_DAYS);
    let starts = delivered_at.map_or(deadline, |at| at.min(deadline));
    starts + Duration::days(i64::from(free_look_days))
}

/// The policy's free-look end, computed rather than read, so that a policy stored without one
/// is bounded too; `None` before the issue.
pub(crate) fn free_look_end(row: &policies::Model) -> Option<DateTime<Utc>> {
    row.issued_at
        .map(|at| free_look_end_from(at, row.certificate_delivered_at, row.free_look_days))
}

pub(crate) fn term_end(row: &policies::Model) -> Option<DateTime<Utc>> {
    row.issued_at.map(|at| {
        at.checked_add_months(Months::new(u32::try_from(row.term_months).unwrap_or(0)))
            .unwrap_or(at)
    })
}

/// The platform's commission on a premium, from the rate the policy was sold at.
pub(crate) fn commission_on(row: &policies::Model, premium: Money) -> InsuranceResult<Money> {
    let rate = BasisPoints::new(row.commission_bps).map_err(CoreError::Money)?;
    Ok(premium.share_at(rate)?)
}

fn policy_terms(name: &str, plan: PaymentPlan, premium: Money, term: i32, cover: Money) -> String {
    let plan = match plan {
        PaymentPlan::Monthly => format!("{premium} a month for {term} months"),
        PaymentPlan::LumpSum => format!("lump sum for {term} months"),
    };
    let terms = format!("{name}: {plan}, cover {cover}");
    terms.chars().take(200).collect()
}

pub(crate) async fn record_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    policy: Uuid,
    kind: &str,
    detail: Option<String>,
) -> InsuranceResult<()> {
    policy_events::Entity::insert(policy_events::ActiveModel {
        id: Set(Uuid::now_v7()),
        policy_id: Set(policy),
        kind: Set(kind.to_owned()),
        detail: Set(detail),
        at: Set(core.clock.now()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Texts the policy's holder (on the phone of the card that pays), keeping the text in the
/// first premium's timeline.
pub(crate) async fn text_holder_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: &policies::Model,
    text: String,
) -> InsuranceResult<()> {
    let case = escrow::get_case(txn, CaseId::from_uuid(row.first_case_id)).await?;
    escrow::text_buyer_in_txn(txn, core, &case, text).await?;
    Ok(())
}

pub(crate) async fn publish_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    party: Uuid,
    kind: &str,
    data: serde_json::Value,
) -> InsuranceResult<()> {
    events::publish_in_txn(txn, &core.clock, PartyId::from_uuid(party), kind, data).await?;
    Ok(())
}

pub(crate) fn number_of(row: &policies::Model) -> String {
    row.policy_number
        .clone()
        .map(|n| OrderNumber::from_stored(n).to_string())
        .unwrap_or_else(|| "(not issued)".to_owned())
}

pub(crate) async fn get_row(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> InsuranceResult<policies::Model> {
    Ok(policies::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(CoreError::NotFound("policy"))?)
}

pub(crate) async fn find_row(
    db: &impl ConnectionTrait,
    policy: &PolicyRef,
) -> InsuranceResult<policies::Model> {
    let found = match policy {
        PolicyRef::Id(id) => policies::Entity::find_by_id(*id).one(db).await?,
        PolicyRef::Number(number) => {
            policies::Entity::find()
                .filter(policies::Column::PolicyNumber.eq(number.digits()))
                .one(db)
                .await?
        }
    };
    Ok(found.ok_or(CoreError::NotFound("policy"))?)
}

pub(crate) async fn lock_row(
    txn: &DatabaseTransaction,
    id: Uuid,
) -> InsuranceResult<policies::Model> {
    Ok(policies::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or(CoreError::NotFound("policy"))?)
}

pub(crate) async fn premiums_of(
    db: &impl ConnectionTrait,
    policy: Uuid,
) -> InsuranceResult<Vec<premiums::Model>> {
    Ok(premiums::Entity::find()
        .filter(premiums::Column::PolicyId.eq(policy))
        .order_by_asc(premiums::Column::Installment)
        .all(db)
        .await?)
}

pub(crate) async fn premium_of_case(
    db: &impl ConnectionTrait,
    case: CaseId,
) -> InsuranceResult<Option<premiums::Model>> {
    Ok(premiums::Entity::find()
        .filter(premiums::Column::CaseId.eq(case.uuid()))
        .one(db)
        .await?)
}

/// The escrow cases of `premiums`, by case id, in one query.
async fn cases_of(
    db: &impl ConnectionTrait,
    premiums: &[premiums::Model],
) -> InsuranceResult<HashMap<Uuid, EscrowCase>> {
    let ids: Vec<Uuid> = premiums.iter().map(|p| p.case_id).collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = escrow_cases::Entity::find()
        .filter(escrow_cases::Column::Id.is_in(ids))
        .all(db)
        .await?;
    let mut cases = HashMap::with_capacity(rows.len());
    for row in rows {
        let case = EscrowCase::try_from(row)?;
        cases.insert(case.id.uuid(), case);
    }
    Ok(cases)
}

/// Writes a changed policy (locked by the caller) and stamps it.
pub(crate) async fn save_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    mut row: policies::ActiveModel,
) -> InsuranceResult<policies::Model> {
    row.updated_at = Set(core.clock.now());
    Ok(row.update(txn).await?)
}

// ---------------------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------------------

/// Whether `viewer` may see the policy: its holder, its insurer or an operator. Anyone else
/// is told it does not exist.
fn may_see(row: &policies::Model, viewer: PartyId, role: Role) -> bool {
    role == Role::Operator
        || row.holder_party_id == viewer.uuid()
        || row.insurer_party_id == viewer.uuid()
}

async fn pending_of(
    db: &impl ConnectionTrait,
    challenge: Option<ChallengeId>,
    now: DateTime<Utc>,
) -> InsuranceResult<Option<PendingConfirmation>> {
    let Some(id) = challenge else {
        return Ok(None);
    };
    let challenge = challenge::get_challenge(db, id).await?;
    Ok(
        (challenge.status == ChallengeStatus::Pending && now < challenge.expires_at).then_some(
            PendingConfirmation {
                challenge_id: challenge.id,
                purpose: challenge.purpose,
                expires_at: challenge.expires_at,
            },
        ),
    )
}

pub(crate) async fn view_of(
    db: &impl ConnectionTrait,
    core: &Core,
    row: &policies::Model,
    viewer: PartyId,
) -> InsuranceResult<PolicyView> {
    let now = core.clock.now();
    let for_holder = row.holder_party_id == viewer.uuid();
    let mut premiums = Vec::new();
    let mut first_case: Option<EscrowCase> = None;
    let premium_rows = premiums_of(db, row.id).await?;
    let mut cases = cases_of(db, &premium_rows).await?;
    for premium in premium_rows {
        let case = cases
            .remove(&premium.case_id)
            .ok_or(CoreError::NotFound("order"))?;
        let pending_confirmation = if for_holder && case.state == CaseState::SettlementRequested {
            pending_of(db, case.settlement_challenge, now).await?
        } else {
            None
        };
        premiums.push(PremiumView {
            installment: premium.installment,
            order_number: case.order_number.clone(),
            amount: case.amount,
            state: case.state,
            due_at: premium.due_at,
            pending_confirmation,
        });
        if case.id.uuid() == row.first_case_id {
            first_case = Some(case);
        }
    }
    let mut state = row.state;
    let mut pending_confirmation = None;
    if let Some(case) = &first_case
        && state == PolicyState::AwaitingConfirmation
    {
        match case.state {
            CaseState::AwaitingOrderConfirmation if for_holder => {
                pending_confirmation = pending_of(db, case.order_challenge, now).await?;
            }
            // Denied or expired before this vertical heard of it: shown as it stands.
            CaseState::Denied | CaseState::Expired | CaseState::Cancelled => {
                state = PolicyState::NotTaken;
            }
            _ => {}
        }
    }
    let card = cards::get_card(db, CardId::from_uuid(row.card_id)).await?;
    let funding = ledger::get_account(db, card.funding_account).await?;
    let collection = match funding::hold_mode(funding.kind) {
        Some(HoldMode::Reserve) => Collection::CreditLineReservation,
        _ => Collection::AutomaticTransfer,
    };
    let insurer = parties::get_party(db, PartyId::from_uuid(row.insurer_party_id)).await?;
    Ok(PolicyView {
        policy_id: row.id,
        policy_number: row.policy_number.clone().map(OrderNumber::from_stored),
        state,
        product_id: ProductId::from_uuid(row.product_id),
        product_name: row.product_name.clone(),
        coverage_amount: money(row.coverage_amount, &row.currency)?,
        insurer_id: insurer.id,
        insurer_name: insurer.display_name,
        service_company_id: PartyId::from_uuid(row.service_company_party_id),
        premium: premium_of(row)?,
        payment_plan: row.payment_plan,
        term_months: row.term_months,
        installments: total_installments(row),
        installments_collected: row.installments_collected,
        collection,
        card: card.number.masked(),
        issued_at: row.issued_at,
        next_premium_due_at: row.next_due_at,
        overdue_installment: row.overdue_installment,
        grace_ends_at: row.grace_ends_at,
        certificate_status: row.certificate_status,
        certificate_delivered_at: row.certificate_delivered_at,
        application_reference: row.application_reference.clone(),
        free_look_ends_at: free_look_end(row),
        grace_days: row.grace_days,
        free_look_days: row.free_look_days,
        premiums,
        pending_confirmation,
        ended_at: row.ended_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// One policy, for its holder, its insurer or an operator.
pub async fn get_policy(
    db: &impl ConnectionTrait,
    core: &Core,
    viewer: PartyId,
    role: Role,
    policy: &PolicyRef,
) -> InsuranceResult<PolicyView> {
    let row = find_row(db, policy).await?;
    if !may_see(&row, viewer, role) {
        return Err(CoreError::NotFound("policy").into());
    }
    view_of(db, core, &row, viewer).await
}

/// The newest policies of a holder, or of an insurer (optionally in one state: its
/// applications to recheck are `awaiting_recheck`), or of everyone for an operator.
pub async fn list_policies(
    db: &impl ConnectionTrait,
    core: &Core,
    viewer: PartyId,
    role: Role,
    state: Option<PolicyState>,
    limit: u64,
) -> InsuranceResult<Vec<PolicyView>> {
    let mut query = policies::Entity::find()
        .order_by_desc(policies::Column::CreatedAt)
        .limit(limit.clamp(1, MAX_PAGE));
    query = match role {
        Role::Operator => query,
        Role::Insurer => query.filter(policies::Column::InsurerPartyId.eq(viewer.uuid())),
        _ => query.filter(policies::Column::HolderPartyId.eq(viewer.uuid())),
    };
    if let Some(state) = state {
        query = query.filter(policies::Column::State.eq(state));
    }
    let rows = query.all(db).await?;
    let mut list = Vec::with_capacity(rows.len());
    for row in &rows {
        list.push(view_of(db, core, row, viewer).await?);
    }
    Ok(list)
}

/// The policy's timeline, oldest first.
pub async fn history(
    db: &impl ConnectionTrait,
    viewer: PartyId,
    role: Role,
    policy: &PolicyRef,
) -> InsuranceResult<Vec<PolicyEvent>> {
    let row = find_row(db, policy).await?;
    if !may_see(&row, viewer, role) {
        return Err(CoreError::NotFound("policy").into());
    }
    let mut lines: Vec<PolicyEvent> = policy_events::Entity::find()
        .filter(policy_events::Column::PolicyId.eq(row.id))
        .order_by_asc(policy_events::Column::At)
        .limit(escrow::MAX_EVENTS)
        .all(db)
        .await?
        .into_iter()
        .map(|e| PolicyEvent {
            at: e.at,
            kind: e.kind,
            installment: None,
            to_state: None,
            detail: e.detail,
        })
        .collect();
    for premium in premiums_of(db, row.id).await? {
        let case_events: Vec<CaseEvent> =
            escrow::events(db, CaseId::from_uuid(premium.case_id)).await?;
        lines.extend(case_events.into_iter().map(|e| PolicyEvent {
            at: e.at,
            kind: e.kind,
            installment: Some(premium.installment),
            to_state: e.to_state,
            detail: e.detail,
        }));
    }
    lines.sort_by_key(|line| line.at);
    Ok(lines)
}

// ---------------------------------------------------------------------------------------
// Purchase, confirmation and recheck
// ---------------------------------------------------------------------------------------

/// The holder buys a product with the card of its session: the first premium (a month's, or
/// the lump sum) is held at once and the card's phone is asked to approve product, insurer and
/// premium (a `policy` challenge).
pub async fn purchase_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    holder: PartyId,
    card: CardId,
    product: ProductId,
) -> InsuranceResult<PolicyView> {
    let product = products::get_product(txn, product).await?;
    if !product.active {
        return Err(InsuranceError::ProductUnavailable);
    }
    let commission_rate = products::commission_of(txn, product.insurer_id).await?;
    let premium = product.premium;
    let commission = premium.share_at(commission_rate)?;
    let terms = policy_terms(
        &product.name,
        product.payment_plan,
        premium,
        product.term_months,
        product.coverage_amount,
    );
    let (case, challenge) = escrow::open_case_in_txn(
        txn,
        core,
        OpenCase {
            vertical: VERTICAL,
            payer: holder,
            payer_card: card,
            payee: product.insurer_id,
            payee_name: product.insurer_name.clone(),
            amount: premium,
            commission,
            confirmation: ChallengePurpose::Policy,
            terms: Some(terms),
        },
    )
    .await?;
    let id = Uuid::now_v7();
    let now = core.clock.now();
    policies::Entity::insert(policies::ActiveModel {
        id: Set(id),
        product_id: Set(product.id.uuid()),
        insurer_party_id: Set(product.insurer_id.uuid()),
        service_company_party_id: Set(product.service_company_id.uuid()),
        holder_party_id: Set(holder.uuid()),
        card_id: Set(card.uuid()),
        policy_number: Set(None),
        state: Set(PolicyState::AwaitingConfirmation),
        product_name: Set(product.name.clone()),
        coverage_amount: Set(MinorUnits(product.coverage_amount.minor())),
        premium: Set(MinorUnits(premium.minor())),
        currency: Set(premium.currency().code().to_owned()),
        payment_plan: Set(product.payment_plan),
        term_months: Set(product.term_months),
        commission_bps: Set(commission_rate.get()),
        grace_days: Set(product.grace_days),
        free_look_days: Set(product.free_look_days),
        installments_collected: Set(1),
        first_case_id: Set(case.id.uuid()),
        certificate_status: Set(CertificateStatus::NotIssued),
        certificate_received_at: Set(None),
        certificate_delivered_at: Set(None),
        application_reference: Set(None),
        free_look_ends_at: Set(None),
        issued_at: Set(None),
        next_due_at: Set(None),
        overdue_installment: Set(None),
        grace_ends_at: Set(None),
        ended_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    premiums::Entity::insert(premiums::ActiveModel {
        id: Set(Uuid::now_v7()),
        policy_id: Set(id),
        installment: Set(1),
        case_id: Set(case.id.uuid()),
        due_at: Set(now),
        created_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    record_in_txn(
        txn,
        core,
        id,
        "applied",
        Some(format!(
            "{} from {}: first premium {premium} held, confirmation sent to the phone",
            product.name, product.insurer_name
        )),
    )
    .await?;
    // The phone's deadline is the core's; a second later this vertical settles the outcome.
    timers::schedule_in_txn(
        txn,
        &core.clock,
        CONFIRMATION_DEADLINE_TIMER,
        id,
        challenge.expires_at + Duration::seconds(1),
    )
    .await?;
    let row = get_row(txn, id).await?;
    view_of(txn, core, &row, holder).await
}

/// The insurer's decision at its recheck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recheck {
    /// Issue the policy: its number goes to the holder's phone.
    Issue,
    /// Decline: the first premium returns.
    Decline { reason: String },
}

fn reason_text(reason: &str) -> InsuranceResult<String> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(
            CoreError::invalid(format!("a reason has 1 to {MAX_REASON_CHARS} characters")).into(),
        );
    }
    Ok(reason.to_owned())
}

/// The insurer rechecks an application the holder approved: it issues the policy (a policy
/// number, texted to the holder; the service company is asked to deliver the certificate; the
/// monthly cycle starts) or declines it (the first premium returns).
pub async fn recheck_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    insurer: PartyId,
    policy: &PolicyRef,
    decision: Recheck,
) -> InsuranceResult<PolicyView> {
    let unlocked = find_row(txn, policy).await?;
    if unlocked.insurer_party_id != insurer.uuid() {
        return Err(CoreError::NotFound("policy").into());
    }
    let row = lock_row(txn, unlocked.id).await?;
    let mut case = escrow::lock_case_in_txn(txn, CaseId::from_uuid(row.first_case_id)).await?;
    match decision {
        Recheck::Issue => issue_in_txn(txn, core, row, &case).await?,
        Recheck::Decline { reason } => {
            let reason = reason_text(&reason)?;
            decline_in_txn(txn, core, row, &mut case, reason).await?
        }
    };
    let row = get_row(txn, unlocked.id).await?;
    view_of(txn, core, &row, insurer).await
}

async fn issue_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: policies::Model,
    case: &EscrowCase,
) -> InsuranceResult<policies::Model> {
    let to = row.state.issue()?;
    if case.state != CaseState::Frozen {
        return Err(CoreError::InvalidTransition {
            state: case.state.as_str(),
            action: "issue a policy on this premium",
        }
        .into());
    }
    // The application's number, on the phone since the purchase, becomes the policy's: one
    // number for the holder, the service company and the insurer's settlement requests.
    let number = case.order_number.clone();
    let now = core.clock.now();
    let free_look_ends_at = free_look_end_from(now, None, row.free_look_days);
    let mut active: policies::ActiveModel = row.clone().into();
    active.state = Set(to);
    active.policy_number = Set(Some(number.digits().to_owned()));
    active.issued_at = Set(Some(now));
    active.certificate_status = Set(CertificateStatus::AwaitingPickup);
    active.free_look_ends_at = Set(Some(free_look_ends_at));
    let issued = save_in_txn(txn, core, active).await?;
    timers::cancel_in_txn(txn, RECHECK_DEADLINE_TIMER, row.id).await?;
    let issued = crate::cycle::schedule_next_in_txn(txn, core, issued).await?;
    record_in_txn(
        txn,
        core,
        row.id,
        "issued",
        Some(format!(
            "policy number {number} issued after the insurer's recheck"
        )),
    )
    .await?;
    text_holder_in_txn(
        txn,
        core,
        &issued,
        format!(
            "Holdfast: {} issued your policy {number} ({}). Keep this number: hand it to the \
             service company with your signed application when your certificate arrives. You \
             may cancel with every premium returned until {} days after it arrives, and until \
             {} UTC at the latest.",
            case.payee_name,
            issued.product_name,
            issued.free_look_days,
            free_look_ends_at.format("%Y-%m-%d %H:%M")
        ),
    )
    .await?;
    publish_in_txn(
        txn,
        core,
        issued.insurer_party_id,
        "policy.issued",
        serde_json::json!({
            "policy_id": issued.id,
            "policy_number": number,
            "product_name": issued.product_name,
        }),
    )
    .await?;
    let card = cards::get_card(txn, CardId::from_uuid(issued.card_id)).await?;
    publish_in_txn(
        txn,
        core,
        issued.service_company_party_id,
        "certificate.requested",
        serde_json::json!({
            "policy_number": number,
            "product_name": issued.product_name,
            "insurer_name": case.payee_name,
            "destination": destination_of(&card),
        }),
    )
    .await?;
    Ok(issued)
}

fn destination_of(card: &cards::Card) -> String {
    card.delivery_address
        .clone()
        .unwrap_or_else(|| "collection at the service company".to_owned())
}

async fn decline_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: policies::Model,
    case: &mut EscrowCase,
    reason: String,
) -> InsuranceResult<policies::Model> {
    let to = row.state.decline()?;
    escrow::withdraw_in_txn(
        txn,
        core,
        case,
        format!("declined by the insurer: {reason}"),
    )
    .await?;
    let mut active: policies::ActiveModel = row.clone().into();
    active.state = Set(to);
    active.ended_at = Set(Some(core.clock.now()));
    let declined = save_in_txn(txn, core, active).await?;
    timers::cancel_in_txn(txn, RECHECK_DEADLINE_TIMER, row.id).await?;
    record_in_txn(txn, core, row.id, "declined", Some(reason)).await?;
    text_holder_in_txn(
        txn,
        core,
        &declined,
        format!(
            "Holdfast: {} declined your application for {}; {} returned to you.",
            case.payee_name, declined.product_name, case.amount
        ),
    )
    .await?;
    Ok(declined)
}

/// What this vertical does when the phone answered one of its premiums' confirmations: an
/// approved application goes to the insurer's recheck, a denied one ends; a settled or
/// disputed premium goes on the timeline and to the insurer.
///
/// The caller locked the policy before the case ([`crate::hooks::lock_answer_subject_in_txn`]).
/// Only the application's outcomes write the policy, and lock it (again, at no cost); a
/// premium's settlement or dispute only reads what its issue fixed (number, insurer, term), so
/// it takes no lock at all — even a caller that forgot the pre-lock cannot turn the lock order
/// round there. A premium settled without an answer (the settlement period ended) or through
/// an operator's mediation does not come here: its state in the policy view and timeline is
/// its case's, and the insurer hears of it from the core's `order.settled` or
/// `dispute.mediated` event (with the premium's order number), not from `premium.settled`.
pub async fn after_answer_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &EscrowCase,
    outcome: escrow::CaseOutcome,
) -> InsuranceResult<()> {
    use escrow::CaseOutcome;
    if case.vertical != VERTICAL {
        return Ok(());
    }
    let Some(premium) = premium_of_case(txn, case.id).await? else {
        return Ok(());
    };
    let row = match outcome {
        CaseOutcome::OrderApproved | CaseOutcome::OrderDenied => {
            lock_row(txn, premium.policy_id).await?
        }
        CaseOutcome::Settled | CaseOutcome::Disputed => get_row(txn, premium.policy_id).await?,
    };
    match outcome {
        CaseOutcome::OrderApproved if row.state == PolicyState::AwaitingConfirmation => {
            let to = row.state.confirm()?;
            let mut active: policies::ActiveModel = row.clone().into();
            active.state = Set(to);
            save_in_txn(txn, core, active).await?;
            timers::cancel_in_txn(txn, CONFIRMATION_DEADLINE_TIMER, row.id).await?;
            timers::schedule_in_txn(
                txn,
                &core.clock,
                RECHECK_DEADLINE_TIMER,
                row.id,
                core.clock.now() + Duration::days(RECHECK_DAYS),
            )
            .await?;
            record_in_txn(
                txn,
                core,
                row.id,
                "confirmed",
                Some("approved on the phone; sent to the insurer for its recheck".to_owned()),
            )
            .await?;
            let card = cards::get_card(txn, CardId::from_uuid(row.card_id)).await?;
            publish_in_txn(
                txn,
                core,
                row.insurer_party_id,
                "policy.applied",
                serde_json::json!({
                    "policy_id": row.id,
                    "product_id": row.product_id,
                    "product_name": row.product_name,
                    "premium": case.amount,
                    "card": card.number.masked(),
                    "recheck_by": core.clock.now() + Duration::days(RECHECK_DAYS),
                }),
            )
            .await?;
        }
        CaseOutcome::OrderDenied if row.state == PolicyState::AwaitingConfirmation => {
            let to = row.state.not_taken()?;
            let mut active: policies::ActiveModel = row.clone().into();
            active.state = Set(to);
            active.ended_at = Set(Some(core.clock.now()));
            save_in_txn(txn, core, active).await?;
            timers::cancel_in_txn(txn, CONFIRMATION_DEADLINE_TIMER, row.id).await?;
            record_in_txn(
                txn,
                core,
                row.id,
                "not_taken",
                Some(format!("denied on the phone; {} returned", case.amount)),
            )
            .await?;
        }
        CaseOutcome::Settled => {
            record_in_txn(
                txn,
                core,
                row.id,
                "premium_settled",
                Some(format!(
                    "premium {} of {}: {} released to the insurer",
                    premium.installment,
                    total_installments(&row),
                    case.amount_to_settle()
                )),
            )
            .await?;
            publish_in_txn(
                txn,
                core,
                row.insurer_party_id,
                "premium.settled",
                serde_json::json!({
                    "policy_number": row.policy_number,
                    "installment": premium.installment,
                    "order_number": case.order_number,
                    "amount": case.amount_to_settle(),
                }),
            )
            .await?;
        }
        CaseOutcome::Disputed => {
            record_in_txn(
                txn,
                core,
                row.id,
                "premium_disputed",
                Some(format!(
                    "premium {}: the holder denied the settlement; an operator mediates",
                    premium.installment
                )),
            )
            .await?;
            publish_in_txn(
                txn,
                core,
                row.insurer_party_id,
                "premium.disputed",
                serde_json::json!({
                    "policy_number": row.policy_number,
                    "installment": premium.installment,
                    "order_number": case.order_number,
                }),
            )
            .await?;
        }
        _ => {}
    }
    Ok(())
}

/// The application's phone deadline passed: if the core expired the first premium (or must
/// now), the application is not taken.
pub(crate) async fn confirmation_deadline_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    policy: Uuid,
) -> InsuranceResult<()> {
    let row = lock_row(txn, policy).await?;
    let case_id = CaseId::from_uuid(row.first_case_id);
    let case = escrow::lock_case_in_txn(txn, case_id).await?;
    if case.state == CaseState::AwaitingOrderConfirmation {
        // The core's own deadline timer may not have run yet: it is idempotent, run it now.
        escrow::fire_timer_in_txn(txn, core, escrow::ORDER_DEADLINE_TIMER, case_id.uuid()).await?;
    }
    let case = escrow::get_case(txn, case_id).await?;
    if row.state == PolicyState::AwaitingConfirmation
        && matches!(
            case.state,
            CaseState::Expired | CaseState::Denied | CaseState::Cancelled
        )
    {
        let to = row.state.not_taken()?;
        let mut active: policies::ActiveModel = row.clone().into();
        active.state = Set(to);
        active.ended_at = Set(Some(core.clock.now()));
        save_in_txn(txn, core, active).await?;
        record_in_txn(
            txn,
            core,
            policy,
            "not_taken",
            Some(format!(
                "not confirmed on the phone in time; {} returned",
                case.amount
            )),
        )
        .await?;
    }
    Ok(())
}

/// The insurer did not recheck in time: the application is declined and the premium returns.
pub(crate) async fn recheck_deadline_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    policy: Uuid,
) -> InsuranceResult<()> {
    let row = lock_row(txn, policy).await?;
    let mut case = escrow::lock_case_in_txn(txn, CaseId::from_uuid(row.first_case_id)).await?;
    if row.state == PolicyState::AwaitingRecheck {
        decline_in_txn(
            txn,
            core,
            row,
            &mut case,
            format!("the insurer did not recheck the application within {RECHECK_DAYS} days"),
        )
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Certificate and documents (the service company)
// ---------------------------------------------------------------------------------------

async fn service_row_in_txn(
    txn: &DatabaseTransaction,
    service: PartyId,
    number: &OrderNumber,
) -> InsuranceResult<policies::Model> {
    let row = find_row(txn, &PolicyRef::Number(number.clone())).await?;
    if row.service_company_party_id != service.uuid() {
        return Err(CoreError::NotFound("policy").into());
    }
    lock_row(txn, row.id).await
}

fn task_of(row: &policies::Model, insurer_name: String, card: &cards::Card) -> CertificateTask {
    CertificateTask {
        policy_number: OrderNumber::from_stored(row.policy_number.clone().unwrap_or_default()),
        product_name: row.product_name.clone(),
        insurer_name,
        certificate_status: row.certificate_status,
        destination: destination_of(card),
        issued_at: row.issued_at,
        certificate_delivered_at: row.certificate_delivered_at,
    }
}

async fn task_view(
    db: &impl ConnectionTrait,
    row: &policies::Model,
) -> InsuranceResult<CertificateTask> {
    let insurer = parties::get_party(db, PartyId::from_uuid(row.insurer_party_id)).await?;
    let card = cards::get_card(db, CardId::from_uuid(row.card_id)).await?;
    Ok(task_of(row, insurer.display_name, &card))
}

/// The certificates a service company has to fetch or deliver, oldest first.
pub async fn certificates_of(
    db: &impl ConnectionTrait,
    service: PartyId,
    limit: u64,
) -> InsuranceResult<Vec<CertificateTask>> {
    let rows = policies::Entity::find()
        .filter(policies::Column::ServiceCompanyPartyId.eq(service.uuid()))
        .filter(
            Condition::any()
                .add(policies::Column::CertificateStatus.eq(CertificateStatus::AwaitingPickup))
                .add(policies::Column::CertificateStatus.eq(CertificateStatus::WithServiceCompany)),
        )
        .order_by_asc(policies::Column::IssuedAt)
        .limit(limit.clamp(1, MAX_PAGE))
        .all(db)
        .await?;
    let mut list = Vec::with_capacity(rows.len());
    for row in &rows {
        list.push(task_view(db, row).await?);
    }
    Ok(list)
}

/// The service company has fetched the certificate from the insurer.
pub async fn receive_certificate_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    service: PartyId,
    number: &OrderNumber,
) -> InsuranceResult<CertificateTask> {
    let row = service_row_in_txn(txn, service, number).await?;
    if row.certificate_status != CertificateStatus::AwaitingPickup {
        return Err(InsuranceError::CertificateState {
            status: row.certificate_status.as_str(),
            action: "receive the certificate",
        });
    }
    let mut active: policies::ActiveModel = row.clone().into();
    active.certificate_status = Set(CertificateStatus::WithServiceCompany);
    active.certificate_received_at = Set(Some(core.clock.now()));
    let row = save_in_txn(txn, core, active).await?;
    record_in_txn(
        txn,
        core,
        row.id,
        "certificate_received",
        Some("the service company fetched the certificate from the insurer".to_owned()),
    )
    .await?;
    publish_in_txn(
        txn,
        core,
        row.insurer_party_id,
        "certificate.received",
        serde_json::json!({"policy_number": number}),
    )
    .await?;
    task_view(txn, &row).await
}

/// The service company delivered the certificate and collected, from the holder, the signed
/// application and the policy number: it records both, and the number the holder handed over
/// must be the policy's own (the one issued and texted to the holder), or the documents are
/// another policy's. The free-look period starts now (or started at the delivery deadline, if
/// that passed: a late delivery does not open it again), and the insurer may from now on ask
/// to be paid.
pub async fn record_documents_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    service: PartyId,
    number: &OrderNumber,
    handed_over: &OrderNumber,
    application_reference: &str,
) -> InsuranceResult<CertificateTask> {
    let reference = application_reference.trim();
    if reference.is_empty()
        || reference.chars().count() > MAX_APPLICATION_REFERENCE_CHARS
        || reference.chars().any(char::is_control)
    {
        return Err(InsuranceError::ApplicationReference {
            max: MAX_APPLICATION_REFERENCE_CHARS,
        });
    }
    let row = service_row_in_txn(txn, service, number).await?;
    if row.policy_number.as_deref() != Some(handed_over.digits()) {
        return Err(InsuranceError::HandedOverNumber);
    }
    if !matches!(
        row.certificate_status,
        CertificateStatus::AwaitingPickup | CertificateStatus::WithServiceCompany
    ) {
        return Err(InsuranceError::CertificateState {
            status: row.certificate_status.as_str(),
            action: "record the delivery",
        });
    }
    if !row.state.settles() {
        return Err(row.state.refuse("record the delivery"));
    }
    let now = core.clock.now();
    let free_look_ends_at =
        free_look_end_from(row.issued_at.unwrap_or(now), Some(now), row.free_look_days);
    let free_look = if now < free_look_ends_at {
        format!(
            "You may cancel it with every premium returned until {} UTC.",
            free_look_ends_at.format("%Y-%m-%d %H:%M")
        )
    } else {
        format!(
            "Its free-look period ended on {} UTC: it started {CERTIFICATE_DELIVERY_DAYS} days \
             after the policy was issued, without the certificate.",
            free_look_ends_at.format("%Y-%m-%d %H:%M")
        )
    };
    let mut active: policies::ActiveModel = row.clone().into();
    if row.certificate_received_at.is_none() {
        active.certificate_received_at = Set(Some(now));
    }
    active.certificate_status = Set(CertificateStatus::Delivered);
    active.certificate_delivered_at = Set(Some(now));
    active.application_reference = Set(Some(reference.to_owned()));
    active.free_look_ends_at = Set(Some(free_look_ends_at));
    let row = save_in_txn(txn, core, active).await?;
    record_in_txn(
        txn,
        core,
        row.id,
        "documents_recorded",
        Some(format!(
            "certificate delivered; signed application {reference} and the policy number \
             collected; free-look until {} UTC",
            free_look_ends_at.format("%Y-%m-%d %H:%M")
        )),
    )
    .await?;
    text_holder_in_txn(
        txn,
        core,
        &row,
        format!(
            "Holdfast: the certificate of policy {number} was delivered and your signed \
             application collected. {free_look}"
        ),
    )
    .await?;
    publish_in_txn(
        txn,
        core,
        row.insurer_party_id,
        "policy.documents_recorded",
        serde_json::json!({
            "policy_number": number,
            "application_reference": reference,
            "delivered_at": now,
            "free_look_ends_at": free_look_ends_at,
        }),
    )
    .await?;
    task_view(txn, &row).await
}

// ---------------------------------------------------------------------------------------
// Settlement (the insurer)
// ---------------------------------------------------------------------------------------

/// The insurer quotes the policy number to be paid a premium (the oldest one held, or the
/// installment named): the holder's phone is asked to release it, and without an answer it is
/// released when the settlement period ends. Not before the certificate and the signed
/// application are recorded.
pub async fn request_settlement_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    insurer: PartyId,
    number: &OrderNumber,
    installment: Option<i32>,
) -> InsuranceResult<PolicyView> {
    let unlocked = find_row(txn, &PolicyRef::Number(number.clone())).await?;
    if unlocked.insurer_party_id != insurer.uuid() {
        return Err(CoreError::NotFound("policy").into());
    }
    let row = lock_row(txn, unlocked.id).await?;
    if !row.state.settles() {
        return Err(row.state.refuse("request settlement"));
    }
    if row.certificate_status != CertificateStatus::Delivered {
        return Err(InsuranceError::DocumentsMissing);
    }
    let mut chosen = None;
    for premium in premiums_of(txn, row.id).await? {
        if installment.is_some_and(|n| n != premium.installment) {
            continue;
        }
        let case = escrow::get_case(txn, CaseId::from_uuid(premium.case_id)).await?;
        if case.state == CaseState::Frozen {
            chosen = Some(premium);
            break;
        }
    }
    let premium = chosen.ok_or(InsuranceError::NothingToSettle)?;
    let mut case = escrow::lock_case_in_txn(txn, CaseId::from_uuid(premium.case_id)).await?;
    if case.state != CaseState::Frozen {
        // Whatever changes a held premium takes the policy first, which is locked: a guard.
        return Err(InsuranceError::NothingToSettle);
    }
    // What the phone is told of the delivery: the certificate's, handed over with the number.
    case.delivered_at = row.certificate_delivered_at;
    escrow::request_settlement_in_txn(txn, core, &mut case, insurer, None).await?;
    record_in_txn(
        txn,
        core,
        row.id,
        "premium_settlement_requested",
        Some(format!(
            "premium {} of {} ({}): the insurer asked to be paid",
            premium.installment,
            total_installments(&row),
            case.amount
        )),
    )
    .await?;
    view_of(txn, core, &row, insurer).await
}

// ---------------------------------------------------------------------------------------
// Free-look cancellation (the holder)
// ---------------------------------------------------------------------------------------

/// What a free-look cancellation did.
#[derive(Debug)]
pub enum CancelOutcome {
    Cancelled(Box<Cancellation>),
    /// A premium paid to the insurer could not be taken back: its money has left the
    /// insurer's account (or the platform's), and the platform cannot return what it does not
    /// hold. Nothing moved; the attempt is on the policy's timeline — so the right it exercised
    /// outlives the period — and the insurer was told what to return. Commit, then report.
    Blocked(InsuranceError),
}

/// The holder cancels within the free-look period (or, before the issue, while the insurer
/// rechecks): every premium returns to the card's funding source — held ones are released,
/// settled ones taken back from the insurer (and the platform's commission and any card fee
/// with them), ones awaiting settlement withdrawn. If a settled premium has since been paid
/// out of the insurer's account, nothing moves ([`CancelOutcome::Blocked`]); the holder may
/// ask again once the insurer has returned it, even after the period, since it asked in time.
pub async fn cancel_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    holder: PartyId,
    policy: &PolicyRef,
) -> InsuranceResult<CancelOutcome> {
    let unlocked = find_row(txn, policy).await?;
    if unlocked.holder_party_id != holder.uuid() {
        return Err(CoreError::NotFound("policy").into());
    }
    // The policy first: the cycle collects a premium only under this lock, so the premiums
    // read now are all there are.
    let row = lock_row(txn, unlocked.id).await?;
    let premiums = premiums_of(txn, row.id).await?;
    let mut cases = Vec::with_capacity(premiums.len());
    for premium in &premiums {
        cases.push(escrow::lock_case_in_txn(txn, CaseId::from_uuid(premium.case_id)).await?);
    }
    let to = row.state.cancel()?;
    let now = core.clock.now();
    if let Some(ends) = free_look_end(&row)
        && now >= ends
        && !blocked_before_in_txn(txn, row.id, ends).await?
    {
        return Err(InsuranceError::FreeLookEnded { ended_at: ends });
    }
    let currency = Currency::from_str(&row.currency)?;
    let reason = format!("free-look cancellation of policy {}", number_of(&row));
    // In a savepoint: a premium that cannot be taken back undoes what the others returned.
    let savepoint = txn.begin().await?;
    let returned =
        match return_premiums_in_txn(&savepoint, core, &premiums, &mut cases, currency, &reason)
            .await
        {
            Ok(returned) => {
                savepoint.commit().await?;
                returned
            }
            Err(InsuranceError::PremiumPaidOut {
                installment,
                amount,
            }) => {
                savepoint.rollback().await?;
                return blocked_in_txn(txn, core, &row, installment, amount).await;
            }
            Err(error) => return Err(error),
        };
    let mut active: policies::ActiveModel = row.clone().into();
    active.state = Set(to);
    active.ended_at = Set(Some(now));
    active.next_due_at = Set(None);
    active.grace_ends_at = Set(None);
    let row = save_in_txn(txn, core, active).await?;
    for kind in [
        RECHECK_DEADLINE_TIMER,
        crate::cycle::PREMIUM_DUE_TIMER,
        crate::cycle::GRACE_END_TIMER,
        crate::cycle::TERM_END_TIMER,
    ] {
        timers::cancel_in_txn(txn, kind, row.id).await?;
    }
    record_in_txn(
        txn,
        core,
        row.id,
        "cancelled",
        Some(format!("free-look cancellation: {returned} returned")),
    )
    .await?;
    text_holder_in_txn(
        txn,
        core,
        &row,
        format!(
            "Holdfast: policy {} cancelled within the free-look period; {returned} returned to you.",
            number_of(&row)
        ),
    )
    .await?;
    publish_in_txn(
        txn,
        core,
        row.insurer_party_id,
        "policy.cancelled",
        serde_json::json!({
            "policy_id": row.id,
            "policy_number": row.policy_number,
            "returned": returned,
            "reason": "free_look",
        }),
    )
    .await?;
    Ok(CancelOutcome::Cancelled(Box::new(Cancellation {
        policy: view_of(txn, core, &row, holder).await?,
        returned,
    })))
}

/// Returns every premium of a cancelled policy to the holder; what came back.
async fn return_premiums_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    premiums: &[premiums::Model],
    cases: &mut [EscrowCase],
    currency: Currency,
    reason: &str,
) -> InsuranceResult<Money> {
    let mut returned = Money::zero(currency);
    for (premium, case) in premiums.iter().zip(cases.iter_mut()) {
        let back = match case.state {
            // Held, or asked for but not yet paid: the whole hold returns, and a pending
            // settlement confirmation is voided with its auto-settlement.
            CaseState::AwaitingOrderConfirmation
            | CaseState::Frozen
            | CaseState::InDelivery
            | CaseState::Delivered
            | CaseState::SettlementRequested => {
                escrow::withdraw_cooling_off_in_txn(txn, core, case, reason.to_owned()).await?;
                case.amount
            }
            // The holder denied a settlement: the cancellation right decides the dispute.
            CaseState::Disputed => refund_in_full_in_txn(txn, core, case, reason).await?.refund,
            // Paid: taken back from the insurer, the platform and any card institution — as
            // long as they still hold it; the ledger lets no account go below zero.
            CaseState::Settled => {
                match escrow::reverse_settlement_in_txn(txn, core, case, reason.to_owned()).await {
                    Ok(back) => back,
                    Err(CoreError::InsufficientFunds { .. }) => {
                        return Err(InsuranceError::PremiumPaidOut {
                            installment: premium.installment,
                            amount: case.amount_to_settle(),
                        });
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            // Already back with the holder (or never taken).
            CaseState::Denied
            | CaseState::Expired
            | CaseState::Cancelled
            | CaseState::Refunded
            | CaseState::Refused => Money::zero(currency),
        };
        returned = returned.checked_add(&back)?;
    }
    Ok(returned)
}

/// The policy's timeline line that records a cancellation blocked by a premium paid out.
const CANCELLATION_BLOCKED: &str = "cancellation_blocked";

/// Whether the holder asked to cancel before `ends` and was blocked by a premium paid out.
async fn blocked_before_in_txn(
    txn: &DatabaseTransaction,
    policy: Uuid,
    ends: DateTime<Utc>,
) -> InsuranceResult<bool> {
    Ok(policy_events::Entity::find()
        .filter(policy_events::Column::PolicyId.eq(policy))
        .filter(policy_events::Column::Kind.eq(CANCELLATION_BLOCKED))
        .filter(policy_events::Column::At.lt(ends))
        .one(txn)
        .await?
        .is_some())
}

/// Records a cancellation a paid-out premium blocked, and tells the insurer what to return.
async fn blocked_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    row: &policies::Model,
    installment: i32,
    amount: Money,
) -> InsuranceResult<CancelOutcome> {
    record_in_txn(
        txn,
        core,
        row.id,
        CANCELLATION_BLOCKED,
        Some(format!(
            "free-look cancellation asked for; premium {installment} ({amount}) was paid out \
             and must be returned first"
        )),
    )
    .await?;
    publish_in_txn(
        txn,
        core,
        row.insurer_party_id,
        "policy.cancellation_blocked",
        serde_json::json!({
            "policy_number": row.policy_number,
            "installment": installment,
            "amount": amount,
            "requested_at": core.clock.now(),
        }),
    )
    .await?;
    Ok(CancelOutcome::Blocked(InsuranceError::PremiumPaidOut {
        installment,
        amount,
    }))
}

async fn refund_in_full_in_txn(
    txn: &DatabaseTransaction,
    core: &Core,
    case: &mut EscrowCase,
    reason: &str,
) -> InsuranceResult<PayoutSplit> {
    Ok(escrow::mediate_in_txn(
        txn,
        core,
        case,
        Mediation {
            to_seller: Money::zero(case.amount.currency()),
            penalty: None,
            note: reason.to_owned(),
        },
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::PolicyState::*;
    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn premiums_fall_due_on_the_issue_day_or_the_last_day_of_a_shorter_month() {
        // Each due date counts whole months from the issue, never from the previous due date,
        // so a short month does not pull the rest of the year earlier.
        let issued = utc(2027, 1, 31, 10, 0);
        let days: Vec<u32> = (1..=13)
            .map(|n| {
                let due = due_date(issued, n);
                assert_eq!(due.time(), issued.time(), "installment {n}");
                chrono::Datelike::day(&due)
            })
            .collect();
        assert_eq!(
            days,
            [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 31],
            "from 31 January 2027"
        );
        assert_eq!(
            due_date(utc(2028, 1, 31, 10, 0), 2),
            utc(2028, 2, 29, 10, 0)
        );
        assert_eq!(
            due_date(utc(2028, 1, 30, 10, 0), 2),
            utc(2028, 2, 29, 10, 0)
        );
        assert_eq!(
            due_date(utc(2027, 1, 29, 10, 0), 2),
            utc(2027, 2, 28, 10, 0)
        );
        assert_eq!(
            due_date(utc(2027, 1, 29, 10, 0), 3),
            utc(2027, 3, 29, 10, 0)
        );
    }

    #[test]
    fn a_leap_day_issue_falls_due_on_the_29th_and_on_28_february_in_common_years() {
        let issued = utc(2028, 2, 29, 8, 0);
        assert_eq!(due_date(issued, 2), utc(2028, 3, 29, 8, 0));
        assert_eq!(due_date(issued, 12), utc(2029, 1, 29, 8, 0));
        assert_eq!(due_date(issued, 13), utc(2029, 2, 28, 8, 0));
        let issued = utc(2027, 2, 28, 8, 0);
        assert_eq!(due_date(issued, 2), utc(2027, 3, 28, 8, 0));
        assert_eq!(due_date(issued, 13), utc(2028, 2, 28, 8, 0));
    }

    #[test]
    fn an_issue_just_before_new_year_falls_due_at_the_same_minute_of_each_month_end() {
        let issued = utc(2026, 12, 31, 23, 59);
        assert_eq!(due_date(issued, 1), issued);
        assert_eq!(due_date(issued, 2), utc(2027, 1, 31, 23, 59));
        assert_eq!(due_date(issued, 3), utc(2027, 2, 28, 23, 59));
        assert_eq!(due_date(issued, 4), utc(2027, 3, 31, 23, 59));
        assert_eq!(due_date(issued, 5), utc(2027, 4, 30, 23, 59));
        assert_eq!(due_date(issued, 13), utc(2027, 12, 31, 23, 59));
    }

    #[test]
    fn due_dates_never_go_backwards_and_are_a_month_apart_at_most_by_the_calendar() {
        // Every start minute-of-month edge over four years: installments strictly increase and
        // each lies 28 to 31 days after the one before.
        let mut issued = utc(2026, 1, 1, 0, 0);
        while issued < utc(2030, 1, 1, 0, 0) {
            for n in 1..=24 {
                let (this, next) = (due_date(issued, n), due_date(issued, n + 1));
                let gap = (next - this).num_days();
                assert!((28..=31).contains(&gap), "{issued} #{n}: {gap} days");
            }
            issued += Duration::days(1) + Duration::hours(7);
        }
    }

    #[test]
    fn a_policy_runs_from_application_to_maturity() {
        let state = AwaitingConfirmation.confirm().unwrap();
        assert_eq!(state, AwaitingRecheck);
        let state = state.issue().unwrap();
        assert_eq!(state, InForce);
        assert_eq!(state.miss_premium().unwrap().cure().unwrap(), InForce);
        assert_eq!(state.mature().unwrap(), Matured);
    }

    #[test]
    fn a_missed_premium_lapses_only_through_grace() {
        assert!(InForce.lapse().is_err());
        assert_eq!(InForce.miss_premium().unwrap().lapse().unwrap(), Lapsed);
    }

    #[test]
    fn final_states_accept_no_transition() {
        for state in [Lapsed, Matured, Cancelled, Declined, NotTaken] {
            assert!(state.is_final());
            assert!(state.confirm().is_err());
            assert!(state.issue().is_err());
            assert!(state.cancel().is_err());
            assert!(state.miss_premium().is_err());
            assert!(state.cure().is_err());
        }
    }

    #[test]
    fn the_holder_may_cancel_only_a_living_policy() {
        assert!(AwaitingConfirmation.cancel().is_err());
        assert_eq!(AwaitingRecheck.cancel().unwrap(), Cancelled);
        assert_eq!(InForce.cancel().unwrap(), Cancelled);
        assert_eq!(Grace.cancel().unwrap(), Cancelled);
    }

    #[test]
    fn premiums_fall_due_a_calendar_month_apart() {
        let issued = DateTime::parse_from_rfc3339("2026-01-31T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(due_date(issued, 1), issued);
        assert_eq!(
            due_date(issued, 2).to_rfc3339(),
            "2026-02-28T10:00:00+00:00"
        );
        assert_eq!(
            due_date(issued, 13).to_rfc3339(),
            "2027-01-31T10:00:00+00:00"
        );
    }

    #[test]
    fn the_free_look_starts_at_the_delivery_or_at_the_delivery_deadline_whichever_comes_first() {
        let issued = DateTime::parse_from_rfc3339("2026-01-31T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let days = Duration::days;
        assert_eq!(
            free_look_end_from(issued, Some(issued + days(3)), 15),
            issued + days(18)
        );
        // Never delivered: it starts at the deadline, not never.
        assert_eq!(free_look_end_from(issued, None, 15), issued + days(45));
        // Delivered after the deadline: it does not start again.
        assert_eq!(
            free_look_end_from(issued, Some(issued + days(300)), 30),
            issued + days(60)
        );
    }

    #[test]
    fn a_policy_is_named_by_id_or_number() {
        let id = Uuid::now_v7();
        assert_eq!(
            PolicyRef::from_str(&id.to_string()).unwrap(),
            PolicyRef::Id(id)
        );
        let number = OrderNumber::generate();
        assert_eq!(
            PolicyRef::from_str(&number.to_string()).unwrap(),
            PolicyRef::Number(number)
        );
        assert!(PolicyRef::from_str("1234").is_err());
    }
}
