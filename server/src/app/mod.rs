//! The application layer: use cases that span verticals — answering a phone challenge,
//! mediating a dispute, firing a timer. It decides by the closed enums of core
//! ([`holdfast_core::Vertical`], [`holdfast_core::TimerKind`],
//! [`holdfast_core::challenge::ChallengePurpose`]), matched exhaustively, never by strings. It
//! knows no axum type: the JSON API and the console are thin adapters over it.
//!
//! Who owns the transaction: never a use case. Every function here, like every use case in
//! core and the verticals, runs inside a write transaction its caller owns (`_in_txn`): it
//! checks its rules, locks what it changes, writes (messages go to the outbox in the same
//! transaction), and returns. The caller opens and commits. For a request, an adapter (a JSON
//! handler, the phone provider's webhook, the console) hands the use case to the runner
//! ([`crate::txn`]: [`crate::AppState::write`] claims the `Idempotency-Key` in the same
//! transaction, records the answer, commits and wakes the outbox); outside a request (the demo,
//! the bootstrap command, tests) [`crate::AppState::in_write_txn`] does the same without the
//! key. The timer worker owns the transaction a timer fires in (`holdfast_core::timers`: it
//! claims the timer and runs [`timers`] in the same transaction).

pub mod answers;
pub mod mediation;
pub mod timers;

use holdfast_core::CoreError;
use holdfast_insurance::InsuranceError;
use holdfast_pharmacy::PharmacyError;
use holdfast_retail::RetailError;

/// What a cross-vertical use case can fail with: the failing layer's own error, kept whole so
/// the adapters map its stable code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error(transparent)]
    Retail(#[from] RetailError),
    #[error(transparent)]
    Pharmacy(#[from] PharmacyError),
    #[error(transparent)]
    Insurance(#[from] InsuranceError),
}

impl From<sea_orm::DbErr> for AppError {
    fn from(error: sea_orm::DbErr) -> Self {
        AppError::Core(CoreError::from(error))
    }
}

impl AppError {
    /// As the timer table records a failure: core's error, whichever layer failed.
    pub fn into_core(self) -> CoreError {
        match self {
            AppError::Core(core) => core,
            AppError::Retail(RetailError::Core(core)) => core,
            AppError::Pharmacy(PharmacyError::Core(core)) => core,
            AppError::Insurance(InsuranceError::Core(core)) => core,
            #[allow(unreachable_patterns)]
            other => CoreError::Invalid(other.to_string()),
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;
