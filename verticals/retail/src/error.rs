use holdfast_core::{CoreError, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum RetailError {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("an order needs 1 to {max} lines")]
    LineCount { max: usize },
    #[error("a quantity is 1 to {max}")]
    Quantity { max: u32 },
    #[error("every line of an order must come from the same supplier")]
    MixedSuppliers,
    #[error("every line of an order must be in the same currency")]
    MixedCurrencies,
    #[error("commodity {0} is not for sale")]
    Unavailable(uuid::Uuid),
    #[error(
        "a commission rate is a decimal from 0 up to (not including) 1, with at most 4 decimals"
    )]
    CommissionRate,
    #[error("commodity {0} is not sold to this card's class")]
    NotForThisCard(uuid::Uuid),
}

impl RetailError {
    pub fn code(&self) -> &'static str {
        match self {
            RetailError::Core(error) => error.code(),
            RetailError::LineCount { .. } => "order_line_count",
            RetailError::Quantity { .. } => "order_quantity",
            RetailError::MixedSuppliers => "order_mixed_suppliers",
            RetailError::MixedCurrencies => "currency_mismatch",
            RetailError::Unavailable(_) => "commodity_unavailable",
            RetailError::CommissionRate => "commission_rate_invalid",
            RetailError::NotForThisCard(_) => "commodity_not_for_card",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            RetailError::Core(error) => error.kind(),
            RetailError::LineCount { .. }
            | RetailError::Quantity { .. }
            | RetailError::CommissionRate => ErrorKind::Invalid,
            RetailError::MixedSuppliers
            | RetailError::MixedCurrencies
            | RetailError::Unavailable(_) => ErrorKind::Unprocessable,
            RetailError::NotForThisCard(_) => ErrorKind::Forbidden,
        }
    }
}

impl From<sea_orm::DbErr> for RetailError {
    fn from(error: sea_orm::DbErr) -> Self {
        RetailError::Core(CoreError::from(error))
    }
}

impl From<holdfast_core::money::MoneyError> for RetailError {
    fn from(error: holdfast_core::money::MoneyError) -> Self {
        RetailError::Core(CoreError::from(error))
    }
}

pub type RetailResult<T> = Result<T, RetailError>;
