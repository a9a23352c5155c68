//! `/metrics`: who may read it, and that a retail lifecycle moves the counters it should, by
//! the amounts it should, with no id, order number or phone in any label.
//!
//! The `metrics` facade has one recorder per process, shared by every app this binary starts,
//! so the tests of this file run one at a time (`SERIAL`) and compare scrapes before and
//! after: no other test's requests land between them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::{Method, StatusCode};
use holdfast_server::metrics::{Metrics, install};
use holdfast_tests::world::Shop;
use holdfast_tests::{TestApp, test_epoch, usd};
use secrecy::SecretString;
use serde_json::json;
use std::sync::Arc;

const PHONE: &str = "+821055501234";
const SCRAPE_TOKEN: &str = "a-scrape-token-of-forty-characters-long!";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A fresh app serving `/metrics` with [`SCRAPE_TOKEN`].
async fn metered_app() -> TestApp {
    let mut app = TestApp::spawn().await;
    app.state = app.state.clone().with_metrics(Metrics {
        handle: install().unwrap(),
        token: Some(SecretString::from(SCRAPE_TOKEN)),
    });
    app.router = holdfast_server::app(app.state.clone());
    app
}

/// A shop ([`Shop::on`]) on a [`metered_app`].
async fn metered_shop(deposit: &str, price: &str, rate: &str) -> Shop {
    Shop::on(Arc::new(metered_app().await), PHONE, deposit, price, rate).await
}

async fn scrape(app: &TestApp) -> String {
    let reply = app.get("/metrics", Some(SCRAPE_TOKEN)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{reply:?}"
    );
    reply.body.as_str().unwrap().to_owned()
}

/// The sum of the samples of `name` carrying every label in `labels` (0 when there is none).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (series_name, rest) = series.split_once('{').unwrap_or((series, ""));
            series_name == name
                && labels
                    .iter()
                    .all(|(key, value)| rest.contains(&format!("{key}=\"{value}\"")))
        })
        .map(|(_, sample)| sample.parse::<f64>().unwrap())
        .sum()
}

/// Every label value in the scrape.
fn label_values(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let start = line.find('{')?;
            let end = line.rfind('}')?;
            Some(line[start + 1..end].to_owned())
        })
        .flat_map(|labels| {
            labels
                .split("\",")
                .filter_map(|pair| pair.split_once("=\""))
                .map(|(_, value)| value.trim_end_matches('"').to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn metrics_need_the_scrape_token_or_an_operator() {
    let _serial = SERIAL.lock().await;
    let app = metered_app().await;
    let anonymous = app.get("/metrics", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.code(), "unauthenticated", "{anonymous:?}");
    let wrong = app.get("/metrics", Some("not-the-scrape-token")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.code(), "unauthenticated", "{wrong:?}");

    let shop = Shop::on(Arc::new(app), PHONE, "10.00", "1.00", "0.05").await;
    let shopper = shop.app.get("/metrics", Some(&shop.shopper)).await;
    assert_eq!(shopper.status, StatusCode::FORBIDDEN, "{shopper:?}");
    let operator = shop.app.get("/metrics", Some(&shop.operator)).await;
    assert_eq!(operator.status, StatusCode::OK, "{operator:?}");
    assert!(
        operator
            .body
            .as_str()
            .unwrap()
            .contains("holdfast_http_requests_total")
    );
}

#[tokio::test]
async fn with_metrics_off_the_endpoint_says_so() {
    let _serial = SERIAL.lock().await;
    let app = TestApp::spawn().await;
    let reply = app.get("/metrics", Some(SCRAPE_TOKEN)).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.code(), "metrics_disabled", "{reply:?}");
}

#[tokio::test]
async fn a_retail_lifecycle_moves_its_counters_and_no_label_names_a_person_or_an_order() {
    let _serial = SERIAL.lock().await;
    let shop = metered_shop("500.00", "24.00", "0.05").await;
    let before = scrape(&shop.app).await;

    let (number, challenge) = shop.order(2).await;
    let during = scrape(&shop.app).await;
    let placed = |text: &str| value(text, "holdfast_holds_placed_total", &[]);
    assert_eq!(placed(&during) - placed(&before), 1.0);
    assert!(
        value(&during, "holdfast_outbox_backlog_messages", &[]) >= 1.0,
        "{during}"
    );

    let approved = shop.answer(&challenge, "approve").await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    let requested = shop
        .app
        .post(
            &format!("/v1/retail/orders/{number}/settlement-request"),
            Some(&shop.supplier),
            json!({}),
        )
        .await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    let settlement = shop.app.pending_confirmation(&shop.shopper, &number).await;
    let code = shop.app.code_for(PHONE, &settlement).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = shop.app.answer(&settlement, wrong, "approve").await;
    assert_eq!(refused.code(), "challenge_wrong_code", "{refused:?}");
    let settled = shop.answer(&settlement, "approve").await;
    assert_eq!(settled.body["outcome"], "settled", "{settled:?}");
    let unmatched = shop.app.get("/v1/no-such-route/12345", None).await;
    assert_eq!(unmatched.status, StatusCode::NOT_FOUND);

    let after = scrape(&shop.app).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let requests = "holdfast_http_requests_total";
    let settlement_route = [
        (
            "route",
            "/v1/retail/orders/{order_number}/settlement-request",
        ),
        ("method", "POST"),
        ("status", "200"),
    ];
    assert_eq!(moved(requests, &settlement_route), 1.0, "{after}");
    assert_eq!(
        moved(
            "holdfast_http_request_duration_seconds_count",
            &settlement_route[..2]
        ),
        1.0
    );
    assert_eq!(
        moved(requests, &[("route", "unmatched"), ("status", "404")]),
        1.0
    );
    assert_eq!(placed(&after) - placed(&before), 1.0);
    let settlements = [("vertical", "retail"), ("how", "approved")];
    assert_eq!(moved("holdfast_settlements_total", &settlements), 1.0);
    assert_eq!(moved("holdfast_settlements_total", &[]), 1.0);
    assert_eq!(
        moved("holdfast_holds_resolved_total", &[("resolution", "posted")]),
        1.0
    );
    let outcomes = "holdfast_challenge_outcomes_total";
    for (purpose, outcome) in [
        ("order", "approved"),
        ("settlement", "wrong_code"),
        ("settlement", "approved"),
    ] {
        assert_eq!(
            moved(outcomes, &[("purpose", purpose), ("outcome", outcome)]),
            1.0,
            "{purpose} {outcome}"
        );
    }
    assert_eq!(moved(outcomes, &[("outcome", "locked")]), 0.0);

    // No label carries the order number, the phone, an id or a concrete path.
    let digits = PHONE.trim_start_matches('+');
    for label in label_values(&after) {
        assert!(
            !label.contains(&number) && !label.contains(digits) && !label.contains("12345"),
            "{label}"
        );
        assert!(
            uuid::Uuid::parse_str(&label).is_err() && !label.contains(&challenge),
            "{label}"
        );
        let longest_digit_run = label
            .split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(longest_digit_run < 5, "{label}");
    }
    for series in [
        "holdfast_outbox_oldest_undelivered_age_seconds",
        "holdfast_timers_due",
        "holdfast_timers_oldest_due_lag_seconds",
        "holdfast_timers_failed",
        "holdfast_db_pool_connections",
    ] {
        assert!(
            after.contains(&format!("\n{series}")),
            "{series} missing: {after}"
        );
    }
}

#[tokio::test]
async fn an_expiring_order_shows_as_timer_lag_then_as_expired_outcomes() {
    let _serial = SERIAL.lock().await;
    let shop = metered_shop("100.00", "30.00", "0.10").await;
    let before = scrape(&shop.app).await;
    let (number, _) = shop.order(1).await;
    // The order's code lives ten minutes; a minute after, its timer is due and waiting.
    shop.app.clock.advance(chrono::Duration::minutes(11));
    let waiting = scrape(&shop.app).await;
    assert_eq!(
        value(&waiting, "holdfast_timers_due", &[]),
        1.0,
        "{waiting}"
    );
    assert_eq!(
        value(&waiting, "holdfast_timers_oldest_due_lag_seconds", &[]),
        60.0
    );
    assert_eq!(shop.app.fire_timers().await, 1);
    assert_eq!(shop.state(&number).await, "expired");
    // A console page counts under its own route template.
    let page = shop
        .app
        .request(
            axum::http::Method::GET,
            "/",
            None,
            None,
            &[("accept", "text/html")],
        )
        .await;
    assert_ne!(page.status, StatusCode::NOT_FOUND, "{page:?}");
    let page_status = page.status.as_str().to_owned();

    let after = scrape(&shop.app).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(value(&after, "holdfast_timers_due", &[]), 0.0);
    assert_eq!(
        value(&after, "holdfast_timers_oldest_due_lag_seconds", &[]),
        0.0
    );
    let outcomes = "holdfast_challenge_outcomes_total";
    assert_eq!(
        moved(outcomes, &[("purpose", "order"), ("outcome", "expired")]),
        1.0
    );
    assert_eq!(moved("holdfast_holds_resolved_total", &[]), 1.0, "{after}");
    assert_eq!(
        moved("holdfast_holds_resolved_total", &[("resolution", "posted")]),
        0.0
    );
    assert_eq!(moved("holdfast_settlements_total", &[]), 0.0);
    assert_eq!(
        moved(
            "holdfast_http_requests_total",
            &[("route", "/"), ("method", "GET"), ("status", &page_status)]
        ),
        1.0
    );
}

#[tokio::test]
async fn a_stray_bank_credit_shows_as_an_open_item_and_its_day_as_a_discrepancy() {
    let _serial = SERIAL.lock().await;
    let app = metered_app().await;
    let operator = app.operator_token().await;
    let desk = app.institution(&operator, "0077", "bank", json!({})).await;
    let own = app
        .request(
            Method::PUT,
            "/v1/institution/bank-accounts/USD",
            Some(&desk.token),
            Some(json!({"iban": "DE89370400440532013000", "holder_name": "Bank 0077"})),
            &[],
        )
        .await;
    assert_eq!(own.status, StatusCode::OK, "{own:?}");
    let before = scrape(&app).await;
    assert_eq!(value(&before, "holdfast_bank_open_items", &[]), 0.0);

    // A credit naming no deposit reference: the bank holds money the ledger does not.
    let simulate = async |path: &str, body: serde_json::Value| {
        let reply = app
            .post(&format!("/v1/simulator/bank/{path}"), Some(&operator), body)
            .await;
        assert!(reply.status.is_success(), "{reply:?}");
    };
    simulate(
        "credits",
        json!({"institution_id": desk.id, "amount": usd("7.00"), "remittance": "for my card"}),
    )
    .await;
    simulate(
        "close-day",
        json!({"institution_id": desk.id, "day": test_epoch().date_naive()}),
    )
    .await;
    let day = app
        .post(
            "/v1/institution/reconciliations",
            Some(&desk.token),
            json!({"day": test_epoch().date_naive(), "currency": "USD"}),
        )
        .await;
    assert_eq!(day.status, StatusCode::OK, "{day:?}");
    assert_eq!(day.body["clean"], false, "{day:?}");

    let after = scrape(&app).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let reconciled = "holdfast_reconciliations_total";
    assert_eq!(moved(reconciled, &[("result", "discrepancy")]), 1.0);
    assert_eq!(moved(reconciled, &[("result", "clean")]), 0.0);
    assert_eq!(value(&after, "holdfast_bank_open_items", &[]), 1.0);

    // Resolved by an operator, it is no longer open.
    let open = app
        .get("/v1/operator/reconciliation/open-items", Some(&operator))
        .await;
    let entry = open.body[0]["id"].as_str().unwrap().to_owned();
    let resolved = app
        .post(
            &format!("/v1/operator/bank-entries/{entry}/resolve"),
            Some(&operator),
            json!({"reason": "bank fee refund, booked outside Holdfast"}),
        )
        .await;
    assert_eq!(resolved.status, StatusCode::OK, "{resolved:?}");
    assert_eq!(
        value(&scrape(&app).await, "holdfast_bank_open_items", &[]),
        0.0
    );
}
