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

// ---- the bank pages: statements and reconciliation ------------------------------------------

const OWN_IBAN: &str = "DE89370400440532013000";

/// A notification crediting the institution's own account with `count` entries of 0.01 whose
/// payer's text names no account: each waits for an operator.
fn stray_credits(message_id: &str, count: usize) -> String {
    let entries: String = (0..count)
        .map(|n| {
            format!(
                r#"<Ntry><Amt Ccy="USD">0.01</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
<BookgDt><Dt>2026-03-11</Dt></BookgDt><AcctSvcrRef>{message_id}-{n}</AcctSvcrRef>
<NtryDtls><TxDtls><RmtInf><Ustrd>for my card, thanks</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
"#
            )
        })
        .collect();
    format!(
        r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"><BkToCstmrDbtCdtNtfctn>
<GrpHdr><MsgId>{message_id}</MsgId></GrpHdr><Ntfctn><Id>{message_id}-1</Id>
<Acct><Id><IBAN>{OWN_IBAN}</IBAN></Id><Ccy>USD</Ccy></Acct>
{entries}</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>"#
    )
}

/// An operator and an institution (with its own USD account at the bank) who sign in on the
/// console; returns (operator's username, institution's username, institution's token).
async fn bank_and_operator(app: &TestApp) -> (String, String, String) {
    let operator = format!("op-{}", uuid::Uuid::new_v4().simple());
    holdfast_server::create_staff(
        &app.state,
        Role::Operator,
        "Operator",
        &operator,
        holdfast_tests::STAFF_PASSWORD,
    )
    .await
    .unwrap();
    let operator_token = app
        .password_login(&operator, holdfast_tests::STAFF_PASSWORD)
        .await;
    let institution = format!("inst-{}", uuid::Uuid::new_v4().simple());
    let created = app
        .post(
            "/v1/operator/institutions",
            Some(&operator_token),
            serde_json::json!({"display_name": "Bank 0042", "code": "0042", "kind": "bank",
                "username": institution, "password": holdfast_tests::STAFF_PASSWORD}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let token = app
        .password_login(&institution, holdfast_tests::STAFF_PASSWORD)
        .await;
    let own = app
        .request(
            axum::http::Method::PUT,
            "/v1/institution/bank-accounts/USD",
            Some(&token),
            Some(serde_json::json!({"iban": OWN_IBAN, "holder_name": "Bank 0042"})),
            &[],
        )
        .await;
    assert_eq!(own.status, StatusCode::OK, "{own:?}");
    (operator, institution, token)
}

#[tokio::test]
async fn an_institution_uploads_statements_through_the_form_and_an_operator_resolves_them_with_a_reason()
 {
    let app = TestApp::spawn().await;
    let (operator, institution, _) = bank_and_operator(&app).await;
    let bank = Console::sign_in(&app, &institution, holdfast_tests::STAFF_PASSWORD).await;
    let page = bank.get("/institution/bank").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);

    // Not a camt document: the error above the form, the pasted text kept to correct.
    let form = bank
        .form("/institution/bank", "/institution/bank/statements")
        .await;
    let refused = bank
        .post(
            "/institution/bank/statements",
            &with(&form, "xml", "<not-a-statement>"),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.html);
    assert!(refused.html.contains("role=\"alert\""), "{}", refused.html);
    assert!(refused.html.contains("invalid_request"), "{}", refused.html);
    assert!(
        refused
            .html
            .contains("&#60;not-a-statement&#62;</textarea>"),
        "{}",
        refused.html
    );

    // A statement far past other forms' 64 KiB (percent-encoded, larger still) goes through.
    let large = stray_credits("FORM-LARGE", 900);
    assert!(large.len() > 200 * 1024, "{}", large.len());
    let imported = bank
        .post("/institution/bank/statements", &with(&form, "xml", &large))
        .await;
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.html);
    assert!(
        imported.html.contains("Imported 900 entries"),
        "{}",
        imported.html
    );
    assert!(
        imported.html.contains("FORM-LARGE"),
        "listed: {}",
        imported.html
    );

    // The operator resolves one: a blank reason is refused, saying why, on the same page.
    let desk = Console::sign_in(&app, &operator, holdfast_tests::STAFF_PASSWORD).await;
    let open = desk.get("/operator/reconciliation?limit=1").await;
    assert_eq!(open.status, StatusCode::OK, "{}", open.html);
    let marker = "action=\"/operator/reconciliation/";
    let start = open.html.find(marker).expect("an open item with its forms") + "action=\"".len();
    let assign = &open.html[start..];
    let action = assign[..assign.find('"').unwrap()].replace("/assign", "/resolve");
    let fields = desk.form("/operator/reconciliation?limit=1", &action).await;
    let blank = desk.post(&action, &with(&fields, "reason", "  ")).await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST, "{}", blank.html);
    assert!(
        blank.html.contains("needs a reason of 1 to 500 characters"),
        "{}",
        blank.html
    );
    assert!(blank.html.contains("role=\"alert\""), "{}", blank.html);
    let fields = desk.form("/operator/reconciliation?limit=1", &action).await;
    let resolved = desk
        .post(&action, &with(&fields, "reason", "bank fee refund"))
        .await;
    assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.html);
    assert!(resolved.html.contains("was resolved"), "{}", resolved.html);
    assert_eq!(
        app.count_rows("bank_entries WHERE status = 'resolved'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_movement_the_bank_never_showed_is_listed_for_the_operator_and_resolved_with_a_reason() {
    let app = TestApp::spawn().await;
    let (operator, _, token) = bank_and_operator(&app).await;
    // A first deposit recorded at the desk: in the ledger, never on a bank statement.
    let issued = app
        .post_idempotent(
            "/v1/institution/cards",
            Some(&token),
            serde_json::json!({"holder_name": "Holder", "age_class": "adult",
                "purchase_type": "personal", "mapping_kind": "prepaid", "currency": "USD",
                "phone": "+821055512399",
                "initial_deposit": {"amount": "30.00", "currency": "USD"}}),
        )
        .await;
    assert_eq!(issued.status, StatusCode::CREATED, "{issued:?}");
    let day = app.clock.now().date_naive();
    let run = app
        .post(
            "/v1/institution/reconciliations",
            Some(&token),
            serde_json::json!({"day": day, "currency": "USD"}),
        )
        .await;
    assert_eq!(run.status, StatusCode::OK, "{run:?}");
    assert_eq!(
        run.body["differences"][0]["kind"], "missing_at_bank",
        "{run:?}"
    );

    let desk = Console::sign_in(&app, &operator, holdfast_tests::STAFF_PASSWORD).await;
    let page = desk.get("/operator/reconciliation").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("Missing at the bank"), "{}", page.html);
    let marker = "action=\"/operator/reconciliation/transfers/";
    let start = page.html.find(marker).expect("the movement's form") + "action=\"".len();
    let action = &page.html[start..];
    let action = action[..action.find('"').unwrap()].to_owned();
    assert!(page.html.contains("-30.00 USD") || page.html.contains("30.00 USD"));

    let fields = desk.form("/operator/reconciliation", &action).await;
    let blank = desk.post(&action, &with(&fields, "reason", "")).await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST, "{}", blank.html);
    assert!(
        blank.html.contains("needs a reason of 1 to 500 characters"),
        "{}",
        blank.html
    );
    let fields = desk.form("/operator/reconciliation", &action).await;
    let resolved = desk
        .post(
            &action,
            &with(&fields, "reason", "cash paid in at the branch"),
        )
        .await;
    assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.html);
    assert!(resolved.html.contains("was resolved"), "{}", resolved.html);
    assert!(
        resolved.html.contains("No open movement."),
        "{}",
        resolved.html
    );
    assert_eq!(app.count_rows("ledger_resolutions").await, 1);
    // Sent again (a double click), it lands on the same answer and records nothing more.
    let again = desk
        .post(
            &action,
            &with(&fields, "reason", "cash paid in at the branch"),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.html);
    assert_eq!(app.count_rows("ledger_resolutions").await, 1);
}
