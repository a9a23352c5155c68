//! The OpenTelemetry exporter against a collector of the test's own on 127.0.0.1: spans of a
//! request and of its use case arrive as OTLP protobuf on `POST /v1/traces`, under the service
//! name `holdfast`, once the guard that owns the exporter is dropped (the batch would otherwise
//! wait seconds). A binary of its own: the exporter's subscriber is installed for this test only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use holdfast_server::telemetry::{self, OtlpEndpoint};
use holdfast_tests::world::{Shop, random_phone};
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt;

/// What the collector received: each request's content type and body.
type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

async fn collect(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    received.lock().unwrap().push((content_type, body));
    StatusCode::OK
}

/// A fake OTLP/HTTP collector on a loopback port; returns its base URL and what it receives.
async fn collector() -> (String, Received) {
    let received = Received::default();
    let router = axum::Router::new()
        .route("/v1/traces", axum::routing::post(collect))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}"), received)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_configured_collector_when_the_guard_is_dropped() {
    let (base, received) = collector().await;
    let endpoint = OtlpEndpoint::parse(&base).unwrap();
    let provider = telemetry::otlp_provider(&endpoint).unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(telemetry::otlp_layer(&provider))
        .with(tracing_subscriber::EnvFilter::new(
            telemetry::DEFAULT_FILTER,
        ));
    let guard = telemetry::guard(provider);
    {
        // This thread's subscriber: the test's requests run on it (the router is called in
        // place, not spawned).
        let _subscriber = tracing::subscriber::set_default(subscriber);
        let shop = Shop::spawn(&random_phone(), "100.00", "10.00", "0.05").await;
        shop.order(1).await;
    }
    assert!(guard.exporting());
    // The batch waits seconds before it is sent, or for the flush on drop: dropping the guard
    // sends what is left (a blocking call, off the runtime's threads).
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();

    let received = received.lock().unwrap().clone();
    assert!(!received.is_empty(), "the collector received nothing");
    for (content_type, _) in &received {
        assert_eq!(content_type, "application/x-protobuf");
    }
    let all: Vec<u8> = received
        .iter()
        .flat_map(|(_, body)| body.to_vec())
        .collect();
    assert!(contains(&all, "holdfast"), "no service name");
    assert!(contains(&all, "service.version"));
    assert!(contains(&all, "retail.place_order"), "no use case span");
    assert!(
        contains(&all, "/v1/retail/orders"),
        "no request span with its route"
    );
    assert!(contains(&all, "case_id"));
}

#[test]
fn a_collector_that_is_not_http_is_refused_at_start() {
    let refused = OtlpEndpoint::parse("grpc://127.0.0.1:4317").unwrap_err();
    assert!(
        refused.to_string().contains("http:// or https://"),
        "{refused}"
    );
}
