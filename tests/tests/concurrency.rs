//! Races. They run on whichever database the suite uses; on PostgreSQL (CI sets
//! `TEST_DATABASE_URL`) the requests truly overlap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use holdfast_tests::world::Shop;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_orders_against_a_balance_for_ten_freeze_exactly_ten() {
    let phone = "+821077770000";
    let Shop {
        app,
        shopper,
        commodity,
        ..
    } = Shop::spawn(phone, "100.00", "10.00", "0.05").await;

    let mut tasks = Vec::new();
    for _ in 0..50 {
        let app = app.clone();
        let (shopper, commodity) = (shopper.clone(), commodity.clone());
        tasks.push(tokio::spawn(async move {
            app.place_order(&shopper, &commodity, 1).await
        }));
    }
    let mut placed = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            StatusCode::CREATED => placed.push(reply),
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert_eq!(reply.code(), "insufficient_funds", "{reply:?}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {reply:?}"),
        }
    }
    assert_eq!(placed.len(), 10, "exactly ten orders fit the balance");
    assert_eq!(refused, 40);
    assert_eq!(app.balance(&shopper, "prepaid").await, "0.00");

    // Approving all ten concurrently freezes all ten, once each.
    let mut approvals = Vec::new();
    for order in &placed {
        let challenge = order.body["pending_confirmation"]["challenge_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let code = app.code_for(phone, &challenge).await;
        let app = app.clone();
        approvals.push(tokio::spawn(async move {
            app.answer(&challenge, &code, "approve").await
        }));
    }
    for approval in approvals {
        let reply = approval.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.body["state"], "frozen");
    }
    let audit = holdfast_core::ledger::audit(&app.state.db).await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_approval_sent_twice_at_once_counts_once() {
    let phone = "+821077770001";
    let Shop {
        app,
        supplier,
        shopper,
        commodity,
        ..
    } = Shop::spawn(phone, "100.00", "10.00", "0.05").await;
    let order = app.place_order(&shopper, &commodity, 1).await;
    let number = order.body["order_number"].as_str().unwrap().to_owned();
    let challenge = order.body["pending_confirmation"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = app.code_for(phone, &challenge).await;
    app.answer(&challenge, &code, "approve").await;
    let settle = app
        .post(
            &format!("/v1/retail/orders/{number}/settlement-request"),
            Some(&supplier),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(settle.status, StatusCode::OK, "{settle:?}");
    assert!(
        settle.body["pending_confirmation"].is_null(),
        "the supplier must not see it"
    );
    let settlement = app.pending_confirmation(&shopper, &number).await;
    let code = app.code_for(phone, &settlement).await;

    let mut tasks = Vec::new();
    for decision in ["approve", "approve", "deny", "approve"] {
        let (app, settlement, code) = (app.clone(), settlement.clone(), code.clone());
        tasks.push(tokio::spawn(async move {
            app.answer(&settlement, &code, decision).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        match reply.status {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => assert_eq!(reply.code(), "challenge_closed", "{reply:?}"),
            other => panic!("unexpected {other}: {reply:?}"),
        }
    }
    assert_eq!(ok, 1, "exactly one answer wins");
    let supplier_balance = app.balance(&supplier, "withdrawal").await;
    assert!(
        supplier_balance == "9.50" || supplier_balance == "0.00",
        "{supplier_balance}"
    );
    let audit = holdfast_core::ledger::audit(&app.state.db).await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
}
