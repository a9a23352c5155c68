//! The HTTP API under `/v1`. Handlers extract, call one use case, and map the result.

pub mod accounts;
pub mod auth;
pub mod bank;
pub mod bank_simulator;
pub mod card_present;
pub mod cards;
pub mod challenges;
pub mod distributor;
pub mod institution;
pub mod insurance;
pub mod metrics;
pub mod operator;
pub mod paging;
pub mod payee;
pub mod pharmacy;
pub mod phone;
pub mod readiness;
pub mod retail;
pub mod simulator;
pub mod supplier;
pub mod webhooks;

use crate::error::{ApiError, REQUEST_ID};
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use holdfast_core::banking::camt::MAX_STATEMENT_BYTES;
use serde::Serialize;
use std::time::Instant;
use tracing::Instrument;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest request body accepted, except on the routes of [`body_limit_of`].
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The console's statement upload carries the XML percent-encoded in a form field: up to three
/// bytes sent for one byte of statement.
pub const MAX_STATEMENT_FORM_BYTES: usize = 3 * MAX_STATEMENT_BYTES;

/// How much of an oversized body is read (and thrown away) before the 413 is sent. A server
/// that answers and closes while the client is still sending leaves unread bytes in its socket,
/// and the kernel then resets the connection — often before the client has read the answer.
/// Reading the rest first lets the client see the 413; beyond this much past the route's limit
/// the connection is closed after the answer instead, and a client still sending may see a reset.
pub const MAX_DRAINED_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Every route of the API, each registered with its OpenAPI operation: the router serves
/// exactly what the document (`crate::openapi::document`) describes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .merge(readiness::routes())
        .routes(routes!(openapi))
        .routes(routes!(metrics::scrape))
        .merge(auth::routes())
        .merge(challenges::routes())
        .merge(phone::routes())
        .merge(simulator::routes())
        .merge(operator::routes())
        .merge(accounts::routes())
        .merge(bank::routes())
        .merge(cards::routes())
        .merge(institution::routes())
        .merge(supplier::routes())
        .merge(payee::routes())
        .merge(distributor::routes())
        .merge(webhooks::routes())
        .merge(retail::routes())
        .merge(pharmacy::routes())
        .merge(insurance::routes())
        .merge(card_present::routes())
}

pub fn router(state: AppState) -> Router {
    let (router, _) = routes().split_for_parts();
    let router = router
        .merge(crate::console::router())
        .fallback(not_found)
        .layer(axum::middleware::from_fn(limit_body))
        // `limit_body` has bounded every body by its route already: axum's own 2 MB default
        // would refuse a statement that route allows, without our error envelope.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.lifecycle.clone(),
            crate::lifecycle::request_deadline,
        ));
    // Off, not even the layer runs: the benchmark compares the two.
    let router = if state.metrics.is_some() {
        router.layer(axum::middleware::from_fn(crate::metrics::track_requests))
    } else {
        router
    };
    router
        .layer(axum::middleware::from_fn(request_context))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(state)
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal(&"a handler panicked").into_response()
}

/// No such route: the JSON error, or for a browser asking for a page outside `/v1`, the
/// console's 404 page.
async fn not_found(uri: axum::http::Uri, headers: axum::http::HeaderMap) -> Response {
    let wants_page = !uri.path().starts_with("/v1")
        && headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"));
    if wants_page {
        return crate::console::not_found_page();
    }
    ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "no such route").into_response()
}

/// Gives each request an id (the caller's `X-Request-Id` if sane), makes it available to error
/// bodies, and logs one line per request with the route template — never the concrete path,
/// which can hold a phone number. The `request` span carries the id, method and template, and on
/// completion the status and latency; the use cases' spans are its children. Probes and scrapes
/// (`/healthz`, `/readyz`, `/metrics`) log at debug: they come every few seconds and say nothing.
async fn request_context(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        %method,
        %route,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let started = Instant::now();
    let mut response = REQUEST_ID
        .scope(
            request_id.clone(),
            next.run(request).instrument(span.clone()),
        )
        .await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    // Whatever produced a 429 or 503 (a replayed refusal, the health check), it says when to
    // come back.
    crate::error::ensure_retry_after(&mut response, None);
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.record("status", status);
    span.record("latency_ms", latency_ms);
    // The status and latency are the span's own fields, printed with the line.
    if is_probe(&route) {
        tracing::debug!(parent: &span, "served");
    } else {
        tracing::info!(parent: &span, "served");
    }
    response
}

/// Routes polled by machines every few seconds: their completion lines are debug, not info.
fn is_probe(route: &str) -> bool {
    matches!(route, "/healthz" | "/readyz" | "/metrics")
}

/// How long a request's body may take to arrive.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The largest body a route takes, by its template. Bank statements (camt.053 files run to
/// megabytes) have their own limit, through the API and the console's form alike; every other
/// route has [`MAX_BODY_BYTES`].
pub fn body_limit_of(route: Option<&str>) -> usize {
    match route {
        Some(bank::STATEMENTS_ROUTE) => MAX_STATEMENT_BYTES,
        Some(crate::console::reconciliation::STATEMENT_FORM_ROUTE) => MAX_STATEMENT_FORM_BYTES,
        _ => MAX_BODY_BYTES,
    }
}

/// Reads the whole body (at most its route's [`body_limit_of`]) before any handler runs, so an
/// oversized one is refused in the error envelope (`413 body_too_large`) whatever the route
/// extracts, and whether it came with a `Content-Length` or chunked. The rest of an oversized
/// body is read and dropped, up to [`MAX_DRAINED_BODY_BYTES`] past the limit, so that the
/// client reads the answer.
async fn limit_body(request: Request, next: Next) -> Response {
    use http_body_util::BodyExt;
    let limit = body_limit_of(
        request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let drained = limit.saturating_add(MAX_DRAINED_BODY_BYTES);
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > drained as u64) {
        // Far too large to be worth reading: answer, and the connection closes.
        return body_too_large(limit);
    }
    let (parts, mut body) = request.into_parts();
    let mut kept = Vec::new();
    let mut seen = 0_usize;
    // A client that trickles its body holds a task and its buffer: it gets a deadline.
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Err(ApiError::invalid("the request body could not be read"));
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            seen = seen.saturating_add(data.len());
            if seen > drained {
                break;
            }
            if seen <= limit {
                kept.extend_from_slice(&data);
            }
        }
        Ok(())
    })
    .await;
    match read {
        Err(_) => {
            let mut response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {} seconds",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            )
            .into_response();
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                HeaderValue::from_static("close"),
            );
            return response;
        }
        Ok(Err(error)) => return error.into_response(),
        Ok(Ok(())) => {}
    }
    if seen > limit {
        return body_too_large(limit);
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(kept)))
        .await
}

fn body_too_large(limit: usize) -> Response {
    let mut response = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("a request body here has at most {limit} bytes"),
    )
    .into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        HeaderValue::from_static("close"),
    );
    response
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub database: &'static str,
    pub phone_gateway: &'static str,
}

/// Liveness and database reachability.
#[utoipa::path(get, path = "/healthz", tag = "system", responses(
    (status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(state): State<AppState>) -> Response {
    let database_ok = state.db.ping().await.is_ok();
    let body = Health {
        status: if database_ok { "ok" } else { "degraded" },
        database: if database_ok { "ok" } else { "unreachable" },
        phone_gateway: state.gateway.name(),
    };
    let status = if database_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "system", responses(
    (status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json",
        body = Object)))]
pub async fn openapi() -> Json<serde_json::Value> {
    // Built once: it depends on nothing but the code.
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(crate::openapi::document).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, Bytes};
    use futures_util::StreamExt;
    use tower::ServiceExt;

    /// The body-reading middleware alone, in front of a handler that answers "ok".
    fn guarded() -> Router {
        Router::new()
            .route("/", axum::routing::post(|| async { "ok" }))
            .layer(axum::middleware::from_fn(limit_body))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_gets_408_instead_of_holding_the_request() {
        let first = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(
            b"{\"partial\":",
        ))]);
        let stalled = first.chain(futures_util::stream::pending());
        let request = Request::post("/")
            .body(Body::from_stream(stalled))
            .unwrap_or_default();
        // Time is paused: the deadline passes as soon as nothing else can run.
        let response = guarded().oneshot(request).await;
        let response = response.unwrap_or_else(|never| match never {});
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(response.headers()["connection"], "close");
    }

    #[tokio::test]
    async fn a_whole_body_passes_through() {
        let request = Request::post("/")
            .body(Body::from("{}"))
            .unwrap_or_default();
        let response = guarded().oneshot(request).await;
        let response = response.unwrap_or_else(|never| match never {});
        assert_eq!(response.status(), StatusCode::OK);
    }
}
