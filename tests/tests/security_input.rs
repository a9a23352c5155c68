//! Input at the edge (issue #12): oversized bodies, text fields and amounts, webhook targets.
//! Each refusal has a stable code in the error envelope, and nothing is stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use holdfast_server::api::MAX_BODY_BYTES;
use holdfast_tests::TestApp;
use serde_json::{Value, json};

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
