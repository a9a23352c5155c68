//! A card holder who sells at auction is a payee: it registers the bank account it is paid to
//! and confirms it on its card's phone (it has no second password) — approving the
//! `payout_destination` challenge makes the account active, denying it cancels it, wrong codes
//! count as for any challenge — then asks for payouts with an `Idempotency-Key`, each key
//! paying once. On SQLite, and on PostgreSQL when the test database URL is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::{Method, StatusCode};
use chrono::Duration;
use holdfast_tests::world::{card_request, random_phone};
use holdfast_tests::{Reply, TestApp};
use serde_json::{Value, json};

const IBAN: &str = "DE44 5001 0517 5407 3249 31";

/// A card holder: its phone and its card session's token.
struct Holder {
    phone: String,
    token: String,
}

/// A bank's holder, allowed to sell when `seller`.
async fn holder(app: &TestApp, bank: &holdfast_tests::world::Desk, seller: bool) -> Holder {
    let phone = random_phone();
    let issued = app
        .issue_card(
            bank,
            card_request(
                "prepaid",
                &phone,
                json!({"seller": seller, "initial_deposit": {"amount": "300.00", "currency": "USD"}}),
            ),
        )
        .await;
    let card = issued["card"]["card_number"].as_str().unwrap().to_owned();
    let token = app.card_login(&card, &phone).await;
    Holder { phone, token }
}

/// An auction of `seller`'s won by `buyer` at 100.00, approved and settled: 95.00 (minus the
/// default 5 % commission) reach the seller's withdrawal account.
async fn sell(app: &TestApp, seller: &Holder, buyer: &Holder) {
    let opened = app
        .post("/v1/retail/auctions", Some(&seller.token),
            json!({"name": "Vintage grinder", "reserve_price": {"amount": "100.00", "currency": "USD"}, "duration_secs": 3600}))
        .await;
    assert_eq!(opened.status, StatusCode::CREATED, "{opened:?}");
    let auction = opened.body["id"].as_str().unwrap().to_owned();
    let bid = app
        .post(
            &format!("/v1/retail/auctions/{auction}/bids"),
            Some(&buyer.token),
            json!({"amount": {"amount": "100.00", "currency": "USD"}}),
        )
        .await;
    assert_eq!(bid.status, StatusCode::CREATED, "{bid:?}");
    app.clock.advance(Duration::minutes(61));
    app.fire_timers().await;
    let closed = app
        .get(
            &format!("/v1/retail/auctions/{auction}"),
            Some(&seller.token),
        )
        .await;
    assert_eq!(closed.body["status"], "sold", "{closed:?}");
    let number = closed.body["order_number"].as_str().unwrap().to_owned();
    let confirm = app.pending_confirmation(&buyer.token, &number).await;
    let approved = app.answer_on(&buyer.phone, &confirm, "approve").await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    let requested = app
        .post(
            &format!("/v1/retail/orders/{number}/settlement-request"),
            Some(&seller.token),
            json!({}),
        )
        .await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    let settle = app.pending_confirmation(&buyer.token, &number).await;
    let settled = app.answer_on(&buyer.phone, &settle, "approve").await;
    assert_eq!(settled.status, StatusCode::OK, "{settled:?}");
    assert_eq!(app.balance(&seller.token, "withdrawal").await, "95.00");
}

async fn register(app: &TestApp, token: &str) -> Reply {
    app.post(
        "/v1/payee/destinations",
        Some(token),
        json!({"iban": IBAN, "holder_name": "Ji-ho Lee"}),
    )
    .await
}

async fn destination(app: &TestApp, token: &str, id: &str) -> Value {
    let listed = app.get("/v1/payee/destinations", Some(token)).await;
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no destination {id} in {}", listed.body))
}

async fn pay_out(app: &TestApp, token: &str, key: &str, amount: &str) -> Reply {
    app.request(
        Method::POST,
        "/v1/payee/payouts",
        Some(token),
        Some(json!({"currency": "USD", "amount": amount})),
        &[("idempotency-key", key)],
    )
    .await
}

#[tokio::test]
async fn a_seller_confirms_its_account_on_the_phone_and_each_key_pays_out_once() {
    let app = TestApp::spawn().await;
    let operator = app.harness_operator().await;
    let bank = app
        .institution(&operator, "2468", "bank", json!({"display_name": "Bank"}))
        .await;
    let seller = holder(&app, &bank, true).await;
    let buyer = holder(&app, &bank, false).await;

    // A holder who does not sell is no payee.
    let refused = register(&app, &buyer.token).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");

    sell(&app, &seller, &buyer).await;

    let registered = register(&app, &seller.token).await;
    assert_eq!(registered.status, StatusCode::CREATED, "{registered:?}");
    assert_eq!(registered.body["status"], "pending");
    let id = registered.body["id"].as_str().unwrap().to_owned();
    let challenge = registered.body["challenge_id"]
        .as_str()
        .expect("a card holder's registration names its phone challenge")
        .to_owned();

    // The phone names the account by its last four, never the whole number.
    app.deliver().await;
    let inbox = app.inbox(&seller.phone, "limit=100").await;
    let message = inbox
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["challenge_id"] == challenge.as_str())
        .cloned()
        .unwrap();
    let text = message["body"].as_str().unwrap();
    assert!(text.contains("IBAN …4931"), "{text}");
    assert!(!text.contains("5407"), "{text}");

    // No second password to give: the confirmation is the phone's.
    let by_password = app
        .post(
            &format!("/v1/payee/destinations/{id}/confirm"),
            Some(&seller.token),
            json!({"second_password": "anything-at-all"}),
        )
        .await;
    assert_eq!(by_password.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(by_password.code(), "confirmed_on_phone");

    // Not yet confirmed: no payout.
    let early = pay_out(&app, &seller.token, "early", "10.00").await;
    assert_eq!(early.code(), "payout_destination_required", "{early:?}");

    // A wrong code is counted as for any challenge, and the destination waits.
    let code = app.code_for(&seller.phone, &challenge).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = app.answer(&challenge, wrong, "approve").await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{refused:?}"
    );
    assert_eq!(refused.code(), "challenge_wrong_code");
    assert_eq!(
        destination(&app, &seller.token, &id).await["status"],
        "pending"
    );

    let approved = app.answer(&challenge, &code, "approve").await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    assert_eq!(approved.body["purpose"], "payout_destination");
    assert_eq!(
        approved.body["result"]["payout_destination"]["status"],
        "active"
    );
    assert_eq!(
        destination(&app, &seller.token, &id).await["status"],
        "active"
    );
    // Answered once: the code does not work again.
    let again = app.answer(&challenge, &code, "deny").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
    assert_eq!(
        destination(&app, &seller.token, &id).await["status"],
        "active"
    );

    let first = pay_out(&app, &seller.token, "sale-1", "all").await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(first.body["amount"]["amount"], "95.00");
    assert_eq!(first.body["destination_id"], id.as_str());
    let replayed = pay_out(&app, &seller.token, "sale-1", "all").await;
    assert_eq!(replayed.status, StatusCode::CREATED, "{replayed:?}");
    assert_eq!(replayed.body["id"], first.body["id"]);
    assert_eq!(app.balance(&seller.token, "withdrawal").await, "0.00");
    let listed = app.get("/v1/payee/payouts", Some(&seller.token)).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1, "{listed:?}");
    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_denied_or_locked_phone_challenge_cancels_the_destination() {
    let app = TestApp::spawn().await;
    let operator = app.harness_operator().await;
    let bank = app
        .institution(&operator, "1357", "bank", json!({"display_name": "Bank"}))
        .await;
    let seller = holder(&app, &bank, true).await;

    // Denied on the phone: cancelled, and nothing is paid there.
    let registered = register(&app, &seller.token).await;
    assert_eq!(registered.status, StatusCode::CREATED, "{registered:?}");
    let id = registered.body["id"].as_str().unwrap().to_owned();
    let challenge = registered.body["challenge_id"].as_str().unwrap().to_owned();
    let denied = app.answer_on(&seller.phone, &challenge, "deny").await;
    assert_eq!(denied.status, StatusCode::OK, "{denied:?}");
    assert_eq!(
        denied.body["result"]["payout_destination"]["status"],
        "cancelled"
    );
    assert_eq!(
        destination(&app, &seller.token, &id).await["status"],
        "cancelled"
    );

    // Five wrong codes lock the challenge, and the destination is cancelled with it.
    let registered = register(&app, &seller.token).await;
    let id = registered.body["id"].as_str().unwrap().to_owned();
    let challenge = registered.body["challenge_id"].as_str().unwrap().to_owned();
    let code = app.code_for(&seller.phone, &challenge).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let mut last = None;
    for _ in 0..5 {
        last = Some(app.answer(&challenge, wrong, "approve").await);
    }
    assert_eq!(last.unwrap().code(), "challenge_locked");
    assert_eq!(
        destination(&app, &seller.token, &id).await["status"],
        "cancelled"
    );
    let late = app.answer(&challenge, &code, "approve").await;
    assert_ne!(late.status, StatusCode::OK, "{late:?}");

    // A registration replaced by a newer one can no longer be confirmed by its old code.
    let older = register(&app, &seller.token).await;
    let older_challenge = older.body["challenge_id"].as_str().unwrap().to_owned();
    let newer = register(&app, &seller.token).await;
    assert_eq!(newer.status, StatusCode::CREATED, "{newer:?}");
    let stale = app
        .answer_on(&seller.phone, &older_challenge, "approve")
        .await;
    assert_eq!(stale.code(), "challenge_closed", "{stale:?}");
    let newer_id = newer.body["id"].as_str().unwrap();
    assert_eq!(
        destination(&app, &seller.token, newer_id).await["status"],
        "pending"
    );
}
