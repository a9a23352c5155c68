//! Retail's own tables.

pub mod commodities;
pub mod order_lines;
pub mod orders;
