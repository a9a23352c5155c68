//! The pharmacy vertical's tables. Rows that hold prescription content (`prescriptions`,
//! `items`) print no content in `Debug`.

pub mod access_log;
pub mod drugstore_staff;
pub mod drugstores;
pub mod hospitals;
pub mod items;
pub mod prescribers;
pub mod prescription_events;
pub mod prescriptions;
