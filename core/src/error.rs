//! The core's one error type. Each variant has a stable snake_case code that clients can
//! match on, and a kind that the server turns into a status code: core itself knows nothing of
//! HTTP.

use crate::money::{Money, MoneyError};
use sea_orm::DbErr;

/// How an error should be treated by whoever reports it to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or a value is out of range.
    Invalid,
    /// The caller's credentials are missing or wrong.
    Unauthenticated,
    /// The caller may not do this.
    Forbidden,
    NotFound,
    /// The request conflicts with the current state (or an idempotency key's first use).
    Conflict,
    /// Well-formed, but cannot be done (e.g. not enough money).
    Unprocessable,
    /// Too many attempts; wait before trying again.
    TooManyRequests,
    /// Try again later (lock contention, a database that is briefly unavailable).
    Unavailable,
    /// A fault of ours; the details are logged, never shown.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Paging(#[from] crate::paging::PagingError),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("wrong username or password")]
    BadCredentials,
    #[error("this username is taken")]
    UsernameTaken,
    #[error("this card is blocked or replaced")]
    CardNotActive,
    #[error("not enough funds: {available} available")]
    InsufficientFunds { available: Money },
    #[error("the hold was already {status}")]
    HoldAlreadyResolved { status: &'static str },
    #[error("this idempotency key was already used with different parameters")]
    IdempotencyConflict,
    #[error("not allowed while the order is {state}: {action}")]
    InvalidTransition {
        state: &'static str,
        action: &'static str,
    },
    #[error("wrong code; {attempts_left} attempt(s) left")]
    WrongCode { attempts_left: i32 },
    #[error("the confirmation has expired")]
    ChallengeExpired,
    #[error("too many wrong codes; the confirmation is locked")]
    ChallengeLocked,
    #[error("the confirmation was already {status}")]
    ChallengeClosed { status: &'static str },
    #[error("the order changed after the confirmation was sent; the code is void")]
    ChallengeBindingMismatch,
    #[error("this confirmation cannot be answered here")]
    ChallengeNotAnswerable,
    #[error("the code was already sent as often as allowed")]
    ResendLimit,
    #[error("too many attempts; try again later")]
    TooManyAttempts,
    /// Too many wrong passwords from one place; refused without checking the password.
    #[error("too many failed logins; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    #[error("the database is busy; try again")]
    Busy,
    #[error("a concurrent request changed the same record; try again")]
    Conflict,
    /// A payout needs a confirmed payout destination.
    #[error("no confirmed payout destination: register a bank account and confirm it first")]
    PayoutDestinationRequired,
    /// A payout destination's account number fails its checks (the reason says which).
    #[error("{0}")]
    InvalidBankAccount(&'static str),
    #[error("only a failed timer can be retried")]
    TimerNotFailed,
    #[error("its subject has a pending timer of the same kind again; nothing to retry")]
    TimerSuperseded,
    #[error("webhooks may not be sent to {0}")]
    WebhookTargetForbidden(crate::webhook_target::Forbidden),
    #[error("database error")]
    Database(#[source] DbErr),
    /// A fault of ours that is not the database's (logged, never shown).
    #[error("{0}")]
    Internal(&'static str),
}

impl From<DbErr> for CoreError {
    fn from(error: DbErr) -> Self {
        if crate::db::is_retryable(&error) {
            CoreError::Busy
        } else if crate::db::is_unique_violation(&error) {
            // A uniqueness rule a use case did not expect to meet: a race it lost.
            CoreError::Conflict
        } else {
            CoreError::Database(error)
        }
    }
}

impl CoreError {
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::Money(error) => error.code(),
            CoreError::Invalid(_) => "invalid_request",
            CoreError::Paging(error) => error.code(),
            CoreError::NotFound(_) => "not_found",
            CoreError::Forbidden(_) => "forbidden",
            CoreError::BadCredentials => "bad_credentials",
            CoreError::UsernameTaken => "username_taken",
            CoreError::CardNotActive => "card_not_active",
            CoreError::InsufficientFunds { .. } => "insufficient_funds",
            CoreError::HoldAlreadyResolved { .. } => "hold_already_resolved",
            CoreError::IdempotencyConflict => "idempotency_key_reused",
            CoreError::InvalidTransition { .. } => "invalid_state",
            CoreError::WrongCode { .. } => "challenge_wrong_code",
            CoreError::ChallengeExpired => "challenge_expired",
            CoreError::ChallengeLocked => "challenge_locked",
            CoreError::ChallengeClosed { .. } => "challenge_closed",
            CoreError::ChallengeBindingMismatch => "challenge_binding_mismatch",
            CoreError::ChallengeNotAnswerable => "challenge_not_answerable",
            CoreError::ResendLimit => "challenge_resend_limit",
            CoreError::TooManyAttempts | CoreError::Throttled { .. } => "too_many_attempts",
            CoreError::Busy => "busy",
            CoreError::Conflict => "conflict",
            CoreError::TimerNotFailed => "timer_not_failed",
            CoreError::TimerSuperseded => "timer_superseded",
            CoreError::WebhookTargetForbidden(_) => "webhook_target_forbidden",
            CoreError::InvalidBankAccount(_) => "invalid_bank_account",
            CoreError::PayoutDestinationRequired => "payout_destination_required",
            CoreError::Database(_) | CoreError::Internal(_) => "internal",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            CoreError::Money(MoneyError::CurrencyMismatch { .. }) => ErrorKind::Unprocessable,
            CoreError::Money(_)
            | CoreError::Invalid(_)
            | CoreError::Paging(_)
            | CoreError::InvalidBankAccount(_) => ErrorKind::Invalid,
            CoreError::NotFound(_) => ErrorKind::NotFound,
            CoreError::Forbidden(_) | CoreError::CardNotActive => ErrorKind::Forbidden,
            CoreError::BadCredentials => ErrorKind::Unauthenticated,
            CoreError::InsufficientFunds { .. } => ErrorKind::Unprocessable,
            CoreError::HoldAlreadyResolved { .. }
            | CoreError::UsernameTaken
            | CoreError::IdempotencyConflict
            | CoreError::InvalidTransition { .. }
            | CoreError::ChallengeClosed { .. }
            | CoreError::ResendLimit
            | CoreError::Conflict
            | CoreError::TimerNotFailed
            | CoreError::TimerSuperseded => ErrorKind::Conflict,
            CoreError::TooManyAttempts | CoreError::Throttled { .. } => ErrorKind::TooManyRequests,
            CoreError::WrongCode { .. }
            | CoreError::ChallengeExpired
            | CoreError::ChallengeLocked
            | CoreError::ChallengeBindingMismatch
            | CoreError::ChallengeNotAnswerable => ErrorKind::Unprocessable,
            CoreError::WebhookTargetForbidden(_) | CoreError::PayoutDestinationRequired => {
                ErrorKind::Unprocessable
            }
            CoreError::Busy => ErrorKind::Unavailable,
            CoreError::Database(_) | CoreError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// How long to wait before trying again, when this error says so.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            CoreError::Throttled { retry_after_secs } => Some(*retry_after_secs),
            // Login codes are counted per hour; a minute is a polite first wait.
            CoreError::TooManyAttempts => Some(60),
            CoreError::Busy => Some(1),
            _ => None,
        }
    }

    /// What to write in the log about this error: never the values a database message quotes.
    pub fn log_description(&self) -> String {
        match self {
            CoreError::Database(error) => crate::db::describe(error),
            other => other.to_string(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> CoreError {
        CoreError::Invalid(message.into())
    }
}

pub type CoreResult<T> = Result<T, CoreError>;
