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
    /// For a 429 or 503: when to try again; without it, [`default_retry_after_secs`].
    pub retry_after_secs: Option<u64>,
}

/// How long a client should wait after a 429 or 503 that names no time of its own: a second
/// for a busy database, a minute for a rate limit. `None` for other statuses.
pub fn default_retry_after_secs(status: StatusCode) -> Option<u64> {
    match status {
        StatusCode::SERVICE_UNAVAILABLE => Some(1),
        StatusCode::TOO_MANY_REQUESTS => Some(60),
        _ => None,
    }
}

/// Gives a 429 or 503 response a `Retry-After` (seconds) unless it has one.
pub fn ensure_retry_after(response: &mut Response, secs: Option<u64>) {
    let Some(secs) = secs.or_else(|| default_retry_after_secs(response.status())) else {
        return;
    };
    if !response
        .headers()
        .contains_key(axum::http::header::RETRY_AFTER)
    {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(secs.max(1)),
        );
    }
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
            retry_after_secs: None,
        }
    }

    /// Tells the client to wait `secs` seconds before trying again (`Retry-After`).
    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after_secs = Some(secs);
        self
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
        let mut api = ApiError::from_kind(
            error.kind(),
            error.code(),
            error.to_string(),
            &error.log_description(),
        );
        api.retry_after_secs = error.retry_after_secs();
        api
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
        ensure_retry_after(&mut response, self.retry_after_secs);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_429_and_503_says_when_to_retry() {
        let statuses = [
            (StatusCode::TOO_MANY_REQUESTS, None, "60"),
            (StatusCode::SERVICE_UNAVAILABLE, None, "1"),
            (StatusCode::TOO_MANY_REQUESTS, Some(7), "7"),
        ];
        for (status, secs, expected) in statuses {
            let mut error = ApiError::new(status, "x", "x");
            error.retry_after_secs = secs;
            let response = error.into_response();
            assert_eq!(response.headers()["retry-after"], expected, "{status}");
        }
        let busy = ApiError::from(CoreError::Busy).into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(busy.headers().contains_key("retry-after"));
        let other = ApiError::invalid("x").into_response();
        assert!(!other.headers().contains_key("retry-after"));
    }
}
