//! The phone channel outside the simulator: the provider's signed inbound webhook, and the
//! SMS and ARS adapters that send to a provider's HTTP endpoint (here a receiver on
//! 127.0.0.1 that the test starts itself).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use holdfast_core::ids::ChallengeId;
use holdfast_core::outbox::PhoneMessage;
use holdfast_core::phone::{GatewayError, PhoneGateway};
use holdfast_core::phone_number::PhoneNumber;
use holdfast_server::api::phone::sign;
use holdfast_server::phone_gateways::{Channel, HttpPhoneGateway};
use holdfast_server::state::WebhookSecret;
use holdfast_tests::TestApp;
use holdfast_tests::world::Shop;
use http_body_util::BodyExt;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

const PROVIDER_SECRET: &[u8] = b"provider-shared-secret-for-tests";

/// The application with the provider's webhook secret configured, on the test's database.
fn with_webhook(app: &TestApp, secret: &[u8]) -> Router {
    let mut state = app.state.clone();
    state.webhook_secret = Some(WebhookSecret(Arc::from(secret)));
    holdfast_server::app(state)
}

/// Posts `body` to the inbound webhook with `signature` (if any).
async fn inbound(router: &Router, body: &[u8], signature: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/v1/phone/inbound")
        .header("content-type", "application/json");
    if let Some(signature) = signature {
        request = request.header("holdfast-signature", signature);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body.to_vec())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, body)
}

fn reply_body(challenge: &str, from: &str, code: &str, decision: &str) -> Vec<u8> {
    json!({"challenge_id": challenge, "from": from, "code": code, "decision": decision})
        .to_string()
        .into_bytes()
}

fn code_of(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_signed_reply_from_the_right_phone_answers_the_confirmation() {
    let phone = "+821052010001";
    let stranger_phone = "+821052010002";
    let Shop {
        app,
        supplier,
        shopper,
        commodity,
        ..
    } = Shop::spawn(phone, "100.00", "30.00", "0.10").await;
    let router = with_webhook(&app, PROVIDER_SECRET);
    let placed = app.place_order(&shopper, &commodity, 1).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{placed:?}");
    let number = placed.body["order_number"].as_str().unwrap().to_owned();
    let challenge = placed.body["pending_confirmation"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = app.code_for(phone, &challenge).await;
    let now = app.clock.now().timestamp();
    let approve = reply_body(&challenge, phone, &code, "approve");

    // No signature, a forged one, one over another body, a stale or a future one: refused
    // before anything is looked up.
    let (status, body) = inbound(&router, &approve, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(code_of(&body), "signature_missing");
    let forged = sign(b"not-the-provider-secret", &approve, now);
    let (status, body) = inbound(&router, &approve, Some(&forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(code_of(&body), "signature_invalid");
    let deny = reply_body(&challenge, phone, &code, "deny");
    let for_deny = sign(PROVIDER_SECRET, &deny, now);
    let (status, body) = inbound(&router, &approve, Some(&for_deny)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(code_of(&body), "signature_invalid");
    for skew in [-301, 301, -3600] {
        let stale = sign(PROVIDER_SECRET, &approve, now + skew);
        let (status, body) = inbound(&router, &approve, Some(&stale)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{skew}: {body}");
        assert_eq!(code_of(&body), "signature_invalid");
    }

    // Correctly signed, but from another phone: the confirmation is not found for it.
    let from_stranger = reply_body(&challenge, stranger_phone, &code, "approve");
    let signed = sign(PROVIDER_SECRET, &from_stranger, now);
    let (status, body) = inbound(&router, &from_stranger, Some(&signed)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(code_of(&body), "not_found");
    assert_eq!(
        app.order_state(&shopper, &number).await,
        "awaiting_order_confirmation"
    );

    // A wrong code relayed by the provider counts as a wrong code.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let wrong_reply = reply_body(&challenge, phone, wrong, "approve");
    let signed = sign(PROVIDER_SECRET, &wrong_reply, now);
    let (status, body) = inbound(&router, &wrong_reply, Some(&signed)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(code_of(&body), "challenge_wrong_code");

    // The real answer.
    let signed = sign(PROVIDER_SECRET, &approve, now);
    let (status, body) = inbound(&router, &approve, Some(&signed)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "order_approved");
    assert_eq!(body["state"], "frozen");
    assert_eq!(app.order_state(&shopper, &number).await, "frozen");
    // The same delivery replayed does nothing more.
    let (status, body) = inbound(&router, &approve, Some(&signed)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(code_of(&body), "challenge_closed");

    // The settlement, answered at the edge of the tolerance (300 s is still fresh).
    let requested = app
        .post(
            &format!("/v1/retail/orders/{number}/settlement-request"),
            Some(&supplier),
            json!({}),
        )
        .await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    let settlement = app.pending_confirmation(&shopper, &number).await;
    let code = app.code_for(phone, &settlement).await;
    let release = reply_body(&settlement, phone, &code, "approve");
    let signed = sign(PROVIDER_SECRET, &release, now - 300);
    let (status, body) = inbound(&router, &release, Some(&signed)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"], "settled");
    assert_eq!(app.balance(&supplier, "withdrawal").await, "27.00");
    assert_eq!(app.balance(&shopper, "prepaid").await, "70.00");
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_login_cannot_be_answered_through_the_webhook() {
    let app = TestApp::spawn().await;
    let router = with_webhook(&app, PROVIDER_SECRET);
    let operator = app.operator_token().await;
    let phone = "+821052020001";
    let (_, number) = app.prepaid_card(&operator, phone, "10.00").await;
    let started = app
        .post("/v1/auth/card-login", None, json!({"card_number": number}))
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{started:?}");
    let challenge = started.body["challenge_id"].as_str().unwrap().to_owned();
    let code = app.code_for(phone, &challenge).await;
    let body = reply_body(&challenge, phone, &code, "approve");
    let signed = sign(PROVIDER_SECRET, &body, app.clock.now().timestamp());
    let (status, reply) = inbound(&router, &body, Some(&signed)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(code_of(&reply), "challenge_not_answerable");
    assert!(reply["token"].is_null());
    // The code still logs in where logins are answered.
    let answered = app.answer(&challenge, &code, "approve").await;
    assert_eq!(answered.status, StatusCode::OK, "{answered:?}");
}

#[tokio::test]
async fn without_a_configured_secret_the_webhook_is_off() {
    let phone = "+821052030001";
    let Shop {
        app,
        shopper,
        commodity,
        ..
    } = Shop::spawn(phone, "100.00", "30.00", "0.10").await;
    assert!(app.state.webhook_secret.is_none());
    let placed = app.place_order(&shopper, &commodity, 1).await;
    let number = placed.body["order_number"].as_str().unwrap().to_owned();
    let challenge = placed.body["pending_confirmation"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = app.code_for(phone, &challenge).await;
    let body = reply_body(&challenge, phone, &code, "approve");
    let signed = sign(PROVIDER_SECRET, &body, app.clock.now().timestamp());
    let (status, reply) = inbound(&app.router, &body, Some(&signed)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
    assert_eq!(code_of(&reply), "webhook_disabled");
    assert_eq!(
        app.order_state(&shopper, &number).await,
        "awaiting_order_confirmation"
    );
}

/// What the provider's endpoint received: the Authorization header and the JSON body.
type Received = Arc<Mutex<Vec<(Option<String>, Value)>>>;

async fn record(
    State((received, status)): State<(Received, StatusCode)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    received.lock().unwrap().push((authorization, body));
    status
}

/// A provider endpoint on 127.0.0.1 that records what it receives and answers `status`.
async fn provider(status: StatusCode) -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let received: Received = Arc::default();
    let router = Router::new()
        .route("/v1/messages", axum::routing::post(record))
        .with_state((received.clone(), status));
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (format!("http://{address}/v1/messages"), received)
}

fn taken(received: &Received) -> Vec<(Option<String>, Value)> {
    std::mem::take(&mut *received.lock().unwrap())
}

fn message(to: &str, challenge: Option<ChallengeId>) -> PhoneMessage {
    PhoneMessage {
        to: PhoneNumber::parse(to).unwrap(),
        body: "Holdfast: Approve order 1234, 30.00 USD to Acme. Code 123456.".to_owned(),
        challenge,
    }
}

#[tokio::test]
async fn the_sms_adapter_posts_the_message_with_its_bearer_token() {
    let (url, received) = provider(StatusCode::OK).await;
    let gateway =
        HttpPhoneGateway::new(Channel::Sms, &url, "sms-provider-token".to_owned().into()).unwrap();
    assert_eq!(gateway.name(), "sms");
    let challenge = ChallengeId::new();
    gateway
        .send(&message("+821052040001", Some(challenge)))
        .await
        .unwrap();
    let got = taken(&received);
    assert_eq!(got.len(), 1, "{got:?}");
    let (authorization, body) = &got[0];
    assert_eq!(authorization.as_deref(), Some("Bearer sms-provider-token"));
    assert_eq!(
        body,
        &json!({"channel": "sms", "to": "+821052040001",
                "text": "Holdfast: Approve order 1234, 30.00 USD to Acme. Code 123456.",
                "reference": challenge.to_string()})
    );

    // A notice that confirms nothing carries no reference.
    gateway.send(&message("+821052040001", None)).await.unwrap();
    let got = taken(&received);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].1["reference"].is_null(), "{got:?}");
    assert!(got[0].1.get("collect_digits").is_none(), "{got:?}");
}

#[tokio::test]
async fn a_provider_failure_is_an_error_for_the_outbox_to_retry() {
    let (url, received) = provider(StatusCode::INTERNAL_SERVER_ERROR).await;
    let gateway =
        HttpPhoneGateway::new(Channel::Sms, &url, "sms-provider-token".to_owned().into()).unwrap();
    let failed = gateway
        .send(&message("+821052050001", Some(ChallengeId::new())))
        .await;
    assert!(
        matches!(failed, Err(GatewayError::Refused(_))),
        "{failed:?}"
    );
    // It did reach the provider: the failure is the provider's answer.
    assert_eq!(taken(&received).len(), 1);

    // Only http(s) endpoints are accepted.
    assert!(
        HttpPhoneGateway::new(Channel::Sms, "ftp://127.0.0.1/x", "t".to_owned().into()).is_err()
    );
}

#[tokio::test]
async fn the_ars_adapter_asks_the_keypad_for_the_code_digits() {
    let (url, received) = provider(StatusCode::ACCEPTED).await;
    let gateway =
        HttpPhoneGateway::new(Channel::Ars, &url, "ars-provider-token".to_owned().into()).unwrap();
    assert_eq!(gateway.name(), "ars");
    let challenge = ChallengeId::new();
    gateway
        .send(&message("+821052060001", Some(challenge)))
        .await
        .unwrap();
    gateway.send(&message("+821052060001", None)).await.unwrap();
    let got = taken(&received);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0.as_deref(), Some("Bearer ars-provider-token"));
    assert_eq!(got[0].1["channel"], "ars");
    assert_eq!(got[0].1["to"], "+821052060001");
    assert_eq!(got[0].1["reference"], challenge.to_string());
    assert_eq!(got[0].1["collect_digits"], 6);
    // Nothing to collect when the call confirms nothing.
    assert_eq!(got[1].1["channel"], "ars");
    assert!(got[1].1.get("collect_digits").is_none(), "{got:?}");
}

#[tokio::test]
async fn the_outbox_delivers_a_login_code_through_the_sms_provider() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let phone = "+821052070001";
    let (_, number) = app.prepaid_card(&operator, phone, "10.00").await;
    let (url, received) = provider(StatusCode::OK).await;
    // The server as it runs with a real SMS provider, on the test's database and clock.
    let gateway =
        HttpPhoneGateway::new(Channel::Sms, &url, "sms-provider-token".to_owned().into()).unwrap();
    let state = holdfast_server::build_state(
        app.state.db.clone(),
        app.clock.clone(),
        holdfast_server::Settings {
            secret: holdfast_tests::SECRET.to_vec(),
            token_ttl_secs: 3600,
            policy: holdfast_core::challenge::ChallengePolicy::default(),
            auto_settle: chrono::Duration::hours(holdfast_core::DEFAULT_AUTO_SETTLE_HOURS),
            gateway: Some(Arc::new(gateway)),
            webhook_secret: None,
            webhook_policy: holdfast_core::webhook_target::TargetPolicy::PublicOnly,
        },
    );
    assert!(state.simulator_key.is_none());
    let router = holdfast_server::app(state.clone());

    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/auth/card-login")
        .header("content-type", "application/json")
        .body(Body::from(json!({"card_number": number}).to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let started: Value = serde_json::from_slice(&bytes).unwrap();
    let challenge = started["challenge_id"].as_str().unwrap().to_owned();

    // With a real gateway the simulator's inbox is closed, even to an operator.
    let operator_token = app.harness_operator().await;
    let inbox = router
        .clone()
        .oneshot(
            Request::builder()
                .uri(format!("/v1/phone-simulator/{phone}/messages"))
                .header("authorization", format!("Bearer {operator_token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(inbox.status(), StatusCode::NOT_FOUND);

    holdfast_server::workers::deliver_outbox(&state)
        .await
        .unwrap();
    let got = taken(&received);
    assert_eq!(got.len(), 1, "{got:?}");
    let (authorization, body) = &got[0];
    assert_eq!(authorization.as_deref(), Some("Bearer sms-provider-token"));
    assert_eq!(body["channel"], "sms");
    assert_eq!(body["to"], phone);
    assert_eq!(body["reference"], challenge.as_str());
    let text = body["text"].as_str().unwrap();
    let code: String = text
        .split("Code ")
        .nth(1)
        .unwrap_or_else(|| panic!("no code in {text}"))
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert_eq!(code.len(), 6, "{text}");

    // The code the provider carried logs the card in.
    let answered = app.answer(&challenge, &code, "approve").await;
    assert_eq!(answered.status, StatusCode::OK, "{answered:?}");
    assert!(answered.body["token"]["access_token"].is_string());
    // Delivered once: a second round sends nothing.
    holdfast_server::workers::deliver_outbox(&state)
        .await
        .unwrap();
    assert!(taken(&received).is_empty());
}

#[tokio::test]
async fn a_reader_waiting_on_the_simulator_gets_the_code_the_moment_it_is_delivered() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let phone = "+821055501234";
    let (_, card) = app.prepaid_card(&operator, phone, "10.00").await;
    let started = app
        .post("/v1/auth/card-login", None, json!({"card_number": card}))
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{started:?}");
    let challenge = started.body["challenge_id"].as_str().unwrap().to_owned();
    let query = format!("challenge_id={challenge}");
    let reader = app.harness_operator().await;

    // Not delivered yet: without a wait the answer is empty at once.
    let now = app.inbox(phone, &query).await;
    assert_eq!(now.status, StatusCode::OK, "{now:?}");
    assert_eq!(now.body, json!([]));

    // A waiting reader is answered as soon as the outbox delivers.
    let waiting = {
        let app_router = app.router.clone();
        let path = format!("/v1/phone-simulator/{phone}/messages?{query}&wait_ms=10000");
        tokio::spawn(async move {
            let request = Request::get(path)
                .header("authorization", format!("Bearer {reader}"))
                .body(Body::empty())
                .unwrap();
            let response = app_router.oneshot(request).await.unwrap();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "it waits for the message");
    let started_at = std::time::Instant::now();
    app.deliver().await;
    let messages = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
        .await
        .expect("answered after delivery")
        .unwrap();
    assert!(started_at.elapsed() < std::time::Duration::from_secs(5));
    let messages = messages.as_array().unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["challenge_id"], challenge.as_str());
    assert_eq!(messages[0]["code"].as_str().unwrap().len(), 6);

    // A wait needs something to wait for.
    let aimless = app.inbox(phone, "wait_ms=100").await;
    assert_eq!(aimless.status, StatusCode::BAD_REQUEST, "{aimless:?}");
}

#[tokio::test]
async fn one_delivery_round_sends_many_texts_and_redacts_every_one() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let mut challenges = Vec::new();
    for index in 0..12 {
        let phone = format!("+8210555{index:05}");
        let (_, card) = app.prepaid_card(&operator, &phone, "10.00").await;
        let started = app
            .post("/v1/auth/card-login", None, json!({"card_number": card}))
            .await;
        challenges.push((
            phone,
            started.body["challenge_id"].as_str().unwrap().to_owned(),
        ));
    }
    let delivered = holdfast_server::workers::deliver_outbox(&app.state)
        .await
        .unwrap();
    assert!(delivered >= 12, "{delivered}");
    for (phone, challenge) in &challenges {
        let inbox = app.inbox(phone, &format!("challenge_id={challenge}")).await;
        assert_eq!(
            inbox.body.as_array().unwrap().len(),
            1,
            "{phone}: {inbox:?}"
        );
    }
    // Nothing pending, and no delivered text keeps its code in the outbox.
    let backend = app.backend();
    let rows = app
        .state
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            backend,
            "SELECT status, payload FROM outbox WHERE channel = 'phone'",
        ))
        .await
        .unwrap();
    assert!(rows.len() >= 12);
    for row in rows {
        let status: String = row.try_get("", "status").unwrap();
        let payload: String = row.try_get("", "payload").unwrap();
        assert_eq!(status, "delivered");
        assert_eq!(payload, "{\"redacted\":true}");
    }
}
