//! The insurance vertical's own tables.

pub mod insurers;
pub mod policies;
pub mod policy_events;
pub mod premiums;
pub mod products;
