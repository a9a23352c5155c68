//! The pharmacy vertical: prescriptions between hospitals and member drugstores, paid through
//! escrow.
//!
//! A prescriber enters a prescription for a patient's medical card (an EC card). It reaches
//! exactly one drugstore: the one the patient chose when it was prescribed (flow A), or the one
//! the patient's phone allowed to open it (flow B); a second drugstore gets a conflict, and the
//! holder can hand it back to the pool. The holder prices it; the patient confirms the exact
//! amount and a payment method on the phone (the money is held in escrow) or pays cash at the
//! counter; the drugstore dispenses it once, and asks to be paid quoting the order number the
//! patient handed over. Prescribers cancel until dispensing; prescriptions expire. Every read
//! of a prescription's content is logged for the patient to see.
//!
//! Medical supplies (flow C) need no code here: they are retail commodities, bought with the
//! medical card like any EC card.

pub mod audit;
pub mod claims;
pub mod entities;
mod error;
pub mod fhir;
pub mod hooks;
pub mod number;
pub mod parties;
pub mod payment;
pub mod prescriptions;
pub mod state;

pub use error::{PharmacyError, PharmacyResult};

/// The vertical's name on escrow cases.
pub const VERTICAL: holdfast_core::Vertical = holdfast_core::Vertical::Pharmacy;

/// A prescription's validity ends: it expires if not yet dispensed.
pub const EXPIRY_TIMER: holdfast_core::TimerKind =
    holdfast_core::TimerKind::PharmacyPrescriptionExpiry;
/// A request to open a prescription that the patient has not answered lapses.
pub const CONSENT_TIMER: holdfast_core::TimerKind =
    holdfast_core::TimerKind::PharmacyConsentDeadline;
