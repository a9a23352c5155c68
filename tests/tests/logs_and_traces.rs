//! What reaches the logs and spans: a retail lifecycle and a pharmacy flow run under a subscriber
//! that records everything Holdfast's crates emit, at TRACE, in the JSON format, with every span's
//! close. The record must name the use cases with the ids of their case and prescription, and
//! must hold none of the test's personal data: phone numbers, names, card numbers, codes,
//! order and prescription numbers, drug names and codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::{Method, StatusCode};
use holdfast_tests::world::random_phone;
use holdfast_tests::{Reply, TestApp};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;

/// Every line Holdfast's crates wrote, shared by the tests of this binary (a subscriber is
/// global: the server's tasks run on other threads too).
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static CAPTURE: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = CaptureWriter(buffer.clone());
        let filter = tracing_subscriber::EnvFilter::new(
            "warn,holdfast_server=trace,holdfast_core=trace,holdfast_retail=trace,\
             holdfast_pharmacy=trace,holdfast_insurance=trace,holdfast_card_present=trace",
        );
        let logs = tracing_subscriber::fmt::layer()
            .json()
            .with_span_events(FmtSpan::CLOSE)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(logs).with(filter);
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buffer
    })
}

#[derive(Clone)]
struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn record() -> String {
    String::from_utf8(captured().lock().unwrap().clone()).unwrap()
}

/// Whether `secret` occurs in `text` as a value of its own, not inside a longer run of digits
/// (a six-digit code may well occur inside a latency's decimals).
fn occurs(text: &str, secret: &str) -> bool {
    let digits = secret.bytes().all(|b| b.is_ascii_digit());
    text.match_indices(secret).any(|(at, _)| {
        if !digits {
            return true;
        }
        let before = text[..at].bytes().next_back();
        let after = text[at + secret.len()..].bytes().next();
        !before.is_some_and(|b| b.is_ascii_digit()) && !after.is_some_and(|b| b.is_ascii_digit())
    })
}

fn assert_absent(text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(
            !occurs(text, secret),
            "{secret:?} reached the logs:\n{}",
            text.lines()
                .filter(|line| occurs(line, secret))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The spans (closed, as JSON) named `name`.
fn spans_named(text: &str, name: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "close" && line["span"]["name"] == name)
        .map(|line| line["span"].clone())
        .collect()
}

/// Asserts a span `name` closed with `field` = `value`.
fn assert_span(text: &str, name: &str, field: &str, value: &str) {
    let spans = spans_named(text, name);
    assert!(
        spans.iter().any(|span| span[field] == value),
        "no span {name} with {field}={value}; spans of that name: {spans:?}"
    );
}

/// The id of the only row of `table` (each test runs on a database of its own).
async fn only_id(app: &TestApp, table: &str) -> String {
    let rows = app
        .state
        .db
        .query_all_raw(Statement::from_string(
            app.backend(),
            format!("SELECT id FROM {table}"),
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{table}");
    rows[0].try_get::<uuid::Uuid>("", "id").unwrap().to_string()
}

/// A holder with a name of its own on a prepaid EC card; returns (card number, token, codes
/// its phone received).
async fn holder(
    app: &TestApp,
    operator: &str,
    name: &str,
    phone: &str,
) -> (String, String, String) {
    let issued = app
        .post_idempotent(
            "/v1/operator/shoppers",
            Some(operator),
            json!({"display_name": name, "phone": phone, "currency": "USD",
                   "initial_deposit": {"amount": "300.00", "currency": "USD"}}),
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{issued:?}");
    let card = issued.body["card"]["card_number"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = app
        .post("/v1/auth/card-login", None, json!({"card_number": card}))
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{started:?}");
    let challenge = started.body["challenge_id"].as_str().unwrap().to_owned();
    let code = app.code_for(phone, &challenge).await;
    let answered = app.answer(&challenge, &code, "approve").await;
    assert_eq!(answered.status, StatusCode::OK, "{answered:?}");
    let token = answered.body["token"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    (card, token, code)
}

/// Answers `challenge` from `phone`; returns the reply and the code used.
async fn approve(app: &TestApp, phone: &str, challenge: &str) -> (Reply, String) {
    let code = app.code_for(phone, challenge).await;
    let reply = app.answer(challenge, &code, "approve").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    (reply, code)
}

#[tokio::test]
async fn a_retail_lifecycle_leaves_ids_in_the_spans_and_no_personal_data_in_the_logs() {
    captured();
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let phone = random_phone();
    let name = "Hannelore Quistgaard-Ruiz";
    let (card, shopper, login_code) = holder(&app, &operator, name, &phone).await;
    let (_, supplier) = app.supplier(&operator, "Acme Supplies").await;
    let commodity = app.commodity(&supplier, "24.00", "0.05").await;

    let (number, challenge) = app.placed_order(&shopper, &commodity, 2).await;
    let (_, order_code) = approve(&app, &phone, &challenge).await;
    let requested = app
        .post(
            &format!("/v1/retail/orders/{number}/settlement-request"),
            Some(&supplier),
            json!({}),
        )
        .await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    let settlement = app.pending_confirmation(&shopper, &number).await;
    let (settled, settlement_code) = approve(&app, &phone, &settlement).await;
    assert_eq!(settled.body["outcome"], "settled");
    // A console page whose path holds the phone number.
    let page = app.get(&format!("/phone/{phone}"), None).await;
    assert!(
        page.status.is_success() || page.status.is_redirection() || page.status.is_client_error()
    );

    let case_id = only_id(&app, "escrow_cases").await;
    let text = record();
    // It can fail the other way: the use cases are there, named, with the case's id.
    assert_span(&text, "retail.place_order", "case_id", &case_id);
    assert_span(&text, "retail.after_answer", "case_id", &case_id);
    assert_span(&text, "retail.request_settlement", "case_id", &case_id);
    assert_span(&text, "app.after_case_answer", "case_id", &case_id);
    assert_span(&text, "escrow.settle", "case_id", &case_id);
    assert_span(&text, "app.answer_case", "challenge_id", &settlement);
    assert!(!spans_named(&text, "outbox.deliver").is_empty());
    // The request span: the route's template, its method and, at the end, its status.
    assert_span(
        &text,
        "request",
        "route",
        "/v1/retail/orders/{order_number}/settlement-request",
    );
    assert_span(&text, "request", "route", "/phone/{phone}");
    let served = spans_named(&text, "request");
    assert!(
        served.iter().any(|span| span["method"] == "POST"
            && span["route"] == "/v1/retail/orders"
            && span["status"] == 201
            && span["latency_ms"].is_number()),
        "{served:?}"
    );

    let national = phone.trim_start_matches('+').to_owned();
    assert_absent(
        &text,
        &[
            phone.clone(),
            national,
            name.to_owned(),
            card.clone(),
            card.replace('-', ""),
            number.clone(),
            login_code,
            order_code,
            settlement_code,
        ],
    );
}

#[tokio::test]
async fn a_pharmacy_flow_leaves_ids_in_the_spans_and_no_personal_data_in_the_logs() {
    captured();
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let hospital = app
        .post(
            "/v1/pharmacy/hospitals",
            Some(&operator),
            json!({"name": "St Brigid's Infirmary", "code": "H73105"}),
        )
        .await;
    assert_eq!(hospital.status, StatusCode::CREATED, "{hospital:?}");
    let hospital = hospital.body["hospital_id"].as_str().unwrap().to_owned();
    let prescriber_name = "Dr Ottoline Vasquez-Brandt";
    let (_, prescriber) = app
        .onboard_staff(
            &operator,
            &format!("/v1/pharmacy/hospitals/{hospital}/prescribers"),
            "dr",
            json!({"display_name": prescriber_name}),
        )
        .await;
    let (_, drugstore) = app
        .onboard_staff(
            &operator,
            "/v1/pharmacy/drugstores",
            "store",
            json!({"name": "Corner Pharmacy"}),
        )
        .await;
    let phone = random_phone();
    let patient_name = "Wilhelmina Okonkwo-Strand";
    let (card, patient, login_code) = holder(&app, &operator, patient_name, &phone).await;

    let drug = "Quetiaprazolam";
    let drug_code = "731955402";
    let dose = "one tablet at moonrise";
    let note = "allergic to peanuts-3319";
    let issued = app
        .post(
            "/v1/pharmacy/prescriptions",
            Some(&prescriber),
            json!({"card_number": card, "notes": note, "items": [
                {"drug_code": drug_code, "name": drug, "strength": "5 mg tablets", "dose": dose,
                 "quantity": 10, "unit": "tablet", "days": 10}]}),
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{issued:?}");
    let number = issued.body["prescription_number"]
        .as_str()
        .unwrap()
        .to_owned();

    // Flow B: the drugstore asks with the medical card, the phone allows it.
    let as_store = |method: Method, path: String, secret: Option<String>, body: Value| {
        let app = &app;
        let drugstore = drugstore.clone();
        async move {
            let headers: Vec<(&str, &str)> = match &secret {
                Some(secret) => vec![("claim-secret", secret.as_str())],
                None => vec![],
            };
            app.request(method, &path, Some(&drugstore), Some(body), &headers)
                .await
        }
    };
    let claimed = as_store(
        Method::POST,
        format!("/v1/pharmacy/prescriptions/{number}/claim"),
        None,
        json!({"card_number": card}),
    )
    .await;
    assert_eq!(claimed.status, StatusCode::OK, "{claimed:?}");
    let secret = claimed.body["claim_secret"].as_str().unwrap().to_owned();
    let pending = || {
        let (app, patient, number) = (&app, patient.clone(), number.clone());
        async move {
            let view = app
                .get(
                    &format!("/v1/pharmacy/prescriptions/{number}"),
                    Some(&patient),
                )
                .await;
            view.body["pending_confirmation"]["challenge_id"]
                .as_str()
                .unwrap_or_else(|| panic!("nothing to confirm: {view:?}"))
                .to_owned()
        }
    };
    let (_, consent_code) = approve(&app, &phone, &pending().await).await;
    let priced = as_store(
        Method::POST,
        format!("/v1/pharmacy/prescriptions/{number}/price"),
        Some(secret.clone()),
        json!({"price": {"amount": "18.50", "currency": "USD"}}),
    )
    .await;
    assert_eq!(priced.status, StatusCode::OK, "{priced:?}");
    let paying = app
        .post_idempotent(
            &format!("/v1/pharmacy/prescriptions/{number}/payment"),
            Some(&patient),
            json!({"method": "lump_sum"}),
        )
        .await;
    assert_eq!(paying.status, StatusCode::OK, "{paying:?}");
    let (paid, payment_code) = approve(&app, &phone, &pending().await).await;
    let order = paid.body["order_number"].as_str().unwrap().to_owned();
    let dispensed = as_store(
        Method::POST,
        format!("/v1/pharmacy/prescriptions/{number}/dispense"),
        Some(secret.clone()),
        json!({"order_number": order, "handover": "collected_at_counter"}),
    )
    .await;
    assert_eq!(dispensed.status, StatusCode::OK, "{dispensed:?}");
    let requested = as_store(
        Method::POST,
        format!("/v1/pharmacy/prescriptions/{number}/payment-request"),
        Some(secret.clone()),
        json!({"order_number": order}),
    )
    .await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    let (released, settlement_code) = approve(&app, &phone, &pending().await).await;
    assert_eq!(released.body["outcome"], "settled", "{released:?}");

    let prescription_id = only_id(&app, "pharmacy_prescriptions").await;
    let case_id = only_id(&app, "escrow_cases").await;
    let text = record();
    assert_span(&text, "pharmacy.issue", "prescription_id", &prescription_id);
    assert_span(&text, "pharmacy.claim", "prescription_id", &prescription_id);
    assert_span(&text, "pharmacy.price", "prescription_id", &prescription_id);
    assert_span(&text, "pharmacy.choose_payment", "case_id", &case_id);
    assert_span(
        &text,
        "pharmacy.dispense",
        "prescription_id",
        &prescription_id,
    );
    assert_span(&text, "pharmacy.request_payment", "case_id", &case_id);
    assert_span(&text, "pharmacy.after_answer", "case_id", &case_id);

    let national = phone.trim_start_matches('+').to_owned();
    assert_absent(
        &text,
        &[
            phone.clone(),
            national,
            patient_name.to_owned(),
            prescriber_name.to_owned(),
            card.clone(),
            card.replace('-', ""),
            number.clone(),
            order,
            secret,
            drug.to_owned(),
            drug_code.to_owned(),
            dose.to_owned(),
            note.to_owned(),
            login_code,
            consent_code,
            payment_code,
            settlement_code,
        ],
    );
}
