//! The card-present vertical's tables: terminals, their authorisations, and approvals a holder
//! armed ahead on the phone.

pub mod armed_approvals;
pub mod authorisations;
pub mod terminals;
