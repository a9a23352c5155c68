//! What every client can rely on: the error envelope, authentication and roles, check digits
//! before look-ups, idempotency keys, the OpenAPI document, health.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use holdfast_tests::TestApp;
use serde_json::json;

#[tokio::test]
async fn malformed_json_gets_the_error_envelope_with_a_request_id() {
    let app = TestApp::spawn().await;
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/auth/login")
        .header("content-type", "application/json")
        .header("x-request-id", "req-123")
        .body(Body::from("{not json"))
        .unwrap();
    let reply = app.send(request).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), "invalid_json");
    assert_eq!(reply.body["error"]["request_id"], "req-123");
    assert_eq!(reply.headers["x-request-id"], "req-123");

    let wrong_type = app
        .post("/v1/auth/login", None, json!({"username": 5}))
        .await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    assert!(
        !wrong_type.body["error"]["request_id"]
            .as_str()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn unknown_routes_and_oversized_bodies_are_refused_in_the_envelope() {
    let app = TestApp::spawn().await;
    let missing = app.get("/v1/nothing-here", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "route_not_found");

    let huge = "x".repeat(100 * 1024);
    let too_big = app
        .post(
            "/v1/auth/login",
            None,
            json!({"username": huge, "password": "p"}),
        )
        .await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE, "{too_big:?}");
}

#[tokio::test]
async fn a_token_is_required_and_roles_are_enforced() {
    let app = TestApp::spawn().await;
    let anonymous = app.get("/v1/accounts", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.code(), "unauthenticated");
    let forged = app.get("/v1/accounts", Some("not.a.token")).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);

    let operator = app.operator_token().await;
    let (_, supplier) = app.supplier(&operator, "Acme").await;
    let (_, shopper) = app.shopper(&operator, "+821099990000", "10.00").await;
    // A shopper cannot onboard parties, list commodities as a supplier, or read the audit.
    let onboard = app
        .post(
            "/v1/operator/suppliers",
            Some(&shopper),
            json!({"display_name": "x", "username": "x", "password": "0123456789"}),
        )
        .await;
    assert_eq!(onboard.status, StatusCode::FORBIDDEN);
    assert_eq!(onboard.code(), "forbidden");
    let audit = app.get("/v1/operator/ledger/audit", Some(&supplier)).await;
    assert_eq!(audit.status, StatusCode::FORBIDDEN);
    let sell = app
        .post(
            "/v1/retail/commodities",
            Some(&shopper),
            json!({"name": "x", "price": {"amount": "1.00", "currency": "USD"}}),
        )
        .await;
    assert_eq!(sell.status, StatusCode::FORBIDDEN);
    let audit = app.get("/v1/operator/ledger/audit", Some(&operator)).await;
    assert_eq!(audit.status, StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_look_the_same() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    app.supplier(&operator, "Acme").await;
    let unknown = app
        .post(
            "/v1/auth/login",
            None,
            json!({"username": "nobody", "password": "whatever-123"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.code(), "bad_credentials");
}

#[tokio::test]
async fn a_mistyped_order_number_is_refused_before_any_look_up() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let valid = holdfast_core::order_number::OrderNumber::generate();
    let mut digits = valid.digits().as_bytes().to_vec();
    digits[11] = b'0' + (digits[11] - b'0' + 1) % 10;
    let mistyped = String::from_utf8(digits).unwrap();
    let typo = app
        .get(&format!("/v1/retail/orders/{mistyped}"), Some(&operator))
        .await;
    assert_eq!(typo.status, StatusCode::BAD_REQUEST, "{typo:?}");
    assert_eq!(typo.code(), "invalid_path");
    let garbage = app.get("/v1/retail/orders/hello", Some(&operator)).await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    let valid_but_unknown = holdfast_core::order_number::OrderNumber::generate();
    let unknown = app
        .get(
            &format!("/v1/retail/orders/{valid_but_unknown}"),
            Some(&operator),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_money_is_refused_with_a_stable_code() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (_, supplier) = app.supplier(&operator, "Acme").await;
    for (amount, currency) in [
        ("-1.00", "USD"),
        ("1.001", "USD"),
        ("1.5", "KRW"),
        ("abc", "USD"),
        ("1", "XXX"),
    ] {
        let reply = app
            .post(
                "/v1/retail/commodities",
                Some(&supplier),
                json!({"name": "x", "price": {"amount": amount, "currency": currency}}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{amount} {currency}: {reply:?}"
        );
    }
    // A supplier cannot set the platform's commission; the operator can, within range.
    let sneaky = app
        .post("/v1/retail/commodities", Some(&supplier),
            json!({"name": "x", "price": {"amount": "1.00", "currency": "USD"}, "commission_rate": "0"}))
        .await;
    assert_eq!(sneaky.status, StatusCode::BAD_REQUEST, "{sneaky:?}");
    let commodity = app.commodity(&supplier, "1.00", "0.1").await;
    let bad_rate = app
        .request(
            Method::PUT,
            &format!("/v1/operator/commodities/{commodity}/commission"),
            Some(&operator),
            Some(json!({"commission_rate": "1.5"})),
            &[],
        )
        .await;
    assert_eq!(bad_rate.code(), "commission_rate_invalid");
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (_, supplier) = app.supplier(&operator, "Acme").await;
    let (_, shopper) = app.shopper(&operator, "+821099990001", "100.00").await;
    let commodity = app.commodity(&supplier, "10.00", "0.1").await;
    let body = json!({"lines": [{"commodity_id": commodity, "quantity": 1}]});
    let first = app
        .request(
            Method::POST,
            "/v1/retail/orders",
            Some(&shopper),
            Some(body.clone()),
            &[("idempotency-key", "order-1")],
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    let again = app
        .request(
            Method::POST,
            "/v1/retail/orders",
            Some(&shopper),
            Some(body.clone()),
            &[("idempotency-key", "order-1")],
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    // One order, one hold.
    assert_eq!(app.balance(&shopper, "prepaid").await, "90.00");

    let other = json!({"lines": [{"commodity_id": commodity, "quantity": 2}]});
    let conflict = app
        .request(
            Method::POST,
            "/v1/retail/orders",
            Some(&shopper),
            Some(other),
            &[("idempotency-key", "order-1")],
        )
        .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(conflict.code(), "idempotency_key_reused");

    // A deposit retried with its key pays once; without a key it is refused.
    let accounts = app.get("/v1/accounts", Some(&shopper)).await;
    let account = accounts.body[0]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/accounts/{account}/deposits");
    let five = json!({"amount": {"amount": "5.00", "currency": "USD"}});
    for _ in 0..3 {
        let deposit = app
            .request(
                Method::POST,
                &path,
                Some(&operator),
                Some(five.clone()),
                &[("idempotency-key", "dep-1")],
            )
            .await;
        assert_eq!(deposit.status, StatusCode::CREATED, "{deposit:?}");
    }
    assert_eq!(app.balance(&shopper, "prepaid").await, "95.00");
    let keyless = app.post(&path, Some(&operator), five).await;
    assert_eq!(keyless.status, StatusCode::BAD_REQUEST);
    assert_eq!(keyless.code(), "idempotency_key_required");
    assert_eq!(app.balance(&shopper, "prepaid").await, "95.00");
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_api() {
    let app = TestApp::spawn().await;
    let doc = app.get("/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let paths = doc.body["paths"].as_object().unwrap();
    for path in [
        "/v1/retail/orders",
        "/v1/challenges/{challenge_id}/answer",
        "/v1/phone-simulator/{phone}/messages",
        "/v1/operator/shoppers",
        "/v1/operator/institutions",
        "/v1/institution/cards",
        "/v1/institution/cards/{card_number}/replace",
        "/v1/auth/card-login",
        "/v1/phone/inbound",
        "/v1/accounts/{account_id}/deposits",
        "/healthz",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc.body["components"]["schemas"]["Money"].is_object());
    assert!(doc.body["components"]["securitySchemes"]["bearer"].is_object());

    // What OpenAPI 3.1 requires and client generators enforce: a description on every
    // response, one operation per operationId. (CI also runs a validator over the document.)
    let mut operation_ids = std::collections::BTreeMap::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let Some(responses) = operation["responses"].as_object() else {
                continue;
            };
            for (status, response) in responses {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status} has no description"
                );
            }
            let id = operation["operationId"].as_str().unwrap().to_owned();
            if let Some(other) = operation_ids.insert(id.clone(), format!("{method} {path}")) {
                panic!("operationId {id} of {method} {path} is also {other}'s");
            }
        }
    }
    // An operation that refuses to run without an Idempotency-Key documents it as required.
    for (path, method) in [
        ("/v1/institution/cards", "post"),
        ("/v1/accounts/{account_id}/deposits", "post"),
        ("/v1/operator/shoppers", "post"),
        ("/v1/retail/orders", "post"),
    ] {
        let parameters = doc.body["paths"][path][method]["parameters"]
            .as_array()
            .unwrap();
        let key = parameters
            .iter()
            .find(|p| p["name"] == "Idempotency-Key")
            .unwrap_or_else(|| panic!("{method} {path} does not document Idempotency-Key"));
        assert_eq!(key["required"], true, "{method} {path}");
    }
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["database"], "ok");
}

#[tokio::test]
async fn large_and_fractional_amounts_round_trip_exactly() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    for (amount, currency) in [
        ("9999999999999.99", "USD"),
        ("0.01", "EUR"),
        ("999999999999999", "KRW"),
    ] {
        let reply = app
            .post_idempotent(
                "/v1/operator/shoppers",
                Some(&operator),
                json!({"display_name": "Rich", "phone": "+821099990002", "currency": currency,
                       "initial_deposit": {"amount": amount, "currency": currency}}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        assert_eq!(reply.body["prepaid_account"]["balance"], amount);
        assert_eq!(reply.body["prepaid_account"]["available"]["amount"], amount);
    }
    let too_much = app
        .post_idempotent(
            "/v1/operator/shoppers",
            Some(&operator),
            json!({"display_name": "Richer", "phone": "+821099990003", "currency": "USD",
                   "initial_deposit": {"amount": "10000000000000.01", "currency": "USD"}}),
        )
        .await;
    assert_eq!(too_much.status, StatusCode::BAD_REQUEST, "{too_much:?}");
    app.assert_ledger_clean().await;
}
