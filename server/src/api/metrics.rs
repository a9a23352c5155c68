//! `GET /metrics`: Prometheus's text format, for the scrape token or an operator.

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use holdfast_core::parties::Role;

/// The content type of Prometheus's text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Counters, histograms and gauges of this process, in Prometheus's text format. Needs the
/// scrape token (`--metrics-token`) or an operator's bearer token.
#[utoipa::path(get, path = "/metrics", tag = "system", operation_id = "metrics",
    security(("metrics_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4",
            content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "unauthenticated: neither the scrape token nor a valid bearer token", body = crate::error::ErrorBody),
        (status = 403, description = "forbidden: the bearer token is not an operator's", body = crate::error::ErrorBody),
        (status = 404, description = "metrics_disabled: the server runs with --metrics off", body = crate::error::ErrorBody)))]
pub async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let Some(metrics) = &state.metrics else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "metrics_disabled",
            "metrics are off (--metrics off)",
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if !presented.is_some_and(|token| metrics.token_matches(token)) {
        Principal::from_headers(&headers, &state.jwt)?.require(&[Role::Operator])?;
    }
    crate::metrics::sample(&state).await;
    Ok((
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        metrics.handle.render(),
    )
        .into_response())
}
