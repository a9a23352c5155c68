//! The pharmacy vertical end to end through the API: flow A (the patient chooses the drugstore
//! when it is prescribed), flow B (the patient's phone lets a drugstore open it), flow C
//! (medical supplies bought as retail goods with the medical card), and each rule: one
//! drugstore only (also when two claim at once), never dispensed twice (also concurrently),
//! cancellation until dispensing, expiry, the audit of every read, privacy before consent, and
//! the FHIR R4 view.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::{Method, StatusCode};
use chrono::Duration;
use holdfast_tests::world::random_phone;
use holdfast_tests::{Reply, TestApp};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Content that must never leave the places allowed to show it.
const DRUG: &str = "Zolpidemoxin";
const NOTE: &str = "Known sensitivity: confidential-note-7731";

struct Store {
    id: String,
    name: String,
    token: String,
}

struct Patient {
    id: String,
    card: String,
    phone: String,
    token: String,
}

struct Ward {
    app: Arc<TestApp>,
    operator: String,
    hospital: String,
    prescriber: String,
    stores: Vec<Store>,
    patient: Patient,
}

fn random_suffix() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

fn username(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn hospital(app: &TestApp, operator: &str, name: &str) -> (String, String) {
    let code = format!("H{:05}", random_suffix() % 100_000);
    let created = app
        .post(
            "/v1/pharmacy/hospitals",
            Some(operator),
            json!({"name": name, "code": code}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let id = created.body["hospital_id"].as_str().unwrap().to_owned();
    let (prescriber, token) = app
        .onboard_staff(
            operator,
            &format!("/v1/pharmacy/hospitals/{id}/prescribers"),
            "dr",
            json!({"display_name": "Dr Seo-yeon Kim"}),
        )
        .await;
    assert_eq!(prescriber["role"], "prescriber");
    (id, token)
}

async fn store(app: &TestApp, operator: &str, name: &str, rate: Option<&str>) -> Store {
    let mut body = json!({"name": name});
    if let Some(rate) = rate {
        body["commission_rate"] = json!(rate);
    }
    let (created, token) = app
        .onboard_staff(operator, "/v1/pharmacy/drugstores", "store", body)
        .await;
    Store {
        id: created["drugstore"]["drugstore_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        name: name.to_owned(),
        token,
    }
}

async fn patient(app: &TestApp, operator: &str, deposit: &str) -> Patient {
    let phone = random_phone();
    let (id, card) = app.prepaid_card(operator, &phone, deposit).await;
    let token = app.card_login(&card, &phone).await;
    Patient {
        id,
        card,
        phone,
        token,
    }
}

async fn ward() -> Ward {
    let app = Arc::new(TestApp::spawn().await);
    let operator = app.operator_token().await;
    let (hospital, prescriber) = hospital(&app, &operator, "St Mary's Hospital").await;
    let stores = vec![
        store(&app, &operator, "Hanil Pharmacy", Some("0.03")).await,
        store(&app, &operator, "Daehan Drugstore", None).await,
    ];
    let patient = patient(&app, &operator, "200.00").await;
    Ward {
        app,
        operator,
        hospital,
        prescriber,
        stores,
        patient,
    }
}

fn items(controlled: bool) -> Value {
    json!([
        {"drug_code": "641400260", "name": DRUG, "strength": "10 mg tablets",
         "dose": "1 tablet at night", "quantity": 14, "unit": "tablet", "days": 14,
         "class": if controlled { "controlled" } else { "standard" }},
        {"drug_code": "0093-5058", "name": "Ibuprofen", "strength": "400 mg tablets",
         "dose": "1 tablet when needed, at most 3 a day", "quantity": 20, "unit": "tablet", "days": 10}
    ])
}

fn str_of<'a>(reply: &'a Reply, pointer: &str) -> &'a str {
    reply
        .body
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no {pointer} in {reply:?}"))
}

impl Ward {
    fn store(&self, index: usize) -> &Store {
        &self.stores[index]
    }

    async fn issue_with(&self, body: Value) -> Reply {
        self.app
            .post("/v1/pharmacy/prescriptions", Some(&self.prescriber), body)
            .await
    }

    /// A prescription for the ward's patient; `chosen` is the drugstore the patient chose.
    async fn issue(&self, chosen: Option<usize>, controlled: bool) -> String {
        let mut body =
            json!({"card_number": self.patient.card, "items": items(controlled), "notes": NOTE});
        if let Some(index) = chosen {
            body["patient_chosen_drugstore_id"] = json!(self.store(index).id);
        }
        let issued = self.issue_with(body).await;
        assert_eq!(issued.status, StatusCode::CREATED, "{issued:?}");
        assert_eq!(
            issued.body["state"],
            if chosen.is_some() { "routed" } else { "issued" }
        );
        str_of(&issued, "/prescription_number").to_owned()
    }

    /// A request as a drugstore, with its claim secret.
    async fn as_store(
        &self,
        store: usize,
        method: Method,
        path: &str,
        secret: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut headers = Vec::new();
        if let Some(secret) = secret {
            headers.push(("claim-secret", secret));
        }
        self.app
            .request(method, path, Some(&self.store(store).token), body, &headers)
            .await
    }

    async fn claim(&self, store: usize, number: &str, with_card: bool) -> Reply {
        let body = if with_card {
            json!({"card_number": self.patient.card})
        } else {
            json!({})
        };
        self.as_store(
            store,
            Method::POST,
            &format!("/v1/pharmacy/prescriptions/{number}/claim"),
            None,
            Some(body),
        )
        .await
    }

    async fn patient_view(&self, number: &str) -> Reply {
        let view = self
            .app
            .get(
                &format!("/v1/pharmacy/prescriptions/{number}"),
                Some(&self.patient.token),
            )
            .await;
        assert_eq!(view.status, StatusCode::OK, "{view:?}");
        view
    }

    /// The confirmation the patient's phone is asked for now, answered.
    async fn answer_pending(&self, number: &str, purpose: &str, decision: &str) -> Reply {
        let view = self.patient_view(number).await;
        assert_eq!(
            view.body["pending_confirmation"]["purpose"], purpose,
            "{view:?}"
        );
        let challenge = str_of(&view, "/pending_confirmation/challenge_id").to_owned();
        let code = self.app.code_for(&self.patient.phone, &challenge).await;
        self.app.answer(&challenge, &code, decision).await
    }

    /// Flow B up to the claim: the drugstore asks, the patient approves. Returns the secret.
    async fn held_by_consent(&self, store: usize, number: &str) -> String {
        let claimed = self.claim(store, number, true).await;
        assert_eq!(claimed.status, StatusCode::OK, "{claimed:?}");
        assert_eq!(claimed.body["state"], "awaiting_consent");
        let secret = str_of(&claimed, "/claim_secret").to_owned();
        let approved = self
            .answer_pending(number, "prescription_open", "approve")
            .await;
        assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
        assert_eq!(approved.body["result"]["state"], "claimed");
        secret
    }

    async fn price(&self, store: usize, number: &str, secret: &str, amount: &str) -> Reply {
        self.as_store(
            store,
            Method::POST,
            &format!("/v1/pharmacy/prescriptions/{number}/price"),
            Some(secret),
            Some(json!({"price": {"amount": amount, "currency": "USD"}})),
        )
        .await
    }

    async fn pay(&self, number: &str, choice: Value) -> Reply {
        self.app
            .post_idempotent(
                &format!("/v1/pharmacy/prescriptions/{number}/payment"),
                Some(&self.patient.token),
                choice,
            )
            .await
    }

    /// Priced, paid by card and approved on the phone; returns the order number.
    async fn paid(&self, store: usize, number: &str, secret: &str, amount: &str) -> String {
        let priced = self.price(store, number, secret, amount).await;
        assert_eq!(priced.status, StatusCode::OK, "{priced:?}");
        let paying = self.pay(number, json!({"method": "lump_sum"})).await;
        assert_eq!(paying.status, StatusCode::OK, "{paying:?}");
        assert_eq!(paying.body["state"], "payment_pending");
        let approved = self.answer_pending(number, "payment", "approve").await;
        assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
        assert_eq!(approved.body["outcome"], "order_approved");
        str_of(&approved, "/order_number").to_owned()
    }

    async fn dispense(
        &self,
        store: usize,
        number: &str,
        secret: &str,
        order: Option<&str>,
    ) -> Reply {
        self.as_store(
            store,
            Method::POST,
            &format!("/v1/pharmacy/prescriptions/{number}/dispense"),
            Some(secret),
            Some(json!({"order_number": order, "handover": "collected_at_counter"})),
        )
        .await
    }

    async fn request_payment(
        &self,
        store: usize,
        number: &str,
        secret: &str,
        order: &str,
    ) -> Reply {
        self.as_store(
            store,
            Method::POST,
            &format!("/v1/pharmacy/prescriptions/{number}/payment-request"),
            Some(secret),
            Some(json!({"order_number": order})),
        )
        .await
    }

    async fn store_view(&self, store: usize, number: &str, secret: Option<&str>) -> Reply {
        self.as_store(
            store,
            Method::GET,
            &format!("/v1/pharmacy/prescriptions/{number}"),
            secret,
            None,
        )
        .await
    }

    async fn cancel(&self, token: &str, number: &str) -> Reply {
        self.app
            .post(
                &format!("/v1/pharmacy/prescriptions/{number}/cancel"),
                Some(token),
                json!({}),
            )
            .await
    }

    /// A POST with an `Idempotency-Key` of the test's choosing, and a drugstore's claim secret.
    async fn keyed(
        &self,
        token: &str,
        path: &str,
        secret: Option<&str>,
        key: &str,
        body: Value,
    ) -> Reply {
        let mut headers = vec![("idempotency-key", key)];
        if let Some(secret) = secret {
            headers.push(("claim-secret", secret));
        }
        self.app
            .request(Method::POST, path, Some(token), Some(body), &headers)
            .await
    }

    /// The patient's access log, newest first: (prescription number, reader role, what).
    async fn access_log(&self) -> Vec<(String, String, String)> {
        let log = self
            .app
            .get(
                "/v1/pharmacy/me/access-log?limit=100",
                Some(&self.patient.token),
            )
            .await;
        assert_eq!(log.status, StatusCode::OK, "{log:?}");
        log.body
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["prescription_number"].as_str().unwrap().to_owned(),
                    e["reader_role"].as_str().unwrap().to_owned(),
                    e["what"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    async fn events_of(&self, token: &str) -> Vec<Value> {
        let feed = self.app.get("/v1/events?limit=100", Some(token)).await;
        assert_eq!(feed.status, StatusCode::OK, "{feed:?}");
        feed.body.as_array().unwrap().clone()
    }

    async fn inbox(&self) -> Vec<String> {
        self.app.deliver().await;
        let inbox = self.app.inbox(&self.patient.phone, "limit=100").await;
        inbox
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn kinds(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn flow_a_the_drugstore_the_patient_chose_prices_delivers_and_is_paid() {
    let ward = ward().await;
    let app = &ward.app;
    let number = ward.issue(Some(0), false).await;

    // Sent by the patient's choice: the chosen drugstore sees it at once, another does not.
    let routed = ward.store_view(0, &number, None).await;
    assert_eq!(routed.status, StatusCode::OK, "{routed:?}");
    assert_eq!(routed.body["routed_to"]["name"], ward.store(0).name);
    assert_eq!(routed.body["hospital"]["id"], ward.hospital);
    assert_eq!(routed.body["items"][0]["name"], DRUG);
    let other = ward.store_view(1, &number, None).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN, "{other:?}");
    assert!(kinds(&ward.events_of(&ward.store(0).token).await).contains("prescription.routed"));

    // The chosen drugstore claims it without asking the phone; another gets 409.
    let taken = ward.claim(1, &number, true).await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{taken:?}");
    assert_eq!(taken.code(), "prescription_routed_elsewhere");
    let claimed = ward.claim(0, &number, false).await;
    assert_eq!(claimed.status, StatusCode::OK, "{claimed:?}");
    assert_eq!(claimed.body["state"], "claimed");
    let secret = str_of(&claimed, "/claim_secret").to_owned();
    assert_eq!(secret.len(), 64);

    // Priced: the phone is told the amount and what the card has available.
    let priced = ward.price(0, &number, &secret, "42.00").await;
    assert_eq!(priced.status, StatusCode::OK, "{priced:?}");
    assert_eq!(priced.body["state"], "priced");
    let texts = ward.inbox().await;
    assert!(
        texts[0].contains("42.00 USD") && texts[0].contains("Available on your card: 200.00 USD"),
        "{}",
        texts[0]
    );

    // The patient pays in three monthly installments: the phone confirms order number,
    // amount, drugstore and terms; the whole amount is held.
    let paying = ward
        .pay(
            &number,
            json!({"method": "installments", "installment_months": 3}),
        )
        .await;
    assert_eq!(paying.status, StatusCode::OK, "{paying:?}");
    assert_eq!(paying.body["payment"]["terms"], "3 monthly installments");
    let order = str_of(&paying, "/payment/order_number").to_owned();
    let challenge = str_of(&paying, "/pending_confirmation/challenge_id").to_owned();
    let code = app.code_for(&ward.patient.phone, &challenge).await;
    let text = ward.inbox().await.remove(0);
    for shown in [
        "Pay",
        order.as_str(),
        "42.00 USD",
        "Hanil Pharmacy",
        "3 monthly installments",
    ] {
        assert!(text.contains(shown), "{shown} not in {text}");
    }
    assert_eq!(app.balance(&ward.patient.token, "prepaid").await, "158.00");
    let approved = app.answer(&challenge, &code, "approve").await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    assert_eq!(ward.patient_view(&number).await.body["state"], "paid");
    assert!(kinds(&ward.events_of(&ward.store(0).token).await).contains("prescription.paid"));

    // The drugstore does not see the order number: the patient hands it over on delivery.
    let before = ward.store_view(0, &number, Some(&secret)).await;
    assert!(
        before.body["payment"]["order_number"].is_null(),
        "{before:?}"
    );
    let wrong = ward
        .dispense(0, &number, &secret, Some("1234-5678-9015"))
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{wrong:?}");
    let delivered = ward
        .as_store(
            0,
            Method::POST,
            &format!("/v1/pharmacy/prescriptions/{number}/dispense"),
            Some(&secret),
            Some(json!({"order_number": order, "handover": "delivered_to_hospital"})),
        )
        .await;
    assert_eq!(delivered.status, StatusCode::OK, "{delivered:?}");
    assert_eq!(delivered.body["state"], "dispensed");
    assert_eq!(delivered.body["handover"], "delivered_to_hospital");
    assert_eq!(delivered.body["payment"]["order_number"], order);

    // The drugstore asks to be paid quoting the order number; the patient releases it.
    let requested = ward.request_payment(0, &number, &secret, &order).await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    assert_eq!(
        requested.body["payment"]["escrow_state"],
        "settlement_requested"
    );
    let released = ward.answer_pending(&number, "settlement", "approve").await;
    assert_eq!(released.status, StatusCode::OK, "{released:?}");
    assert_eq!(released.body["outcome"], "settled");

    let settled = ward.patient_view(&number).await;
    assert_eq!(settled.body["state"], "settled");
    // 42.00 less the platform's 3 % (1.26).
    assert_eq!(
        app.balance(&ward.store(0).token, "withdrawal").await,
        "40.74"
    );
    assert_eq!(app.platform_commission(&ward.operator).await, "1.26");
    assert_eq!(app.balance(&ward.patient.token, "prepaid").await, "158.00");
    let history = app
        .get(
            &format!("/v1/pharmacy/prescriptions/{number}/history"),
            Some(&ward.patient.token),
        )
        .await;
    let steps: Vec<&str> = history
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for step in [
        "routed",
        "claimed",
        "priced",
        "payment_requested",
        "dispensed",
        "payment.settled_on_approval",
    ] {
        assert!(steps.contains(&step), "{step} not in {steps:?}");
    }
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn flow_b_the_patients_phone_lets_one_drugstore_open_it_then_confirms_the_amount() {
    let ward = ward().await;
    let app = &ward.app;
    let number = ward.issue(None, false).await;

    // Given the medical card, a drugstore learns only that a prescription exists.
    let found = app
        .post(
            "/v1/pharmacy/lookups",
            Some(&ward.store(1).token),
            json!({"card_number": ward.patient.card}),
        )
        .await;
    assert_eq!(found.status, StatusCode::OK, "{found:?}");
    assert_eq!(found.body[0]["prescription_number"], number);
    assert_eq!(found.body[0]["item_count"], 2);
    assert_eq!(found.body[0]["availability"], "available");

    // Asking needs the medical card the patient presented.
    let without = ward.claim(1, &number, false).await;
    assert_eq!(without.status, StatusCode::BAD_REQUEST, "{without:?}");
    let asked = ward.claim(1, &number, true).await;
    assert_eq!(asked.status, StatusCode::OK, "{asked:?}");
    assert_eq!(asked.body["state"], "awaiting_consent");
    let secret = str_of(&asked, "/claim_secret").to_owned();
    // Before the patient answers, the secret opens nothing.
    let early = ward.store_view(1, &number, Some(&secret)).await;
    assert_eq!(early.status, StatusCode::FORBIDDEN, "{early:?}");
    assert_eq!(early.code(), "prescription_not_held");
    // Another drugstore cannot ask meanwhile.
    let second = ward.claim(0, &number, true).await;
    assert_eq!(second.status, StatusCode::CONFLICT, "{second:?}");
    assert_eq!(second.code(), "prescription_held_elsewhere");

    // The phone names the prescription and the drugstore that would see it.
    let view = ward.patient_view(&number).await;
    let challenge = str_of(&view, "/pending_confirmation/challenge_id").to_owned();
    let code = app.code_for(&ward.patient.phone, &challenge).await;
    let text = ward.inbox().await.remove(0);
    assert!(
        text.contains("Allow opening prescription") && text.contains(&number),
        "{text}"
    );
    assert!(text.contains("Daehan Drugstore"), "{text}");
    let approved = app.answer(&challenge, &code, "approve").await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    assert_eq!(approved.body["purpose"], "prescription_open");
    assert_eq!(approved.body["result"]["state"], "claimed");
    assert!(kinds(&ward.events_of(&ward.store(1).token).await).contains("prescription.opened"));

    // Now it opens, with the secret only.
    let opened = ward.store_view(1, &number, Some(&secret)).await;
    assert_eq!(opened.status, StatusCode::OK, "{opened:?}");
    assert_eq!(opened.body["items"][0]["name"], DRUG);
    assert_eq!(opened.body["notes"], NOTE);
    let bare = ward.store_view(1, &number, None).await;
    assert_eq!(bare.code(), "claim_secret_invalid");
    let wrong = ward.store_view(1, &number, Some(&"0".repeat(64))).await;
    assert_eq!(wrong.code(), "claim_secret_invalid");
    let late = ward.claim(0, &number, true).await;
    assert_eq!(late.code(), "prescription_held_elsewhere");

    // Opening consent is not payment consent: the amount needs its own confirmation.
    let priced = ward.price(1, &number, &secret, "18.50").await;
    assert_eq!(priced.status, StatusCode::OK, "{priced:?}");
    assert!(ward.patient_view(&number).await.body["pending_confirmation"].is_null());
    let paying = ward.pay(&number, json!({"method": "lump_sum"})).await;
    assert_eq!(paying.body["pending_confirmation"]["purpose"], "payment");
    let text = {
        let challenge = str_of(&paying, "/pending_confirmation/challenge_id");
        app.code_for(&ward.patient.phone, challenge).await;
        ward.inbox().await.remove(0)
    };
    assert!(
        text.contains("18.50 USD") && text.contains("lump sum"),
        "{text}"
    );
    let paid = ward.answer_pending(&number, "payment", "approve").await;
    assert_eq!(paid.status, StatusCode::OK, "{paid:?}");
    let order = str_of(&paid, "/order_number").to_owned();

    // Settlement, then the drugstore is paid in full (no commission on this one).
    let dispensed = ward.dispense(1, &number, &secret, Some(&order)).await;
    assert_eq!(dispensed.status, StatusCode::OK, "{dispensed:?}");
    let requested = ward.request_payment(1, &number, &secret, &order).await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    let released = ward.answer_pending(&number, "settlement", "approve").await;
    assert_eq!(released.body["outcome"], "settled", "{released:?}");
    assert_eq!(ward.patient_view(&number).await.body["state"], "settled");
    assert_eq!(
        app.balance(&ward.store(1).token, "withdrawal").await,
        "18.50"
    );
    assert_eq!(app.balance(&ward.patient.token, "prepaid").await, "181.50");
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn flow_c_medical_supplies_are_bought_as_retail_goods_with_the_medical_card() {
    let ward = ward().await;
    let app = &ward.app;
    let (_, supplier) = app.supplier(&ward.operator, "Medi Supplies").await;
    let monitor = app.commodity(&supplier, "35.00", "0.05").await;
    // The patient's session is the medical card: an EC card like any other.
    let placed = app.place_order(&ward.patient.token, &monitor, 1).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{placed:?}");
    let order = str_of(&placed, "/order_number").to_owned();
    let challenge = str_of(&placed, "/pending_confirmation/challenge_id").to_owned();
    let code = app.code_for(&ward.patient.phone, &challenge).await;
    assert_eq!(
        app.answer(&challenge, &code, "approve").await.body["state"],
        "frozen"
    );
    let requested = app
        .post(
            &format!("/v1/retail/orders/{order}/settlement-request"),
            Some(&supplier),
            json!({}),
        )
        .await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    let settlement = app.pending_confirmation(&ward.patient.token, &order).await;
    let code = app.code_for(&ward.patient.phone, &settlement).await;
    let settled = app.answer(&settlement, &code, "approve").await;
    assert_eq!(settled.body["state"], "settled", "{settled:?}");
    assert_eq!(app.balance(&supplier, "withdrawal").await, "33.25");
    assert_eq!(app.balance(&ward.patient.token, "prepaid").await, "165.00");
    app.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_drugstores_claiming_at_once_exactly_one_wins() {
    let ward = Arc::new(ward().await);
    for _ in 0..3 {
        let number = ward.issue(None, false).await;
        let mut tasks = Vec::new();
        for store in [0, 1, 0, 1] {
            let (ward, number) = (ward.clone(), number.clone());
            tasks.push(tokio::spawn(async move {
                (store, ward.claim(store, &number, true).await)
            }));
        }
        let mut winners = BTreeSet::new();
        let mut refused = 0;
        for task in tasks {
            let (store, reply) = task.await.unwrap();
            match reply.status {
                StatusCode::OK => {
                    winners.insert(store);
                }
                StatusCode::CONFLICT => {
                    assert_eq!(reply.code(), "prescription_held_elsewhere", "{reply:?}");
                    refused += 1;
                }
                other => panic!("unexpected {other}: {reply:?}"),
            }
        }
        // One drugstore got it (it may have asked twice: the later ask replaces the earlier).
        assert_eq!(winners.len(), 1, "{winners:?}");
        assert_eq!(refused, 2);
        let winner = *winners.iter().next().unwrap();
        let approved = ward
            .answer_pending(&number, "prescription_open", "approve")
            .await;
        assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
        let view = ward.patient_view(&number).await;
        assert_eq!(view.body["held_by"]["id"], ward.store(winner).id);
        let loser = 1 - winner;
        let late = ward.claim(loser, &number, true).await;
        assert_eq!(late.code(), "prescription_held_elsewhere");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prescription_is_never_dispensed_twice_even_at_once() {
    let ward = Arc::new(ward().await);
    let number = ward.issue(None, false).await;
    let secret = ward.held_by_consent(0, &number).await;
    let order = ward.paid(0, &number, &secret, "25.00").await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (ward, number, secret, order) =
            (ward.clone(), number.clone(), secret.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            ward.dispense(0, &number, &secret, Some(&order)).await
        }));
    }
    let mut dispensed = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            StatusCode::OK => dispensed += 1,
            StatusCode::CONFLICT => {
                assert_eq!(reply.code(), "prescription_already_dispensed", "{reply:?}")
            }
            other => panic!("unexpected {other}: {reply:?}"),
        }
    }
    assert_eq!(dispensed, 1);
    let again = ward.dispense(0, &number, &secret, Some(&order)).await;
    assert_eq!(again.code(), "prescription_already_dispensed");
    let history = ward
        .app
        .get(
            &format!("/v1/pharmacy/prescriptions/{number}/history"),
            Some(&ward.patient.token),
        )
        .await;
    let dispensings = history
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "dispensed")
        .count();
    assert_eq!(dispensings, 1);
}

#[tokio::test]
async fn cash_at_the_counter_holds_nothing_and_settles_on_dispensing() {
    let ward = ward().await;
    let number = ward.issue(Some(1), false).await;
    let secret = str_of(&ward.claim(1, &number, false).await, "/claim_secret").to_owned();
    // Nothing to pay before a price.
    let early = ward.pay(&number, json!({"method": "cash"})).await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{early:?}");
    assert_eq!(
        ward.price(1, &number, &secret, "12.00").await.status,
        StatusCode::OK
    );
    let cash = ward.pay(&number, json!({"method": "cash"})).await;
    assert_eq!(cash.status, StatusCode::OK, "{cash:?}");
    assert_eq!(cash.body["state"], "paid");
    assert_eq!(cash.body["payment"]["method"], "cash");
    assert!(cash.body["payment"]["order_number"].is_null());
    assert!(cash.body["pending_confirmation"].is_null());
    assert_eq!(
        ward.app.balance(&ward.patient.token, "prepaid").await,
        "200.00"
    );
    let dispensed = ward.dispense(1, &number, &secret, None).await;
    assert_eq!(dispensed.status, StatusCode::OK, "{dispensed:?}");
    assert_eq!(dispensed.body["state"], "settled");
    let request = ward
        .request_payment(1, &number, &secret, "1234-5678-9015")
        .await;
    assert_eq!(request.status, StatusCode::CONFLICT, "{request:?}");
    assert_eq!(
        ward.app.balance(&ward.patient.token, "prepaid").await,
        "200.00"
    );
    ward.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn payment_choices_are_checked_and_need_an_idempotency_key() {
    let ward = ward().await;
    let number = ward.issue(Some(0), false).await;
    let secret = str_of(&ward.claim(0, &number, false).await, "/claim_secret").to_owned();
    ward.price(0, &number, &secret, "10.00").await;
    for (choice, code) in [
        (
            json!({"method": "installments"}),
            "installment_months_invalid",
        ),
        (
            json!({"method": "installments", "installment_months": 1}),
            "installment_months_invalid",
        ),
        (
            json!({"method": "installments", "installment_months": 25}),
            "installment_months_invalid",
        ),
        (
            json!({"method": "lump_sum", "installment_months": 3}),
            "prescription_invalid",
        ),
    ] {
        let refused = ward.pay(&number, choice).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
        assert_eq!(refused.code(), code);
    }
    let without_key = ward
        .app
        .post(
            &format!("/v1/pharmacy/prescriptions/{number}/payment"),
            Some(&ward.patient.token),
            json!({"method": "lump_sum"}),
        )
        .await;
    assert_eq!(without_key.code(), "idempotency_key_required");
    // Only the patient pays: not a drugstore, not another card holder.
    let stranger = patient(&ward.app, &ward.operator, "50.00").await;
    let foreign = ward
        .app
        .post_idempotent(
            &format!("/v1/pharmacy/prescriptions/{number}/payment"),
            Some(&stranger.token),
            json!({"method": "lump_sum"}),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{foreign:?}");
}

#[tokio::test]
async fn a_denied_payment_returns_the_money_and_the_price_stands() {
    let ward = ward().await;
    let number = ward.issue(None, false).await;
    let secret = ward.held_by_consent(0, &number).await;
    ward.price(0, &number, &secret, "30.00").await;
    ward.pay(&number, json!({"method": "lump_sum"})).await;
    assert_eq!(
        ward.app.balance(&ward.patient.token, "prepaid").await,
        "170.00"
    );
    let denied = ward.answer_pending(&number, "payment", "deny").await;
    assert_eq!(denied.body["outcome"], "order_denied", "{denied:?}");
    assert_eq!(ward.patient_view(&number).await.body["state"], "priced");
    assert_eq!(
        ward.app.balance(&ward.patient.token, "prepaid").await,
        "200.00"
    );
    // Nothing was paid: nothing to dispense.
    let early = ward
        .dispense(0, &number, &secret, Some("1234-5678-9015"))
        .await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{early:?}");
    // The patient may try again; a new order is opened.
    let order = {
        let paying = ward.pay(&number, json!({"method": "lump_sum"})).await;
        assert_eq!(paying.status, StatusCode::OK, "{paying:?}");
        let approved = ward.answer_pending(&number, "payment", "approve").await;
        str_of(&approved, "/order_number").to_owned()
    };
    assert_eq!(ward.patient_view(&number).await.body["state"], "paid");
    assert_eq!(
        ward.dispense(0, &number, &secret, Some(&order))
            .await
            .status,
        StatusCode::OK
    );
    ward.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_settlement_nobody_answers_settles_when_its_period_ends() {
    let ward = ward().await;
    let number = ward.issue(Some(0), false).await;
    let secret = str_of(&ward.claim(0, &number, false).await, "/claim_secret").to_owned();
    let order = ward.paid(0, &number, &secret, "20.00").await;
    ward.dispense(0, &number, &secret, Some(&order)).await;
    let requested = ward.request_payment(0, &number, &secret, &order).await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    ward.app.clock.advance(Duration::hours(73));
    assert!(ward.app.fire_timers().await >= 1);
    assert_eq!(ward.patient_view(&number).await.body["state"], "settled");
    // 20.00 less 3 %.
    assert_eq!(
        ward.app.balance(&ward.store(0).token, "withdrawal").await,
        "19.40"
    );
    // A drugstore's list shows it settled too, and the secret still reads it.
    let list = ward
        .app
        .get("/v1/pharmacy/prescriptions", Some(&ward.store(0).token))
        .await;
    assert_eq!(list.body[0]["state"], "settled", "{list:?}");
    ward.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_denied_or_unanswered_consent_returns_it_to_the_pool() {
    let ward = ward().await;
    let number = ward.issue(None, false).await;
    let asked = ward.claim(0, &number, true).await;
    let secret = str_of(&asked, "/claim_secret").to_owned();
    let denied = ward
        .answer_pending(&number, "prescription_open", "deny")
        .await;
    assert_eq!(denied.status, StatusCode::OK, "{denied:?}");
    assert_eq!(denied.body["result"]["state"], "issued");
    assert_eq!(ward.patient_view(&number).await.body["state"], "issued");
    assert_eq!(
        ward.store_view(0, &number, Some(&secret)).await.code(),
        "prescription_not_held"
    );
    assert!(
        kinds(&ward.events_of(&ward.store(0).token).await).contains("prescription.open_refused")
    );

    // Another drugstore asks; the patient does not answer; after ten minutes it is free again.
    let asked = ward.claim(1, &number, true).await;
    assert_eq!(asked.status, StatusCode::OK, "{asked:?}");
    let view = ward.patient_view(&number).await;
    let challenge = str_of(&view, "/pending_confirmation/challenge_id").to_owned();
    let code = ward.app.code_for(&ward.patient.phone, &challenge).await;
    ward.app.clock.advance(Duration::minutes(11));
    ward.app.fire_timers().await;
    assert_eq!(ward.patient_view(&number).await.body["state"], "issued");
    let late = ward.app.answer(&challenge, &code, "approve").await;
    assert!(late.status.is_client_error(), "{late:?}");
    assert_eq!(ward.patient_view(&number).await.body["state"], "issued");
    let secret = ward.held_by_consent(0, &number).await;
    assert_eq!(
        ward.store_view(0, &number, Some(&secret)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_drugstore_cannot_flood_the_patients_phone_with_requests_to_open() {
    let ward = ward().await;
    let number = ward.issue(None, false).await;
    for _ in 0..5 {
        let asked = ward.claim(0, &number, true).await;
        assert_eq!(asked.status, StatusCode::OK, "{asked:?}");
    }
    // Only the newest request can be answered: asking again voids the code before it.
    let sixth = ward.claim(0, &number, true).await;
    assert_eq!(sixth.status, StatusCode::TOO_MANY_REQUESTS, "{sixth:?}");
    assert_eq!(sixth.code(), "too_many_attempts");
    ward.app.clock.advance(Duration::minutes(61));
    ward.app.fire_timers().await;
    let secret = ward.held_by_consent(0, &number).await;
    assert_eq!(
        ward.store_view(0, &number, Some(&secret)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_holder_can_hand_it_back_and_its_secret_dies_with_the_claim() {
    let ward = ward().await;
    // Chosen by the patient, claimed, priced and paid…
    let number = ward.issue(Some(0), false).await;
    let secret = str_of(&ward.claim(0, &number, false).await, "/claim_secret").to_owned();
    ward.paid(0, &number, &secret, "40.00").await;
    assert_eq!(
        ward.app.balance(&ward.patient.token, "prepaid").await,
        "160.00"
    );
    // …then handed back (out of stock): the hold is voided, it returns to the pool.
    let wrong = ward
        .as_store(
            0,
            Method::POST,
            &format!("/v1/pharmacy/prescriptions/{number}/hand-back"),
            Some(&"f".repeat(64)),
            None,
        )
        .await;
    assert_eq!(wrong.code(), "claim_secret_invalid");
    let back = ward
        .as_store(
            0,
            Method::POST,
            &format!("/v1/pharmacy/prescriptions/{number}/hand-back"),
            Some(&secret),
            None,
        )
        .await;
    assert_eq!(back.status, StatusCode::OK, "{back:?}");
    assert_eq!(back.body["state"], "issued");
    assert_eq!(
        ward.app.balance(&ward.patient.token, "prepaid").await,
        "200.00"
    );
    assert_eq!(
        ward.store_view(0, &number, Some(&secret)).await.code(),
        "prescription_not_held"
    );
    let view = ward.patient_view(&number).await;
    assert!(
        view.body["routed_to"].is_null()
            && view.body["held_by"].is_null()
            && view.body["price"].is_null()
    );
    // Any member drugstore may now ask the patient.
    let secret = ward.held_by_consent(1, &number).await;
    let priced = ward.price(1, &number, &secret, "38.00").await;
    assert_eq!(priced.status, StatusCode::OK, "{priced:?}");
    ward.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_prescriber_can_cancel_until_dispensing_and_the_holder_is_told() {
    let ward = ward().await;
    let number = ward.issue(None, false).await;
    let secret = ward.held_by_consent(0, &number).await;
    ward.paid(0, &number, &secret, "50.00").await;
    assert_eq!(
        ward.app.balance(&ward.patient.token, "prepaid").await,
        "150.00"
    );

    // Another hospital's prescriber cannot.
    let (_, stranger) = hospital(&ward.app, &ward.operator, "General Hospital").await;
    let foreign = ward.cancel(&stranger, &number).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{foreign:?}");
    // Nor can a drugstore or the patient.
    assert_eq!(
        ward.cancel(&ward.store(0).token, &number).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        ward.cancel(&ward.patient.token, &number).await.status,
        StatusCode::FORBIDDEN
    );

    let cancelled = ward.cancel(&ward.prescriber, &number).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    assert_eq!(cancelled.body["state"], "cancelled");
    assert_eq!(cancelled.body["payment"]["escrow_state"], "cancelled");
    assert_eq!(
        ward.app.balance(&ward.patient.token, "prepaid").await,
        "200.00"
    );
    assert!(kinds(&ward.events_of(&ward.store(0).token).await).contains("prescription.cancelled"));
    let dispense = ward.dispense(0, &number, &secret, None).await;
    assert_eq!(dispense.code(), "prescription_cancelled");
    let read = ward.store_view(0, &number, Some(&secret)).await;
    assert_eq!(read.status, StatusCode::FORBIDDEN, "{read:?}");
    assert_eq!(
        ward.cancel(&ward.prescriber, &number).await.code(),
        "prescription_cancelled"
    );
    assert!(ward.inbox().await[0].contains("cancelled by its prescriber"));

    // After dispensing it can no longer be cancelled.
    let number = ward.issue(Some(1), false).await;
    let secret = str_of(&ward.claim(1, &number, false).await, "/claim_secret").to_owned();
    let order = ward.paid(1, &number, &secret, "15.00").await;
    ward.dispense(1, &number, &secret, Some(&order)).await;
    let late = ward.cancel(&ward.prescriber, &number).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{late:?}");
    assert_eq!(late.code(), "prescription_already_dispensed");
    ward.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_cancellation_while_the_phone_is_asked_voids_the_open_request() {
    let ward = ward().await;
    let number = ward.issue(None, false).await;
    ward.claim(1, &number, true).await;
    let view = ward.patient_view(&number).await;
    let challenge = str_of(&view, "/pending_confirmation/challenge_id").to_owned();
    let code = ward.app.code_for(&ward.patient.phone, &challenge).await;
    assert_eq!(
        ward.cancel(&ward.prescriber, &number).await.status,
        StatusCode::OK
    );
    let late = ward.app.answer(&challenge, &code, "approve").await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{late:?}");
    assert_eq!(late.code(), "challenge_closed");
    assert!(kinds(&ward.events_of(&ward.store(1).token).await).contains("prescription.cancelled"));
}

#[tokio::test]
async fn expired_prescriptions_cannot_be_claimed_or_paid_and_a_hold_returns() {
    let ward = ward().await;
    // A controlled drug: valid 28 days.
    let pooled = ward.issue(None, true).await;
    let view = ward.patient_view(&pooled).await;
    let from = chrono::DateTime::parse_from_rfc3339(str_of(&view, "/valid_from")).unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(str_of(&view, "/valid_until")).unwrap();
    assert_eq!(until - from, Duration::days(28));
    // Paid and held, then not dispensed in time.
    let held = ward.issue(Some(0), true).await;
    let secret = str_of(&ward.claim(0, &held, false).await, "/claim_secret").to_owned();
    let order = ward.paid(0, &held, &secret, "60.00").await;
    // Priced, and the patient tries to pay too late.
    let priced = ward.issue(Some(1), true).await;
    let secret_priced = str_of(&ward.claim(1, &priced, false).await, "/claim_secret").to_owned();
    ward.price(1, &priced, &secret_priced, "5.00").await;
    assert_eq!(
        ward.app.balance(&ward.patient.token, "prepaid").await,
        "140.00"
    );

    ward.app.clock.advance(Duration::days(29));
    // Refused at once, before the timer has run.
    let claim = ward.claim(1, &pooled, true).await;
    assert_eq!(claim.status, StatusCode::CONFLICT, "{claim:?}");
    assert_eq!(claim.code(), "prescription_expired");
    let pay = ward.pay(&priced, json!({"method": "lump_sum"})).await;
    assert_eq!(pay.code(), "prescription_expired");
    assert_eq!(ward.patient_view(&pooled).await.body["state"], "expired");

    assert!(ward.app.fire_timers().await >= 3);
    for number in [&pooled, &held, &priced] {
        assert_eq!(ward.patient_view(number).await.body["state"], "expired");
    }
    assert_eq!(
        ward.app.balance(&ward.patient.token, "prepaid").await,
        "200.00"
    );
    let dispense = ward.dispense(0, &held, &secret, Some(&order)).await;
    assert_eq!(dispense.code(), "prescription_expired");
    assert!(kinds(&ward.events_of(&ward.store(0).token).await).contains("prescription.expired"));
    assert_eq!(
        ward.claim(0, &pooled, true).await.code(),
        "prescription_expired"
    );
    ward.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn every_read_of_content_is_logged_and_listed_to_the_patient() {
    let ward = ward().await;
    let app = &ward.app;
    // A pharmacist of the first drugstore, acting for it.
    let login = username("pharmacist");
    let added = app
        .post(
            &format!("/v1/pharmacy/drugstores/{}/pharmacists", ward.store(0).id),
            Some(&ward.operator),
            json!({"display_name": "Pharmacist Ji-ho Lee", "username": login, "password": "pharmacist-password"}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{added:?}");
    let pharmacist = app.password_login(&login, "pharmacist-password").await;

    let number = ward.issue(None, false).await;
    app.post(
        "/v1/pharmacy/lookups",
        Some(&pharmacist),
        json!({"card_number": ward.patient.card}),
    )
    .await;
    let asked = app
        .post(
            &format!("/v1/pharmacy/prescriptions/{number}/claim"),
            Some(&pharmacist),
            json!({"card_number": ward.patient.card}),
        )
        .await;
    let secret = str_of(&asked, "/claim_secret").to_owned();
    ward.answer_pending(&number, "prescription_open", "approve")
        .await;
    // A refused read is no read.
    assert_eq!(
        ward.store_view(1, &number, None).await.status,
        StatusCode::FORBIDDEN
    );
    let path = format!("/v1/pharmacy/prescriptions/{number}");
    let fhir = format!("{path}/fhir");
    for (token, secret, path) in [
        (&ward.prescriber, None, &path),
        (&pharmacist, Some(secret.as_str()), &path),
        (&ward.store(0).token, Some(secret.as_str()), &fhir),
        (&ward.operator, None, &path),
        (&ward.patient.token, None, &fhir),
    ] {
        let headers: Vec<(&str, &str)> = secret.map(|s| ("claim-secret", s)).into_iter().collect();
        let read = app
            .request(Method::GET, path, Some(token), None, &headers)
            .await;
        assert_eq!(read.status, StatusCode::OK, "{read:?}");
    }
    let log = app
        .get("/v1/pharmacy/me/access-log", Some(&ward.patient.token))
        .await;
    assert_eq!(log.status, StatusCode::OK, "{log:?}");
    let entries = log.body.as_array().unwrap();
    let seen: Vec<(String, String, String, String)> = entries
        .iter()
        .map(|e| {
            assert_eq!(e["prescription_number"], number);
            assert!(e["at"].is_string());
            (
                e["reader_role"].as_str().unwrap().to_owned(),
                e["reader_name"].as_str().unwrap().to_owned(),
                e["organisation"].as_str().unwrap_or("").to_owned(),
                e["what"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("shopper", "the patient", "", "fhir"),
        ("operator", "Operator", "Holdfast", "content"),
        ("drugstore", "Hanil Pharmacy", "Hanil Pharmacy", "fhir"),
        (
            "drugstore",
            "Pharmacist Ji-ho Lee",
            "Hanil Pharmacy",
            "content",
        ),
        (
            "prescriber",
            "Dr Seo-yeon Kim",
            "St Mary's Hospital",
            "content",
        ),
        // The patient's own look for the confirmation to answer.
        ("shopper", "the patient", "", "content"),
        (
            "drugstore",
            "Pharmacist Ji-ho Lee",
            "Hanil Pharmacy",
            "existence",
        ),
    ];
    let expected: Vec<(String, String, String, String)> = expected
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect();
    assert_eq!(seen, expected, "newest first");
    // Paged.
    let first = app
        .get(
            "/v1/pharmacy/me/access-log?limit=2",
            Some(&ward.patient.token),
        )
        .await;
    assert_eq!(first.body.as_array().unwrap().len(), 2);
    // Another patient sees none of it, and a drugstore cannot read the log.
    let stranger = patient(app, &ward.operator, "1.00").await;
    let theirs = app
        .get("/v1/pharmacy/me/access-log", Some(&stranger.token))
        .await;
    assert_eq!(theirs.body, json!([]));
    assert_eq!(
        app.get("/v1/pharmacy/me/access-log", Some(&ward.store(0).token))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

/// Every string in `value`, recursively.
fn strings(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::String(s) => into.push(s.clone()),
        Value::Array(list) => list.iter().for_each(|v| strings(v, into)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            into.push(k.clone());
            strings(v, into)
        }),
        _ => {}
    }
}

fn assert_no_content(what: &str, value: &Value) {
    let mut all = Vec::new();
    strings(value, &mut all);
    for s in all {
        assert!(
            !s.contains(DRUG) && !s.contains("Ibuprofen") && !s.contains("confidential-note"),
            "{what} leaks content: {s}"
        );
    }
}

#[tokio::test]
async fn before_consent_a_drugstore_learns_only_that_a_prescription_exists() {
    let ward = ward().await;
    let app = &ward.app;
    let number = ward.issue(None, false).await;
    let other = ward.store(1);

    // The look-up: exactly number, item count, validity and availability.
    let found = app
        .post(
            "/v1/pharmacy/lookups",
            Some(&other.token),
            json!({"card_number": ward.patient.card}),
        )
        .await;
    let keys: BTreeSet<&str> = found.body[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "prescription_number",
            "item_count",
            "valid_until",
            "availability"
        ])
    );
    assert_no_content("the look-up", &found.body);

    // Every other door stays shut, and no refusal quotes content.
    let refusals = [
        ward.store_view(1, &number, None).await,
        ward.as_store(
            1,
            Method::GET,
            &format!("/v1/pharmacy/prescriptions/{number}/fhir"),
            None,
            None,
        )
        .await,
        ward.as_store(
            1,
            Method::GET,
            &format!("/v1/pharmacy/prescriptions/{number}/history"),
            None,
            None,
        )
        .await,
        ward.price(1, &number, &"a".repeat(64), "1.00").await,
        ward.dispense(1, &number, &"a".repeat(64), None).await,
    ];
    for refused in &refusals {
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
        assert_eq!(refused.code(), "prescription_not_held");
        assert_no_content("a refusal", &refused.body);
    }
    let list = app
        .get("/v1/pharmacy/prescriptions", Some(&other.token))
        .await;
    assert_eq!(list.body, json!([]), "{list:?}");
    // A claim with another patient's card is as if the prescription did not exist.
    let stranger = patient(app, &ward.operator, "1.00").await;
    let wrong_card = app
        .post(
            &format!("/v1/pharmacy/prescriptions/{number}/claim"),
            Some(&other.token),
            json!({"card_number": stranger.card}),
        )
        .await;
    assert_eq!(wrong_card.status, StatusCode::NOT_FOUND, "{wrong_card:?}");
    // Another patient cannot read it either.
    let foreign = app
        .get(
            &format!("/v1/pharmacy/prescriptions/{number}"),
            Some(&stranger.token),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{foreign:?}");

    // Neither do the texts to the patient's phone, the drugstores' events, the escrow
    // timeline, nor a validation error that concerns a drug name.
    let secret = ward.held_by_consent(0, &number).await;
    let order = ward.paid(0, &number, &secret, "9.00").await;
    ward.dispense(0, &number, &secret, Some(&order)).await;
    ward.request_payment(0, &number, &secret, &order).await;
    ward.answer_pending(&number, "settlement", "approve").await;
    for text in ward.inbox().await {
        assert!(
            !text.contains(DRUG) && !text.contains("confidential-note"),
            "{text}"
        );
    }
    for store in &ward.stores {
        assert_no_content(
            "an event",
            &Value::Array(ward.events_of(&store.token).await),
        );
    }
    let history = app
        .get(
            &format!("/v1/pharmacy/prescriptions/{number}/history"),
            Some(&ward.patient.token),
        )
        .await;
    assert!(history.body.as_array().unwrap().len() > 5);
    assert_no_content("the history", &history.body);
    let mut bad = items(false);
    bad[0]["quantity"] = json!(0);
    bad[0]["name"] = json!(format!("{DRUG} {}", "x".repeat(300)));
    let invalid = ward
        .issue_with(json!({"card_number": ward.patient.card, "items": bad}))
        .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST, "{invalid:?}");
    assert_eq!(invalid.code(), "text_too_long");
    assert_no_content("a validation error", &invalid.body);
    let mut bad = items(false);
    bad[0]["quantity"] = json!(0);
    let invalid = ward
        .issue_with(json!({"card_number": ward.patient.card, "items": bad}))
        .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST, "{invalid:?}");
    assert_eq!(invalid.code(), "prescription_invalid");
    assert_no_content("a validation error", &invalid.body);
}

/// An answer to a change: no item, no note — not even their keys.
fn assert_receipt(what: &str, reply: &Reply) {
    assert!(reply.status.is_success(), "{what}: {reply:?}");
    assert_no_content(what, &reply.body);
    for key in ["items", "notes"] {
        assert!(reply.body.get(key).is_none(), "{what} has {key}: {reply:?}");
    }
}

/// Every stored idempotency answer, read from the table itself.
async fn idempotency_bodies(app: &TestApp) -> Vec<String> {
    app.state
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            app.backend(),
            "SELECT response_body FROM idempotency_records",
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.try_get::<String>("", "response_body").unwrap())
        .collect()
}

#[tokio::test]
async fn no_answer_to_a_change_holds_content_and_every_read_is_in_the_access_log() {
    let ward = ward().await;
    let app = &ward.app;
    let rx = |number: &str, step: &str| format!("/v1/pharmacy/prescriptions/{number}/{step}");

    // Issued (with a key), claimed and priced by the drugstore the patient chose: the answers
    // carry state, price and payment, and the patient's access log stays empty because nobody
    // has read the content.
    let issued = ward
        .keyed(
            &ward.prescriber,
            "/v1/pharmacy/prescriptions",
            None,
            "issue-1",
            json!({"card_number": ward.patient.card, "items": items(false), "notes": NOTE,
                   "patient_chosen_drugstore_id": ward.store(0).id}),
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{issued:?}");
    assert_receipt("the issue", &issued);
    assert_eq!(issued.body["state"], "routed");
    assert_eq!(issued.body["routed_to"]["name"], ward.store(0).name);
    let number = str_of(&issued, "/prescription_number").to_owned();
    let claimed = ward.claim(0, &number, false).await;
    assert_receipt("the claim", &claimed);
    let secret = str_of(&claimed, "/claim_secret").to_owned();
    let priced = ward.price(0, &number, &secret, "42.00").await;
    assert_receipt("the price", &priced);
    assert_eq!(priced.body["state"], "priced");
    assert_eq!(priced.body["price"]["amount"], "42.00");
    assert_eq!(ward.access_log().await, vec![]);

    // Paid, dispensed and asked to be paid, each with a key; the answers hold what the next
    // step needs (the confirmation to answer, the order number), never the content.
    let paying = ward
        .keyed(
            &ward.patient.token,
            &rx(&number, "payment"),
            None,
            "pay-1",
            json!({"method": "lump_sum"}),
        )
        .await;
    assert_receipt("the payment", &paying);
    assert_eq!(paying.body["state"], "payment_pending");
    let order = str_of(&paying, "/payment/order_number").to_owned();
    let challenge = str_of(&paying, "/pending_confirmation/challenge_id").to_owned();
    let code = app.code_for(&ward.patient.phone, &challenge).await;
    assert_eq!(
        app.answer(&challenge, &code, "approve").await.status,
        StatusCode::OK
    );
    let dispensing = json!({"order_number": order, "handover": "collected_at_counter"});
    let dispensed = ward
        .keyed(
            &ward.store(0).token,
            &rx(&number, "dispense"),
            Some(&secret),
            "dispense-1",
            dispensing.clone(),
        )
        .await;
    assert_receipt("the dispensing", &dispensed);
    assert_eq!(dispensed.body["state"], "dispensed");
    assert_eq!(dispensed.body["handover"], "collected_at_counter");
    assert_eq!(dispensed.body["payment"]["order_number"], order);
    let requested = ward
        .keyed(
            &ward.store(0).token,
            &rx(&number, "payment-request"),
            Some(&secret),
            "request-1",
            json!({"order_number": order}),
        )
        .await;
    assert_receipt("the payment request", &requested);
    assert_eq!(
        requested.body["payment"]["escrow_state"],
        "settlement_requested"
    );

    // A replay answers the stored receipt: still no content, and still no read.
    let replayed = ward
        .keyed(
            &ward.store(0).token,
            &rx(&number, "dispense"),
            Some(&secret),
            "dispense-1",
            dispensing,
        )
        .await;
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
    assert_eq!(replayed.body, dispensed.body);
    assert_receipt("a replayed dispensing", &replayed);
    let replayed = ward
        .keyed(
            &ward.prescriber,
            "/v1/pharmacy/prescriptions",
            None,
            "issue-1",
            json!({"card_number": ward.patient.card, "items": items(false), "notes": NOTE,
                   "patient_chosen_drugstore_id": ward.store(0).id}),
        )
        .await;
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
    assert_receipt("a replayed issue", &replayed);

    // A cancellation and a hand-back, with keys, answer without content too.
    let pooled = ward.issue(None, false).await;
    let cancelled = ward
        .keyed(
            &ward.prescriber,
            &rx(&pooled, "cancel"),
            None,
            "cancel-1",
            json!({}),
        )
        .await;
    assert_receipt("the cancellation", &cancelled);
    assert_eq!(cancelled.body["state"], "cancelled");
    let routed = ward.issue(Some(1), false).await;
    let secret_1 = str_of(&ward.claim(1, &routed, false).await, "/claim_secret").to_owned();
    let back = ward
        .keyed(
            &ward.store(1).token,
            &rx(&routed, "hand-back"),
            Some(&secret_1),
            "hand-back-1",
            json!({}),
        )
        .await;
    assert_receipt("the hand-back", &back);
    assert_eq!(ward.access_log().await, vec![]);

    // Nothing of the content was kept with the idempotent answers.
    let bodies = idempotency_bodies(app).await;
    assert!(bodies.len() >= 6, "{bodies:?}");
    for body in &bodies {
        for content in [DRUG, "Ibuprofen", "confidential-note", "1 tablet at night"] {
            assert!(
                !body.contains(content),
                "an idempotency record holds {content}: {body}"
            );
        }
    }

    // The content is read where the read is logged: each read is one entry.
    assert_eq!(
        ward.store_view(0, &number, Some(&secret)).await.body["items"][0]["name"],
        DRUG
    );
    let by_prescriber = app
        .get(
            &format!("/v1/pharmacy/prescriptions/{number}"),
            Some(&ward.prescriber),
        )
        .await;
    assert_eq!(by_prescriber.body["notes"], NOTE);
    assert_eq!(
        ward.patient_view(&number).await.body["items"][1]["name"],
        "Ibuprofen"
    );
    let fhir = app
        .get(
            &format!("/v1/pharmacy/prescriptions/{pooled}/fhir"),
            Some(&ward.prescriber),
        )
        .await;
    assert_eq!(fhir.status, StatusCode::OK, "{fhir:?}");
    let entry = |n: &str, role: &str, what: &str| (n.to_owned(), role.to_owned(), what.to_owned());
    assert_eq!(
        ward.access_log().await,
        vec![
            entry(&pooled, "prescriber", "fhir"),
            entry(&number, "shopper", "content"),
            entry(&number, "prescriber", "content"),
            entry(&number, "drugstore", "content"),
        ],
        "newest first"
    );
}

#[tokio::test]
async fn the_holder_that_lost_its_claim_secret_claims_again_for_a_fresh_one() {
    let ward = ward().await;
    let number = ward.issue(Some(0), false).await;
    let first = str_of(&ward.claim(0, &number, false).await, "/claim_secret").to_owned();

    // The answer was lost: the same drugstore claims again and gets a fresh secret; the old
    // one stops working.
    let again = ward.claim(0, &number, false).await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(again.body["state"], "claimed");
    let second = str_of(&again, "/claim_secret").to_owned();
    assert_eq!(second.len(), 64);
    assert_ne!(second, first);
    assert_eq!(
        ward.store_view(0, &number, Some(&first)).await.code(),
        "claim_secret_invalid"
    );
    assert_eq!(
        ward.store_view(0, &number, Some(&second)).await.status,
        StatusCode::OK
    );

    // Priced, then lost again: the claim answers the state it is in.
    assert_eq!(
        ward.price(0, &number, &second, "30.00").await.status,
        StatusCode::OK
    );
    let again = ward.claim(0, &number, false).await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(again.body["state"], "priced");
    let third = str_of(&again, "/claim_secret").to_owned();
    assert_eq!(
        ward.price(0, &number, &second, "31.00").await.code(),
        "claim_secret_invalid"
    );
    let hand_back = format!("/v1/pharmacy/prescriptions/{number}/hand-back");
    let stale = ward
        .as_store(0, Method::POST, &hand_back, Some(&second), None)
        .await;
    assert_eq!(stale.code(), "claim_secret_invalid");

    // Another drugstore still gets 409, with or without the medical card.
    for with_card in [true, false] {
        let other = ward.claim(1, &number, with_card).await;
        assert_eq!(other.status, StatusCode::CONFLICT, "{other:?}");
        assert_eq!(other.code(), "prescription_held_elsewhere");
    }

    // Paid: the fresh secret dispenses. Once dispensed, a claim is refused and the secret it
    // dispensed with still asks to be paid.
    let order = ward.paid(0, &number, &third, "30.00").await;
    let again = ward.claim(0, &number, false).await;
    assert_eq!(again.body["state"], "paid", "{again:?}");
    let fourth = str_of(&again, "/claim_secret").to_owned();
    assert_eq!(
        ward.dispense(0, &number, &third, Some(&order)).await.code(),
        "claim_secret_invalid"
    );
    let dispensed = ward.dispense(0, &number, &fourth, Some(&order)).await;
    assert_eq!(dispensed.status, StatusCode::OK, "{dispensed:?}");
    let late = ward.claim(0, &number, false).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{late:?}");
    assert_eq!(late.code(), "prescription_already_dispensed");
    let requested = ward.request_payment(0, &number, &fourth, &order).await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");

    // Each re-issue is in the history, which the patient reads.
    let history = ward
        .app
        .get(
            &format!("/v1/pharmacy/prescriptions/{number}/history"),
            Some(&ward.patient.token),
        )
        .await;
    let reissued: Vec<&Value> = history
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "claim_secret_reissued")
        .collect();
    assert_eq!(reissued.len(), 3, "{history:?}");
    assert_eq!(reissued[0]["detail"], "to Hanil Pharmacy");

    // Flow B: the drugstore the patient let open it claims again without asking the phone,
    // a limited number of times an hour.
    let pooled = ward.issue(None, false).await;
    let mut secret = ward.held_by_consent(1, &pooled).await;
    for _ in 0..5 {
        let again = ward.claim(1, &pooled, false).await;
        assert_eq!(again.status, StatusCode::OK, "{again:?}");
        assert_eq!(again.body["state"], "claimed");
        let fresh = str_of(&again, "/claim_secret").to_owned();
        assert_eq!(
            ward.store_view(1, &pooled, Some(&secret)).await.code(),
            "claim_secret_invalid"
        );
        secret = fresh;
    }
    let flooding = ward.claim(1, &pooled, false).await;
    assert_eq!(
        flooding.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{flooding:?}"
    );
    assert_eq!(flooding.code(), "too_many_attempts");
    assert_eq!(
        ward.store_view(1, &pooled, Some(&secret)).await.status,
        StatusCode::OK
    );
    let other = ward.claim(0, &pooled, true).await;
    assert_eq!(other.code(), "prescription_held_elsewhere");
    ward.app.clock.advance(Duration::minutes(61));
    let again = ward.claim(1, &pooled, false).await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    // With its fresh secret it can hand the prescription back.
    let back = ward
        .as_store(
            1,
            Method::POST,
            &format!("/v1/pharmacy/prescriptions/{pooled}/hand-back"),
            Some(str_of(&again, "/claim_secret")),
            None,
        )
        .await;
    assert_eq!(back.status, StatusCode::OK, "{back:?}");
    assert_eq!(back.body["state"], "issued");
}

#[tokio::test]
async fn a_price_the_commission_would_take_whole_is_refused_when_it_is_set() {
    let mut ward = ward().await;
    let greedy = store(&ward.app, &ward.operator, "Half Pharmacy", Some("0.5")).await;
    ward.stores.push(greedy);
    let number = ward.issue(Some(2), false).await;
    let secret = str_of(&ward.claim(2, &number, false).await, "/claim_secret").to_owned();

    // Half of 0.01 rounds up to 0.01: the drugstore is told, with the lowest price it can set.
    let refused = ward.price(2, &number, &secret, "0.01").await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{refused:?}"
    );
    assert_eq!(refused.code(), "price_below_minimum");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("0.02 USD"), "{message}");
    assert_eq!(ward.patient_view(&number).await.body["state"], "claimed");

    // At the lowest price the patient can pay: the escrow takes it.
    let priced = ward.price(2, &number, &secret, "0.02").await;
    assert_eq!(priced.status, StatusCode::OK, "{priced:?}");
    let paying = ward.pay(&number, json!({"method": "lump_sum"})).await;
    assert_eq!(paying.status, StatusCode::OK, "{paying:?}");
    assert_eq!(paying.body["state"], "payment_pending");

    // A low rate leaves even the smallest price its drugstore's.
    let number = ward.issue(Some(0), false).await;
    let secret = str_of(&ward.claim(0, &number, false).await, "/claim_secret").to_owned();
    let priced = ward.price(0, &number, &secret, "0.01").await;
    assert_eq!(priced.status, StatusCode::OK, "{priced:?}");
    ward.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_mistyped_prescription_number_is_refused_before_any_look_up() {
    let ward = ward().await;
    let number = ward.issue(None, false).await;
    // Change one character (keeping the format): the check character catches it.
    let mut typo: Vec<char> = number.chars().collect();
    typo[2] = if typo[2] == '7' { '8' } else { '7' };
    let typo: String = typo.into_iter().collect();
    for path in [
        format!("/v1/pharmacy/prescriptions/{typo}"),
        format!("/v1/pharmacy/prescriptions/{typo}/fhir"),
    ] {
        let refused = ward.app.get(&path, Some(&ward.patient.token)).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
        assert_eq!(refused.code(), "invalid_path");
    }
    let claim = ward.claim(0, &typo, true).await;
    assert_eq!(claim.code(), "invalid_path");
    // Lower case and without hyphens is the same number.
    let compact = number.replace('-', "").to_lowercase();
    let found = ward
        .app
        .get(
            &format!("/v1/pharmacy/prescriptions/{compact}"),
            Some(&ward.patient.token),
        )
        .await;
    assert_eq!(found.status, StatusCode::OK, "{found:?}");
    assert_eq!(found.body["prescription_number"], number);
}

#[tokio::test]
async fn prescriptions_are_validated_and_only_prescribers_issue_them() {
    let ward = ward().await;
    let card = ward.patient.card.clone();
    for body in [
        json!({"card_number": card, "items": []}),
        json!({"card_number": card, "items": items(false), "validity_days": 0}),
        json!({"card_number": card, "items": items(false), "validity_days": 400}),
        json!({"card_number": card, "items": [{"drug_code": "bad code!", "name": "x", "dose": "x", "quantity": 1, "days": 1}]}),
        json!({"card_number": card, "items": [{"drug_code": "1", "name": "x", "dose": "x", "quantity": 1, "days": 0}]}),
        json!({"card_number": card, "items": items(false), "notes": "n".repeat(2001)}),
    ] {
        let refused = ward.issue_with(body).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
    }
    let typo = ward
        .issue_with(json!({"card_number": "9000-2100-0000-0000", "items": items(false)}))
        .await;
    assert_eq!(
        typo.code(),
        "invalid_json",
        "a card number failing its check digit"
    );
    let unknown_store = ward
        .issue_with(json!({"card_number": card, "items": items(false),
                            "patient_chosen_drugstore_id": uuid::Uuid::now_v7()}))
        .await;
    assert_eq!(
        unknown_store.status,
        StatusCode::NOT_FOUND,
        "{unknown_store:?}"
    );
    let by_store = ward
        .app
        .post(
            "/v1/pharmacy/prescriptions",
            Some(&ward.store(0).token),
            json!({"card_number": card, "items": items(false)}),
        )
        .await;
    assert_eq!(by_store.status, StatusCode::FORBIDDEN, "{by_store:?}");
    // A shorter validity than six months is kept.
    let short = ward
        .issue_with(json!({"card_number": card, "items": items(false), "validity_days": 3}))
        .await;
    let from = chrono::DateTime::parse_from_rfc3339(str_of(&short, "/valid_from")).unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(str_of(&short, "/valid_until")).unwrap();
    assert_eq!(until - from, Duration::days(3));
    // Numbers of one hospital follow its sequence; the middle group is the hospital's code.
    let a = ward.issue(None, false).await;
    let b = ward.issue(None, false).await;
    assert_eq!(a[7..13], b[7..13]);
    let seq = |n: &str| u32::from_str_radix(&n[14..19], 16).unwrap();
    assert_eq!(seq(&b), seq(&a) + 1);
    // Each party lists its own.
    let mine = ward
        .app
        .get("/v1/pharmacy/prescriptions", Some(&ward.prescriber))
        .await;
    assert_eq!(mine.body.as_array().unwrap().len(), 3);
    assert!(mine.body[0].get("items").is_none());
    let theirs = ward
        .app
        .get("/v1/pharmacy/prescriptions", Some(&ward.patient.token))
        .await;
    assert_eq!(theirs.body.as_array().unwrap().len(), 3);
    let stores = ward
        .app
        .get("/v1/pharmacy/drugstores", Some(&ward.patient.token))
        .await;
    let names: Vec<&str> = stores
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Hanil Pharmacy", "Daehan Drugstore"]);
}

#[tokio::test]
async fn the_fhir_view_has_the_r4_shape_at_every_step() {
    let ward = ward().await;
    let number = ward.issue(Some(0), false).await;
    let fhir = |token: String, secret: Option<String>| {
        let app = ward.app.clone();
        let path = format!("/v1/pharmacy/prescriptions/{number}/fhir");
        async move {
            let headers: Vec<(&str, &str)> = secret
                .as_deref()
                .map(|s| ("claim-secret", s))
                .into_iter()
                .collect();
            let reply = app
                .request(Method::GET, &path, Some(&token), None, &headers)
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
            assert_eq!(
                reply.headers["content-type"], "application/fhir+json",
                "{reply:?}"
            );
            reply.body
        }
    };

    let routed = fhir(ward.prescriber.clone(), None).await;
    let shape = fhir_shape::check(&routed, &number);
    assert_eq!(
        routed["entry"][0]["resource"]["subject"]["reference"],
        format!("Patient/{}", ward.patient.id)
    );
    assert_eq!(shape.requests, vec!["active", "active"]);
    assert_eq!(shape.task, "requested");
    assert_eq!(shape.owner.as_deref(), Some("Hanil Pharmacy"));
    assert!(shape.dispenses.is_empty());

    let secret = str_of(&ward.claim(0, &number, false).await, "/claim_secret").to_owned();
    let claimed = fhir(ward.store(0).token.clone(), Some(secret.clone())).await;
    assert_eq!(fhir_shape::check(&claimed, &number).task, "accepted");

    let order = ward.paid(0, &number, &secret, "11.00").await;
    let paid = fhir(ward.patient.token.clone(), None).await;
    assert_eq!(fhir_shape::check(&paid, &number).task, "in-progress");

    ward.dispense(0, &number, &secret, Some(&order)).await;
    let dispensed = fhir(ward.patient.token.clone(), None).await;
    let shape = fhir_shape::check(&dispensed, &number);
    assert_eq!(shape.requests, vec!["completed", "completed"]);
    assert_eq!(shape.task, "completed");
    assert_eq!(shape.dispenses, vec!["completed", "completed"]);

    // Cancelled and expired prescriptions.
    let cancelled = ward.issue(None, false).await;
    ward.cancel(&ward.prescriber, &cancelled).await;
    let body = ward
        .app
        .get(
            &format!("/v1/pharmacy/prescriptions/{cancelled}/fhir"),
            Some(&ward.prescriber),
        )
        .await
        .body;
    let shape = fhir_shape::check(&body, &cancelled);
    assert_eq!(shape.requests, vec!["cancelled", "cancelled"]);
    assert_eq!(shape.task, "cancelled");
    let expiring = ward.issue(None, true).await;
    ward.app.clock.advance(Duration::days(30));
    ward.app.fire_timers().await;
    let body = ward
        .app
        .get(
            &format!("/v1/pharmacy/prescriptions/{expiring}/fhir"),
            Some(&ward.prescriber),
        )
        .await
        .body;
    let shape = fhir_shape::check(&body, &expiring);
    assert_eq!(shape.requests, vec!["stopped", "stopped"]);
    assert_eq!(shape.task, "cancelled");
}

/// What a FHIR R4 validator would check of the bundle: required elements, value sets, types.
mod fhir_shape {
    use serde_json::Value;

    const MEDICATION_REQUEST_STATUS: [&str; 8] = [
        "active",
        "on-hold",
        "cancelled",
        "completed",
        "entered-in-error",
        "stopped",
        "draft",
        "unknown",
    ];
    const MEDICATION_REQUEST_INTENT: [&str; 8] = [
        "proposal",
        "plan",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    ];
    const TASK_STATUS: [&str; 12] = [
        "draft",
        "requested",
        "received",
        "accepted",
        "rejected",
        "ready",
        "cancelled",
        "in-progress",
        "on-hold",
        "failed",
        "completed",
        "entered-in-error",
    ];
    const TASK_INTENT: [&str; 9] = [
        "unknown",
        "proposal",
        "plan",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    ];
    const MEDICATION_DISPENSE_STATUS: [&str; 9] = [
        "preparation",
        "in-progress",
        "cancelled",
        "on-hold",
        "completed",
        "entered-in-error",
        "stopped",
        "declined",
        "unknown",
    ];

    pub struct Shape {
        pub requests: Vec<String>,
        pub task: String,
        pub owner: Option<String>,
        pub dispenses: Vec<String>,
    }

    fn date_time(value: &Value, what: &str) {
        let text = value
            .as_str()
            .unwrap_or_else(|| panic!("{what} is not a dateTime: {value}"));
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|_| panic!("{what} is not a dateTime: {text}"));
    }

    fn reference(value: &Value, what: &str) {
        let reference = value["reference"]
            .as_str()
            .unwrap_or_else(|| panic!("{what} has no reference: {value}"));
        assert!(
            reference.starts_with("urn:uuid:") || reference.split('/').count() == 2,
            "{what}: {reference}"
        );
    }

    fn codeable_medication(resource: &Value) {
        let medication = &resource["medicationCodeableConcept"];
        assert!(
            medication.is_object(),
            "medication[x] is required: {resource}"
        );
        let coding = &medication["coding"][0];
        assert!(coding["system"].is_string() && coding["code"].is_string());
        assert!(medication["text"].is_string());
    }

    fn id(resource: &Value) {
        let id = resource["id"].as_str().expect("id");
        assert!(
            !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')),
            "{id}"
        );
    }

    pub fn check(bundle: &Value, number: &str) -> Shape {
        assert_eq!(bundle["resourceType"], "Bundle");
        assert_eq!(bundle["type"], "collection");
        date_time(&bundle["timestamp"], "Bundle.timestamp");
        let entries = bundle["entry"].as_array().expect("entries");
        let mut shape = Shape {
            requests: Vec::new(),
            task: String::new(),
            owner: None,
            dispenses: Vec::new(),
        };
        let full_urls: Vec<&str> = entries
            .iter()
            .map(|e| e["fullUrl"].as_str().expect("fullUrl"))
            .collect();
        for entry in entries {
            let resource = &entry["resource"];
            id(resource);
            match resource["resourceType"].as_str().expect("resourceType") {
                "MedicationRequest" => {
                    let status = resource["status"].as_str().unwrap();
                    assert!(MEDICATION_REQUEST_STATUS.contains(&status), "{status}");
                    assert!(
                        MEDICATION_REQUEST_INTENT.contains(&resource["intent"].as_str().unwrap())
                    );
                    assert_eq!(resource["intent"], "order");
                    codeable_medication(resource);
                    reference(&resource["subject"], "MedicationRequest.subject");
                    reference(&resource["requester"], "MedicationRequest.requester");
                    date_time(&resource["authoredOn"], "authoredOn");
                    assert_eq!(resource["groupIdentifier"]["value"], number);
                    assert!(resource["dosageInstruction"][0]["text"].is_string());
                    let dispense = &resource["dispenseRequest"];
                    date_time(&dispense["validityPeriod"]["start"], "validityPeriod.start");
                    date_time(&dispense["validityPeriod"]["end"], "validityPeriod.end");
                    assert!(dispense["quantity"]["value"].as_u64().unwrap() > 0);
                    assert_eq!(dispense["expectedSupplyDuration"]["code"], "d");
                    shape.requests.push(status.to_owned());
                }
                "Task" => {
                    let status = resource["status"].as_str().unwrap();
                    assert!(TASK_STATUS.contains(&status), "{status}");
                    assert!(TASK_INTENT.contains(&resource["intent"].as_str().unwrap()));
                    assert_eq!(resource["identifier"][0]["value"], number);
                    assert!(resource["businessStatus"]["coding"][0]["code"].is_string());
                    let focus = resource["focus"]["reference"].as_str().unwrap();
                    assert!(full_urls.contains(&focus), "focus resolves in the bundle");
                    for based_on in resource["basedOn"].as_array().unwrap() {
                        assert!(full_urls.contains(&based_on["reference"].as_str().unwrap()));
                    }
                    reference(&resource["for"], "Task.for");
                    date_time(&resource["authoredOn"], "Task.authoredOn");
                    if !resource["owner"].is_null() {
                        reference(&resource["owner"], "Task.owner");
                        shape.owner = resource["owner"]["display"].as_str().map(str::to_owned);
                    }
                    shape.task = status.to_owned();
                }
                "MedicationDispense" => {
                    let status = resource["status"].as_str().unwrap();
                    assert!(MEDICATION_DISPENSE_STATUS.contains(&status), "{status}");
                    codeable_medication(resource);
                    reference(&resource["subject"], "MedicationDispense.subject");
                    reference(&resource["performer"][0]["actor"], "performer.actor");
                    let authorizing = resource["authorizingPrescription"][0]["reference"]
                        .as_str()
                        .unwrap();
                    assert!(full_urls.contains(&authorizing));
                    date_time(&resource["whenHandedOver"], "whenHandedOver");
                    assert!(resource["quantity"]["value"].as_u64().unwrap() > 0);
                    shape.dispenses.push(status.to_owned());
                }
                other => panic!("unexpected resource {other}"),
            }
        }
        assert_eq!(shape.requests.len(), 2, "one MedicationRequest per item");
        assert!(!shape.task.is_empty(), "a Task");
        shape
    }
}

#[tokio::test]
async fn an_operator_mediates_a_disputed_prescription_payment() {
    let ward = ward().await;
    let number = ward.issue(Some(0), false).await;
    let secret = str_of(&ward.claim(0, &number, false).await, "/claim_secret").to_owned();
    let order = ward.paid(0, &number, &secret, "40.00").await;
    ward.dispense(0, &number, &secret, Some(&order)).await;
    ward.request_payment(0, &number, &secret, &order).await;
    let disputed = ward.answer_pending(&number, "settlement", "deny").await;
    assert_eq!(disputed.body["outcome"], "disputed", "{disputed:?}");
    assert!(
        kinds(&ward.events_of(&ward.store(0).token).await)
            .contains("prescription.payment_disputed")
    );
    let mediated = ward
        .app
        .post_idempotent(
            // One mediation endpoint for every vertical.
            &format!("/v1/operator/disputes/{order}/mediation"),
            Some(&ward.operator),
            json!({"outcome": "split", "to_seller": {"amount": "30.00", "currency": "USD"},
                   "note": "one pack was missing"}),
        )
        .await;
    assert_eq!(mediated.status, StatusCode::OK, "{mediated:?}");
    assert_eq!(mediated.body["vertical"], "pharmacy");
    assert_eq!(mediated.body["state"], "settled");
    assert_eq!(mediated.body["refunded_to_buyer"]["amount"], "10.00");
    let prescription = &mediated.body["prescription"];
    assert_eq!(prescription["refunded_to_patient"]["amount"], "10.00");
    assert_eq!(prescription["escrow_state"], "settled");
    assert_eq!(prescription["prescription_number"], number.as_str());
    // 30.00 less 3 % (0.90).
    assert_eq!(
        ward.app.balance(&ward.store(0).token, "withdrawal").await,
        "29.10"
    );
    assert_eq!(
        ward.app.balance(&ward.patient.token, "prepaid").await,
        "170.00"
    );
    ward.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn the_openapi_document_describes_the_pharmacy() {
    let app = TestApp::spawn().await;
    let doc = app.get("/openapi.json", None).await;
    let paths = doc.body["paths"].as_object().unwrap();
    for path in [
        "/v1/pharmacy/hospitals",
        "/v1/pharmacy/drugstores",
        "/v1/pharmacy/prescriptions",
        "/v1/pharmacy/prescriptions/{number}",
        "/v1/pharmacy/prescriptions/{number}/fhir",
        "/v1/pharmacy/prescriptions/{number}/claim",
        "/v1/pharmacy/prescriptions/{number}/payment",
        "/v1/pharmacy/prescriptions/{number}/dispense",
        "/v1/pharmacy/lookups",
        "/v1/pharmacy/me/access-log",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    let schemas = doc.body["components"]["schemas"].as_object().unwrap();
    for schema in [
        "PrescriptionView",
        "PrescriptionReceipt",
        "NewPrescription",
        "PrescriptionClaim",
        "PrescriptionState",
        "PrescriptionPendingConfirmation",
        "PrescriptionMediationResult",
    ] {
        assert!(schemas.contains_key(schema), "{schema} missing");
    }
    // Named apart from retail's type of the same Rust name.
    assert!(
        schemas["PrescriptionPendingConfirmation"]["properties"]
            .get("purpose")
            .is_some()
    );
}
