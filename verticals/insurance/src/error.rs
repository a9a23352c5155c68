use holdfast_core::{CoreError, ErrorKind};

/// The insurance vertical's errors. Each has a stable snake_case code and a kind the server maps to
/// a status.
#[derive(Debug, thiserror::Error)]
pub enum InsuranceError {
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl InsuranceError {
    pub fn code(&self) -> &'static str {
        match self {
            InsuranceError::Core(error) => error.code(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            InsuranceError::Core(error) => error.kind(),
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

pub type InsuranceResult<T> = Result<T, InsuranceError>;
