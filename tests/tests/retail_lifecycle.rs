//! The retail lifecycle through the API, every branch: approve, deny, expire, cancel, wrong
//! codes, settlement approval, dispute and auto-settlement.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use chrono::Duration;
use holdfast_tests::world::Shop;
use serde_json::json;

const PHONE: &str = "+821012345678";

async fn approve(shop: &Shop, challenge: &str) -> serde_json::Value {
    let answered = shop.answer(challenge, "approve").await;
    assert_eq!(answered.status, StatusCode::OK, "{answered:?}");
    answered.body
}

async fn request_settlement(shop: &Shop, number: &str) -> String {
    let requested = shop
        .app
        .post(
            &format!("/v1/retail/orders/{number}/settlement-request"),
            Some(&shop.supplier),
            json!({}),
        )
        .await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    assert_eq!(requested.body["state"], "settlement_requested");
    // The supplier never learns which confirmation the shopper was sent.
    assert!(requested.body["pending_confirmation"].is_null());
    shop.app.pending_confirmation(&shop.shopper, number).await
}

#[tokio::test]
async fn a_purchase_settles_price_minus_commission_to_the_supplier() {
    let shop = Shop::spawn(PHONE, "500.00", "24.00", "0.05").await;
    let (number, challenge) = shop.order(2).await;
    // The money is held at once.
    assert_eq!(shop.app.balance(&shop.shopper, "prepaid").await, "452.00");

    shop.app.deliver().await;
    let message = shop.app.inbox(PHONE, "").await;
    let text = message.body[0]["body"].as_str().unwrap().to_owned();
    assert!(
        text.contains("48.00 USD") && text.contains("Acme Supplies") && text.contains(&number),
        "{text}"
    );

    let approved = approve(&shop, &challenge).await;
    assert_eq!(approved["outcome"], "order_approved");
    assert_eq!(shop.state(&number).await, "frozen");
    // Nothing reaches the supplier before the second yes.
    assert_eq!(shop.app.balance(&shop.supplier, "withdrawal").await, "0.00");

    let settlement = request_settlement(&shop, &number).await;
    let settled = approve(&shop, &settlement).await;
    assert_eq!(settled["outcome"], "settled");
    assert_eq!(shop.state(&number).await, "settled");

    assert_eq!(
        shop.app.balance(&shop.supplier, "withdrawal").await,
        "45.60"
    );
    assert_eq!(shop.app.platform_commission(&shop.operator).await, "2.40");
    assert_eq!(shop.app.balance(&shop.shopper, "prepaid").await, "452.00");
    shop.app.assert_ledger_clean().await;

    let history = shop
        .app
        .get(
            &format!("/v1/retail/orders/{number}/history"),
            Some(&shop.shopper),
        )
        .await;
    let states: Vec<_> = history
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to_state"].clone())
        .filter(|state| !state.is_null())
        .collect();
    // Texts and confirmations are in the timeline too, never a code.
    let timeline = history.body.to_string();
    assert!(
        timeline.contains("confirmation sent to the phone"),
        "{timeline}"
    );
    assert!(timeline.contains("paid to Acme Supplies"), "{timeline}");
    assert!(!timeline.contains("Code "), "{timeline}");
    assert_eq!(
        states,
        vec![
            json!("awaiting_order_confirmation"),
            json!("frozen"),
            json!("settlement_requested"),
            json!("settled")
        ]
    );
}

#[tokio::test]
async fn denying_the_order_returns_the_money() {
    let shop = Shop::spawn(PHONE, "100.00", "30.00", "0.10").await;
    let (number, challenge) = shop.order(1).await;
    assert_eq!(shop.app.balance(&shop.shopper, "prepaid").await, "70.00");
    let code = shop.app.code_for(PHONE, &challenge).await;
    let denied = shop.app.answer(&challenge, &code, "deny").await;
    assert_eq!(denied.status, StatusCode::OK, "{denied:?}");
    assert_eq!(denied.body["outcome"], "order_denied");
    assert_eq!(shop.state(&number).await, "denied");
    assert_eq!(shop.app.balance(&shop.shopper, "prepaid").await, "100.00");
    // A denial is final.
    let again = shop.app.answer(&challenge, &code, "approve").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
    assert_eq!(again.code(), "challenge_closed");
    shop.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn an_unanswered_order_expires_and_returns_the_money() {
    let shop = Shop::spawn(PHONE, "100.00", "30.00", "0.10").await;
    let (number, challenge) = shop.order(1).await;
    shop.app.clock.advance(Duration::minutes(9));
    assert_eq!(shop.app.fire_timers().await, 0);
    assert_eq!(shop.state(&number).await, "awaiting_order_confirmation");
    shop.app.clock.advance(Duration::minutes(2));
    assert_eq!(shop.app.fire_timers().await, 1);
    assert_eq!(shop.state(&number).await, "expired");
    assert_eq!(shop.app.balance(&shop.shopper, "prepaid").await, "100.00");
    let code = shop.app.code_for(PHONE, &challenge).await;
    let late = shop.app.answer(&challenge, &code, "approve").await;
    assert_eq!(late.code(), "challenge_expired", "{late:?}");
    shop.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_late_answer_expires_the_order_even_before_the_timer_fires() {
    let shop = Shop::spawn(PHONE, "100.00", "30.00", "0.10").await;
    let (number, challenge) = shop.order(1).await;
    let code = shop.app.code_for(PHONE, &challenge).await;
    shop.app.clock.advance(Duration::minutes(11));
    let late = shop.app.answer(&challenge, &code, "approve").await;
    assert_eq!(late.status, StatusCode::UNPROCESSABLE_ENTITY, "{late:?}");
    assert_eq!(late.code(), "challenge_expired");
    assert_eq!(shop.state(&number).await, "expired");
    assert_eq!(shop.app.balance(&shop.shopper, "prepaid").await, "100.00");
    // The timer finds nothing left to do.
    shop.app.fire_timers().await;
    shop.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn cancelling_before_settlement_returns_the_money() {
    let shop = Shop::spawn(PHONE, "100.00", "30.00", "0.10").await;
    let (pending, _) = shop.order(1).await;
    let (frozen, challenge) = shop.order(1).await;
    approve(&shop, &challenge).await;
    assert_eq!(shop.app.balance(&shop.shopper, "prepaid").await, "40.00");

    for number in [&pending, &frozen] {
        let cancelled = shop
            .app
            .post(
                &format!("/v1/retail/orders/{number}/cancel"),
                Some(&shop.shopper),
                json!({}),
            )
            .await;
        assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
        assert_eq!(cancelled.body["state"], "cancelled");
    }
    assert_eq!(shop.app.balance(&shop.shopper, "prepaid").await, "100.00");

    // Once the supplier asked to be paid, the order can no longer be cancelled.
    let (number, challenge) = shop.order(1).await;
    approve(&shop, &challenge).await;
    request_settlement(&shop, &number).await;
    let refused = shop
        .app
        .post(
            &format!("/v1/retail/orders/{number}/cancel"),
            Some(&shop.shopper),
            json!({}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    assert_eq!(refused.code(), "invalid_state");
    shop.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn five_wrong_codes_lock_the_confirmation_and_a_resend_does_not_reset_the_count() {
    let shop = Shop::spawn(PHONE, "100.00", "30.00", "0.10").await;
    let (_, challenge) = shop.order(1).await;
    let code = shop.app.code_for(PHONE, &challenge).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for left in [4, 3] {
        let reply = shop.app.answer(&challenge, wrong, "approve").await;
        assert_eq!(reply.code(), "challenge_wrong_code", "{reply:?}");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&left.to_string())
        );
    }
    let resent = shop
        .app
        .post(
            &format!("/v1/challenges/{challenge}/resend"),
            None,
            json!({}),
        )
        .await;
    assert_eq!(resent.status, StatusCode::ACCEPTED, "{resent:?}");
    let new_code = shop.app.code_for(PHONE, &challenge).await;
    // The old code no longer works (unless the new one happens to be equal), and the
    // failures so far still count.
    if new_code != code {
        let old = shop.app.answer(&challenge, &code, "approve").await;
        assert_eq!(old.code(), "challenge_wrong_code", "{old:?}");
        assert!(
            old.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("2 attempt")
        );
    } else {
        shop.app.answer(&challenge, wrong, "approve").await;
    }
    let wrong_new = if new_code == "000000" {
        "111111"
    } else {
        "000000"
    };
    let fourth = shop.app.answer(&challenge, wrong_new, "approve").await;
    assert_eq!(fourth.code(), "challenge_wrong_code", "{fourth:?}");
    let fifth = shop.app.answer(&challenge, wrong_new, "approve").await;
    assert_eq!(fifth.code(), "challenge_locked", "{fifth:?}");
    // Locked: even the right code is refused now.
    let right = shop.app.answer(&challenge, &new_code, "approve").await;
    assert_eq!(right.code(), "challenge_locked", "{right:?}");
}

#[tokio::test]
async fn a_disputed_settlement_keeps_the_money_frozen() {
    let shop = Shop::spawn(PHONE, "100.00", "30.00", "0.10").await;
    let (number, challenge) = shop.order(1).await;
    approve(&shop, &challenge).await;
    let settlement = request_settlement(&shop, &number).await;
    let code = shop.app.code_for(PHONE, &settlement).await;
    let disputed = shop.app.answer(&settlement, &code, "deny").await;
    assert_eq!(disputed.status, StatusCode::OK, "{disputed:?}");
    assert_eq!(disputed.body["outcome"], "disputed");
    // The auto-settle deadline no longer applies.
    shop.app.clock.advance(Duration::hours(100));
    shop.app.fire_timers().await;
    assert_eq!(shop.state(&number).await, "disputed");
    assert_eq!(shop.app.balance(&shop.supplier, "withdrawal").await, "0.00");
    assert_eq!(shop.app.balance(&shop.shopper, "prepaid").await, "70.00");
    shop.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn an_unanswered_settlement_request_settles_by_itself() {
    let shop = Shop::spawn(PHONE, "100.00", "30.00", "0.10").await;
    let (number, challenge) = shop.order(1).await;
    approve(&shop, &challenge).await;
    request_settlement(&shop, &number).await;
    shop.app.clock.advance(Duration::hours(71));
    shop.app.fire_timers().await;
    assert_eq!(shop.state(&number).await, "settlement_requested");
    shop.app.clock.advance(Duration::hours(2));
    assert_eq!(shop.app.fire_timers().await, 1);
    assert_eq!(shop.state(&number).await, "settled");
    assert_eq!(
        shop.app.balance(&shop.supplier, "withdrawal").await,
        "27.00"
    );
    assert_eq!(shop.app.platform_commission(&shop.operator).await, "3.00");
    shop.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_code_is_void_once_the_order_it_confirms_changed() {
    let shop = Shop::spawn(PHONE, "100.00", "30.00", "0.10").await;
    let (number, challenge) = shop.order(1).await;
    let code = shop.app.code_for(PHONE, &challenge).await;
    // Someone alters the amount behind the confirmation's back.
    shop.app
        .execute(&format!(
            "UPDATE escrow_cases SET amount = 2999 WHERE order_number = '{}'",
            number.replace('-', "")
        ))
        .await;
    let answered = shop.app.answer(&challenge, &code, "approve").await;
    assert_eq!(
        answered.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{answered:?}"
    );
    assert_eq!(answered.code(), "challenge_binding_mismatch");
    assert_eq!(shop.state(&number).await, "awaiting_order_confirmation");
}

#[tokio::test]
async fn only_the_orders_supplier_can_ask_to_be_paid_and_only_after_approval() {
    let shop = Shop::spawn(PHONE, "100.00", "30.00", "0.10").await;
    let (number, challenge) = shop.order(1).await;
    let early = shop
        .app
        .post(
            &format!("/v1/retail/orders/{number}/settlement-request"),
            Some(&shop.supplier),
            json!({}),
        )
        .await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{early:?}");
    approve(&shop, &challenge).await;
    let (_, other_supplier) = shop.app.supplier(&shop.operator, "Other Co").await;
    let stranger = shop
        .app
        .post(
            &format!("/v1/retail/orders/{number}/settlement-request"),
            Some(&other_supplier),
            json!({}),
        )
        .await;
    assert_eq!(stranger.status, StatusCode::NOT_FOUND, "{stranger:?}");
    let not_theirs = shop
        .app
        .get(
            &format!("/v1/retail/orders/{number}"),
            Some(&other_supplier),
        )
        .await;
    assert_eq!(not_theirs.status, StatusCode::NOT_FOUND, "{not_theirs:?}");
}

#[tokio::test]
async fn an_order_the_balance_cannot_cover_is_refused_and_holds_nothing() {
    let shop = Shop::spawn(PHONE, "50.00", "30.00", "0.10").await;
    let refused = shop
        .app
        .place_order(&shop.shopper, &shop.commodity, 2)
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{refused:?}"
    );
    assert_eq!(refused.code(), "insufficient_funds");
    assert_eq!(shop.app.balance(&shop.shopper, "prepaid").await, "50.00");
    let orders = shop.app.get("/v1/retail/orders", Some(&shop.shopper)).await;
    assert_eq!(orders.body.as_array().unwrap().len(), 0);
    shop.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_suppliers_withdrawal_account_is_there_at_zero_from_its_first_order() {
    let shop = Shop::spawn(PHONE, "100.00", "10.00", "0.05").await;
    // Onboarding names no currency, so a supplier nobody ordered from has no account yet
    // (README, first walkthrough, step 5).
    let before = shop.app.get("/v1/accounts", Some(&shop.supplier)).await;
    assert_eq!(before.status, StatusCode::OK, "{before:?}");
    assert_eq!(before.body, json!([]));
    let (_, challenge) = shop.order(1).await;
    let withdrawal = shop
        .app
        .account_where(&shop.supplier, "kind", "withdrawal")
        .await;
    assert_eq!(withdrawal["balance"], "0.00", "{withdrawal}");
    assert_eq!(withdrawal["available"]["currency"], "USD", "{withdrawal}");
    approve(&shop, &challenge).await;
    let after = shop.app.get("/v1/accounts", Some(&shop.supplier)).await;
    assert_eq!(after.body.as_array().unwrap().len(), 1, "{after:?}");
    assert_eq!(shop.app.balance(&shop.supplier, "withdrawal").await, "0.00");
    shop.app.assert_ledger_clean().await;
}
