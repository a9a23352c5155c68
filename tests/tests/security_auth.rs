//! Issue #12, "Secure by default", on the authentication side: no compiled-in secret, the
//! simulator's inbox behind a credential, login throttling instead of lockout, no card
//! enumeration, and `Retry-After` on every 429 and 503.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::Utc;
use holdfast_core::Clock;
use holdfast_core::cards::{AgeClass, CardNumber, PurchaseType};
use holdfast_core::challenge::ChallengePolicy;
use holdfast_server::{AppState, auth, keys_from_secret, open_database, service_secret};
use holdfast_tests::{TestApp, TestDatabase};
use http_body_util::BodyExt;
use sea_orm::ConnectionTrait;
use secrecy::SecretString;
use serde_json::json;
use tower::ServiceExt;

/// A card number with a valid check digit that no card has.
fn unknown_card() -> CardNumber {
    CardNumber::generate("9876", AgeClass::Adult, PurchaseType::Personal).unwrap()
}

/// The secret every plain start used to sign with, compiled into the binary.
const OLD_DEVELOPMENT_SECRET: &[u8] = b"holdfast-development-secret-not-for-production-use";

async fn state_on(url: &str, database: &TestDatabase, secret: &[u8]) -> AppState {
    let db = open_database(url, database.pool).await.unwrap();
    holdfast_server::simulator_state(
        db,
        Clock::manual(Utc::now()),
        secret,
        3600,
        ChallengePolicy::default(),
    )
}

/// An operator on `state` and a token for it signed with `jwt`.
async fn operator_token_signed_with(state: &AppState, jwt: &auth::JwtKeys) -> String {
    let username = format!("op-{}", uuid::Uuid::new_v4().simple());
    let (party, _) = holdfast_server::create_staff(
        state,
        holdfast_core::parties::Role::Operator,
        "Operator",
        &username,
        "operator-password",
    )
    .await
    .unwrap();
    auth::issue_token(jwt, &party, None).unwrap().access_token
}

async fn status_of(state: &AppState, path: &str, token: &str) -> StatusCode {
    let request = Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = holdfast_server::app(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let _ = response.into_body().collect().await;
    status
}

#[tokio::test]
async fn a_plain_start_generates_a_secret_and_the_old_development_secret_no_longer_verifies() {
    let database = TestDatabase::create().await;
    let db = open_database(&database.url, database.pool).await.unwrap();
    let secret = service_secret(&db, None).await.unwrap();
    assert!(secret.len() >= 32, "{} bytes", secret.len());
    assert_ne!(secret, OLD_DEVELOPMENT_SECRET);

    let state = state_on(&database.url, &database, &secret).await;
    let own = operator_token_signed_with(&state, &state.jwt).await;
    assert_eq!(
        status_of(&state, "/v1/accounts", &own).await,
        StatusCode::OK
    );
    let (old_keys, _) = keys_from_secret(OLD_DEVELOPMENT_SECRET, 3600);
    let forged = operator_token_signed_with(&state, &old_keys).await;
    assert_eq!(
        status_of(&state, "/v1/accounts", &forged).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_generated_secret_survives_reopening_the_database() {
    let database = TestDatabase::create().await;
    let first = {
        let db = open_database(&database.url, database.pool).await.unwrap();
        let secret = service_secret(&db, None).await.unwrap();
        db.close().await.unwrap();
        secret
    };
    let db = open_database(&database.url, database.pool).await.unwrap();
    assert_eq!(service_secret(&db, None).await.unwrap(), first);
    assert_eq!(service_secret(&db, None).await.unwrap(), first);
}

#[tokio::test]
async fn two_databases_get_different_secrets_and_tokens_do_not_cross() {
    let (one, two) = (TestDatabase::create().await, TestDatabase::create().await);
    let db_one = open_database(&one.url, one.pool).await.unwrap();
    let db_two = open_database(&two.url, two.pool).await.unwrap();
    let secret_one = service_secret(&db_one, None).await.unwrap();
    let secret_two = service_secret(&db_two, None).await.unwrap();
    assert_ne!(secret_one, secret_two);

    let state_one = state_on(&one.url, &one, &secret_one).await;
    let state_two = state_on(&two.url, &two, &secret_two).await;
    let token = operator_token_signed_with(&state_one, &state_one.jwt).await;
    assert_eq!(
        status_of(&state_one, "/v1/accounts", &token).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&state_two, "/v1/accounts", &token).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn instances_starting_together_agree_on_the_secret() {
    let database = TestDatabase::create().await;
    let db = open_database(&database.url, database.pool).await.unwrap();
    let other = open_database(&database.url, database.pool).await.unwrap();
    let (a, b, c) = tokio::join!(
        service_secret(&db, None),
        service_secret(&other, None),
        service_secret(&db, None)
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(a, b);
    assert_eq!(b, c);
}

#[tokio::test]
async fn a_configured_secret_wins_and_must_be_long_enough() {
    let database = TestDatabase::create().await;
    let db = open_database(&database.url, database.pool).await.unwrap();
    let stored = service_secret(&db, None).await.unwrap();
    let flag = SecretString::from("a-configured-secret-of-at-least-32-chars");
    let configured = service_secret(&db, Some(&flag)).await.unwrap();
    assert_eq!(configured, b"a-configured-secret-of-at-least-32-chars");
    assert_ne!(configured, stored);
    let short = SecretString::from("too-short");
    assert!(service_secret(&db, Some(&short)).await.is_err());
    // The flag does not replace what is stored: without it, the stored secret is back.
    assert_eq!(service_secret(&db, None).await.unwrap(), stored);
}

// ---- 2. The phone simulator's inbox needs a credential ----

#[tokio::test]
async fn the_simulator_inbox_opens_to_an_operator_or_the_simulator_key_only() {
    let app = TestApp::spawn().await;
    let operator = app.harness_operator().await;
    let phone = "+821077770001";
    let (_, card) = app.prepaid_card(&operator, phone, "10.00").await;
    let started = app
        .post("/v1/auth/card-login", None, json!({"card_number": card}))
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{started:?}");
    app.deliver().await;
    let path = format!("/v1/phone-simulator/{phone}/messages");

    let anonymous = app.get(&path, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{anonymous:?}");
    assert_eq!(anonymous.code(), "unauthenticated");
    assert!(anonymous.body["error"]["request_id"].is_string());
    assert!(!anonymous.body.to_string().contains("Code "));

    let wrong_key = app
        .request(
            Method::GET,
            &path,
            None,
            None,
            &[("x-simulator-key", "not-the-key")],
        )
        .await;
    assert_eq!(wrong_key.status, StatusCode::UNAUTHORIZED, "{wrong_key:?}");
    assert_eq!(wrong_key.code(), "unauthenticated");

    let forged = app.get(&path, Some("not.a.token")).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED, "{forged:?}");

    let (_, supplier) = app.supplier(&operator, "Shop").await;
    let not_operator = app.get(&path, Some(&supplier)).await;
    assert_eq!(
        not_operator.status,
        StatusCode::FORBIDDEN,
        "{not_operator:?}"
    );
    assert_eq!(not_operator.code(), "forbidden");

    let by_operator = app.get(&path, Some(&operator)).await;
    assert_eq!(by_operator.status, StatusCode::OK, "{by_operator:?}");
    assert_eq!(by_operator.body.as_array().unwrap().len(), 1);

    let key = app
        .state
        .simulator_key
        .as_ref()
        .expect("the simulator is on")
        .expose()
        .to_owned();
    assert!(key.len() >= 32);
    let by_key = app
        .request(Method::GET, &path, None, None, &[("x-simulator-key", &key)])
        .await;
    assert_eq!(by_key.status, StatusCode::OK, "{by_key:?}");
    assert_eq!(by_key.body, by_operator.body);
}

#[test]
fn the_demo_prints_the_simulator_key_in_its_export_line() {
    let demo = holdfast_server::demo::Demo {
        operator_password: "o".to_owned(),
        supplier_password: "s".to_owned(),
        supplier_second_password: "t".to_owned(),
        carrier_password: "c".to_owned(),
        shopper_card: unknown_card(),
        pharmacy: holdfast_server::demo::PharmacyCast {
            prescriber_password: "p".to_owned(),
            drugstore_password: "d".to_owned(),
        },
        insurance: holdfast_server::demo::InsuranceCast {
            insurer_password: "i".to_owned(),
            service_company_password: "v".to_owned(),
            institution_password: "b".to_owned(),
        },
    };
    let printed =
        holdfast_server::demo::instructions(&demo, "http://127.0.0.1:8080", Some("the-key"));
    let export = printed
        .lines()
        .find(|line| line.starts_with("export HOLDFAST="))
        .unwrap();
    assert!(export.contains("SIMULATOR_KEY=the-key"), "{export}");
    for role in ["insurer", "service company", "institution"] {
        assert!(
            printed
                .lines()
                .any(|line| line.trim_start().starts_with(role)),
            "{printed}"
        );
    }
}

// ---- 8. Every 429 and 503 says when to retry ----

#[tokio::test]
async fn a_refused_card_login_says_when_to_retry_for_known_and_unknown_cards_alike() {
    let app = TestApp::spawn().await;
    let operator = app.harness_operator().await;
    let (_, card) = app.prepaid_card(&operator, "+821077770002", "10.00").await;
    let mut refusals = Vec::new();
    for card in [card, unknown_card().to_string()] {
        let (tries, refused) = refused_card_login(&app, &card).await;
        refusals.push((tries, shape(&refused)));
    }
    assert_eq!(refusals[0], refusals[1]);
}

/// Starts logins with `card` until one is refused; how many were accepted, and the refusal.
async fn refused_card_login(app: &TestApp, card: &str) -> (usize, holdfast_tests::Reply) {
    let mut last = None;
    let mut tries = 0;
    for _ in 0..12 {
        let reply = app
            .post("/v1/auth/card-login", None, json!({"card_number": card}))
            .await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            last = Some(reply);
            break;
        }
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
        tries += 1;
    }
    let refused = last.expect("the card's phone is asked at most ten times an hour");
    assert_eq!(refused.code(), "too_many_attempts");
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{retry}");
    (tries, refused)
}

// ---- 7. Card login does not tell which cards exist ----

/// What a reply gives away: its status, error code and message, and the fields it has.
fn shape(reply: &holdfast_tests::Reply) -> (StatusCode, String, String, Vec<String>) {
    let fields = reply
        .body
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    (
        reply.status,
        reply.code().to_owned(),
        reply.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        fields,
    )
}

async fn phone_messages_queued(app: &TestApp) -> i64 {
    let row = app
        .state
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            app.backend(),
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM outbox WHERE channel = 'phone'",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

#[tokio::test]
async fn an_unknown_or_blocked_card_starts_a_login_like_a_real_one_and_nothing_is_sent() {
    let app = TestApp::spawn().await;
    let operator = app.harness_operator().await;
    let phone = "+821077770003";
    let (_, real) = app.prepaid_card(&operator, phone, "10.00").await;
    let blocked_phone = "+821077770004";
    let (_, blocked) = app.prepaid_card(&operator, blocked_phone, "10.00").await;
    let holder = app.card_login(&blocked, blocked_phone).await;
    let block = app
        .post(
            &format!("/v1/me/cards/{blocked}/block"),
            Some(&holder),
            json!({}),
        )
        .await;
    assert_eq!(block.status, StatusCode::OK, "{block:?}");
    app.deliver().await;
    let queued_before = phone_messages_queued(&app).await;

    let start = |number: String| {
        let app = &app;
        async move {
            app.post("/v1/auth/card-login", None, json!({"card_number": number}))
                .await
        }
    };
    let real_started = start(real.clone()).await;
    assert_eq!(
        real_started.status,
        StatusCode::ACCEPTED,
        "{real_started:?}"
    );
    let expected = shape(&real_started);
    let real_lifetime =
        chrono::DateTime::parse_from_rfc3339(real_started.body["expires_at"].as_str().unwrap())
            .unwrap();
    for number in [unknown_card().to_string(), blocked.clone()] {
        let started = start(number).await;
        assert_eq!(shape(&started), expected, "{started:?}");
        let lifetime =
            chrono::DateTime::parse_from_rfc3339(started.body["expires_at"].as_str().unwrap())
                .unwrap();
        assert_eq!(lifetime, real_lifetime);
    }
    // One text, for the real card only.
    assert_eq!(phone_messages_queued(&app).await, queued_before + 1);
    app.deliver().await;
    // The blocked card's phone has only the code of the holder's own earlier login.
    let blocked_inbox = app.inbox(blocked_phone, "limit=100").await;
    assert_eq!(
        blocked_inbox.body.as_array().unwrap().len(),
        1,
        "{blocked_inbox:?}"
    );
}

#[tokio::test]
async fn answering_a_decoy_login_fails_exactly_as_a_wrong_code_on_a_real_one() {
    let app = TestApp::spawn().await;
    let operator = app.harness_operator().await;
    let phone = "+821077770005";
    let (_, real) = app.prepaid_card(&operator, phone, "10.00").await;
    let start = |number: String| {
        let app = &app;
        async move {
            let started = app
                .post("/v1/auth/card-login", None, json!({"card_number": number}))
                .await;
            assert_eq!(started.status, StatusCode::ACCEPTED, "{started:?}");
            started.body["challenge_id"].as_str().unwrap().to_owned()
        }
    };
    let unknown = unknown_card().to_string();

    // A resend looks alike, and sends nothing for the decoy.
    let real_challenge = start(real.clone()).await;
    let decoy_challenge = start(unknown.clone()).await;
    let resend = |challenge: String| {
        let app = &app;
        async move {
            app.post(
                &format!("/v1/challenges/{challenge}/resend"),
                None,
                json!({}),
            )
            .await
        }
    };
    let (real_resent, decoy_resent) = (
        resend(real_challenge.clone()).await,
        resend(decoy_challenge.clone()).await,
    );
    assert_eq!(real_resent.status, StatusCode::ACCEPTED, "{real_resent:?}");
    assert_eq!(shape(&decoy_resent), shape(&real_resent));
    assert_eq!(
        decoy_resent.body["sends_left"],
        real_resent.body["sends_left"]
    );

    // Every wrong code counts alike, down to the lock and after it.
    let code = app.code_for(phone, &real_challenge).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for attempt in 0..7 {
        let real_reply = app.answer(&real_challenge, wrong, "approve").await;
        let decoy_reply = app.answer(&decoy_challenge, wrong, "approve").await;
        assert_eq!(
            shape(&decoy_reply),
            shape(&real_reply),
            "attempt {attempt}: {decoy_reply:?} vs {real_reply:?}"
        );
        assert!(
            matches!(
                real_reply.code(),
                "challenge_wrong_code" | "challenge_locked"
            ),
            "{real_reply:?}"
        );
    }
    // Any code at all on a fresh decoy is just a wrong code; a new login voids the old one.
    let decoy_challenge = start(unknown.clone()).await;
    let real_challenge = start(real.clone()).await;
    let code = app.code_for(phone, &real_challenge).await;
    let real_wrong = app
        .answer(
            &real_challenge,
            if code == "123456" { "654321" } else { "123456" },
            "approve",
        )
        .await;
    let decoy_any = app.answer(&decoy_challenge, &code, "approve").await;
    assert_eq!(shape(&decoy_any), shape(&real_wrong), "{decoy_any:?}");
    let old_real = start(real.clone()).await;
    let old_decoy = start(unknown.clone()).await;
    let _ = (old_real, old_decoy);
    let voided_real = app.answer(&real_challenge, "123456", "approve").await;
    let voided_decoy = app.answer(&decoy_challenge, "123456", "approve").await;
    assert_eq!(voided_real.code(), "challenge_closed", "{voided_real:?}");
    assert_eq!(shape(&voided_decoy), shape(&voided_real));
}

// ---- 6. Password guessing is throttled per address; nobody is locked out ----

/// A password login as if from `address`.
async fn login_from(
    app: &TestApp,
    address: [u8; 4],
    username: &str,
    password: &str,
) -> holdfast_tests::Reply {
    let mut request = Request::post("/v1/auth/login")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"username": username, "password": password}).to_string(),
        ))
        .unwrap();
    let peer = std::net::SocketAddr::from((address, 40_000));
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    app.send(request).await
}

fn retry_after(reply: &holdfast_tests::Reply) -> u64 {
    reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A supplier account; returns its username.
async fn supplier_account(app: &TestApp) -> String {
    let operator = app.harness_operator().await;
    let username = format!("sup-{}", uuid::Uuid::new_v4().simple());
    let created = app
        .post(
            "/v1/operator/suppliers",
            Some(&operator),
            json!({"display_name": "Shop", "username": username, "password": "supplier-password"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    username
}

const ATTACKER: [u8; 4] = [203, 0, 113, 7];
const OWNER: [u8; 4] = [198, 51, 100, 20];

#[tokio::test]
async fn wrong_passwords_slow_down_the_guesser_but_never_lock_out_the_owner() {
    let app = TestApp::spawn().await;
    let username = supplier_account(&app).await;
    for _ in 0..5 {
        let wrong = login_from(&app, ATTACKER, &username, "wrong-password-1").await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
        assert_eq!(wrong.code(), "bad_credentials");
    }
    // From there, even the right password waits, and is told how long.
    let held = login_from(&app, ATTACKER, &username, "supplier-password").await;
    assert_eq!(held.status, StatusCode::TOO_MANY_REQUESTS, "{held:?}");
    assert_eq!(held.code(), "too_many_attempts");
    assert_eq!(retry_after(&held), 15);
    // The owner, elsewhere, gets in — also after many more guesses (the old lockout took ten).
    for round in 0..6 {
        app.clock.advance(chrono::Duration::seconds(
            i64::try_from(retry_after(&held)).unwrap() << round,
        ));
        let wrong = login_from(&app, ATTACKER, &username, "wrong-password-1").await;
        assert_eq!(
            wrong.status,
            StatusCode::UNAUTHORIZED,
            "round {round}: {wrong:?}"
        );
        let held = login_from(&app, ATTACKER, &username, "wrong-password-1").await;
        assert_eq!(held.status, StatusCode::TOO_MANY_REQUESTS, "{held:?}");
        // The wait doubles, up to 15 minutes.
        assert_eq!(
            retry_after(&held),
            (15u64 << (round + 1)).min(900),
            "round {round}"
        );
    }
    let owner = login_from(&app, OWNER, &username, "supplier-password").await;
    assert_eq!(owner.status, StatusCode::OK, "{owner:?}");
    // Once the wait is over, the right password works from the guesser's address too.
    app.clock.advance(chrono::Duration::minutes(15));
    let later = login_from(&app, ATTACKER, &username, "supplier-password").await;
    assert_eq!(later.status, StatusCode::OK, "{later:?}");
}

#[tokio::test]
async fn one_address_guessing_across_many_accounts_is_held_back() {
    let app = TestApp::spawn().await;
    let username = supplier_account(&app).await;
    // Unknown usernames count like wrong passwords; none of them reaches five on its own.
    for n in 0..50 {
        let wrong = login_from(&app, ATTACKER, &format!("guess-{n}"), "wrong-password-1").await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{n}: {wrong:?}");
    }
    let held = login_from(&app, ATTACKER, &username, "supplier-password").await;
    assert_eq!(held.status, StatusCode::TOO_MANY_REQUESTS, "{held:?}");
    assert_eq!(retry_after(&held), 600);
    let owner = login_from(&app, OWNER, &username, "supplier-password").await;
    assert_eq!(owner.status, StatusCode::OK, "{owner:?}");
    app.clock.advance(chrono::Duration::minutes(10));
    let later = login_from(&app, ATTACKER, &username, "supplier-password").await;
    assert_eq!(later.status, StatusCode::OK, "{later:?}");
}

/// On a runtime with a single worker thread: while every hashing slot is taken and logins
/// queue for one, other requests are still served — the logins wait off the worker. When the
/// slots free up, the logins complete.
#[tokio::test(flavor = "current_thread")]
async fn logins_waiting_for_a_hash_do_not_hold_up_other_requests() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let username = supplier_account(&app).await;
    let (_, supplier) = app.supplier(&app.harness_operator().await, "Other").await;
    let slots = app.state.core.passwords.occupy_all().await.unwrap();

    let logins: Vec<_> = (0..16)
        .map(|n| {
            let app = app.clone();
            let username = username.clone();
            tokio::spawn(async move {
                login_from(&app, [10, 0, 0, n], &username, "supplier-password").await
            })
        })
        .collect();
    // Let every login reach the queue.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    let started = std::time::Instant::now();
    let cheap = app.get("/v1/accounts", Some(&supplier)).await;
    assert_eq!(cheap.status, StatusCode::OK, "{cheap:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        logins.iter().all(|login| !login.is_finished()),
        "no login can finish while the hashing slots are taken"
    );

    drop(slots);
    for login in logins {
        let reply = login.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }
}
