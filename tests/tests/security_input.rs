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
    // A client that writes its whole body before reading (as curl does without
    // `Expect: 100-continue`): answering early and closing made its writes fail with a broken
    // pipe or reset. The server now reads the rest first.
    let outcomes = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        (0..5)
            .map(|_| {
                let mut stream = std::net::TcpStream::connect(address).unwrap();
                let body = vec![b'x'; 2 * 1024 * 1024];
                let head = format!(
                    "POST /v1/auth/login HTTP/1.1\r\nhost: holdfast\r\n\
                     content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let written = stream
                    .write_all(head.as_bytes())
                    .and_then(|()| stream.write_all(&body));
                let mut answer = Vec::new();
                let read = stream.read_to_end(&mut answer);
                (
                    written.map_err(|e| e.kind()),
                    read.map_err(|e| e.kind()),
                    String::from_utf8_lossy(&answer).into_owned(),
                )
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (written, read, answer) in outcomes {
        assert_eq!(written, Ok(()), "{answer}");
        assert!(read.is_ok(), "{read:?}");
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("\"code\":\"body_too_large\""), "{answer}");
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

// ---- text fields and amounts ---------------------------------------------------------------

/// Text no field accepts, with the code it gets.
fn bad_texts() -> Vec<(String, &'static str)> {
    vec![
        ("Thing\u{0}".to_owned(), "text_control_character"),
        ("\u{0}".to_owned(), "text_control_character"),
        ("Thing\u{1b}[31m".to_owned(), "text_control_character"),
        ("Thing\u{7f}".to_owned(), "text_control_character"),
        ("Two\nlines".to_owned(), "text_control_character"),
        ("x".repeat(60_000), "text_too_long"),
        (String::new(), "text_empty"),
        ("   ".to_owned(), "text_empty"),
    ]
}

fn assert_refused(reply: &holdfast_tests::Reply, code: &str, what: &str) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}: {reply:?}");
    assert_eq!(reply.code(), code, "{what}: {reply:?}");
}

#[tokio::test]
async fn bad_commodity_text_is_refused_with_its_code_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (_, supplier) = app.supplier(&operator, "Acme").await;
    let before = app.count_rows("retail_commodities").await;
    let commodity = |fields: Value| {
        let mut body = json!({"name": "Thing", "price": {"amount": "10.00", "currency": "USD"}});
        for (key, value) in fields.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };
    for (text, code) in bad_texts() {
        let reply = app
            .post(
                "/v1/retail/commodities",
                Some(&supplier),
                commodity(json!({"name": text})),
            )
            .await;
        assert_refused(&reply, code, "name");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("name:")
        );
    }
    // Optional fields may be empty, never hold control characters or run long.
    for field in ["manufacturer", "description"] {
        for (text, code) in [
            ("a\u{0}b".to_owned(), "text_control_character"),
            ("x".repeat(60_000), "text_too_long"),
        ] {
            let reply = app
                .post(
                    "/v1/retail/commodities",
                    Some(&supplier),
                    commodity(json!({field: text})),
                )
                .await;
            assert_refused(&reply, code, field);
        }
    }
    assert_eq!(app.count_rows("retail_commodities").await, before);
    // A description may run over lines; a manufacturer may be empty.
    let fine = app
        .post(
            "/v1/retail/commodities",
            Some(&supplier),
            commodity(json!({"manufacturer": "", "description": "Line one\n\tLine two\r\n"})),
        )
        .await;
    assert_eq!(fine.status, StatusCode::CREATED, "{fine:?}");
    assert_eq!(fine.body["description"], "Line one\n\tLine two");
}

#[tokio::test]
async fn bad_text_is_refused_on_onboarding_login_webhooks_and_queries() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (_, supplier) = app.supplier(&operator, "Acme").await;
    let parties = app.count_rows("parties").await;
    for (text, code) in bad_texts() {
        let username = format!("sup-{}", uuid::Uuid::new_v4().simple());
        let onboard = app
            .post(
                "/v1/operator/suppliers",
                Some(&operator),
                json!({"display_name": text, "username": username, "password": "supplier-password"}),
            )
            .await;
        assert_refused(&onboard, code, "display_name");
        let login = app
            .post(
                "/v1/auth/login",
                None,
                json!({"username": text, "password": "supplier-password"}),
            )
            .await;
        assert_refused(&login, code, "username");
        let hook = app
            .post("/v1/webhooks", Some(&supplier), json!({"url": text}))
            .await;
        assert_refused(&hook, code, "url");
    }
    let password = app
        .post(
            "/v1/operator/suppliers",
            Some(&operator),
            json!({"display_name": "Acme", "username": "acme-2", "password": "supplier\u{0}password"}),
        )
        .await;
    assert_refused(&password, "text_control_character", "password");
    let username = app
        .post(
            "/v1/operator/suppliers",
            Some(&operator),
            json!({"display_name": "Acme", "username": "has space", "password": "supplier-password"}),
        )
        .await;
    assert_refused(&username, "text_invalid_character", "username");
    assert_eq!(app.count_rows("parties").await, parties, "nothing stored");
    assert_eq!(app.count_rows("webhook_endpoints").await, 0);

    for (query, code) in [
        ("owner=%00", "text_control_character"),
        ("owner=", "text_empty"),
        ("owner=plat%1Bform", "text_control_character"),
    ] {
        let reply = app
            .get(&format!("/v1/operator/accounts?{query}"), Some(&operator))
            .await;
        assert_refused(&reply, code, query);
    }
}

#[tokio::test]
async fn a_dispute_reason_may_span_lines_but_holds_no_nul() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (_, shopper) = app.shopper(&operator, "+821077700001", "50.00").await;
    // The reason is checked before the order is looked up: any number will do.
    let number = holdfast_core::order_number::OrderNumber::generate().to_string();
    for (reason, code) in [
        ("late\u{0}".to_owned(), "text_control_character"),
        ("x".repeat(60_000), "text_too_long"),
        ("\n\t ".to_owned(), "text_empty"),
    ] {
        let reply = app
            .post(
                &format!("/v1/retail/orders/{number}/dispute"),
                Some(&shopper),
                json!({"reason": reason}),
            )
            .await;
        assert_refused(&reply, code, "reason");
    }
}

#[tokio::test]
async fn amounts_follow_one_grammar_and_refusals_carry_their_code() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (_, supplier) = app.supplier(&operator, "Acme").await;
    let before = app.count_rows("retail_commodities").await;
    for (amount, code) in [
        (" 10.00", "amount_invalid"),
        ("10.00 ", "amount_invalid"),
        ("+10.00", "amount_invalid"),
        ("-1", "amount_invalid"),
        ("1e3", "amount_invalid"),
        ("", "amount_invalid"),
        (".5", "amount_invalid"),
        ("5.", "amount_invalid"),
        ("010", "amount_invalid"),
        ("10.001", "amount_scale"),
        ("10.000", "amount_scale"),
    ] {
        let reply = app
            .post(
                "/v1/retail/commodities",
                Some(&supplier),
                json!({"name": "Thing", "price": {"amount": amount, "currency": "USD"}}),
            )
            .await;
        assert_refused(&reply, code, amount);
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("price"),
            "{reply:?}"
        );
    }
    assert_eq!(app.count_rows("retail_commodities").await, before);
    let won = app
        .post(
            "/v1/retail/commodities",
            Some(&supplier),
            json!({"name": "Thing", "price": {"amount": "1000.5", "currency": "KRW"}}),
        )
        .await;
    assert_refused(&won, "amount_scale", "KRW with decimals");
}

#[tokio::test]
async fn the_openapi_document_declares_the_text_and_amount_rules() {
    let app = TestApp::spawn().await;
    let document = app.get("/openapi.json", None).await;
    let schemas = &document.body["components"]["schemas"];
    let name = &schemas["Text_1_200"];
    assert_eq!(name["minLength"], 1, "{name}");
    assert_eq!(name["maxLength"], 200);
    assert!(
        name["pattern"]
            .as_str()
            .unwrap()
            .contains("\\u0000-\\u001F")
    );
    let notes = &schemas["MultilineText_0_1000"];
    assert_eq!(notes["maxLength"], 1000, "{notes}");
    let commodity = &schemas["CreateCommodity"]["properties"]["name"];
    assert_eq!(
        commodity["$ref"], "#/components/schemas/Text_1_200",
        "{commodity}"
    );
    let amount = &schemas["Money"]["properties"]["amount"];
    assert_eq!(
        amount["pattern"],
        holdfast_core::money::AMOUNT_PATTERN,
        "{amount}"
    );
}

#[tokio::test]
async fn every_schema_the_openapi_document_refers_to_is_in_it() {
    let app = TestApp::spawn().await;
    let document = app.get("/openapi.json", None).await;
    fn refs(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        ("$ref", Value::String(target)) => found.push(target.clone()),
                        _ => refs(inner, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&document.body, &mut found);
    let schemas = &document.body["components"]["schemas"];
    for target in found {
        let name = target.trim_start_matches("#/components/schemas/");
        assert!(schemas.get(name).is_some(), "dangling {target}");
    }
}
