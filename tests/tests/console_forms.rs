//! A console form sent twice runs its use case once: each rendered form carries a nonce that
//! its page claims as the runner's idempotency key. Driven over HTTP with the session's cookie
//! and the form's hidden fields as the page rendered them (no browser): a double-clicked
//! "Place order" makes one order and one hold and lands both times on that order's page; the
//! same for a card an institution issues; the same nonce with other fields is refused with the
//! runner's 409, and a form without its nonce is refused. And expired sessions are swept
//! by the workers' sweep, not only when someone signs in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use chrono::Duration;
use holdfast_core::ids::PartyId;
use holdfast_core::parties::Role;
use holdfast_server::auth::Principal;
use holdfast_server::console::session::{self, NewSession};
use holdfast_server::demo;
use holdfast_tests::TestApp;
use holdfast_tests::console::Console;

fn with(fields: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let mut changed: Vec<(String, String)> =
        fields.iter().filter(|(n, _)| n != name).cloned().collect();
    changed.push((name.to_owned(), value.to_owned()));
    changed
}

fn without(fields: &[(String, String)], name: &str) -> Vec<(String, String)> {
    fields.iter().filter(|(n, _)| n != name).cloned().collect()
}

#[tokio::test]
async fn a_place_order_form_sent_twice_places_one_order_with_one_hold_and_lands_on_it_both_times() {
    let app = TestApp::spawn().await;
    let cast = demo::seed(&app.state).await.unwrap();
    let shopper = Console::shopper(&app, &cast.shopper_card).await;
    let shop = shopper.get("/shop").await;
    let commodity =
        holdfast_tests::console::field_named(&shop.html, "q_").expect("the shop lists a commodity");
    let cart = format!("/shop/cart?{commodity}=2");
    let form = shopper.form(&cart, "/shop/orders").await;
    assert!(
        form.iter().any(|(n, v)| n == "nonce" && v.len() == 32),
        "{form:?}"
    );
    let (orders, holds) = (
        app.count_rows("retail_orders").await,
        app.count_rows("holds").await,
    );

    let first = shopper.post("/shop/orders", &form).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.html);
    let landed = first.location.clone().unwrap();
    assert!(landed.starts_with("/shop/orders/"), "{landed}");
    let again = shopper.post("/shop/orders", &form).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.html);
    assert_eq!(again.location.as_deref(), Some(landed.as_str()));
    assert_eq!(app.count_rows("retail_orders").await, orders + 1);
    assert_eq!(app.count_rows("holds").await, holds + 1);
    let order_page = shopper.get(&landed).await;
    assert_eq!(order_page.status, StatusCode::OK, "{}", order_page.html);

    // The same rendered form with another quantity: the runner's 409, shown with its code.
    let changed = with(&form, &commodity, "3");
    let refused = shopper.post("/shop/orders", &changed).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.html);
    assert!(
        refused.html.contains("idempotency_key_reused"),
        "{}",
        refused.html
    );

    // A form without its nonce could not be sent twice safely: refused, nothing placed.
    let bare = shopper.post("/shop/orders", &without(&form, "nonce")).await;
    assert_eq!(bare.status, StatusCode::BAD_REQUEST, "{}", bare.html);
    assert!(bare.html.contains("form_nonce_required"), "{}", bare.html);
    let forged = shopper
        .post("/shop/orders", &with(&form, "nonce", "not-a-nonce"))
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST, "{}", forged.html);
    assert!(
        forged.html.contains("invalid_form_nonce"),
        "{}",
        forged.html
    );
    assert_eq!(app.count_rows("retail_orders").await, orders + 1);
    assert_eq!(app.count_rows("holds").await, holds + 1);

    // The cart rendered again is a new form: it places a second order.
    let next = shopper.form(&cart, "/shop/orders").await;
    let second = shopper.post("/shop/orders", &next).await;
    assert_eq!(second.status, StatusCode::SEE_OTHER, "{}", second.html);
    assert_ne!(second.location.as_deref(), Some(landed.as_str()));
    assert_eq!(app.count_rows("retail_orders").await, orders + 2);
    assert_eq!(app.count_rows("holds").await, holds + 2);
}

#[tokio::test]
async fn an_issue_card_form_sent_twice_issues_one_card() {
    let app = TestApp::spawn().await;
    let cast = demo::seed(&app.state).await.unwrap();
    let bank = Console::sign_in(
        &app,
        demo::INSTITUTION_USERNAME,
        &cast.insurance.institution_password,
    )
    .await;
    let mut form = bank.form("/institution/cards", "/institution/cards").await;
    for (name, value) in [
        ("holder_name", "Jisoo Park"),
        ("phone", "+821055512345"),
        ("age_class", "adult"),
        ("purchase_type", "personal"),
        ("mapping_kind", "prepaid"),
        ("currency", "USD"),
        ("initial_deposit", "250.00"),
    ] {
        form = with(&form, name, value);
    }
    let (cards, transfers) = (
        app.count_rows("cards").await,
        app.count_rows("transfers").await,
    );
    let first = bank.post("/institution/cards", &form).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.html);
    let again = bank.post("/institution/cards", &form).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.html);
    assert_eq!(again.location, first.location);
    assert_eq!(app.count_rows("cards").await, cards + 1);
    assert_eq!(
        app.count_rows("transfers").await,
        transfers + 1,
        "the initial deposit is made once"
    );
    let listed = bank.get(first.location.as_deref().unwrap()).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.html);
}

/// A session as signing in (`principal`) or opening the sign-in page (none) makes it.
async fn session_of(app: &TestApp, principal: Option<Principal>) {
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(axum::http::header::HOST, "127.0.0.1".parse().unwrap());
    let new = NewSession {
        principal,
        ..NewSession::default()
    };
    session::create(&app.state, &headers, None, new)
        .await
        .unwrap();
}

#[tokio::test]
async fn expired_console_sessions_are_swept_without_anyone_signing_in() {
    let app = TestApp::spawn().await;
    let staff = Principal {
        party: PartyId::from_uuid(uuid::Uuid::now_v7()),
        role: Role::Operator,
        card: None,
    };
    session_of(&app, None).await;
    session_of(&app, Some(staff)).await;
    assert_eq!(app.count_rows("console_sessions").await, 2);
    assert_eq!(session::sweep_expired(&app.state).await.unwrap(), 0);

    // The visitor's session lasts minutes, the signed-in one hours.
    app.clock
        .advance(Duration::minutes(session::VISITOR_TTL_MINUTES));
    assert_eq!(session::sweep_expired(&app.state).await.unwrap(), 1);
    assert_eq!(app.count_rows("console_sessions").await, 1);

    app.clock
        .advance(Duration::hours(session::SIGNED_IN_TTL_HOURS));
    assert_eq!(session::sweep_expired(&app.state).await.unwrap(), 1);
    assert_eq!(app.count_rows("console_sessions").await, 0);
}
