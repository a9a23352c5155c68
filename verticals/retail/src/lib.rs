//! Retail: a catalogue of commodities and orders paid through the escrow core. A shopper
//! orders, approves on the phone (the money is frozen), the supplier quotes the order number
//! to be paid, the shopper approves again, and the supplier's withdrawal account receives the
//! price minus the platform's commission.

pub mod auctions;
pub mod catalogue;
pub mod distribution;
pub mod entities;
mod error;
pub mod orders;
pub mod sellers;

pub use error::{RetailError, RetailResult};

/// The vertical's name on escrow cases.
pub const VERTICAL: holdfast_core::Vertical = holdfast_core::Vertical::Retail;
