//! The payee's side of payouts through the API and the console: a bank account registered and
//! confirmed with the second password, payouts on request (once per `Idempotency-Key`, never
//! more than the withdrawal account holds, only to a confirmed account), the daily sweep (once
//! a day, whatever fires again), and the "Payouts" page with its forms. On SQLite, and on
//! PostgreSQL when the test database URL is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::{Method, StatusCode};
use chrono::Duration;
use holdfast_tests::console::Console;
use holdfast_tests::world::random_phone;
use holdfast_tests::{Reply, TestApp, test_epoch};
use serde_json::{Value, json};

const IBAN: &str = "DE44 5001 0517 5407 3249 31";
const SECOND: &str = "second-password-42";
const PASSWORD: &str = "supplier-password";

/// A supplier with a second password; returns (username, token).
async fn supplier(app: &TestApp, operator: &str) -> (String, String) {
    let username = format!("sup-{}", uuid::Uuid::new_v4().simple());
    let created = app
        .post(
            "/v1/operator/suppliers",
            Some(operator),
            json!({"display_name": "Acme", "username": username,
                   "password": PASSWORD, "second_password": SECOND}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let token = app.password_login(&username, PASSWORD).await;
    (username, token)
}

/// One order of a 50.00 commodity (10 % commission) settled to `supplier`: 45.00 reach its
/// withdrawal account.
async fn earn(app: &TestApp, operator: &str, supplier: &str) {
    let phone = random_phone();
    let (_, shopper) = app.shopper(operator, &phone, "100.00").await;
    let commodity = app.commodity(supplier, "50.00", "0.10").await;
    let (number, challenge) = app.placed_order(&shopper, &commodity, 1).await;
    let approved = app.answer_on(&phone, &challenge, "approve").await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    let requested = app
        .post(
            &format!("/v1/retail/orders/{number}/settlement-request"),
            Some(supplier),
            json!({}),
        )
        .await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    let settlement = app.pending_confirmation(&shopper, &number).await;
    let settled = app.answer_on(&phone, &settlement, "approve").await;
    assert_eq!(settled.status, StatusCode::OK, "{settled:?}");
}

async fn register(app: &TestApp, token: &str, body: Value) -> Reply {
    app.post("/v1/payee/destinations", Some(token), body).await
}

async fn confirm(app: &TestApp, token: &str, id: &str, second: &str) -> Reply {
    app.post(
        &format!("/v1/payee/destinations/{id}/confirm"),
        Some(token),
        json!({"second_password": second}),
    )
    .await
}

/// A confirmed IBAN destination for `token`'s payee.
async fn confirmed_destination(app: &TestApp, token: &str) -> String {
    let registered = register(
        app,
        token,
        json!({"iban": IBAN, "holder_name": "Acme Supplies Ltd"}),
    )
    .await;
    assert_eq!(registered.status, StatusCode::CREATED, "{registered:?}");
    let id = registered.body["id"].as_str().unwrap().to_owned();
    let confirmed = confirm(app, token, &id, SECOND).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{confirmed:?}");
    id
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

async fn payouts(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let listed = app
        .get(&format!("/v1/payee/payouts{query}"), Some(token))
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    listed.body.as_array().unwrap().clone()
}

#[tokio::test]
async fn a_payee_confirms_its_account_and_each_key_pays_out_once() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (_, token) = supplier(&app, &operator).await;
    earn(&app, &operator, &token).await;
    assert_eq!(app.balance(&token, "withdrawal").await, "45.00");

    let registered = register(
        &app,
        &token,
        json!({"iban": IBAN, "holder_name": "Acme Supplies Ltd"}),
    )
    .await;
    assert_eq!(registered.status, StatusCode::CREATED, "{registered:?}");
    assert_eq!(registered.body["status"], "pending");
    assert_eq!(registered.body["account_last_four"], "4931");
    assert!(
        !registered.body.to_string().contains("5407"),
        "the account number is masked: {registered:?}"
    );
    let id = registered.body["id"].as_str().unwrap().to_owned();

    // Not yet confirmed: no payout.
    let early = pay_out(&app, &token, "early", "10.00").await;
    assert_eq!(early.status, StatusCode::UNPROCESSABLE_ENTITY, "{early:?}");
    assert_eq!(early.code(), "payout_destination_required");

    // The login password is not the second password.
    for wrong in ["wrong-password-00", PASSWORD] {
        let refused = confirm(&app, &token, &id, wrong).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused:?}");
        assert_eq!(refused.code(), "bad_credentials");
    }
    let confirmed = confirm(&app, &token, &id, SECOND).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{confirmed:?}");
    assert_eq!(confirmed.body["status"], "active");
    let again = confirm(&app, &token, &id, SECOND).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");

    let unkeyed = app
        .post(
            "/v1/payee/payouts",
            Some(&token),
            json!({"currency": "USD", "amount": "10.00"}),
        )
        .await;
    assert_eq!(unkeyed.status, StatusCode::BAD_REQUEST, "{unkeyed:?}");
    assert_eq!(unkeyed.code(), "idempotency_key_required");

    let first = pay_out(&app, &token, "payout-1", "20.00").await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(first.body["status"], "pending");
    assert_eq!(first.body["amount"]["amount"], "20.00");
    assert_eq!(first.body["destination_id"], id.as_str());
    assert_eq!(app.balance(&token, "withdrawal").await, "25.00");

    // The same key again: the same payout, and the money moved once.
    let replay = pay_out(&app, &token, "payout-1", "20.00").await;
    assert_eq!(replay.status, StatusCode::CREATED, "{replay:?}");
    assert_eq!(replay.body["id"], first.body["id"]);
    assert_eq!(app.balance(&token, "withdrawal").await, "25.00");
    let reused = pay_out(&app, &token, "payout-1", "21.00").await;
    assert_eq!(reused.status, StatusCode::CONFLICT, "{reused:?}");
    assert_eq!(reused.code(), "idempotency_key_reused");

    let too_much = pay_out(&app, &token, "payout-2", "25.01").await;
    assert_eq!(
        too_much.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{too_much:?}"
    );
    assert_eq!(too_much.code(), "insufficient_funds");
    assert_eq!(app.balance(&token, "withdrawal").await, "25.00");

    let all = pay_out(&app, &token, "payout-3", "all").await;
    assert_eq!(all.status, StatusCode::CREATED, "{all:?}");
    assert_eq!(all.body["amount"]["amount"], "25.00");
    assert_eq!(app.balance(&token, "withdrawal").await, "0.00");
    let nothing_left = pay_out(&app, &token, "payout-4", "all").await;
    assert_eq!(
        nothing_left.code(),
        "insufficient_funds",
        "{nothing_left:?}"
    );

    let listed = payouts(&app, &token, "").await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], all.body["id"], "newest first");
    assert_eq!(payouts(&app, &token, "?state=pending").await.len(), 2);
    assert!(payouts(&app, &token, "?state=paid").await.is_empty());
    let payout_id = first.body["id"].as_str().unwrap().to_owned();
    let one = app
        .get(&format!("/v1/payee/payouts/{payout_id}"), Some(&token))
        .await;
    assert_eq!(one.status, StatusCode::OK, "{one:?}");
    assert_eq!(one.body["amount"]["amount"], "20.00");

    // A change of account: the new one is active once confirmed, the old one superseded.
    let domestic = register(
        &app,
        &token,
        json!({"bank_code": "088", "account_number": "110-123-456789",
               "holder_name": "Acme Supplies Ltd"}),
    )
    .await;
    assert_eq!(domestic.status, StatusCode::CREATED, "{domestic:?}");
    let domestic_id = domestic.body["id"].as_str().unwrap().to_owned();
    let confirmed = confirm(&app, &token, &domestic_id, SECOND).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{confirmed:?}");
    let history = app.get("/v1/payee/destinations", Some(&token)).await;
    assert_eq!(history.status, StatusCode::OK, "{history:?}");
    let statuses: Vec<_> = history
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["status"].clone(), d["account_last_four"].clone()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (json!("active"), json!("6789")),
            (json!("superseded"), json!("4931"))
        ]
    );

    // Another payee sees none of it; a shopper is no payee.
    let (_, other) = supplier(&app, &operator).await;
    let hidden = app
        .get(&format!("/v1/payee/payouts/{payout_id}"), Some(&other))
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{hidden:?}");
    assert!(payouts(&app, &other, "").await.is_empty());
    let theirs = confirm(&app, &other, &domestic_id, SECOND).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{theirs:?}");
    let (_, shopper) = app.shopper(&operator, &random_phone(), "1.00").await;
    let refused = app.get("/v1/payee/payouts", Some(&shopper)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");

    app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_bank_account_that_fails_its_checks_is_refused() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (_, token) = supplier(&app, &operator).await;
    for body in [
        // One digit mistyped: the mod-97 check fails.
        json!({"iban": "DE44 5001 0517 5407 3249 32", "holder_name": "Acme"}),
        json!({"iban": "XX44500105175407324931", "holder_name": "Acme"}),
        json!({"bank_code": "088", "holder_name": "Acme"}),
        json!({"iban": IBAN, "bank_code": "088", "account_number": "1234567",
               "holder_name": "Acme"}),
        json!({"bank_code": "088", "account_number": "12", "holder_name": "Acme"}),
    ] {
        let refused = register(&app, &token, body.clone()).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{body}: {refused:?}"
        );
        assert_eq!(refused.code(), "invalid_bank_account", "{body}");
    }
    let nameless = register(&app, &token, json!({"iban": IBAN, "holder_name": " "})).await;
    assert_eq!(nameless.status, StatusCode::BAD_REQUEST, "{nameless:?}");
    let history = app.get("/v1/payee/destinations", Some(&token)).await;
    assert_eq!(history.body, json!([]));

    // A pending one can be withdrawn, once.
    let pending = register(&app, &token, json!({"iban": IBAN, "holder_name": "Acme"})).await;
    let id = pending.body["id"].as_str().unwrap();
    let cancel = format!("/v1/payee/destinations/{id}/cancel");
    let cancelled = app.post(&cancel, Some(&token), json!({})).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    assert_eq!(cancelled.body["status"], "cancelled");
    let twice = app.post(&cancel, Some(&token), json!({})).await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{twice:?}");
    // Still nothing confirmed: no payout.
    let refused = pay_out(&app, &token, "k", "all").await;
    assert_eq!(refused.code(), "payout_destination_required", "{refused:?}");
}

async fn set_schedule(app: &TestApp, token: &str, body: Value) -> Reply {
    app.request(
        Method::PUT,
        "/v1/payee/payout-schedule",
        Some(token),
        Some(body),
        &[],
    )
    .await
}

#[tokio::test]
async fn the_daily_sweep_pays_out_at_most_once_a_day() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (_, token) = supplier(&app, &operator).await;
    confirmed_destination(&app, &token).await;
    earn(&app, &operator, &token).await;
    app.fire_timers().await;
    assert_eq!(app.balance(&token, "withdrawal").await, "45.00");

    let hour = |h: u32| json!({"enabled": true, "minimum": {"amount": "10.00", "currency": "USD"}, "hour_utc": h});
    let set = set_schedule(&app, &token, hour(10)).await;
    assert_eq!(set.status, StatusCode::OK, "{set:?}");
    // The clock starts at 09:30: the first sweep is today at 10:00.
    let ten = test_epoch() + Duration::minutes(30);
    assert_eq!(
        set.body["next_sweep_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        ten
    );
    let out_of_range = set_schedule(&app, &token, hour(24)).await;
    assert_eq!(
        out_of_range.status,
        StatusCode::BAD_REQUEST,
        "{out_of_range:?}"
    );

    app.clock.advance(Duration::minutes(30));
    assert!(app.fire_timers().await >= 1);
    let swept = payouts(&app, &token, "").await;
    assert_eq!(swept.len(), 1, "{swept:?}");
    assert_eq!(swept[0]["amount"]["amount"], "45.00");
    assert_eq!(app.balance(&token, "withdrawal").await, "0.00");
    assert_eq!(app.fire_timers().await, 0, "the next sweep is tomorrow");

    // More money the same day, and the sweep moved to a later hour: its timer fires again
    // today, finds today's payout and pays nothing more.
    earn(&app, &operator, &token).await;
    let later = set_schedule(&app, &token, hour(11)).await;
    assert_eq!(later.status, StatusCode::OK, "{later:?}");
    app.clock.advance(Duration::hours(1));
    app.fire_timers().await;
    assert_eq!(payouts(&app, &token, "").await.len(), 1);
    assert_eq!(app.balance(&token, "withdrawal").await, "45.00");

    // The next day's sweep pays it.
    app.clock.advance(Duration::days(1));
    app.fire_timers().await;
    let both = payouts(&app, &token, "").await;
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(app.balance(&token, "withdrawal").await, "0.00");

    // Below the minimum nothing moves; switched off, no sweep is scheduled.
    earn(&app, &operator, &token).await;
    let high = json!({"enabled": true, "minimum": {"amount": "100.00", "currency": "USD"}, "hour_utc": 11});
    assert_eq!(
        set_schedule(&app, &token, high).await.status,
        StatusCode::OK
    );
    app.clock.advance(Duration::days(1));
    app.fire_timers().await;
    assert_eq!(payouts(&app, &token, "").await.len(), 2);
    let off =
        json!({"enabled": false, "minimum": {"amount": "0.00", "currency": "USD"}, "hour_utc": 11});
    let off = set_schedule(&app, &token, off).await;
    assert_eq!(off.status, StatusCode::OK, "{off:?}");
    assert!(off.body["next_sweep_at"].is_null());
    let shown = app.get("/v1/payee/payout-schedule", Some(&token)).await;
    assert_eq!(shown.body["enabled"], false, "{shown:?}");
    app.assert_ledger_clean().await;
}

/// The `action` of the page's first form posting to a path that ends with `suffix`.
fn action_ending(html: &str, suffix: &str) -> String {
    let end = html
        .find(&format!("{suffix}\""))
        .unwrap_or_else(|| panic!("no form posting to …{suffix}"));
    let start = html[..end].rfind("action=\"").unwrap() + "action=\"".len();
    html[start..end + suffix.len()].to_owned()
}

fn with(fields: &[(String, String)], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all = fields.to_vec();
    all.extend(
        extra
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
    );
    all
}

#[tokio::test]
async fn the_payouts_page_registers_confirms_pays_out_once_per_form_and_sets_the_sweep() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (username, token) = supplier(&app, &operator).await;
    earn(&app, &operator, &token).await;
    let console = Console::sign_in(&app, &username, PASSWORD).await;
    let page = console.get("/supplier").await;
    assert!(
        page.html.contains("href=\"/payee/payouts\""),
        "linked from the navigation"
    );

    let form = console.form("/payee/payouts", "/payee/destinations").await;
    let registered = console
        .post(
            "/payee/destinations",
            &with(
                &form,
                &[("holder_name", "Acme Supplies Ltd"), ("iban", IBAN)],
            ),
        )
        .await;
    assert_eq!(
        registered.status,
        StatusCode::SEE_OTHER,
        "{}",
        registered.html
    );
    let shown = console.get("/payee/payouts").await;
    assert!(
        shown.html.contains("Waiting for your confirmation"),
        "{}",
        shown.html
    );
    assert!(shown.html.contains("IBAN …4931"));
    assert!(!shown.html.contains("5407 3249"), "the number is masked");

    let confirm = action_ending(&shown.html, "/confirm");
    let fields = console.form("/payee/payouts", &confirm).await;
    let wrong = console
        .post(
            &confirm,
            &with(&fields, &[("second_password", "wrong-password-00")]),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.html);
    assert!(wrong.html.contains("bad_credentials"));
    let fields = console.form("/payee/payouts", &confirm).await;
    let confirmed = console
        .post(&confirm, &with(&fields, &[("second_password", SECOND)]))
        .await;
    assert_eq!(
        confirmed.status,
        StatusCode::SEE_OTHER,
        "{}",
        confirmed.html
    );
    let shown = console.get("/payee/payouts").await;
    assert!(shown.html.contains("Payouts go to"), "{}", shown.html);

    // The same rendered payout form sent twice pays out once.
    let fields = console.form("/payee/payouts", "/payee/payouts").await;
    let fields = with(&fields, &[("amount", "10.00"), ("currency", "USD")]);
    let before = app.count_rows("payouts").await;
    for _ in 0..2 {
        let sent = console.post("/payee/payouts", &fields).await;
        assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.html);
    }
    assert_eq!(app.count_rows("payouts").await, before + 1);
    assert_eq!(app.balance(&token, "withdrawal").await, "35.00");
    let fields = console.form("/payee/payouts", "/payee/payouts").await;
    let too_much = console
        .post(
            "/payee/payouts",
            &with(&fields, &[("amount", "99.00"), ("currency", "USD")]),
        )
        .await;
    assert_eq!(too_much.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(too_much.html.contains("insufficient_funds"));
    let shown = console.get("/payee/payouts").await;
    assert!(shown.html.contains("10.00 USD"), "{}", shown.html);
    assert!(shown.html.contains("<td>pending</td>"), "{}", shown.html);

    let fields = console
        .form("/payee/payouts", "/payee/payout-schedule")
        .await;
    let set = console
        .post(
            "/payee/payout-schedule",
            &with(
                &fields,
                &[
                    ("enabled", "on"),
                    ("minimum", "20.00"),
                    ("currency", "USD"),
                    ("hour_utc", "6"),
                ],
            ),
        )
        .await;
    assert_eq!(set.status, StatusCode::SEE_OTHER, "{}", set.html);
    let shown = console.get("/payee/payouts").await;
    assert!(shown.html.contains("Next sweep"), "{}", shown.html);
    let schedule = app.get("/v1/payee/payout-schedule", Some(&token)).await;
    assert_eq!(schedule.body["hour_utc"], 6, "{schedule:?}");
    assert_eq!(schedule.body["minimum"]["amount"], "20.00");
    app.assert_ledger_clean().await;
}
