use chrono::{DateTime, Utc};
use holdfast_core::{CoreError, ErrorKind};

/// The insurance vertical's errors. Each has a stable snake_case code and a kind the server maps to
/// a status.
#[derive(Debug, thiserror::Error)]
pub enum InsuranceError {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("not allowed while the policy is {state}: {action}")]
    PolicyState {
        state: &'static str,
        action: &'static str,
    },
    #[error("not allowed while the certificate is {status}: {action}")]
    CertificateState {
        status: &'static str,
        action: &'static str,
    },
    #[error("this product is not on sale")]
    ProductUnavailable,
    #[error("{what} has 1 to {max} characters")]
    ProductText { what: &'static str, max: usize },
    #[error("a policy term is 1 to {max} months")]
    TermMonths { max: i32 },
    #[error("the grace period is {min} to {max} days for this term")]
    GraceDays { min: i32, max: i32 },
    #[error("the free-look period is {min} to {max} days")]
    FreeLookDays { min: i32, max: i32 },
    #[error("the service company must be a distributor")]
    ServiceCompany,
    #[error("a commission is 0 to {max_bps} basis points")]
    Commission { max_bps: i32 },
    #[error("the certificate and the signed application are not recorded yet")]
    DocumentsMissing,
    #[error("no premium of this policy waits for settlement")]
    NothingToSettle,
    #[error("the free-look period ended at {ended_at}")]
    FreeLookEnded { ended_at: DateTime<Utc> },
    #[error("the order number handed over is not this policy's")]
    HandedOverNumber,
    #[error("an application reference has 1 to {max} printable characters")]
    ApplicationReference { max: usize },
    #[error(
        "premium {installment} ({amount}) was paid to the insurer and has since left its account: \
         it must be returned before the policy can be cancelled; this request was recorded and \
         keeps the free-look right"
    )]
    PremiumPaidOut {
        installment: i32,
        amount: holdfast_core::Money,
    },
}

impl InsuranceError {
    pub fn code(&self) -> &'static str {
        match self {
            InsuranceError::Core(error) => error.code(),
            InsuranceError::PolicyState { .. } => "invalid_state",
            InsuranceError::CertificateState { .. } => "certificate_state",
            InsuranceError::ProductUnavailable => "product_unavailable",
            InsuranceError::ProductText { .. } => "product_invalid",
            InsuranceError::TermMonths { .. } => "policy_term_invalid",
            InsuranceError::GraceDays { .. } => "grace_period_invalid",
            InsuranceError::FreeLookDays { .. } => "free_look_period_invalid",
            InsuranceError::ServiceCompany => "service_company_invalid",
            InsuranceError::Commission { .. } => "commission_rate_invalid",
            InsuranceError::DocumentsMissing => "documents_missing",
            InsuranceError::NothingToSettle => "nothing_to_settle",
            InsuranceError::FreeLookEnded { .. } => "free_look_ended",
            InsuranceError::HandedOverNumber => "order_number_mismatch",
            InsuranceError::ApplicationReference { .. } => "application_reference_invalid",
            InsuranceError::PremiumPaidOut { .. } => "premium_paid_out",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            InsuranceError::Core(error) => error.kind(),
            InsuranceError::ProductText { .. }
            | InsuranceError::TermMonths { .. }
            | InsuranceError::GraceDays { .. }
            | InsuranceError::FreeLookDays { .. }
            | InsuranceError::ServiceCompany
            | InsuranceError::Commission { .. }
            | InsuranceError::ApplicationReference { .. } => ErrorKind::Invalid,
            InsuranceError::PolicyState { .. }
            | InsuranceError::CertificateState { .. }
            | InsuranceError::DocumentsMissing
            | InsuranceError::NothingToSettle
            | InsuranceError::FreeLookEnded { .. }
            | InsuranceError::PremiumPaidOut { .. } => ErrorKind::Conflict,
            InsuranceError::ProductUnavailable | InsuranceError::HandedOverNumber => {
                ErrorKind::Unprocessable
            }
        }
    }
}

impl From<sea_orm::DbErr> for InsuranceError {
    fn from(error: sea_orm::DbErr) -> Self {
        InsuranceError::Core(CoreError::from(error))
    }
}

impl From<holdfast_core::money::MoneyError> for InsuranceError {
    fn from(error: holdfast_core::money::MoneyError) -> Self {
        InsuranceError::Core(CoreError::from(error))
    }
}

impl From<holdfast_core::escrow::TransitionError> for InsuranceError {
    fn from(error: holdfast_core::escrow::TransitionError) -> Self {
        InsuranceError::Core(CoreError::from(error))
    }
}

pub type InsuranceResult<T> = Result<T, InsuranceError>;
