//! The prescription's workflow, as a pure state machine. Money has its own machine (the escrow
//! case: held, settled, disputed…); the prescription follows it where the two meet (a
//! confirmed payment makes it `paid`, a settled case `settled`).
//!
//! ```text
//!            ┌──────────── hand back (claim secret deleted) ◄───────────────┐
//!            ▼                                                               │
//!  issued ──ask to open──► awaiting_consent ──patient approves──► claimed ──price──► priced
//!    │  ▲                       │ deny / lapse                      ▲                │
//!    │  └───────────────────────┘                                   │   patient picks│
//!    └─(patient's choice at prescribing)─► routed ──drugstore claims┘   a payment    ▼
//!                                                          card: payment_pending ─► paid
//!                                                          cash: ─────────────────► paid
//!  paid ──dispense (never twice)──► dispensed ──escrow settles (or cash)──► settled
//!  before dispensing: prescriber cancels ─► cancelled;  validity ends ─► expired
//! ```

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
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
pub enum PrescriptionState {
    /// In the pool: any member drugstore may ask the patient to open it.
    Issued,
    /// Sent to the drugstore the patient chose when it was prescribed.
    Routed,
    /// A drugstore asked to open it; the patient's phone is asked.
    AwaitingConsent,
    /// One drugstore holds it (and the claim secret).
    Claimed,
    /// The drugstore set the price.
    Priced,
    /// The patient chose to pay by card; the phone is asked to confirm the exact amount.
    PaymentPending,
    /// Paid: held in escrow, or to be paid in cash at the counter.
    Paid,
    /// Handed over to the patient (or delivered to the hospital).
    Dispensed,
    /// The drugstore was paid.
    Settled,
    /// Cancelled by the prescriber before dispensing.
    Cancelled,
    /// Its validity ended before dispensing.
    Expired,
}

impl PrescriptionState {
    pub fn as_str(self) -> &'static str {
        match self {
            PrescriptionState::Issued => "issued",
            PrescriptionState::Routed => "routed",
            PrescriptionState::AwaitingConsent => "awaiting_consent",
            PrescriptionState::Claimed => "claimed",
            PrescriptionState::Priced => "priced",
            PrescriptionState::PaymentPending => "payment_pending",
            PrescriptionState::Paid => "paid",
            PrescriptionState::Dispensed => "dispensed",
            PrescriptionState::Settled => "settled",
            PrescriptionState::Cancelled => "cancelled",
            PrescriptionState::Expired => "expired",
        }
    }

    /// Nothing more can happen to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PrescriptionState::Settled | PrescriptionState::Cancelled | PrescriptionState::Expired
        )
    }

    /// Not yet handed over: it can still be cancelled, and it can still expire.
    pub fn is_undispensed(self) -> bool {
        matches!(
            self,
            PrescriptionState::Issued
                | PrescriptionState::Routed
                | PrescriptionState::AwaitingConsent
                | PrescriptionState::Claimed
                | PrescriptionState::Priced
                | PrescriptionState::PaymentPending
                | PrescriptionState::Paid
        )
    }

    /// A drugstore holds the claim (and its secret is live).
    pub fn is_claimed(self) -> bool {
        matches!(
            self,
            PrescriptionState::Claimed
                | PrescriptionState::Priced
                | PrescriptionState::PaymentPending
                | PrescriptionState::Paid
                | PrescriptionState::Dispensed
                | PrescriptionState::Settled
        )
    }

    fn refuse(self, action: &'static str) -> TransitionError {
        TransitionError {
            state: self,
            action,
        }
    }

    /// A drugstore asks the patient to let it open the prescription.
    pub fn request_open(self) -> Result<PrescriptionState, TransitionError> {
        match self {
            PrescriptionState::Issued => Ok(PrescriptionState::AwaitingConsent),
            _ => Err(self.refuse("ask to open it")),
        }
    }

    /// The patient approved on the phone: the asking drugstore holds it.
    pub fn consent(self) -> Result<PrescriptionState, TransitionError> {
        match self {
            PrescriptionState::AwaitingConsent => Ok(PrescriptionState::Claimed),
            _ => Err(self.refuse("open it")),
        }
    }

    /// The patient denied, or did not answer in time: back to the pool.
    pub fn refuse_consent(self) -> Result<PrescriptionState, TransitionError> {
        match self {
            PrescriptionState::AwaitingConsent => Ok(PrescriptionState::Issued),
            _ => Err(self.refuse("withdraw the request to open it")),
        }
    }

    /// The drugstore the patient chose takes it (its standing consent is the patient's choice).
    pub fn claim_routed(self) -> Result<PrescriptionState, TransitionError> {
        match self {
            PrescriptionState::Routed => Ok(PrescriptionState::Claimed),
            _ => Err(self.refuse("claim it")),
        }
    }

    /// The holder gives it back to the pool (before dispensing; any payment is voided).
    pub fn hand_back(self) -> Result<PrescriptionState, TransitionError> {
        match self {
            PrescriptionState::Claimed
            | PrescriptionState::Priced
            | PrescriptionState::PaymentPending
            | PrescriptionState::Paid => Ok(PrescriptionState::Issued),
            _ => Err(self.refuse("hand it back")),
        }
    }

    /// The holder sets (or, before any payment, changes) the price.
    pub fn price(self) -> Result<PrescriptionState, TransitionError> {
        match self {
            PrescriptionState::Claimed | PrescriptionState::Priced => Ok(PrescriptionState::Priced),
            _ => Err(self.refuse("price it")),
        }
    }

    /// The patient chose to pay by card: the phone is asked to confirm the amount.
    pub fn choose_card_payment(self) -> Result<PrescriptionState, TransitionError> {
        match self {
            PrescriptionState::Priced => Ok(PrescriptionState::PaymentPending),
            _ => Err(self.refuse("pay for it")),
        }
    }

    /// The patient chose to pay in cash at the counter: nothing is held.
    pub fn choose_cash(self) -> Result<PrescriptionState, TransitionError> {
        match self {
            PrescriptionState::Priced => Ok(PrescriptionState::Paid),
            _ => Err(self.refuse("pay for it")),
        }
    }

    /// The patient approved the payment on the phone: the money is held.
    pub fn confirm_payment(self) -> Result<PrescriptionState, TransitionError> {
        match self {
            PrescriptionState::PaymentPending => Ok(PrescriptionState::Paid),
            _ => Err(self.refuse("confirm the payment")),
        }
    }

    /// The payment was denied, or not confirmed in time: the price stands, nothing is held.
    pub fn lapse_payment(self) -> Result<PrescriptionState, TransitionError> {
        match self {
            PrescriptionState::PaymentPending => Ok(PrescriptionState::Priced),
            _ => Err(self.refuse("drop the payment")),
        }
    }

    /// Handed over. Only a paid prescription, and only once.
    pub fn dispense(self) -> Result<PrescriptionState, TransitionError> {
        match self {
            PrescriptionState::Paid => Ok(PrescriptionState::Dispensed),
            _ => Err(self.refuse("dispense it")),
        }
    }

    /// The drugstore was paid (escrow settled, or the cash was taken at the counter).
    pub fn settle(self) -> Result<PrescriptionState, TransitionError> {
        match self {
            PrescriptionState::Dispensed => Ok(PrescriptionState::Settled),
            _ => Err(self.refuse("settle it")),
        }
    }

    /// The prescriber cancels: possible until it is dispensed.
    pub fn cancel(self) -> Result<PrescriptionState, TransitionError> {
        if self.is_undispensed() {
            Ok(PrescriptionState::Cancelled)
        } else {
            Err(self.refuse("cancel it"))
        }
    }

    /// Its validity ended before it was dispensed.
    pub fn expire(self) -> Result<PrescriptionState, TransitionError> {
        if self.is_undispensed() {
            Ok(PrescriptionState::Expired)
        } else {
            Err(self.refuse("expire it"))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not allowed while the prescription is {}: {action}", state.as_str())]
pub struct TransitionError {
    pub state: PrescriptionState,
    pub action: &'static str,
}

#[cfg(test)]
mod tests {
    use super::PrescriptionState::{self, *};
    use proptest::prelude::*;

    #[test]
    fn flow_a_runs_from_routing_to_settlement() {
        let state = Routed.claim_routed().unwrap();
        assert_eq!(state, Claimed);
        let state = state.price().unwrap().choose_card_payment().unwrap();
        assert_eq!(state, PaymentPending);
        let state = state.confirm_payment().unwrap().dispense().unwrap();
        assert_eq!(state.settle().unwrap(), Settled);
    }

    #[test]
    fn flow_b_needs_the_patients_consent_to_claim() {
        assert!(Issued.consent().is_err());
        assert!(Issued.claim_routed().is_err());
        let asked = Issued.request_open().unwrap();
        assert_eq!(asked.refuse_consent().unwrap(), Issued);
        assert_eq!(asked.consent().unwrap(), Claimed);
        assert!(Claimed.request_open().is_err(), "a second drugstore");
    }

    #[test]
    fn cash_skips_the_payment_confirmation() {
        assert_eq!(Priced.choose_cash().unwrap(), Paid);
        assert!(
            Claimed.choose_cash().is_err(),
            "nothing to pay before a price"
        );
    }

    #[test]
    fn nothing_is_dispensed_before_payment_or_twice() {
        for state in [
            Issued,
            Routed,
            AwaitingConsent,
            Claimed,
            Priced,
            PaymentPending,
            Dispensed,
            Settled,
            Cancelled,
            Expired,
        ] {
            assert!(state.dispense().is_err(), "{state:?}");
        }
    }

    #[test]
    fn a_prescriber_can_cancel_until_it_is_dispensed() {
        for state in [
            Issued,
            Routed,
            AwaitingConsent,
            Claimed,
            Priced,
            PaymentPending,
            Paid,
        ] {
            assert_eq!(state.cancel().unwrap(), Cancelled);
            assert_eq!(state.expire().unwrap(), Expired);
        }
        for state in [Dispensed, Settled, Cancelled, Expired] {
            assert!(state.cancel().is_err());
            assert!(state.expire().is_err());
        }
    }

    #[test]
    fn handing_back_returns_it_to_the_pool_not_to_the_drugstore_chosen() {
        assert_eq!(Priced.hand_back().unwrap(), Issued);
        assert!(
            Routed.hand_back().is_err(),
            "nothing to hand back before a claim"
        );
        assert!(Dispensed.hand_back().is_err());
    }

    type Step = fn(PrescriptionState) -> Result<PrescriptionState, super::TransitionError>;

    const STEPS: [Step; 14] = [
        PrescriptionState::request_open,
        PrescriptionState::consent,
        PrescriptionState::refuse_consent,
        PrescriptionState::claim_routed,
        PrescriptionState::hand_back,
        PrescriptionState::price,
        PrescriptionState::choose_card_payment,
        PrescriptionState::choose_cash,
        PrescriptionState::confirm_payment,
        PrescriptionState::lapse_payment,
        PrescriptionState::dispense,
        PrescriptionState::settle,
        PrescriptionState::cancel,
        PrescriptionState::expire,
    ];

    proptest! {
        #[test]
        fn no_sequence_of_steps_dispenses_twice_or_leaves_a_final_state(
            routed in any::<bool>(),
            steps in proptest::collection::vec(0usize..STEPS.len(), 0..60),
        ) {
            let mut state = if routed { Routed } else { Issued };
            let mut dispensed = 0;
            for step in steps {
                let before = state;
                if let Ok(next) = STEPS[step](state) {
                    prop_assert!(!before.is_final(), "{before:?} moved on");
                    if next == Dispensed {
                        dispensed += 1;
                    }
                    state = next;
                }
            }
            prop_assert!(dispensed <= 1, "dispensed {dispensed} times");
        }
    }
}
