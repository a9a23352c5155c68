//! Retail's own tables.

pub mod auctions;
pub mod bids;
pub mod commodities;
pub mod order_lines;
pub mod orders;
pub mod parcels;
pub mod sellers;
pub mod tracking_events;
