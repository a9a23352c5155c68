//! Input at the edge (issue #12): oversized bodies, text fields and amounts, webhook targets.
//! Each refusal has a stable code in the error envelope, and nothing is stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use holdfast_server::api::MAX_BODY_BYTES;
use holdfast_tests::TestApp;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

// ---- oversized bodies ----------------------------------------------------------------------

#[tokio::test]
async fn an_oversized_body_gets_413_in_the_json_envelope() {
    let app = TestApp::spawn().await;
    let huge = "x".repeat(MAX_BODY_BYTES + 1);
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/auth/login")
        .header("content-type", "application/json")
        .header("x-request-id", "big-1")
        .body(Body::from(
            json!({"username": huge, "password": "p"}).to_string(),
        ))
        .unwrap();
    let reply = app.send(request).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{reply:?}");
    assert_eq!(reply.code(), "body_too_large");
    assert_eq!(reply.body["error"]["request_id"], "big-1");
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
}

#[tokio::test]
async fn an_oversized_chunked_body_gets_413_in_the_json_envelope() {
    let app = TestApp::spawn().await;
    // No Content-Length: the limit is found while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b' '; 8 * 1024])).collect();
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/auth/login")
        .header("content-type", "application/json")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    let reply = app.send(request).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{reply:?}");
    assert_eq!(reply.code(), "body_too_large");
}

/// A real server on a loopback port: a client sending 2 MB reads the 413 envelope rather than a
/// reset connection.
#[tokio::test]
async fn a_two_megabyte_body_sent_over_tcp_reads_the_413_envelope() {
    let app = TestApp::spawn().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..3 {
        let response = client
            .post(format!("http://{address}/v1/auth/login"))
            .header("content-type", "application/json")
            .body(vec![b'x'; 2 * 1024 * 1024])
            .send()
            .await
            .expect("the 413 answer, not a reset");
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "body_too_large", "{body}");
    }
}

// ---- webhook targets ------------------------------------------------------------------------

/// A receiver on loopback that counts the connections made to it and answers 200.
async fn counting_receiver() -> (u16, Arc<AtomicUsize>) {
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let listener = listener.tap_io(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { StatusCode::OK }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, connections)
}

const FORBIDDEN_TARGETS: &[&str] = &[
    "http://127.0.0.1:8080/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.5/hook",
    "http://172.16.3.4/hook",
    "http://192.168.1.10/hook",
    "http://100.64.0.1/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fd00::1]/hook",
    "http://[fe80::1]/hook",
    "http://localhost:3000/hook",
    "http://api.localhost/hook",
    "http://0.0.0.0/hook",
    "http://2130706433/hook",
    "http://0x7f000001/hook",
    "http://0177.0.0.1/hook",
    "http://127.1/hook",
    "http://224.0.0.1/hook",
    "http://255.255.255.255/hook",
    "http://192.0.2.1/hook",
    "http://198.18.0.1/hook",
    "http://240.0.0.1/hook",
];

#[tokio::test]
async fn webhooks_to_non_public_addresses_are_refused_at_registration() {
    let app = TestApp::spawn_public_webhooks_only().await;
    let operator = app.operator_token().await;
    let (_, supplier) = app.supplier(&operator, "Acme").await;
    for url in FORBIDDEN_TARGETS {
        let reply = app
            .post("/v1/webhooks", Some(&supplier), json!({"url": url}))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url}: {reply:?}"
        );
        assert_eq!(reply.code(), "webhook_target_forbidden", "{url}");
    }
    let listed = app.get("/v1/webhooks", Some(&supplier)).await;
    assert_eq!(listed.body, json!([]), "nothing stored");
    // A public target is still fine.
    let public = app
        .post(
            "/v1/webhooks",
            Some(&supplier),
            json!({"url": "https://supplier.example/holdfast-events"}),
        )
        .await;
    assert_eq!(public.status, StatusCode::CREATED, "{public:?}");
}

#[tokio::test]
async fn the_development_flag_allows_private_webhook_targets() {
    let app = TestApp::spawn().await; // the harness turns the flag on
    let operator = app.operator_token().await;
    let (_, supplier) = app.supplier(&operator, "Acme").await;
    let reply = app
        .post(
            "/v1/webhooks",
            Some(&supplier),
            json!({"url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    use clap::Parser;
    let default = holdfast_server::config::Cli::try_parse_from(["holdfast"]).unwrap();
    assert!(!default.config.webhook_allow_private, "off by default");
    let on = holdfast_server::config::Cli::try_parse_from(["holdfast", "--webhook-allow-private"])
        .unwrap();
    assert!(on.config.webhook_allow_private);
}

/// Queues one event for `endpoint` straight into the outbox.
async fn queue_event(app: &TestApp, endpoint: &str) {
    let txn = holdfast_core::db::begin_write(&app.state.db).await.unwrap();
    holdfast_core::outbox::enqueue_in_txn(
        &txn,
        &app.clock,
        holdfast_core::outbox::Channel::Webhook,
        endpoint.to_owned(),
        json!({"kind": "test"}).to_string(),
        Some(uuid::Uuid::now_v7()),
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
}

/// An endpoint registered with a public URL whose row is then pointed at `url`, as if the rule
/// had been different when it was registered.
async fn endpoint_pointing_at(app: &TestApp, supplier: &str, url: &str) -> String {
    let registered = app
        .post(
            "/v1/webhooks",
            Some(supplier),
            json!({"url": "https://supplier.example/hook"}),
        )
        .await;
    assert_eq!(registered.status, StatusCode::CREATED, "{registered:?}");
    let id = registered.body["endpoint"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    holdfast_core::entities::webhook_endpoints::ActiveModel {
        id: Set(id.parse().unwrap()),
        url: Set(url.to_owned()),
        ..Default::default()
    }
    .update(&app.state.db)
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn a_forbidden_target_found_at_delivery_is_logged_as_refused_without_connecting() {
    let app = TestApp::spawn_public_webhooks_only().await;
    let operator = app.operator_token().await;
    let (_, supplier) = app.supplier(&operator, "Acme").await;
    let (port, connections) = counting_receiver().await;
    // An IP literal (checked before sending), a numeric disguise of one, and a name that
    // resolves to loopback (refused by the resolver).
    for url in [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
        format!("http://localhost:{port}/hook"),
    ] {
        let endpoint = endpoint_pointing_at(&app, &supplier, &url).await;
        queue_event(&app, &endpoint).await;
        app.deliver().await;
        let log = app
            .get(
                &format!("/v1/webhooks/{endpoint}/deliveries"),
                Some(&supplier),
            )
            .await;
        assert_eq!(log.status, StatusCode::OK, "{log:?}");
        let entry = &log.body[0];
        assert_ne!(entry["status"], "delivered", "{url}: {log:?}");
        assert!(
            entry["last_error"]
                .as_str()
                .unwrap_or("")
                .contains("refused"),
            "{url}: {log:?}"
        );
        assert_eq!(entry["last_status_code"], Value::Null);
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "nothing connected");
}

#[tokio::test]
async fn with_the_development_flag_the_same_receiver_is_reached() {
    // The control for the test above: the receiver does answer when private targets are on.
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (_, supplier) = app.supplier(&operator, "Acme").await;
    let (port, connections) = counting_receiver().await;
    let endpoint =
        endpoint_pointing_at(&app, &supplier, &format!("http://127.0.0.1:{port}/hook")).await;
    queue_event(&app, &endpoint).await;
    app.deliver().await;
    let log = app
        .get(
            &format!("/v1/webhooks/{endpoint}/deliveries"),
            Some(&supplier),
        )
        .await;
    assert_eq!(log.body[0]["status"], "delivered", "{log:?}");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}
