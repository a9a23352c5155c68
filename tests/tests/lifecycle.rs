//! The process lifecycle inside one app: readiness (`/readyz`), the workers stopping and being
//! joined when the shutdown begins, the long poll ending before the request timeout, and failed
//! timers listed and retried by an operator. SIGTERM against the real binary is the chaos
//! harness's `shutdown` suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::{Method, StatusCode};
use chrono::Duration;
use holdfast_server::lifecycle::Worker;
use holdfast_server::workers::{self, WorkerIntervals};
use holdfast_tests::TestApp;
use holdfast_tests::console::Console;
use holdfast_tests::world::Shop;
use serde_json::json;
use std::time::Instant;

const PHONE: &str = "+821012345678";
const POLL: std::time::Duration = std::time::Duration::from_millis(50);

fn intervals() -> WorkerIntervals {
    WorkerIntervals {
        outbox_poll: POLL,
        timer_poll: POLL,
        session_sweep: POLL,
        bank_runs: POLL,
    }
}

fn beat_all(app: &TestApp, at: Instant) {
    for worker in Worker::ALL {
        app.state.lifecycle.beat_at(worker, POLL, at);
    }
}

#[tokio::test]
async fn readiness_names_workers_that_never_started_or_went_silent() {
    let app = TestApp::spawn().await;
    let never = app.get("/readyz", None).await;
    assert_eq!(never.status, StatusCode::SERVICE_UNAVAILABLE, "{never:?}");
    assert_eq!(never.body["failed"], json!(["workers_not_started"]));

    // Heartbeats stand in for the worker loops, at chosen instants: no real time passes.
    let now = Instant::now();
    beat_all(&app, now);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{ready:?}");
    assert_eq!(ready.body, json!({"status": "ready", "failed": []}));

    let long_ago = now
        .checked_sub(std::time::Duration::from_secs(600))
        .unwrap();
    app.state.lifecycle.beat_at(Worker::Timers, POLL, long_ago);
    let stale = app.get("/readyz", None).await;
    assert_eq!(stale.status, StatusCode::SERVICE_UNAVAILABLE, "{stale:?}");
    assert_eq!(stale.body["failed"], json!(["worker_stale"]));
    // Liveness is another question: the process still answers.
    assert_eq!(app.get("/healthz", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn running_workers_make_it_ready_and_a_shutdown_stops_and_joins_them() {
    let app = TestApp::spawn().await;
    let running = workers::spawn(app.state.clone(), intervals());
    let mut ready = app.get("/readyz", None).await;
    for _ in 0..100 {
        if ready.status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(POLL).await;
        ready = app.get("/readyz", None).await;
    }
    assert_eq!(ready.status, StatusCode::OK, "{ready:?}");

    assert!(app.state.lifecycle.begin_shutdown());
    // Not ready at once, before the workers have even stopped: a load balancer drains.
    let draining = app.get("/readyz", None).await;
    assert_eq!(draining.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(draining.body["failed"][0], "shutting_down");
    tokio::time::timeout(std::time::Duration::from_secs(10), running.join())
        .await
        .expect("the workers stop once the shutdown begins");
    // The requests still in flight are served meanwhile: the API answers as before.
    assert_eq!(app.get("/healthz", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_long_poll_ends_before_the_request_timeout_and_when_the_shutdown_begins() {
    let app = TestApp::spawn()
        .await
        .with_request_timeout(std::time::Duration::from_secs(4));
    let operator = app.operator_token().await;
    let challenge = uuid::Uuid::now_v7();
    let path =
        format!("/v1/phone-simulator/{PHONE}/messages?challenge_id={challenge}&wait_ms=30000");
    let started = Instant::now();
    let waited = app.get(&path, Some(&operator)).await;
    assert_eq!(waited.status, StatusCode::OK, "{waited:?}");
    assert_eq!(waited.body, json!([]));
    // It waited (half the timeout), then answered "nothing yet" instead of a 503.
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));

    let app = std::sync::Arc::new(
        TestApp::spawn()
            .await
            .with_request_timeout(std::time::Duration::from_secs(60)),
    );
    let operator = app.operator_token().await;
    let poll = {
        let (app, operator, path) = (app.clone(), operator.clone(), path.clone());
        tokio::spawn(async move { app.get(&path, Some(&operator)).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = Instant::now();
    app.state.lifecycle.begin_shutdown();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), poll)
        .await
        .expect("the long poll ends when the shutdown begins")
        .unwrap();
    assert_eq!(ended.status, StatusCode::OK, "{ended:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// A settlement whose auto-settle timer fails until the worker gives up on it: its case row is
/// made unreadable (a state no version knows), then repaired by "the operator".
async fn failed_auto_settle(shop: &Shop) -> String {
    let (number, challenge) = shop.order(1).await;
    assert_eq!(
        shop.answer(&challenge, "approve").await.status,
        StatusCode::OK
    );
    let requested = shop
        .app
        .post(
            &format!("/v1/retail/orders/{number}/settlement-request"),
            Some(&shop.supplier),
            json!({}),
        )
        .await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    shop.app
        .execute(&format!(
            "UPDATE escrow_cases SET state = 'unknowable' WHERE order_number = '{}'",
            number.replace('-', "")
        ))
        .await;
    shop.app.clock.advance(Duration::hours(73));
    for _ in 0..holdfast_core::timers::MAX_ATTEMPTS {
        assert_eq!(shop.app.fire_timers().await, 0);
        shop.app.clock.advance(Duration::days(2));
    }
    number
}

#[tokio::test]
async fn an_operator_lists_a_failed_timer_and_retries_it_once_and_it_fires() {
    let shop = Shop::spawn(PHONE, "100.00", "30.00", "0.10").await;
    let number = failed_auto_settle(&shop).await;
    let app = &shop.app;

    let listed = app
        .get("/v1/operator/timers/failed", Some(&shop.operator))
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    let timers = listed.body.as_array().unwrap();
    assert_eq!(timers.len(), 1, "{listed:?}");
    assert_eq!(timers[0]["kind"], "case_auto_settle");
    assert_eq!(timers[0]["attempts"], holdfast_core::timers::MAX_ATTEMPTS);
    assert_eq!(timers[0]["last_error"], "internal");
    let id = timers[0]["timer_id"].as_str().unwrap().to_owned();
    // Nothing more fires by itself: it was given up.
    app.clock.advance(Duration::days(30));
    assert_eq!(app.fire_timers().await, 0);

    for token in [&shop.shopper, &shop.supplier] {
        let refused = app.get("/v1/operator/timers/failed", Some(token)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
        let refused = app
            .post(
                &format!("/v1/operator/timers/{id}/retry"),
                Some(token),
                json!({}),
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
    }

    // The cause repaired, the operator retries it; the same key answers the same again.
    app.execute(&format!(
        "UPDATE escrow_cases SET state = 'settlement_requested' WHERE order_number = '{}'",
        number.replace('-', "")
    ))
    .await;
    let retry = format!("/v1/operator/timers/{id}/retry");
    let key = [("idempotency-key", "retry-1")];
    let retried = app
        .request(Method::POST, &retry, Some(&shop.operator), None, &key)
        .await;
    assert_eq!(retried.status, StatusCode::OK, "{retried:?}");
    assert_eq!(retried.body["attempts"], 0);
    let replayed = app
        .request(Method::POST, &retry, Some(&shop.operator), None, &key)
        .await;
    assert_eq!(replayed.status, StatusCode::OK, "{replayed:?}");
    assert_eq!(replayed.body, retried.body);
    let again = app
        .request(Method::POST, &retry, Some(&shop.operator), None, &[])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
    assert_eq!(again.code(), "timer_not_failed");
    let unknown = app
        .request(
            Method::POST,
            &format!("/v1/operator/timers/{}/retry", uuid::Uuid::now_v7()),
            Some(&shop.operator),
            None,
            &[],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown:?}");

    let empty = app
        .get("/v1/operator/timers/failed", Some(&shop.operator))
        .await;
    assert_eq!(empty.body, json!([]));
    assert_eq!(app.fire_timers().await, 1);
    assert_eq!(shop.state(&number).await, "settled");
    app.assert_ledger_clean().await;

    // Who retried it, and when, is on the record.
    let feed = app.get("/v1/events", Some(&shop.operator)).await;
    let retried_events: Vec<_> = feed
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["kind"] == "timer.retried")
        .collect();
    assert_eq!(retried_events.len(), 1, "{feed:?}");
    assert_eq!(retried_events[0]["data"]["timer_id"], id.as_str());
    assert!(retried_events[0]["data"]["retried_by"].is_string());
}

#[tokio::test]
async fn the_console_lists_failed_timers_and_its_retry_form_retries_once() {
    let shop = Shop::spawn(PHONE, "100.00", "30.00", "0.10").await;
    let number = failed_auto_settle(&shop).await;
    let app = &shop.app;
    holdfast_server::create_staff(
        &app.state,
        holdfast_core::parties::Role::Operator,
        "Desk operator",
        "desk-operator",
        "operator-password",
    )
    .await
    .unwrap();
    let console = Console::sign_in(app, "desk-operator", "operator-password").await;
    let listed = console.get("/operator/timers").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.html);
    assert!(listed.html.contains("case_auto_settle"), "{}", listed.html);
    let timer = app
        .get("/v1/operator/timers/failed", Some(&shop.operator))
        .await;
    let id = timer.body[0]["timer_id"].as_str().unwrap().to_owned();
    let action = format!("/operator/timers/{id}/retry");
    app.execute(&format!(
        "UPDATE escrow_cases SET state = 'settlement_requested' WHERE order_number = '{}'",
        number.replace('-', "")
    ))
    .await;
    let form = console.form("/operator/timers", &action).await;
    let retried = console.post(&action, &form).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.html);
    assert!(
        retried.html.contains("is pending again"),
        "{}",
        retried.html
    );
    assert!(retried.html.contains("No timer has failed."));
    // The same form sent again shows the same answer and changes nothing.
    let again = console.post(&action, &form).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.html);
    assert!(again.html.contains("is pending again"), "{}", again.html);
    assert_eq!(app.fire_timers().await, 1);
    assert_eq!(shop.state(&number).await, "settled");
}
