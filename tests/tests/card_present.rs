//! Card-present authorisation through the API: a shop terminal is answered `challenge_required`
//! at once while the holder's phone is asked, and its retry is approved once the phone
//! approved; a denial or an unanswered phone declines it; an approval armed ahead on the phone
//! approves a matching payment at once; a lost card is declined without money moving; an
//! approval never captured returns its hold; a terminal trying amounts learns nothing of the
//! balance; a card's phone is asked only so often. The clock is manual.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::{Method, StatusCode};
use chrono::Duration;
use holdfast_card_present::{
    MAX_OPEN_CONFIRMATIONS_PER_CARD, MAX_REQUESTS_PER_CARD_PER_WINDOW, REQUEST_WINDOW_MINUTES,
};
use holdfast_core::cards::{AgeClass, CardNumber, PurchaseType};
use holdfast_tests::world::card_request;
use holdfast_tests::{Reply, STAFF_PASSWORD, TestApp, usd};
use serde_json::{Value, json};
use std::sync::Arc;

/// A merchant with a terminal, and a card holder.
struct Shop {
    app: TestApp,
    operator: String,
    merchant_id: String,
    merchant: String,
    terminal: String,
    holder: String,
    card: String,
    phone: &'static str,
}

async fn terminal_of(app: &TestApp, operator: &str, merchant_id: &str, label: &str) -> String {
    let (created, token) = app
        .onboard_staff(
            operator,
            "/v1/card-present/terminals",
            "till",
            json!({"merchant_id": merchant_id, "label": label}),
        )
        .await;
    assert_eq!(created["merchant_id"], merchant_id);
    let me = app
        .get("/v1/card-present/authorisations", Some(&token))
        .await;
    assert_eq!(
        me.status,
        StatusCode::OK,
        "a terminal logs in as role terminal: {me:?}"
    );
    token
}

async fn shop(phone: &'static str, deposit: &str) -> Shop {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (merchant_id, merchant) = app.supplier(&operator, "Corner Bakery").await;
    let terminal = terminal_of(&app, &operator, &merchant_id, "till 1").await;
    let (_, card) = app.prepaid_card(&operator, phone, deposit).await;
    let holder = app.card_login(&card, phone).await;
    Shop {
        app,
        operator,
        merchant_id,
        merchant,
        terminal,
        holder,
        card,
        phone,
    }
}

impl Shop {
    async fn authorise_at(&self, terminal: &str, id: &str, card: &str, amount: &str) -> Reply {
        self.app
            .post(
                "/v1/card-present/authorisations",
                Some(terminal),
                json!({"authorisation_id": id, "card_number": card, "amount": usd(amount)}),
            )
            .await
    }

    async fn authorise(&self, id: &str, amount: &str) -> Reply {
        self.authorise_at(&self.terminal, id, &self.card, amount)
            .await
    }

    /// The holder's pending phone confirmation of authorisation `id`, as its app lists it.
    async fn pending(&self, id: &str) -> String {
        let list = self
            .app
            .get("/v1/card-present/authorisations", Some(&self.holder))
            .await;
        assert_eq!(list.status, StatusCode::OK, "{list:?}");
        list.body
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["authorisation_id"] == id)
            .and_then(|a| a["pending_confirmation"]["challenge_id"].as_str())
            .unwrap_or_else(|| panic!("no pending confirmation for {id}: {}", list.body))
            .to_owned()
    }

    async fn answer(&self, challenge: &str, decision: &str) -> Reply {
        let code = self.app.code_for(self.phone, challenge).await;
        self.app.answer(challenge, &code, decision).await
    }

    /// (balance, available) of the holder's prepaid account.
    async fn prepaid(&self) -> (String, String) {
        self.app.account_of_kind(&self.holder, "prepaid").await
    }

    async fn inbox(&self) -> Vec<Value> {
        self.app.messages(self.phone).await
    }

    /// How many payment questions the holder's phone was sent (not login codes, not notices).
    async fn questions(&self) -> usize {
        self.inbox()
            .await
            .iter()
            .filter(|m| {
                !m["challenge_id"].is_null()
                    && m["body"]
                        .as_str()
                        .is_some_and(|b| b.contains("Approve card payment"))
            })
            .count()
    }

    /// The terminal gives up on authorisation `id`.
    async fn void(&self, id: &str) {
        let voided = self
            .app
            .post(
                &format!("/v1/card-present/authorisations/{id}/void"),
                Some(&self.terminal),
                json!({}),
            )
            .await;
        assert_eq!(voided.status, StatusCode::OK, "{voided:?}");
    }

    /// The decline reason of authorisation `id` in the holder's own list.
    async fn reason_for_holder(&self, id: &str) -> Value {
        let list = self
            .app
            .get("/v1/card-present/authorisations", Some(&self.holder))
            .await;
        list.body
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["authorisation_id"] == id)
            .map(|a| a["decline_reason"].clone())
            .unwrap_or_else(|| panic!("{id} not in the holder's list: {}", list.body))
    }
}

/// An answer as a terminal could compare two of them: without what differs for every request
/// (its id, amount and times).
fn seen_by_terminal(body: &Value) -> Value {
    let mut body = body.clone();
    let fields = body.as_object_mut().unwrap();
    for per_request in [
        "authorisation_id",
        "amount",
        "confirm_by",
        "created_at",
        "updated_at",
    ] {
        assert!(fields.remove(per_request).is_some(), "{per_request}");
    }
    body
}

fn pair(balance: &str, available: &str) -> (String, String) {
    (balance.to_owned(), available.to_owned())
}

#[tokio::test]
async fn a_terminal_hears_challenge_required_at_once_and_its_retry_is_approved_after_the_phone() {
    let s = shop("+821066600001", "100.00").await;
    let asked = s.authorise("till1-0001", "12.00").await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{asked:?}");
    assert_eq!(asked.body["status"], "challenge_required");
    assert_eq!(asked.body["merchant_name"], "Corner Bakery");
    assert!(asked.body["retry_after_secs"].as_u64().unwrap() > 0);
    // The terminal never learns how to answer the phone's question.
    assert!(asked.body["pending_confirmation"].is_null(), "{asked:?}");
    assert!(asked.body["card"].as_str().unwrap().contains('•'));
    // Nothing is held while the phone is asked.
    assert_eq!(s.prepaid().await, pair("100.00", "100.00"));

    // The phone is asked about this shop and this amount.
    let inbox = s.inbox().await;
    let text = inbox[0]["body"].as_str().unwrap();
    assert!(text.contains("Approve card payment"), "{text}");
    assert!(
        text.contains("12.00 USD") && text.contains("Corner Bakery"),
        "{text}"
    );

    // Asking again before the answer: still waiting, and no second question.
    let again = s.authorise("till1-0001", "12.00").await;
    assert_eq!(again.body["status"], "challenge_required", "{again:?}");
    assert_eq!(s.inbox().await.len(), inbox.len());

    let challenge = s.pending("till1-0001").await;
    let approved = s.answer(&challenge, "approve").await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    assert_eq!(approved.body["purpose"], "card_present");
    assert_eq!(
        approved.body["result"]["authorisation"]["status"],
        "approved"
    );
    assert_eq!(s.prepaid().await, pair("88.00", "88.00"));

    // The retry is approved, with an approval code for the receipt.
    let retry = s.authorise("till1-0001", "12.00").await;
    assert_eq!(retry.status, StatusCode::OK, "{retry:?}");
    assert_eq!(retry.body["status"], "approved");
    assert_eq!(retry.body["approved_by"], "phone");
    let approval_code = retry.body["approval_code"].as_str().unwrap().to_owned();
    assert_eq!(approval_code.len(), 6);
    // The same id for another amount is another payment: refused.
    let reused = s.authorise("till1-0001", "13.00").await;
    assert_eq!(reused.status, StatusCode::CONFLICT, "{reused:?}");
    assert_eq!(reused.code(), "idempotency_key_reused");

    // The capture pays the merchant; capturing again changes nothing.
    for _ in 0..2 {
        let captured = s
            .app
            .post(
                "/v1/card-present/authorisations/till1-0001/capture",
                Some(&s.terminal),
                json!({}),
            )
            .await;
        assert_eq!(captured.status, StatusCode::OK, "{captured:?}");
        assert_eq!(captured.body["status"], "captured");
        assert_eq!(captured.body["captured_amount"], usd("12.00"));
    }
    assert_eq!(s.app.balance(&s.merchant, "withdrawal").await, "12.00");
    assert_eq!(s.prepaid().await, pair("88.00", "88.00"));
    let seen = s
        .app
        .get(
            "/v1/card-present/authorisations/till1-0001",
            Some(&s.terminal),
        )
        .await;
    assert_eq!(seen.body["status"], "captured", "{seen:?}");
    assert_eq!(seen.body["approval_code"], approval_code.as_str());
    // The merchant hears of each step.
    let feed = s.app.get("/v1/events", Some(&s.merchant)).await;
    let kinds: Vec<&str> = feed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"card_present.approved"), "{kinds:?}");
    assert!(kinds.contains(&"card_present.captured"), "{kinds:?}");
    s.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_denial_on_the_phone_declines_and_moves_no_money() {
    let s = shop("+821066600002", "100.00").await;
    assert_eq!(
        s.authorise("t-deny", "40.00").await.status,
        StatusCode::ACCEPTED
    );
    let challenge = s.pending("t-deny").await;
    let denied = s.answer(&challenge, "deny").await;
    assert_eq!(denied.status, StatusCode::OK, "{denied:?}");
    assert_eq!(denied.body["result"]["authorisation"]["status"], "declined");
    assert_eq!(
        denied.body["result"]["authorisation"]["decline_reason"],
        "denied_on_phone"
    );
    let retry = s.authorise("t-deny", "40.00").await;
    assert_eq!(retry.status, StatusCode::OK, "{retry:?}");
    assert_eq!(retry.body["status"], "declined");
    // The terminal hears "not approved"; only the holder sees it was their no.
    assert_eq!(retry.body["decline_reason"], "not_approved");
    assert_eq!(s.reason_for_holder("t-deny").await, "denied_on_phone");
    assert!(retry.body["approval_code"].is_null());
    assert_eq!(s.prepaid().await, pair("100.00", "100.00"));
    // A declined authorisation cannot be captured.
    let capture = s
        .app
        .post(
            "/v1/card-present/authorisations/t-deny/capture",
            Some(&s.terminal),
            json!({}),
        )
        .await;
    assert_eq!(capture.status, StatusCode::CONFLICT, "{capture:?}");
    // The code cannot be used twice.
    let twice = s.answer(&challenge, "approve").await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{twice:?}");
    s.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn an_unanswered_phone_expires_and_the_retry_is_declined() {
    let s = shop("+821066600003", "100.00").await;
    assert_eq!(
        s.authorise("t-late", "25.00").await.status,
        StatusCode::ACCEPTED
    );
    let challenge = s.pending("t-late").await;
    let code = s.app.code_for(s.phone, &challenge).await;
    s.app.clock.advance(Duration::minutes(11));
    let retry = s.authorise("t-late", "25.00").await;
    assert_eq!(retry.status, StatusCode::OK, "{retry:?}");
    assert_eq!(retry.body["status"], "declined");
    assert_eq!(retry.body["decline_reason"], "confirmation_expired");
    // A late answer approves nothing.
    let late = s.app.answer(&challenge, &code, "approve").await;
    assert!(
        late.status == StatusCode::UNPROCESSABLE_ENTITY || late.status == StatusCode::CONFLICT,
        "{late:?}"
    );
    assert_eq!(s.prepaid().await, pair("100.00", "100.00"));
    let seen = s
        .app
        .get("/v1/card-present/authorisations/t-late", Some(&s.terminal))
        .await;
    assert_eq!(seen.body["status"], "declined", "{seen:?}");

    // The same when the phone answers after its deadline without any retry first.
    assert_eq!(
        s.authorise("t-late-2", "25.00").await.status,
        StatusCode::ACCEPTED
    );
    let challenge = s.pending("t-late-2").await;
    let code = s.app.code_for(s.phone, &challenge).await;
    s.app.clock.advance(Duration::minutes(11));
    let late = s.app.answer(&challenge, &code, "approve").await;
    assert_eq!(late.status, StatusCode::UNPROCESSABLE_ENTITY, "{late:?}");
    assert_eq!(late.code(), "challenge_expired");
    let retry = s.authorise("t-late-2", "25.00").await;
    assert_eq!(
        retry.body["decline_reason"], "confirmation_expired",
        "{retry:?}"
    );
    assert_eq!(s.prepaid().await, pair("100.00", "100.00"));
    s.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn an_approval_armed_ahead_approves_one_matching_payment_at_once() {
    let s = shop("+821066600004", "200.00").await;
    let merchants = s
        .app
        .get("/v1/card-present/merchants", Some(&s.holder))
        .await;
    assert!(
        merchants
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["merchant_id"] == s.merchant_id),
        "{merchants:?}"
    );
    let armed = s
        .app
        .post(
            "/v1/card-present/armed-approvals",
            Some(&s.holder),
            json!({"merchant_id": s.merchant_id, "max_amount": usd("50.00"),
                   "valid_for_minutes": 30}),
        )
        .await;
    assert_eq!(armed.status, StatusCode::CREATED, "{armed:?}");
    assert_eq!(armed.body["status"], "awaiting_confirmation");
    let challenge = armed.body["pending_confirmation"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Until confirmed on the phone it approves nothing.
    assert_eq!(
        s.authorise("t-early", "10.00").await.status,
        StatusCode::ACCEPTED
    );
    s.void("t-early").await;
    let confirmed = s.answer(&challenge, "approve").await;
    assert_eq!(confirmed.status, StatusCode::OK, "{confirmed:?}");
    assert_eq!(
        confirmed.body["result"]["armed_approval"]["status"],
        "armed"
    );

    // Above the ceiling: the phone is asked as usual.
    let above = s.authorise("t-above", "50.01").await;
    assert_eq!(above.body["status"], "challenge_required", "{above:?}");
    s.void("t-above").await;
    // Another merchant's terminal: asked as usual.
    let (other_id, _) = s.app.supplier(&s.operator, "Other Shop").await;
    let other = terminal_of(&s.app, &s.operator, &other_id, "till 9").await;
    let elsewhere = s.authorise_at(&other, "o-1", &s.card, "20.00").await;
    assert_eq!(
        elsewhere.body["status"], "challenge_required",
        "{elsewhere:?}"
    );
    let given_up = s
        .app
        .post(
            "/v1/card-present/authorisations/o-1/void",
            Some(&other),
            json!({}),
        )
        .await;
    assert_eq!(given_up.status, StatusCode::OK, "{given_up:?}");

    // Within ceiling, merchant and window: approved at once, no phone question.
    let questions = s.inbox().await.len();
    let now = s.authorise("t-armed", "42.50").await;
    assert_eq!(now.status, StatusCode::OK, "{now:?}");
    assert_eq!(now.body["status"], "approved");
    assert_eq!(now.body["approved_by"], "armed_approval");
    assert_eq!(s.prepaid().await, pair("157.50", "157.50"));
    let sent = s.inbox().await;
    assert_eq!(sent.len(), questions + 1, "only the approval notice");
    assert!(sent[0]["challenge_id"].is_null());
    assert!(sent[0]["body"].as_str().unwrap().contains("approved"));

    // Used once: the next payment asks the phone again.
    let next = s.authorise("t-next", "5.00").await;
    assert_eq!(next.body["status"], "challenge_required", "{next:?}");
    let list = s
        .app
        .get("/v1/card-present/armed-approvals", Some(&s.holder))
        .await;
    assert_eq!(list.body[0]["status"], "used", "{list:?}");
    assert_eq!(list.body[0]["used_by"], "t-armed");

    // An armed approval whose window passed approves nothing; one cancelled neither.
    let short = s
        .app
        .post(
            "/v1/card-present/armed-approvals",
            Some(&s.holder),
            json!({"merchant_id": s.merchant_id, "max_amount": usd("50.00"),
                   "valid_for_minutes": 5}),
        )
        .await;
    let id = short.body["id"].as_str().unwrap().to_owned();
    let c = short.body["pending_confirmation"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.answer(&c, "approve").await.status, StatusCode::OK);
    // (Past the card's request window too: five new ids were asked above.)
    s.app
        .clock
        .advance(Duration::minutes(REQUEST_WINDOW_MINUTES + 1));
    let after = s.authorise("t-after", "5.00").await;
    assert_eq!(after.body["status"], "challenge_required", "{after:?}");
    let cancelled = s
        .app
        .post(
            &format!("/v1/card-present/armed-approvals/{id}/cancel"),
            Some(&s.holder),
            json!({}),
        )
        .await;
    assert_eq!(
        cancelled.status,
        StatusCode::CONFLICT,
        "expired, not cancellable: {cancelled:?}"
    );
    let third = s
        .app
        .post(
            "/v1/card-present/armed-approvals",
            Some(&s.holder),
            json!({"merchant_id": s.merchant_id, "max_amount": usd("50.00"),
                   "valid_for_minutes": 60}),
        )
        .await;
    let id = third.body["id"].as_str().unwrap().to_owned();
    let c = third.body["pending_confirmation"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.answer(&c, "approve").await.status, StatusCode::OK);
    let cancelled = s
        .app
        .post(
            &format!("/v1/card-present/armed-approvals/{id}/cancel"),
            Some(&s.holder),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    assert_eq!(cancelled.body["status"], "cancelled");
    let after = s.authorise("t-cancelled", "5.00").await;
    assert_eq!(after.body["status"], "challenge_required", "{after:?}");

    // Bad windows are refused.
    for body in [
        json!({"merchant_id": s.merchant_id, "max_amount": usd("5.00"), "valid_for_minutes": 0}),
        json!({"merchant_id": s.merchant_id, "max_amount": usd("5.00"), "valid_for_minutes": 1441}),
        json!({"merchant_id": s.merchant_id, "max_amount": usd("0.00"), "valid_for_minutes": 5}),
    ] {
        let refused = s
            .app
            .post(
                "/v1/card-present/armed-approvals",
                Some(&s.holder),
                body.clone(),
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{body}: {refused:?}"
        );
    }
    let unknown = s
        .app
        .post(
            "/v1/card-present/armed-approvals",
            Some(&s.holder),
            json!({"merchant_id": uuid::Uuid::now_v7(), "max_amount": usd("5.00"),
                   "valid_for_minutes": 5}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{unknown:?}");
    s.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_lost_card_used_by_someone_else_is_declined_without_money_moving() {
    let s = shop("+821066600005", "100.00").await;
    // Someone else holds the card before it is reported: the holder's phone says no.
    assert_eq!(
        s.authorise("thief-1", "80.00").await.status,
        StatusCode::ACCEPTED
    );
    let challenge = s.pending("thief-1").await;
    assert_eq!(s.answer(&challenge, "deny").await.status, StatusCode::OK);
    assert_eq!(
        s.authorise("thief-1", "80.00").await.body["status"],
        "declined"
    );

    // Reported lost: declined at once, no question to the phone, and the holder is told.
    let blocked = s
        .app
        .post(
            &format!("/v1/me/cards/{}/block", s.card),
            Some(&s.holder),
            json!({}),
        )
        .await;
    assert_eq!(blocked.status, StatusCode::OK, "{blocked:?}");
    let questions = s.inbox().await.len();
    let refused = s.authorise("thief-2", "80.00").await;
    assert_eq!(refused.status, StatusCode::OK, "{refused:?}");
    assert_eq!(refused.body["status"], "declined");
    // The till learns only that the card cannot pay, as for a number never issued.
    assert_eq!(refused.body["decline_reason"], "card_declined");
    let inbox = s.inbox().await;
    assert_eq!(inbox.len(), questions + 1);
    assert!(inbox[0]["challenge_id"].is_null());
    assert!(inbox[0]["body"].as_str().unwrap().contains("blocked card"));
    assert_eq!(s.prepaid().await, pair("100.00", "100.00"));

    // A card blocked while its phone is asked cannot be approved any more.
    let s = shop("+821066600015", "100.00").await;
    assert_eq!(
        s.authorise("race-1", "30.00").await.status,
        StatusCode::ACCEPTED
    );
    let challenge = s.pending("race-1").await;
    s.app
        .post(
            &format!("/v1/me/cards/{}/block", s.card),
            Some(&s.holder),
            json!({}),
        )
        .await;
    let answered = s.answer(&challenge, "approve").await;
    assert_eq!(answered.status, StatusCode::FORBIDDEN, "{answered:?}");
    assert_eq!(answered.code(), "card_not_active");
    let retry = s.authorise("race-1", "30.00").await;
    assert_eq!(retry.body["decline_reason"], "card_declined", "{retry:?}");
    assert_eq!(s.prepaid().await, pair("100.00", "100.00"));

    // An unknown number is declined without asking anyone.
    let never_issued = CardNumber::generate("9000", AgeClass::Adult, PurchaseType::Personal)
        .unwrap()
        .to_string();
    let unknown = s
        .authorise_at(&s.terminal, "u-1", &never_issued, "5.00")
        .await;
    assert_eq!(unknown.status, StatusCode::OK, "{unknown:?}");
    assert_eq!(
        unknown.body["decline_reason"], "card_declined",
        "a till cannot tell an unknown number from a blocked card: {unknown:?}"
    );
    s.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn an_approval_never_captured_returns_its_hold_and_a_void_returns_it_at_once() {
    let s = shop("+821066600006", "100.00").await;
    assert_eq!(
        s.authorise("t-keep", "30.00").await.status,
        StatusCode::ACCEPTED
    );
    let challenge = s.pending("t-keep").await;
    assert_eq!(s.answer(&challenge, "approve").await.status, StatusCode::OK);
    assert_eq!(s.prepaid().await, pair("70.00", "70.00"));
    let approved = s.authorise("t-keep", "30.00").await;
    assert!(approved.body["valid_until"].is_string(), "{approved:?}");
    s.app.clock.advance(Duration::hours(49));
    assert!(s.app.fire_timers().await >= 1);
    assert_eq!(s.prepaid().await, pair("100.00", "100.00"));
    let expired = s
        .app
        .get("/v1/card-present/authorisations/t-keep", Some(&s.terminal))
        .await;
    assert_eq!(expired.body["status"], "expired", "{expired:?}");
    let capture = s
        .app
        .post(
            "/v1/card-present/authorisations/t-keep/capture",
            Some(&s.terminal),
            json!({}),
        )
        .await;
    assert_eq!(capture.status, StatusCode::CONFLICT, "{capture:?}");

    // Voided by the terminal: returned at once; voiding again changes nothing.
    assert_eq!(
        s.authorise("t-void", "20.00").await.status,
        StatusCode::ACCEPTED
    );
    let challenge = s.pending("t-void").await;
    assert_eq!(s.answer(&challenge, "approve").await.status, StatusCode::OK);
    assert_eq!(s.prepaid().await, pair("80.00", "80.00"));
    for _ in 0..2 {
        let voided = s
            .app
            .post(
                "/v1/card-present/authorisations/t-void/void",
                Some(&s.terminal),
                json!({}),
            )
            .await;
        assert_eq!(voided.status, StatusCode::OK, "{voided:?}");
        assert_eq!(voided.body["status"], "voided");
    }
    assert_eq!(s.prepaid().await, pair("100.00", "100.00"));

    // A terminal that gives up while the phone is asked withdraws the question.
    assert_eq!(
        s.authorise("t-abandon", "20.00").await.status,
        StatusCode::ACCEPTED
    );
    let challenge = s.pending("t-abandon").await;
    let voided = s
        .app
        .post(
            "/v1/card-present/authorisations/t-abandon/void",
            Some(&s.terminal),
            json!({}),
        )
        .await;
    assert_eq!(voided.body["status"], "voided", "{voided:?}");
    let answered = s.answer(&challenge, "approve").await;
    assert_eq!(answered.status, StatusCode::CONFLICT, "{answered:?}");
    assert_eq!(s.prepaid().await, pair("100.00", "100.00"));

    // A partial capture pays the merchant that much and returns the rest.
    assert_eq!(
        s.authorise("t-part", "50.00").await.status,
        StatusCode::ACCEPTED
    );
    let challenge = s.pending("t-part").await;
    assert_eq!(s.answer(&challenge, "approve").await.status, StatusCode::OK);
    let over = s
        .app
        .post(
            "/v1/card-present/authorisations/t-part/capture",
            Some(&s.terminal),
            json!({"amount": usd("50.01")}),
        )
        .await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST, "{over:?}");
    let part = s
        .app
        .post(
            "/v1/card-present/authorisations/t-part/capture",
            Some(&s.terminal),
            json!({"amount": usd("35.00")}),
        )
        .await;
    assert_eq!(part.status, StatusCode::OK, "{part:?}");
    assert_eq!(s.prepaid().await, pair("65.00", "65.00"));
    assert_eq!(s.app.balance(&s.merchant, "withdrawal").await, "35.00");
    s.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_card_credit_line_is_reserved_at_approval_and_the_card_fee_taken_at_capture() {
    let s = shop("+821066600007", "1.00").await;
    let desk = s
        .app
        .institution(
            &s.operator,
            "2601",
            "card_company",
            json!({"display_name": "Daehan Card", "card_fee_rate": "0.02"}),
        )
        .await;
    let phone = "+821066600017";
    let issued = s
        .app
        .issue_card(
            &desk,
            card_request(
                "ec_credit_line_card",
                phone,
                json!({"credit_limit": usd("300.00")}),
            ),
        )
        .await;
    let card = issued["card"]["card_number"].as_str().unwrap().to_owned();
    let holder = s.app.card_login(&card, phone).await;
    let line = || async {
        let accounts = s.app.get("/v1/accounts", Some(&holder)).await;
        let account = accounts.body.as_array().unwrap()[0].clone();
        (
            account["balance"].as_str().unwrap().to_owned(),
            account["available"]["amount"].as_str().unwrap().to_owned(),
        )
    };
    let asked = s.authorise_at(&s.terminal, "c-1", &card, "100.00").await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{asked:?}");
    let list = s
        .app
        .get("/v1/card-present/authorisations", Some(&holder))
        .await;
    let challenge = list.body[0]["pending_confirmation"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = s.app.code_for(phone, &challenge).await;
    assert_eq!(
        s.app.answer(&challenge, &code, "approve").await.status,
        StatusCode::OK
    );
    assert_eq!(line().await, pair("0.00", "200.00"));
    let captured = s
        .app
        .post(
            "/v1/card-present/authorisations/c-1/capture",
            Some(&s.terminal),
            json!({}),
        )
        .await;
    assert_eq!(captured.status, StatusCode::OK, "{captured:?}");
    assert_eq!(line().await, pair("-100.00", "200.00"));
    assert_eq!(s.app.balance(&s.merchant, "withdrawal").await, "98.00");
    s.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn terminals_and_their_requests_are_checked() {
    let s = shop("+821066600008", "100.00").await;
    // Only a terminal authorises; a shopper cannot.
    let shopper = s.authorise_at(&s.holder, "x-1", &s.card, "1.00").await;
    assert_eq!(shopper.status, StatusCode::FORBIDDEN, "{shopper:?}");
    for (id, amount, code) in [
        ("has space", "1.00", "invalid_request"),
        ("", "1.00", "text_empty"),
        ("ok-1", "0.00", "invalid_request"),
    ] {
        let reply = s.authorise(id, amount).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{id}: {reply:?}");
        assert_eq!(reply.code(), code);
    }
    let typo = s
        .app
        .post(
            "/v1/card-present/authorisations",
            Some(&s.terminal),
            json!({"authorisation_id": "t-typo", "card_number": "1234-5678-9012-3456",
                   "amount": usd("1.00")}),
        )
        .await;
    assert_eq!(typo.code(), "invalid_json", "{typo:?}");
    // A supplier registers terminals for itself only; a terminal's ids are its own.
    let (_, other) = s.app.supplier(&s.operator, "Elsewhere").await;
    let foreign = s
        .app
        .post(
            "/v1/card-present/terminals",
            Some(&other),
            json!({"merchant_id": s.merchant_id, "label": "x", "username": "x-till",
                   "password": STAFF_PASSWORD}),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN, "{foreign:?}");
    let own = s
        .app
        .post(
            "/v1/card-present/terminals",
            Some(&s.merchant),
            json!({"label": "till 2", "username": "bakery-till-2", "password": STAFF_PASSWORD}),
        )
        .await;
    assert_eq!(own.status, StatusCode::CREATED, "{own:?}");
    let till2 = s.app.password_login("bakery-till-2", STAFF_PASSWORD).await;
    assert_eq!(
        s.authorise("shared-id", "1.00").await.status,
        StatusCode::ACCEPTED
    );
    let theirs = s.authorise_at(&till2, "shared-id", &s.card, "2.00").await;
    assert_eq!(
        theirs.status,
        StatusCode::ACCEPTED,
        "another terminal's id space: {theirs:?}"
    );
    let missing = s
        .app
        .get("/v1/card-present/authorisations/nope", Some(&till2))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{missing:?}");
    let no_capture = s
        .app
        .request(
            Method::POST,
            "/v1/card-present/authorisations/shared-id/capture",
            Some(&till2),
            None,
            &[],
        )
        .await;
    assert_eq!(no_capture.status, StatusCode::CONFLICT, "{no_capture:?}");
    s.app.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_make_one_payment_per_id_and_use_an_armed_approval_once() {
    let s = Arc::new(shop("+821066600009", "200.00").await);
    let armed = s
        .app
        .post(
            "/v1/card-present/armed-approvals",
            Some(&s.holder),
            json!({"merchant_id": s.merchant_id, "max_amount": usd("50.00"),
                   "valid_for_minutes": 30}),
        )
        .await;
    let challenge = armed.body["pending_confirmation"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.answer(&challenge, "approve").await.status, StatusCode::OK);
    // Each request a task of its own, so they run side by side on the runtime's threads.
    let asks: Vec<_> = ["race-a", "race-a", "race-b", "race-b"]
        .into_iter()
        .map(|id| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.authorise(id, "40.00").await })
        })
        .collect();
    let mut replies = Vec::new();
    for ask in asks {
        replies.push(ask.await.unwrap());
    }
    let [a1, a2, b1, b2] = <[Reply; 4]>::try_from(replies).unwrap();
    for reply in [&a1, &a2, &b1, &b2] {
        assert!(
            reply.status == StatusCode::OK || reply.status == StatusCode::ACCEPTED,
            "{reply:?}"
        );
    }
    assert_eq!(a1.body["status"], a2.body["status"], "one id, one outcome");
    assert_eq!(b1.body["status"], b2.body["status"], "one id, one outcome");
    let approved = [&a1, &b1]
        .iter()
        .filter(|r| r.body["status"] == "approved")
        .count();
    assert_eq!(
        approved, 1,
        "the armed approval is used once: {a1:?} {b1:?}"
    );
    assert_eq!(s.prepaid().await, pair("160.00", "160.00"));
    s.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_terminal_trying_amounts_learns_nothing_of_the_balance() {
    let s = shop("+821066600010", "100.00").await;
    // Just within and just over the balance: the same answer, and the phone is asked for both.
    let within = s.authorise("probe-within", "100.00").await;
    let over = s.authorise("probe-over", "100.01").await;
    assert_eq!(within.status, StatusCode::ACCEPTED, "{within:?}");
    assert_eq!(over.status, within.status, "{over:?}");
    let asked = seen_by_terminal(&within.body);
    assert_eq!(seen_by_terminal(&over.body), asked);
    assert_eq!(s.questions().await, 2);

    // The holder approves the one over the balance: the money is not there, so it is declined,
    // and only the holder is told why.
    let challenge = s.pending("probe-over").await;
    let approved = s.answer(&challenge, "approve").await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    let outcome = &approved.body["result"]["authorisation"];
    assert_eq!(outcome["status"], "declined", "{approved:?}");
    assert_eq!(outcome["decline_reason"], "insufficient_funds");
    let told = s.inbox().await;
    assert!(told[0]["challenge_id"].is_null());
    let text = told[0]["body"].as_str().unwrap();
    assert!(
        text.contains("not enough money") && text.contains("100.01 USD"),
        "{text}"
    );
    // The holder says no to the one within it.
    let challenge = s.pending("probe-within").await;
    assert_eq!(s.answer(&challenge, "deny").await.status, StatusCode::OK);

    // The terminal's retries: both declined, for the same reason, in the same shape.
    let over = s.authorise("probe-over", "100.01").await;
    let within = s.authorise("probe-within", "100.00").await;
    assert_eq!(over.status, StatusCode::OK, "{over:?}");
    assert_eq!(within.status, StatusCode::OK, "{within:?}");
    assert_eq!(over.body["status"], "declined");
    assert_eq!(over.body["decline_reason"], "not_approved");
    assert_eq!(seen_by_terminal(&over.body), seen_by_terminal(&within.body));
    // Nor do the terminal's views or the merchant's events tell them apart.
    for path in [
        "/v1/card-present/authorisations",
        "/v1/card-present/authorisations/probe-over",
        "/v1/card-present/authorisations/probe-within",
    ] {
        let seen = s.app.get(path, Some(&s.terminal)).await;
        assert_eq!(seen.status, StatusCode::OK, "{seen:?}");
        let text = seen.body.to_string();
        assert!(
            !text.contains("insufficient_funds") && !text.contains("denied_on_phone"),
            "{path}: {text}"
        );
    }
    let feed = s.app.get("/v1/events", Some(&s.merchant)).await;
    let declined: Vec<&Value> = feed
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "card_present.declined")
        .collect();
    assert_eq!(declined.len(), 2, "{feed:?}");
    let feed_text = feed.body.to_string();
    assert!(
        feed_text.contains("not_approved")
            && !feed_text.contains("insufficient_funds")
            && !feed_text.contains("denied_on_phone"),
        "{feed_text}"
    );
    // The holder's own list says which was which.
    assert_eq!(
        s.reason_for_holder("probe-over").await,
        "insufficient_funds"
    );
    assert_eq!(s.reason_for_holder("probe-within").await, "denied_on_phone");
    assert_eq!(s.prepaid().await, pair("100.00", "100.00"));

    // An armed approval gives nothing away either: over the balance, the phone is asked as
    // without one, and the approval stays armed for a payment the money covers.
    let armed = s
        .app
        .post(
            "/v1/card-present/armed-approvals",
            Some(&s.holder),
            json!({"merchant_id": s.merchant_id, "max_amount": usd("150.00"),
                   "valid_for_minutes": 30}),
        )
        .await;
    let challenge = armed.body["pending_confirmation"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(s.answer(&challenge, "approve").await.status, StatusCode::OK);
    let questions = s.questions().await;
    let armed_over = s.authorise("armed-over", "120.00").await;
    assert_eq!(armed_over.status, StatusCode::ACCEPTED, "{armed_over:?}");
    assert_eq!(seen_by_terminal(&armed_over.body), asked);
    assert_eq!(s.questions().await, questions + 1);
    let list = s
        .app
        .get("/v1/card-present/armed-approvals", Some(&s.holder))
        .await;
    assert_eq!(list.body[0]["status"], "armed", "{list:?}");
    s.void("armed-over").await;
    let covered = s.authorise("armed-within", "80.00").await;
    assert_eq!(covered.status, StatusCode::OK, "{covered:?}");
    assert_eq!(covered.body["approved_by"], "armed_approval");
    assert_eq!(s.prepaid().await, pair("20.00", "20.00"));
    s.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_card_is_asked_a_few_questions_at_a_time_and_a_few_per_window() {
    let s = shop("+821066600011", "100.00").await;
    let open = usize::try_from(MAX_OPEN_CONFIRMATIONS_PER_CARD).unwrap();
    let per_window = usize::try_from(MAX_REQUESTS_PER_CARD_PER_WINDOW).unwrap();
    assert!(open < per_window);

    // Open questions up to the cap; one more is refused, recorded nowhere, texted to no one.
    for i in 0..open {
        let asked = s.authorise(&format!("q-{i}"), "5.00").await;
        assert_eq!(asked.status, StatusCode::ACCEPTED, "{asked:?}");
    }
    let refused = s.authorise("q-extra", "5.00").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
    assert_eq!(refused.code(), "too_many_attempts");
    assert_eq!(s.questions().await, open);
    let nothing = s
        .app
        .get("/v1/card-present/authorisations/q-extra", Some(&s.terminal))
        .await;
    assert_eq!(nothing.status, StatusCode::NOT_FOUND, "{nothing:?}");
    // A retry is no new request; another card is not held back.
    let retry = s.authorise("q-0", "5.00").await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{retry:?}");
    let (_, other_card) = s
        .app
        .prepaid_card(&s.operator, "+821066600021", "10.00")
        .await;
    let other = s
        .authorise_at(&s.terminal, "other-1", &other_card, "5.00")
        .await;
    assert_eq!(other.status, StatusCode::ACCEPTED, "{other:?}");
    // Once the holder answered one, the same id may ask again.
    let challenge = s.pending("q-0").await;
    assert_eq!(s.answer(&challenge, "deny").await.status, StatusCode::OK);
    let later = s.authorise("q-extra", "5.00").await;
    assert_eq!(later.status, StatusCode::ACCEPTED, "{later:?}");

    // New ids per window: with no question open, still refused once the window's are used up.
    s.void("q-1").await;
    s.void("q-extra").await;
    for i in (open + 1)..per_window {
        let id = format!("w-{i}");
        let asked = s.authorise(&id, "5.00").await;
        assert_eq!(asked.status, StatusCode::ACCEPTED, "{asked:?}");
        s.void(&id).await;
    }
    let questions = s.questions().await;
    assert_eq!(questions, per_window);
    let refused = s.authorise("w-extra", "5.00").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
    assert_eq!(refused.code(), "too_many_attempts");
    assert_eq!(s.questions().await, questions);
    // The window passes: asked again.
    s.app
        .clock
        .advance(Duration::minutes(REQUEST_WINDOW_MINUTES) + Duration::seconds(1));
    let asked = s.authorise("w-extra", "5.00").await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{asked:?}");

    // A blocked card's holder is told of each attempt, but only so often.
    let phone = "+821066600031";
    let (_, lost) = s.app.prepaid_card(&s.operator, phone, "10.00").await;
    let holder = s.app.card_login(&lost, phone).await;
    let blocked = s
        .app
        .post(
            &format!("/v1/me/cards/{lost}/block"),
            Some(&holder),
            json!({}),
        )
        .await;
    assert_eq!(blocked.status, StatusCode::OK, "{blocked:?}");
    let before = s.app.messages(phone).await.len();
    for i in 0..per_window {
        let declined = s
            .authorise_at(&s.terminal, &format!("lost-{i}"), &lost, "5.00")
            .await;
        assert_eq!(
            declined.body["decline_reason"], "card_declined",
            "{declined:?}"
        );
    }
    let refused = s
        .authorise_at(&s.terminal, "lost-extra", &lost, "5.00")
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
    assert_eq!(s.app.messages(phone).await.len(), before + per_window);
    assert_eq!(s.prepaid().await, pair("100.00", "100.00"));
    s.app.assert_ledger_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_new_requests_on_one_card_asks_the_phone_no_more_than_the_cap() {
    let s = Arc::new(shop("+821066600012", "100.00").await);
    let burst = 8;
    let asks: Vec<_> = (0..burst)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.authorise(&format!("burst-{i}"), "1.00").await })
        })
        .collect();
    let mut statuses = Vec::new();
    for ask in asks {
        let reply = ask.await.unwrap();
        assert!(
            reply.status == StatusCode::ACCEPTED
                || (reply.status == StatusCode::TOO_MANY_REQUESTS
                    && reply.code() == "too_many_attempts"),
            "{reply:?}"
        );
        statuses.push(reply.status);
    }
    let open = usize::try_from(MAX_OPEN_CONFIRMATIONS_PER_CARD).unwrap();
    let asked = statuses
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    assert_eq!(asked, open, "{statuses:?}");
    assert_eq!(s.questions().await, open);
    let listed = s
        .app
        .get("/v1/card-present/authorisations", Some(&s.terminal))
        .await;
    assert_eq!(listed.body.as_array().unwrap().len(), open, "{listed:?}");
    s.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_malformed_authorisation_id_in_the_path_is_simply_not_found() {
    let s = shop("+821055509901", "50.00").await;
    for path in [
        "/v1/card-present/authorisations/till%001",
        "/v1/card-present/authorisations/has%20space",
    ] {
        let read = s.app.get(path, Some(&s.terminal)).await;
        assert_eq!(read.status, StatusCode::NOT_FOUND, "{path}: {read:?}");
        let void = s
            .app
            .post(&format!("{path}/void"), Some(&s.terminal), json!({}))
            .await;
        assert_eq!(void.status, StatusCode::NOT_FOUND, "{path}: {void:?}");
    }
}
