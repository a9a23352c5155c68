//! The insurance vertical.

mod error;
pub mod hooks;

pub use error::{InsuranceError, InsuranceResult};

/// The vertical's name on escrow cases.
pub const VERTICAL: &str = "insurance";
