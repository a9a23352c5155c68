//! The pharmacy vertical.

mod error;
pub mod hooks;

pub use error::{PharmacyError, PharmacyResult};

/// The vertical's name on escrow cases.
pub const VERTICAL: &str = "pharmacy";
