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

mod cancellation;
mod certificates;
mod purchase;
mod rows;
mod settlement;

pub use cancellation::*;
pub use certificates::*;
pub use purchase::*;
pub use rows::*;
pub use settlement::*;

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
