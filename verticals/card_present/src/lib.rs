//! The card-present vertical: a shop terminal's card authorisation confirmed on the holder's
//! phone (or matched by an approval the holder armed ahead), captured into the merchant's
//! withdrawal account or voided. It builds on core's cards, challenges, holds and timers like
//! the other verticals, and owns its three tables.

pub mod authorisations;
pub mod entities;

pub use authorisations::*;
