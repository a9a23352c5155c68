use holdfast_core::{CoreError, ErrorKind};

/// The pharmacy vertical's errors. Each has a stable snake_case code and a kind the server maps to
/// a status.
#[derive(Debug, thiserror::Error)]
pub enum PharmacyError {
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl PharmacyError {
    pub fn code(&self) -> &'static str {
        match self {
            PharmacyError::Core(error) => error.code(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            PharmacyError::Core(error) => error.kind(),
        }
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
