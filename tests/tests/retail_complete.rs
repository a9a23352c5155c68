//! Retail, every way an order can go: carriers and tracking, delivery evidence, partial
//! release, refusal, disputes and each mediation outcome, card fees, webhooks, auctions —
//! and the races between them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::{Method, StatusCode};
use chrono::Duration;
use holdfast_tests::world::{card_request, random_phone};
use holdfast_tests::{Reply, TestApp};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

struct Shop {
    app: Arc<TestApp>,
    operator: String,
    supplier: String,
    carrier: String,
    shopper: String,
    phone: String,
    commodity: String,
}

/// A supplier whose parcels go to a carrier, and a shopper with an addressed prepaid card.
async fn shop(deposit: &str, price: &str, rate: &str) -> Shop {
    let app = Arc::new(TestApp::spawn().await);
    let operator = app.operator_token().await;
    let (carrier_id, carrier) = app.distributor(&operator, "Swift Couriers").await;
    let (_, supplier) = app
        .onboard_staff(
            &operator,
            "/v1/operator/suppliers",
            "sup",
            json!({"display_name": "Acme Supplies", "commission_rate": rate,
                   "default_distributor_id": carrier_id}),
        )
        .await;
    let phone = random_phone();
    let shopper = addressed_shopper(&app, &phone, deposit).await;
    let created = app
        .post(
            "/v1/retail/commodities",
            Some(&supplier),
            json!({"name": "Kettle", "price": {"amount": price, "currency": "USD"}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    Shop {
        commodity: created.body["id"].as_str().unwrap().to_owned(),
        app,
        operator,
        supplier,
        carrier,
        shopper,
        phone,
    }
}

/// A holder with a bank-issued prepaid card that carries a delivery address, logged in;
/// returns its token.
async fn addressed_shopper(app: &TestApp, phone: &str, deposit: &str) -> String {
    let operator = app.harness_operator().await;
    let code = format!("1{:03}", uuid::Uuid::new_v4().as_u128() % 1000);
    let bank = app.institution(&operator, &code, "bank", json!({})).await;
    let issued = app
        .issue_card(
            &bank,
            card_request(
                "prepaid",
                phone,
                json!({"holder_name": "Ji-woo Park",
                       "delivery_address": "12 Sejong-daero, Jung-gu, Seoul",
                       "initial_deposit": {"amount": deposit, "currency": "USD"}}),
            ),
        )
        .await;
    let card = issued["card"]["card_number"].as_str().unwrap().to_owned();
    app.card_login(&card, phone).await
}

impl Shop {
    async fn order(&self, quantity: u32) -> String {
        let placed = self
            .app
            .place_order(&self.shopper, &self.commodity, quantity)
            .await;
        assert_eq!(placed.status, StatusCode::CREATED, "{placed:?}");
        let number = placed.body["order_number"].as_str().unwrap().to_owned();
        let challenge = placed.body["pending_confirmation"]["challenge_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let code = self.app.code_for(&self.phone, &challenge).await;
        let approved = self.app.answer(&challenge, &code, "approve").await;
        assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
        number
    }

    async fn parcel_of(&self, number: &str) -> Value {
        let parcels = self
            .app
            .get("/v1/distributor/parcels", Some(&self.carrier))
            .await;
        assert_eq!(parcels.status, StatusCode::OK, "{parcels:?}");
        parcels
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["order_number"] == number)
            .cloned()
            .unwrap_or_else(|| panic!("no parcel for {number}: {}", parcels.body))
    }

    async fn track(&self, parcel: &str, kind: &str, location: &str, number: Option<&str>) -> Reply {
        self.app
            .post(
                &format!("/v1/distributor/parcels/{parcel}/tracking"),
                Some(&self.carrier),
                json!({"kind": kind, "location": location, "order_number": number}),
            )
            .await
    }

    async fn deliver(&self, number: &str) {
        let parcel = self.parcel_of(number).await;
        let id = parcel["parcel_id"].as_str().unwrap();
        for (kind, location) in [("picked_up", "Incheon hub"), ("arrived", "Seoul depot")] {
            let tracked = self.track(id, kind, location, None).await;
            assert_eq!(tracked.status, StatusCode::CREATED, "{tracked:?}");
        }
        let delivered = self.track(id, "delivered", "Jung-gu", Some(number)).await;
        assert_eq!(delivered.status, StatusCode::CREATED, "{delivered:?}");
    }

    async fn request_settlement(&self, number: &str, amount: Option<&str>) -> Reply {
        let body = match amount {
            Some(amount) => json!({"amount": {"amount": amount, "currency": "USD"}}),
            None => json!({}),
        };
        self.app
            .post(
                &format!("/v1/retail/orders/{number}/settlement-request"),
                Some(&self.supplier),
                body,
            )
            .await
    }

    async fn answer_settlement(&self, number: &str, decision: &str) -> Reply {
        let challenge = self.app.pending_confirmation(&self.shopper, number).await;
        self.app.answer_on(&self.phone, &challenge, decision).await
    }

    async fn state(&self, number: &str) -> String {
        self.app.order_state(&self.shopper, number).await
    }

    async fn texts(&self) -> Vec<String> {
        self.app.texts(&self.phone).await
    }
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn an_order_travels_with_tracking_and_settles_after_delivery() {
    let shop = shop("500.00", "50.00", "0.10").await;
    let number = shop.order(1).await;

    // The carrier sees where the parcel goes and the order number — nothing about payment.
    let parcel = shop.parcel_of(&number).await;
    assert_eq!(
        keys(&parcel),
        [
            "created_at",
            "destination",
            "order_number",
            "parcel_id",
            "status",
            "tracking"
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
    assert_eq!(parcel["destination"], "12 Sejong-daero, Jung-gu, Seoul");
    assert_eq!(parcel["status"], "awaiting_pickup");

    // The supplier sees the card masked, the items and the amounts — no name, phone, address.
    let seen = shop
        .app
        .get(&format!("/v1/retail/orders/{number}"), Some(&shop.supplier))
        .await;
    let text = seen.body.to_string();
    assert!(
        seen.body["card"].as_str().unwrap().contains("••-••••-"),
        "{text}"
    );
    for secret in ["Ji-woo", "Park", "Sejong", &shop.phone[3..]] {
        assert!(!text.contains(secret), "the supplier saw {secret}: {text}");
    }
    assert!(seen.body["pending_confirmation"].is_null());

    shop.deliver(&number).await;
    assert_eq!(shop.state(&number).await, "delivered");
    let texts = shop.texts().await;
    for point in [
        "picked up Incheon hub",
        "arrived at Seoul depot",
        "delivered at Jung-gu",
    ] {
        assert!(
            texts.iter().any(|t| t.contains(point)),
            "no text about '{point}': {texts:?}"
        );
    }

    let requested = shop.request_settlement(&number, None).await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    let texts = shop.texts().await;
    assert!(
        texts[0].contains("Release payment") && texts[0].contains("delivered "),
        "{}",
        texts[0]
    );
    let settled = shop.answer_settlement(&number, "approve").await;
    assert_eq!(settled.body["state"], "settled", "{settled:?}");
    assert_eq!(
        shop.app.balance(&shop.supplier, "withdrawal").await,
        "45.00"
    );
    assert_eq!(shop.app.platform_commission(&shop.operator).await, "5.00");

    let history = shop
        .app
        .get(
            &format!("/v1/retail/orders/{number}/history"),
            Some(&shop.shopper),
        )
        .await;
    let kinds: Vec<_> = history
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    for kind in [
        "opened",
        "order_approved",
        "dispatched",
        "tracking",
        "delivered",
        "settlement_requested",
        "settled_on_approval",
    ] {
        assert!(kinds.contains(&kind.to_owned()), "no {kind} in {kinds:?}");
    }
    shop.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_delivery_must_record_the_order_number_the_buyer_handed_over() {
    let shop = shop("500.00", "50.00", "0.10").await;
    let number = shop.order(1).await;
    let other = shop.order(1).await;
    let parcel = shop.parcel_of(&number).await;
    let id = parcel["parcel_id"].as_str().unwrap();
    let without = shop.track(id, "delivered", "door", None).await;
    assert_eq!(without.status, StatusCode::BAD_REQUEST, "{without:?}");
    let wrong = shop.track(id, "delivered", "door", Some(&other)).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{wrong:?}");
    assert_eq!(shop.state(&number).await, "frozen");
    // Another carrier cannot touch it.
    let (_, stranger) = shop.app.distributor(&shop.operator, "Swift Couriers").await;
    let foreign = shop
        .app
        .post(
            &format!("/v1/distributor/parcels/{id}/tracking"),
            Some(&stranger),
            json!({"kind": "picked_up", "location": "x"}),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{foreign:?}");
}

#[tokio::test]
async fn without_delivery_the_buyer_is_warned_and_cannot_cancel_once_dispatched() {
    let shop = shop("500.00", "50.00", "0.10").await;
    let number = shop.order(1).await;
    let parcel = shop.parcel_of(&number).await;
    shop.track(
        parcel["parcel_id"].as_str().unwrap(),
        "picked_up",
        "hub",
        None,
    )
    .await;
    assert_eq!(shop.state(&number).await, "in_delivery");
    let cancel = shop
        .app
        .post(
            &format!("/v1/retail/orders/{number}/cancel"),
            Some(&shop.shopper),
            json!({}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::CONFLICT, "{cancel:?}");
    let refuse = shop
        .app
        .post(
            &format!("/v1/retail/orders/{number}/refuse"),
            Some(&shop.supplier),
            json!({}),
        )
        .await;
    assert_eq!(refuse.status, StatusCode::CONFLICT, "{refuse:?}");
    shop.request_settlement(&number, None).await;
    let texts = shop.texts().await;
    assert!(texts[0].contains("NO DELIVERY RECORDED"), "{}", texts[0]);
}

#[tokio::test]
async fn a_partial_release_pays_the_part_and_returns_the_rest() {
    let shop = shop("500.00", "25.00", "0.10").await;
    let number = shop.order(2).await;
    shop.deliver(&number).await;
    let too_much = shop.request_settlement(&number, Some("50.01")).await;
    assert_eq!(too_much.status, StatusCode::BAD_REQUEST, "{too_much:?}");
    let requested = shop.request_settlement(&number, Some("30.00")).await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    let texts = shop.texts().await;
    assert!(
        texts[0].contains("30.00 USD"),
        "the phone must show the part: {}",
        texts[0]
    );
    shop.answer_settlement(&number, "approve").await;
    assert_eq!(shop.state(&number).await, "settled");
    // 30.00 released: 10 % of it to the platform, 20.00 back to the buyer.
    assert_eq!(
        shop.app.balance(&shop.supplier, "withdrawal").await,
        "27.00"
    );
    assert_eq!(shop.app.platform_commission(&shop.operator).await, "3.00");
    assert_eq!(shop.app.balance(&shop.shopper, "prepaid").await, "470.00");
    shop.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_supplier_may_refuse_an_order_before_dispatch() {
    let shop = shop("100.00", "40.00", "0.10").await;
    let number = shop.order(1).await;
    assert_eq!(shop.app.balance(&shop.shopper, "prepaid").await, "60.00");
    let refused = shop
        .app
        .post(
            &format!("/v1/retail/orders/{number}/refuse"),
            Some(&shop.supplier),
            json!({"reason": "out of stock"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::OK, "{refused:?}");
    assert_eq!(refused.body["state"], "refused");
    assert_eq!(refused.body["parcel"]["status"], "withdrawn");
    assert_eq!(shop.app.balance(&shop.shopper, "prepaid").await, "100.00");
    let parcels = shop
        .app
        .get("/v1/distributor/parcels", Some(&shop.carrier))
        .await;
    assert!(parcels.body.as_array().unwrap().is_empty(), "{parcels:?}");
    shop.app.assert_ledger_clean().await;
}

async fn disputed(shop: &Shop) -> String {
    let number = shop.order(1).await;
    shop.deliver(&number).await;
    shop.request_settlement(&number, None).await;
    let disputed = shop
        .app
        .post(
            &format!("/v1/retail/orders/{number}/dispute"),
            Some(&shop.shopper),
            json!({"reason": "arrived broken"}),
        )
        .await;
    assert_eq!(disputed.status, StatusCode::OK, "{disputed:?}");
    assert_eq!(disputed.body["state"], "disputed");
    number
}

async fn mediate(shop: &Shop, number: &str, body: Value) -> Reply {
    let key = uuid::Uuid::new_v4().to_string();
    shop.app
        .request(
            Method::POST,
            &format!("/v1/operator/disputes/{number}/mediation"),
            Some(&shop.operator),
            Some(body),
            &[("idempotency-key", &key)],
        )
        .await
}

#[tokio::test]
async fn a_dispute_stops_the_clock_and_a_release_pays_the_supplier() {
    let shop = shop("500.00", "50.00", "0.10").await;
    let number = disputed(&shop).await;
    shop.app.clock.advance(Duration::hours(100));
    shop.app.fire_timers().await;
    assert_eq!(shop.state(&number).await, "disputed");
    assert_eq!(shop.app.balance(&shop.supplier, "withdrawal").await, "0.00");
    let queue = shop
        .app
        .get("/v1/operator/disputes", Some(&shop.operator))
        .await;
    assert!(
        queue
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["order_number"] == number)
    );
    let released = mediate(
        &shop,
        &number,
        json!({"outcome": "release", "note": "photos show intact goods"}),
    )
    .await;
    assert_eq!(released.status, StatusCode::OK, "{released:?}");
    assert_eq!(released.body["order"]["state"], "settled");
    assert_eq!(
        shop.app.balance(&shop.supplier, "withdrawal").await,
        "45.00"
    );
    assert_eq!(shop.app.balance(&shop.shopper, "prepaid").await, "450.00");
    let again = mediate(
        &shop,
        &number,
        json!({"outcome": "refund", "note": "changed my mind"}),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
    shop.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_full_refund_returns_everything() {
    let shop = shop("500.00", "50.00", "0.10").await;
    let number = disputed(&shop).await;
    let refunded = mediate(
        &shop,
        &number,
        json!({"outcome": "refund", "note": "never arrived intact"}),
    )
    .await;
    assert_eq!(refunded.status, StatusCode::OK, "{refunded:?}");
    assert_eq!(refunded.body["order"]["state"], "refunded");
    assert_eq!(shop.app.balance(&shop.shopper, "prepaid").await, "500.00");
    assert_eq!(shop.app.balance(&shop.supplier, "withdrawal").await, "0.00");
    shop.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_split_with_a_penalty_charges_the_party_at_fault() {
    let shop = shop("500.00", "50.00", "0.10").await;
    // Split 20.00 to the seller; the seller at fault pays a 1.00 penalty out of its share.
    let number = disputed(&shop).await;
    let split = mediate(
        &shop,
        &number,
        json!({"outcome": "split",
        "to_seller": {"amount": "20.00", "currency": "USD"},
        "penalty": {"party": "seller", "amount": {"amount": "1.00", "currency": "USD"}},
        "note": "one of two items broken"}),
    )
    .await;
    assert_eq!(split.status, StatusCode::OK, "{split:?}");
    assert_eq!(split.body["commission"]["amount"], "2.00");
    assert_eq!(split.body["seller_payout"]["amount"], "17.00");
    assert_eq!(split.body["refunded_to_buyer"]["amount"], "30.00");
    assert_eq!(
        shop.app.balance(&shop.supplier, "withdrawal").await,
        "17.00"
    );
    assert_eq!(shop.app.balance(&shop.shopper, "prepaid").await, "480.00");

    // The buyer at fault pays its penalty out of its refund.
    let number = disputed(&shop).await;
    let refund = mediate(
        &shop,
        &number,
        json!({"outcome": "refund",
        "penalty": {"party": "buyer", "amount": {"amount": "2.50", "currency": "USD"}},
        "note": "returned late"}),
    )
    .await;
    assert_eq!(refund.status, StatusCode::OK, "{refund:?}");
    assert_eq!(refund.body["refunded_to_buyer"]["amount"], "47.50");
    assert_eq!(shop.app.balance(&shop.shopper, "prepaid").await, "477.50");

    // A penalty larger than the share is refused and changes nothing.
    let number = disputed(&shop).await;
    let excessive = mediate(&shop, &number, json!({"outcome": "release",
        "penalty": {"party": "buyer", "amount": {"amount": "0.01", "currency": "USD"}}, "note": "x"})).await;
    assert_eq!(excessive.status, StatusCode::BAD_REQUEST, "{excessive:?}");
    assert_eq!(shop.state(&number).await, "disputed");
    let penalties = shop
        .app
        .get("/v1/operator/accounts?owner=platform", Some(&shop.operator))
        .await;
    let penalty = penalties
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "penalty")
        .unwrap();
    assert_eq!(penalty["balance"], "3.50");
    shop.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn card_funding_pays_the_institution_its_fee_and_everything_adds_up() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (_, supplier) = app.supplier(&operator, "Acme").await;
    let commodity = app.commodity(&supplier, "100.00", "0.05").await;
    let cardco = app
        .institution(
            &operator,
            "2468",
            "card_company",
            json!({"display_name": "Card Co", "card_fee_rate": "0.02"}),
        )
        .await;
    let cardco_id = cardco.id.clone();
    let phone = "+821044440000";
    let issued = app
        .issue_card(
            &cardco,
            card_request(
                "credit_card",
                phone,
                json!({"credit_limit": {"amount": "1000.00", "currency": "USD"}}),
            ),
        )
        .await;
    let card = issued["card"]["card_number"].as_str().unwrap().to_owned();
    let shopper = app.card_login(&card, phone).await;
    let order = app.place_order(&shopper, &commodity, 1).await;
    let number = order.body["order_number"].as_str().unwrap().to_owned();
    let challenge = order.body["pending_confirmation"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = app.code_for(phone, &challenge).await;
    app.answer(&challenge, &code, "approve").await;
    app.post(
        &format!("/v1/retail/orders/{number}/settlement-request"),
        Some(&supplier),
        json!({}),
    )
    .await;
    let settlement = app.pending_confirmation(&shopper, &number).await;
    let code = app.code_for(phone, &settlement).await;
    app.answer(&settlement, &code, "approve").await;
    // 100.00: 5.00 commission, 2.00 card fee, 93.00 to the supplier.
    assert_eq!(app.balance(&supplier, "withdrawal").await, "93.00");
    assert_eq!(app.platform_commission(&operator).await, "5.00");
    let fees = app
        .get(
            &format!("/v1/operator/accounts?owner={cardco_id}"),
            Some(&operator),
        )
        .await;
    let fee = fees
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "institution_fee")
        .unwrap();
    assert_eq!(fee["balance"], "2.00");
    // The institution hears of each step of the hold on its card.
    let feed = app.get("/v1/events", Some(&cardco.token)).await;
    let kinds: Vec<_> = feed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, vec!["hold.placed", "hold.posted"], "{feed:?}");
    app.assert_ledger_clean().await;
}

/// A receiver on 127.0.0.1 that records what it is sent and answers with `status`.
async fn receiver(
    status: StatusCode,
) -> (
    String,
    Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>,
) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push((headers, body));
                status
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/hook"), seen)
}

#[tokio::test]
async fn webhooks_are_signed_carry_an_event_id_and_retry_with_a_log() {
    let shop = shop("500.00", "50.00", "0.10").await;
    let (url, seen) = receiver(StatusCode::OK).await;
    let registered = shop
        .app
        .post("/v1/webhooks", Some(&shop.supplier), json!({"url": url}))
        .await;
    assert_eq!(registered.status, StatusCode::CREATED, "{registered:?}");
    let secret = registered.body["secret"].as_str().unwrap().to_owned();
    let (failing_url, failing_seen) = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
    let failing = shop
        .app
        .post(
            "/v1/webhooks",
            Some(&shop.supplier),
            json!({"url": failing_url}),
        )
        .await;
    let failing_id = failing.body["endpoint"]["id"].as_str().unwrap().to_owned();

    let number = shop.order(1).await;
    shop.app.deliver().await;
    let received = seen.lock().unwrap().clone();
    let confirmed = received
        .iter()
        .find(|(_, body)| body.contains("order.confirmed"))
        .unwrap_or_else(|| panic!("no order.confirmed in {received:?}"));
    let (headers, body) = confirmed;
    let signature = headers["holdfast-signature"].to_str().unwrap();
    let t: i64 = signature
        .split(',')
        .next()
        .unwrap()
        .trim_start_matches("t=")
        .parse()
        .unwrap();
    assert_eq!(
        signature,
        holdfast_core::webhooks::signature(&secret, t, body.as_bytes())
    );
    let event: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        headers["holdfast-event-id"].to_str().unwrap(),
        event["id"].as_str().unwrap()
    );
    assert_eq!(event["data"]["order_number"], number);
    assert!(event["data"]["card"].as_str().unwrap().contains('•'));
    assert!(!body.contains(&shop.phone[3..]) && !body.contains("Sejong"));

    // The failing endpoint is tried again with backoff, and its log says so.
    assert!(!failing_seen.lock().unwrap().is_empty());
    shop.app.clock.advance(Duration::seconds(5));
    shop.app.deliver().await;
    let log = shop
        .app
        .get(
            &format!("/v1/webhooks/{failing_id}/deliveries"),
            Some(&shop.supplier),
        )
        .await;
    let entry = &log.body[0];
    assert_eq!(entry["status"], "pending", "{log:?}");
    assert_eq!(entry["last_status_code"], 500);
    assert!(entry["attempts"].as_i64().unwrap() >= 2, "{log:?}");
    // The log is paged and filtered like every list: none delivered to the failing endpoint,
    // and one row a page hands out a cursor to the next.
    let delivered = shop
        .app
        .get(
            &format!("/v1/webhooks/{failing_id}/deliveries?state=delivered"),
            Some(&shop.supplier),
        )
        .await;
    assert_eq!(delivered.body, json!([]), "{delivered:?}");
    let pending = shop
        .app
        .get(
            &format!("/v1/webhooks/{failing_id}/deliveries?state=pending&limit=1"),
            Some(&shop.supplier),
        )
        .await;
    assert_eq!(pending.body[0], *entry, "{pending:?}");
    let first = shop
        .app
        .get(
            &format!("/v1/webhooks/{failing_id}/deliveries?limit=1"),
            Some(&shop.supplier),
        )
        .await;
    assert_eq!(first.body[0], *entry, "{first:?}");
    if log.body.as_array().unwrap().len() > 1 {
        let next = first.headers["next-cursor"].to_str().unwrap();
        let second = shop
            .app
            .get(
                &format!("/v1/webhooks/{failing_id}/deliveries?limit=1&cursor={next}"),
                Some(&shop.supplier),
            )
            .await;
        assert_eq!(second.body[0], log.body[1], "{second:?}");
    } else {
        assert!(first.headers.get("next-cursor").is_none(), "{first:?}");
    }
    // The same events are in the feed.
    let feed = shop.app.get("/v1/events", Some(&shop.supplier)).await;
    assert!(
        feed.body
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "order.confirmed")
    );
}

#[tokio::test]
async fn an_auction_sells_to_the_highest_bidder_and_pays_the_holder_who_sold() {
    let app = TestApp::spawn().await;
    let operator = app.harness_operator().await;
    // The seller is a card holder with a withdrawal account.
    let bank = app
        .institution(&operator, "1357", "bank", json!({"display_name": "Bank"}))
        .await;
    let mut cards = Vec::new();
    for (phone, seller) in [
        ("+821055550001", true),
        ("+821055550002", false),
        ("+821055550003", false),
    ] {
        let issued = app
            .issue_card(
                &bank,
                card_request(
                    "prepaid",
                    phone,
                    json!({"seller": seller, "initial_deposit": {"amount": "300.00", "currency": "USD"}}),
                ),
            )
            .await;
        // Only the card allowed to sell comes with a withdrawal account, at zero.
        assert_eq!(
            issued["withdrawal_account"]["balance"],
            if seller { json!("0.00") } else { Value::Null },
            "{issued}"
        );
        let card = issued["card"]["card_number"].as_str().unwrap().to_owned();
        cards.push((phone, app.card_login(&card, phone).await));
    }
    let (seller_phone, seller) = &cards[0];
    // A duration beyond any calendar is refused, not a crash.
    for duration in [i64::MAX - 1, -5, 10] {
        let refused = app
            .post("/v1/retail/auctions", Some(seller),
                json!({"name": "Vintage grinder", "reserve_price": {"amount": "100.00", "currency": "USD"}, "duration_secs": duration}))
            .await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{duration}: {refused:?}"
        );
    }
    let opened = app
        .post("/v1/retail/auctions", Some(seller),
            json!({"name": "Vintage grinder", "reserve_price": {"amount": "100.00", "currency": "USD"}, "duration_secs": 3600}))
        .await;
    assert_eq!(opened.status, StatusCode::CREATED, "{opened:?}");
    let auction = opened.body["id"].as_str().unwrap().to_owned();
    let bid = |token: &str, amount: &str| {
        let token = token.to_owned();
        let path = format!("/v1/retail/auctions/{auction}/bids");
        let body = json!({"amount": {"amount": amount, "currency": "USD"}});
        let app = &app;
        async move { app.post(&path, Some(&token), body).await }
    };
    assert_eq!(
        bid(seller, "150.00").await.status,
        StatusCode::BAD_REQUEST,
        "no bidding on your own"
    );
    assert_eq!(
        bid(&cards[1].1, "90.00").await.status,
        StatusCode::BAD_REQUEST,
        "below the reserve"
    );
    assert_eq!(bid(&cards[1].1, "120.00").await.status, StatusCode::CREATED);
    assert_eq!(
        bid(&cards[2].1, "120.00").await.status,
        StatusCode::BAD_REQUEST,
        "not above the highest"
    );
    assert_eq!(bid(&cards[2].1, "135.00").await.status, StatusCode::CREATED);

    app.clock.advance(Duration::minutes(61));
    app.fire_timers().await;
    let closed = app
        .get(&format!("/v1/retail/auctions/{auction}"), Some(seller))
        .await;
    assert_eq!(closed.body["status"], "sold", "{closed:?}");
    let number = closed.body["order_number"].as_str().unwrap().to_owned();
    let (winner_phone, winner) = &cards[2];
    let confirm = app.pending_confirmation(winner, &number).await;
    let code = app.code_for(winner_phone, &confirm).await;
    assert_eq!(
        app.answer(&confirm, &code, "approve").await.status,
        StatusCode::OK
    );
    app.post(
        &format!("/v1/retail/orders/{number}/settlement-request"),
        Some(seller),
        json!({}),
    )
    .await;
    let settle = app.pending_confirmation(winner, &number).await;
    let code = app.code_for(winner_phone, &settle).await;
    app.answer(&settle, &code, "approve").await;
    // 135.00 minus the default 5 % commission, into the holder's withdrawal account.
    assert_eq!(app.balance(seller, "withdrawal").await, "128.25");
    assert_eq!(app.balance(winner, "prepaid").await, "165.00");
    assert_eq!(app.balance(&cards[1].1, "prepaid").await, "300.00");
    let _ = seller_phone;
    app.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approving_and_disputing_at_the_same_instant_has_one_outcome() {
    for _ in 0..3 {
        let shop = shop("500.00", "50.00", "0.10").await;
        let number = shop.order(1).await;
        shop.deliver(&number).await;
        shop.request_settlement(&number, None).await;
        let challenge = shop.app.pending_confirmation(&shop.shopper, &number).await;
        let code = shop.app.code_for(&shop.phone, &challenge).await;
        let approve = {
            let app = shop.app.clone();
            let (challenge, code) = (challenge.clone(), code.clone());
            tokio::spawn(async move { app.answer(&challenge, &code, "approve").await })
        };
        let dispute = {
            let app = shop.app.clone();
            let (shopper, number) = (shop.shopper.clone(), number.clone());
            tokio::spawn(async move {
                app.post(
                    &format!("/v1/retail/orders/{number}/dispute"),
                    Some(&shopper),
                    json!({"reason": "no"}),
                )
                .await
            })
        };
        let (approve, dispute) = (approve.await.unwrap(), dispute.await.unwrap());
        let won = [
            approve.status == StatusCode::OK,
            dispute.status == StatusCode::OK,
        ];
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "{approve:?} / {dispute:?}"
        );
        let state = shop.state(&number).await;
        let paid = shop.app.balance(&shop.supplier, "withdrawal").await;
        match state.as_str() {
            "settled" => assert_eq!(paid, "45.00"),
            "disputed" => assert_eq!(paid, "0.00"),
            other => panic!("unexpected state {other}"),
        }
        shop.app.assert_ledger_clean().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_auto_settle_timer_racing_an_approval_settles_once() {
    for _ in 0..3 {
        let shop = shop("500.00", "50.00", "0.10").await;
        let number = shop.order(1).await;
        shop.deliver(&number).await;
        shop.request_settlement(&number, None).await;
        // Just before the settlement period ends the buyer asks for a fresh code (the first
        // one expired long ago), and approves just as the period ends.
        shop.app
            .clock
            .advance(Duration::hours(72) - Duration::minutes(5));
        let renewed = shop
            .app
            .post(
                &format!("/v1/retail/orders/{number}/settlement-confirmation"),
                Some(&shop.shopper),
                json!({}),
            )
            .await;
        assert_eq!(renewed.status, StatusCode::OK, "{renewed:?}");
        let challenge = renewed.body["pending_confirmation"]["challenge_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let code = shop.app.code_for(&shop.phone, &challenge).await;
        shop.app.clock.advance(Duration::minutes(5));
        let approve = {
            let app = shop.app.clone();
            tokio::spawn(async move { app.answer(&challenge, &code, "approve").await })
        };
        let timers = {
            let app = shop.app.clone();
            tokio::spawn(async move { app.fire_timers().await })
        };
        let approved = approve.await.unwrap().status == StatusCode::OK;
        let fired = timers.await.unwrap();
        assert!(
            approved ^ (fired == 1),
            "exactly one of them settles: approved {approved}, fired {fired}"
        );
        assert_eq!(shop.state(&number).await, "settled");
        assert_eq!(
            shop.app.balance(&shop.supplier, "withdrawal").await,
            "45.00"
        );
        shop.app.assert_ledger_clean().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_on_one_timer_table_fire_each_timer_once() {
    let shop = shop("5000.00", "10.00", "0.10").await;
    let mut numbers = Vec::new();
    for _ in 0..12 {
        let number = shop.order(1).await;
        shop.deliver(&number).await;
        shop.request_settlement(&number, None).await;
        numbers.push(number);
    }
    shop.app.clock.advance(Duration::hours(73));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let app = shop.app.clone();
            tokio::spawn(async move { app.fire_timers().await })
        })
        .collect();
    let mut fired = 0;
    for worker in workers {
        fired += worker.await.unwrap();
    }
    assert_eq!(
        fired, 12,
        "each auto-settle fired exactly once between the two workers"
    );
    for number in &numbers {
        assert_eq!(shop.state(number).await, "settled");
    }
    assert_eq!(
        shop.app.balance(&shop.supplier, "withdrawal").await,
        "108.00"
    );
    shop.app.assert_ledger_clean().await;
}
