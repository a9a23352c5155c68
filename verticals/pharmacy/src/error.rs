use crate::state::{PrescriptionState, TransitionError};
use holdfast_core::{CoreError, ErrorKind};

/// The pharmacy vertical's errors. Each has a stable snake_case code and a kind the server maps to
/// a status. No message ever quotes prescription content (a drug, a dose, a note): they name
/// limits and states only.
#[derive(Debug, thiserror::Error)]
pub enum PharmacyError {
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A prescription as entered breaks a rule; the message names the rule, not the value.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    InvalidTransition(TransitionError),
    #[error("another drugstore holds this prescription, or is waiting for the patient's consent")]
    HeldElsewhere,
    #[error("this prescription was sent to the drugstore the patient chose; only it may claim it")]
    RoutedElsewhere,
    #[error("this prescription's validity has ended")]
    Expired,
    #[error("this prescription was cancelled by its prescriber")]
    Cancelled,
    #[error("this prescription was already dispensed")]
    AlreadyDispensed,
    #[error("your drugstore does not hold this prescription")]
    NotHeld,
    #[error("the claim secret is missing or wrong")]
    ClaimSecret,
    #[error("{0}")]
    NotAMember(&'static str),
    #[error("an installment plan has 2 to {max} months")]
    InstallmentMonths { max: u32 },
    /// At the drugstore's commission rate the price would leave it nothing: the escrow would
    /// refuse the patient's payment, so the price is refused when it is set.
    #[error(
        "at this drugstore's commission rate the commission would take the whole price: the lowest \
         price is {minimum}"
    )]
    PriceBelowMinimum { minimum: holdfast_core::Money },
}

impl PharmacyError {
    pub fn code(&self) -> &'static str {
        match self {
            PharmacyError::Core(error) => error.code(),
            PharmacyError::Invalid(_) => "prescription_invalid",
            PharmacyError::InvalidTransition(_) => "invalid_state",
            PharmacyError::HeldElsewhere => "prescription_held_elsewhere",
            PharmacyError::RoutedElsewhere => "prescription_routed_elsewhere",
            PharmacyError::Expired => "prescription_expired",
            PharmacyError::Cancelled => "prescription_cancelled",
            PharmacyError::AlreadyDispensed => "prescription_already_dispensed",
            PharmacyError::NotHeld => "prescription_not_held",
            PharmacyError::ClaimSecret => "claim_secret_invalid",
            PharmacyError::NotAMember(_) => "not_a_member",
            PharmacyError::InstallmentMonths { .. } => "installment_months_invalid",
            PharmacyError::PriceBelowMinimum { .. } => "price_below_minimum",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            PharmacyError::Core(error) => error.kind(),
            PharmacyError::Invalid(_) | PharmacyError::InstallmentMonths { .. } => {
                ErrorKind::Invalid
            }
            PharmacyError::InvalidTransition(_)
            | PharmacyError::HeldElsewhere
            | PharmacyError::RoutedElsewhere
            | PharmacyError::Expired
            | PharmacyError::Cancelled
            | PharmacyError::AlreadyDispensed => ErrorKind::Conflict,
            PharmacyError::NotHeld | PharmacyError::ClaimSecret | PharmacyError::NotAMember(_) => {
                ErrorKind::Forbidden
            }
            PharmacyError::PriceBelowMinimum { .. } => ErrorKind::Unprocessable,
        }
    }

    pub fn invalid(message: impl Into<String>) -> PharmacyError {
        PharmacyError::Invalid(message.into())
    }

    /// Why `state` refuses `action`, with the specific code a client can act on.
    pub fn refused(error: TransitionError) -> PharmacyError {
        match error.state {
            PrescriptionState::Expired => PharmacyError::Expired,
            PrescriptionState::Cancelled => PharmacyError::Cancelled,
            PrescriptionState::Dispensed | PrescriptionState::Settled => {
                PharmacyError::AlreadyDispensed
            }
            _ => PharmacyError::InvalidTransition(error),
        }
    }

    /// The error as core's type, for the places that report one (a phone answer, a timer).
    pub fn into_core(self) -> CoreError {
        match self {
            PharmacyError::Core(error) => error,
            PharmacyError::InvalidTransition(error) => CoreError::InvalidTransition {
                state: error.state.as_str(),
                action: error.action,
            },
            PharmacyError::Expired => CoreError::InvalidTransition {
                state: "expired",
                action: "open it",
            },
            PharmacyError::Cancelled => CoreError::InvalidTransition {
                state: "cancelled",
                action: "open it",
            },
            other => CoreError::Invalid(other.to_string()),
        }
    }
}

impl From<TransitionError> for PharmacyError {
    fn from(error: TransitionError) -> Self {
        PharmacyError::refused(error)
    }
}

impl From<sea_orm::DbErr> for PharmacyError {
    fn from(error: sea_orm::DbErr) -> Self {
        PharmacyError::Core(CoreError::from(error))
    }
}

impl From<holdfast_core::money::MoneyError> for PharmacyError {
    fn from(error: holdfast_core::money::MoneyError) -> Self {
        PharmacyError::Core(CoreError::from(error))
    }
}

pub type PharmacyResult<T> = Result<T, PharmacyError>;
