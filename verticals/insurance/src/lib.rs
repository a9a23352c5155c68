//! The insurance vertical: insurers list products; a holder buys one on the phone; the insurer
//! rechecks and issues the policy number; a service company delivers the certificate against
//! the signed application; premiums are held in escrow (a month's at a time, or the lump sum)
//! and released to the insurer when it quotes the policy number and the holder confirms; a
//! monthly cycle collects them, with a grace period and a lapse; the holder may cancel within
//! the free-look period with every premium returned (the period starts at the certificate's
//! delivery, or 30 days after issue without it); premiums the insurer has not asked for within
//! 90 days of a policy's end return to the holder.

pub mod cycle;
pub mod entities;
mod error;
pub mod hooks;
pub mod policies;
pub mod products;

pub use error::{InsuranceError, InsuranceResult};

/// The vertical's name on escrow cases.
pub const VERTICAL: holdfast_core::Vertical = holdfast_core::Vertical::Insurance;
