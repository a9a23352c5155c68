//! The API's error envelope: `{"error": {"code", "message", "request_id"}}`. Codes are stable
//! snake_case strings; a 500 says nothing about its cause, which goes to the log instead.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use holdfast_core::{CoreError, ErrorKind};
use holdfast_retail::RetailError;
use serde::Serialize;
use utoipa::ToSchema;

tokio::task_local! {
    /// The id of the request being served, for error bodies and logs.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_owned())
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: match on this.
    #[schema(example = "insufficient_funds")]
    pub code: String,
    /// For people; may change.
    pub message: String,
    /// Quote this when asking about a failed request.
    pub request_id: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side",
        )
    }

    fn from_kind(kind: ErrorKind, code: &'static str, message: String, cause: &str) -> ApiError {
        let status = match kind {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => {
                tracing::error!(error = %cause, "internal error");
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "something went wrong on our side",
                );
            }
        };
        ApiError::new(status, code, message)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                request_id: current_request_id(),
            },
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> Self {
        ApiError::from_kind(
            error.kind(),
            error.code(),
            error.to_string(),
            &error.log_description(),
        )
    }
}

impl From<RetailError> for ApiError {
    fn from(error: RetailError) -> Self {
        match error {
            RetailError::Core(core) => ApiError::from(core),
            other => ApiError::from_kind(other.kind(), other.code(), other.to_string(), ""),
        }
    }
}

impl From<holdfast_pharmacy::PharmacyError> for ApiError {
    fn from(error: holdfast_pharmacy::PharmacyError) -> Self {
        match error {
            holdfast_pharmacy::PharmacyError::Core(core) => ApiError::from(core),
            #[allow(unreachable_patterns)]
            other => ApiError::from_kind(other.kind(), other.code(), other.to_string(), ""),
        }
    }
}

impl From<holdfast_insurance::InsuranceError> for ApiError {
    fn from(error: holdfast_insurance::InsuranceError) -> Self {
        match error {
            holdfast_insurance::InsuranceError::Core(core) => ApiError::from(core),
            other => ApiError::from_kind(other.kind(), other.code(), other.to_string(), ""),
        }
    }
}

impl From<crate::app::AppError> for ApiError {
    fn from(error: crate::app::AppError) -> Self {
        use crate::app::AppError;
        match error {
            AppError::Core(error) => ApiError::from(error),
            AppError::Retail(error) => ApiError::from(error),
            AppError::Pharmacy(error) => ApiError::from(error),
            AppError::Insurance(error) => ApiError::from(error),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(error: sea_orm::DbErr) -> Self {
        ApiError::from(CoreError::from(error))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
