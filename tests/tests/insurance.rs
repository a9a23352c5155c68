//! The insurance vertical through the API: a purchase confirmed on the phone, the insurer's
//! recheck and policy number, the certificate delivered against the signed application, the
//! insurer's settlement; the monthly cycle with a failed collection through grace to lapse (and
//! one paid during grace); free-look cancellation returning exactly what was paid; and the
//! refusals with their codes. The clock is manual: months pass in milliseconds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Duration, Months, TimeZone, Utc};
use holdfast_core::cards::CardNumber;
use holdfast_tests::world::{card_request, party_id};
use holdfast_tests::{Reply, STAFF_PASSWORD, TestApp, usd};
use serde_json::{Value, json};
use std::str::FromStr;
use std::sync::Arc;

/// An insurer, its service company and an operator, each logged in.
struct World {
    app: TestApp,
    operator: String,
    insurer_id: String,
    insurer: String,
    service_id: String,
    service: String,
}

async fn world() -> World {
    world_with(TestApp::spawn().await).await
}

/// A world whose clock starts at `start`, for tests about the calendar.
async fn world_at(start: DateTime<Utc>) -> World {
    world_with(TestApp::spawn_at(start).await).await
}

async fn world_with(app: TestApp) -> World {
    let operator = app.operator_token().await;
    let (created, insurer) = app
        .onboard_staff(
            &operator,
            "/v1/insurance/insurers",
            "ins",
            json!({"display_name": "Hanil Life", "commission_rate": "0.05"}),
        )
        .await;
    assert_eq!(created["role"], "insurer");
    let (service_id, service) = app.distributor(&operator, "Seoul Policy Couriers").await;
    World {
        insurer_id: party_id(&created),
        app,
        operator,
        insurer,
        service_id,
        service,
    }
}

impl World {
    /// A product of 30.00 USD a month for 12 months unless `changes` says otherwise.
    async fn product(&self, changes: Value) -> String {
        let mut body = json!({"name": "Term life", "coverage": "Death of the insured, any cause",
            "coverage_amount": usd("100000.00"), "premium": usd("30.00"), "term_months": 12,
            "payment_plan": "monthly", "service_company_id": self.service_id});
        for (key, value) in changes.as_object().unwrap() {
            body[key] = value.clone();
        }
        let reply = self
            .app
            .post("/v1/insurance/products", Some(&self.insurer), body)
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        reply.body["id"].as_str().unwrap().to_owned()
    }

    async fn buy(&self, shopper: &str, product: &str) -> Reply {
        self.app
            .post_idempotent(
                "/v1/insurance/policies",
                Some(shopper),
                json!({"product_id": product}),
            )
            .await
    }

    /// Buys `product` and approves it on `phone`; returns the policy id.
    async fn buy_and_approve(&self, shopper: &str, phone: &str, product: &str) -> String {
        let bought = self.buy(shopper, product).await;
        assert_eq!(bought.status, StatusCode::CREATED, "{bought:?}");
        assert_eq!(bought.body["state"], "awaiting_confirmation");
        let challenge = bought.body["pending_confirmation"]["challenge_id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(bought.body["pending_confirmation"]["purpose"], "policy");
        let code = self.app.code_for(phone, &challenge).await;
        let answered = self.app.answer(&challenge, &code, "approve").await;
        assert_eq!(answered.status, StatusCode::OK, "{answered:?}");
        assert_eq!(answered.body["outcome"], "order_approved");
        bought.body["policy_id"].as_str().unwrap().to_owned()
    }

    async fn recheck(&self, policy: &str, decision: Value) -> Reply {
        self.app
            .post(
                &format!("/v1/insurance/policies/{policy}/recheck"),
                Some(&self.insurer),
                decision,
            )
            .await
    }

    /// The insurer issues the policy; returns its number.
    async fn issue(&self, policy: &str) -> String {
        let issued = self.recheck(policy, json!({"decision": "issue"})).await;
        assert_eq!(issued.status, StatusCode::OK, "{issued:?}");
        assert_eq!(issued.body["state"], "in_force");
        assert_eq!(issued.body["certificate_status"], "awaiting_pickup");
        issued.body["policy_number"].as_str().unwrap().to_owned()
    }

    /// The service company fetches the certificate, delivers it and records the signed
    /// application with the number the holder handed over.
    async fn deliver_documents(&self, number: &str) {
        let received = self
            .app
            .post(
                &format!("/v1/insurance/certificates/{number}/received"),
                Some(&self.service),
                json!({}),
            )
            .await;
        assert_eq!(received.status, StatusCode::OK, "{received:?}");
        assert_eq!(received.body["certificate_status"], "with_service_company");
        let delivered = self
            .app
            .post(
                &format!("/v1/insurance/certificates/{number}/delivery"),
                Some(&self.service),
                json!({"order_number": number, "application_reference": "APP-2026-0001"}),
            )
            .await;
        assert_eq!(delivered.status, StatusCode::OK, "{delivered:?}");
        assert_eq!(delivered.body["certificate_status"], "delivered");
    }

    async fn policy(&self, token: &str, policy: &str) -> Value {
        let reply = self
            .app
            .get(&format!("/v1/insurance/policies/{policy}"), Some(token))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.body
    }

    async fn request_settlement(&self, number: &str) -> Reply {
        self.app
            .request(
                Method::POST,
                &format!("/v1/insurance/policies/{number}/settlement-request"),
                Some(&self.insurer),
                None,
                &[],
            )
            .await
    }

    /// The holder answers the pending settlement confirmation of `installment`.
    async fn answer_settlement(
        &self,
        shopper: &str,
        phone: &str,
        number: &str,
        installment: i64,
        decision: &str,
    ) -> Reply {
        let policy = self.policy(shopper, number).await;
        let premium = policy["premiums"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["installment"] == installment)
            .unwrap()
            .clone();
        let challenge = premium["pending_confirmation"]["challenge_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no pending settlement: {premium}"))
            .to_owned();
        let code = self.app.code_for(phone, &challenge).await;
        self.app.answer(&challenge, &code, decision).await
    }

    /// The insurer's withdrawal balance.
    async fn insurer_balance(&self) -> String {
        self.app.balance(&self.insurer, "withdrawal").await
    }
}

/// The newest text the phone received.
async fn last_text(app: &TestApp, phone: &str) -> String {
    app.deliver().await;
    let inbox = app.inbox(phone, "limit=1").await;
    inbox.body[0]["body"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A holder with a card issued by a new institution on `mapping` (`bank_account` with a
/// deposit, or `ec_credit_line_card` with a limit), logged in; returns its token.
async fn holder_at_institution(
    app: &TestApp,
    operator: &str,
    kind: &str,
    code: &str,
    mapping: &str,
    terms: Value,
    phone: &str,
) -> String {
    issued_card(app, operator, kind, code, mapping, terms, phone)
        .await
        .holder
}

/// A card issued by a new institution, with its holder and the institution's staff logged in.
struct IssuedCard {
    holder: String,
    desk: String,
    card: String,
}

async fn issued_card(
    app: &TestApp,
    operator: &str,
    kind: &str,
    code: &str,
    mapping: &str,
    terms: Value,
    phone: &str,
) -> IssuedCard {
    let desk = app.institution(operator, code, kind, json!({})).await;
    let issued = app
        .issue_card(&desk, card_request(mapping, phone, terms))
        .await;
    let card = issued["card"]["card_number"].as_str().unwrap().to_owned();
    IssuedCard {
        holder: app.card_login(&card, phone).await,
        desk: desk.token,
        card,
    }
}

#[tokio::test]
async fn a_policy_goes_from_purchase_through_recheck_and_documents_to_settlement() {
    let w = world().await;
    let phone = "+821055500001";
    let (_, shopper) = w.app.shopper(&w.operator, phone, "500.00").await;
    let product = w.product(json!({})).await;

    // The product list shows it to the holder.
    let listed = w.app.get("/v1/insurance/products", Some(&shopper)).await;
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    assert!(
        listed
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == product.as_str())
    );

    // The purchase holds the first month's premium and asks the phone about product,
    // insurer and premium.
    let bought = w.buy(&shopper, &product).await;
    assert_eq!(bought.status, StatusCode::CREATED, "{bought:?}");
    assert_eq!(bought.body["premium"], usd("30.00"));
    assert_eq!(bought.body["collection"], "automatic_transfer");
    assert!(bought.body["policy_number"].is_null());
    let policy = bought.body["policy_id"].as_str().unwrap().to_owned();
    let challenge = bought.body["pending_confirmation"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = last_text(&w.app, phone).await;
    assert!(text.contains("Buy policy"), "{text}");
    assert!(text.contains("30.00 USD"), "{text}");
    assert!(text.contains("Hanil Life"), "{text}");
    assert!(text.contains("Term life"), "{text}");
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "470.00");

    // The insurer cannot issue before the holder approved.
    let early = w.recheck(&policy, json!({"decision": "issue"})).await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{early:?}");
    assert_eq!(early.code(), "invalid_state");

    let code = w.app.code_for(phone, &challenge).await;
    let answered = w.app.answer(&challenge, &code, "approve").await;
    assert_eq!(answered.status, StatusCode::OK, "{answered:?}");
    assert_eq!(
        w.policy(&shopper, &policy).await["state"],
        "awaiting_recheck"
    );

    // The insurer was told and finds the application among those to recheck.
    let feed = w.app.get("/v1/events", Some(&w.insurer)).await;
    assert!(
        feed.body
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "policy.applied"),
        "{feed:?}"
    );
    let queue = w
        .app
        .get(
            "/v1/insurance/policies?state=awaiting_recheck",
            Some(&w.insurer),
        )
        .await;
    assert_eq!(queue.body.as_array().unwrap().len(), 1, "{queue:?}");

    // The recheck issues the number, sent to the phone.
    let number = w.issue(&policy).await;
    let text = last_text(&w.app, phone).await;
    assert!(text.contains(&number), "{text}");
    let view = w.policy(&shopper, &number).await;
    assert_eq!(view["state"], "in_force");
    assert_eq!(view["installments"], 12);
    assert_eq!(view["installments_collected"], 1);
    assert!(view["next_premium_due_at"].is_string());

    // No settlement before the certificate and the signed application are recorded.
    let refused = w.request_settlement(&number).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    assert_eq!(refused.code(), "documents_missing");

    // The service company sees where to deliver, and never who pays or how.
    let tasks = w
        .app
        .get("/v1/insurance/certificates", Some(&w.service))
        .await;
    assert_eq!(tasks.status, StatusCode::OK, "{tasks:?}");
    let task = tasks.body[0].clone();
    assert_eq!(task["policy_number"], number.as_str());
    assert!(
        task.get("card").is_none() && task.get("premium").is_none(),
        "{task}"
    );
    // A number handed over that is not this policy's (a well-formed one: another policy's) is
    // refused, and so is one that is not a number at all.
    let another = holdfast_core::order_number::OrderNumber::generate().to_string();
    let wrong = w
        .app
        .post(
            &format!("/v1/insurance/certificates/{number}/delivery"),
            Some(&w.service),
            json!({"order_number": another, "application_reference": "APP-1"}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY, "{wrong:?}");
    assert_eq!(wrong.code(), "order_number_mismatch");
    let garbled = w
        .app
        .post(
            &format!("/v1/insurance/certificates/{number}/delivery"),
            Some(&w.service),
            json!({"order_number": "1234-5678-9012", "application_reference": "APP-1"}),
        )
        .await;
    assert_eq!(garbled.status, StatusCode::BAD_REQUEST, "{garbled:?}");
    w.deliver_documents(&number).await;
    let view = w.policy(&shopper, &number).await;
    assert_eq!(view["certificate_status"], "delivered");
    assert_eq!(view["application_reference"], "APP-2026-0001");
    assert!(view["free_look_ends_at"].is_string());

    // The insurer quotes the number; the holder approves on the phone; the premium minus the
    // 5 % commission reaches the insurer.
    let requested = w.request_settlement(&number).await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    assert_eq!(
        requested.body["premiums"][0]["state"],
        "settlement_requested"
    );
    let text = last_text(&w.app, phone).await;
    assert!(text.contains("Release payment"), "{text}");
    assert!(text.contains("delivered"), "{text}");
    let settled = w
        .answer_settlement(&shopper, phone, &number, 1, "approve")
        .await;
    assert_eq!(settled.status, StatusCode::OK, "{settled:?}");
    assert_eq!(settled.body["outcome"], "settled");
    assert_eq!(w.insurer_balance().await, "28.50");
    assert_eq!(w.app.platform_commission(&w.operator).await, "1.50");
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "470.00");
    let view = w.policy(&shopper, &number).await;
    assert_eq!(view["premiums"][0]["state"], "settled");

    // Nothing more to settle; the timeline tells the story.
    let again = w.request_settlement(&number).await;
    assert_eq!(again.code(), "nothing_to_settle", "{again:?}");
    let history = w
        .app
        .get(
            &format!("/v1/insurance/policies/{number}/history"),
            Some(&shopper),
        )
        .await;
    let kinds: Vec<&str> = history
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "applied",
        "confirmed",
        "issued",
        "certificate_received",
        "documents_recorded",
        "premium_settlement_requested",
        "settlement_requested",
        "settled_on_approval",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    // Nobody else sees the policy.
    let (_, stranger) = w.app.shopper(&w.operator, "+821055500009", "1.00").await;
    let hidden = w
        .app
        .get(&format!("/v1/insurance/policies/{number}"), Some(&stranger))
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{hidden:?}");
    w.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_card_credit_line_is_reduced_by_each_monthly_premium_and_a_lump_sum_once() {
    let w = world().await;
    let phone = "+821055500002";
    let shopper = holder_at_institution(
        &w.app,
        &w.operator,
        "card_company",
        "2401",
        "ec_credit_line_card",
        json!({"credit_limit": usd("500.00")}),
        phone,
    )
    .await;
    let monthly = w.product(json!({})).await;
    let policy = w.buy_and_approve(&shopper, phone, &monthly).await;
    assert_eq!(
        w.policy(&shopper, &policy).await["collection"],
        "credit_line_reservation"
    );
    // Reserved, not drawn: the line's available falls, its balance stays.
    assert_eq!(
        w.app.account_of_kind(&shopper, "card_ec_line").await,
        ("0.00".to_owned(), "470.00".to_owned())
    );
    let number = w.issue(&policy).await;

    // A month later the cycle reserves the second premium, under the same consent.
    w.app.clock.advance_months(1);
    assert!(w.app.fire_timers().await >= 1);
    let view = w.policy(&shopper, &number).await;
    assert_eq!(view["installments_collected"], 2);
    assert_eq!(view["premiums"][1]["state"], "frozen");
    assert_eq!(
        w.app.account_of_kind(&shopper, "card_ec_line").await,
        ("0.00".to_owned(), "440.00".to_owned())
    );
    assert!(last_text(&w.app, phone).await.contains("premium 2 of 12"));

    // Settled without an answer when the settlement period ends: drawn on the line.
    w.deliver_documents(&number).await;
    assert_eq!(w.request_settlement(&number).await.status, StatusCode::OK);
    w.app.clock.advance(Duration::hours(73));
    w.app.fire_timers().await;
    let view = w.policy(&shopper, &number).await;
    assert_eq!(view["premiums"][0]["state"], "settled");
    assert_eq!(
        w.app.account_of_kind(&shopper, "card_ec_line").await,
        ("-30.00".to_owned(), "440.00".to_owned())
    );
    assert_eq!(w.insurer_balance().await, "28.50");

    // A lump-sum product reserves its whole premium once, and no cycle follows.
    let lump = w
        .product(
            json!({"name": "Travel", "premium": usd("120.00"), "term_months": 6,
                        "payment_plan": "lump_sum", "grace_days": 7}),
        )
        .await;
    let policy = w.buy_and_approve(&shopper, phone, &lump).await;
    let number = w.issue(&policy).await;
    let view = w.policy(&shopper, &number).await;
    assert_eq!(view["installments"], 1);
    assert!(view["next_premium_due_at"].is_null());
    assert_eq!(
        w.app.account_of_kind(&shopper, "card_ec_line").await,
        ("-30.00".to_owned(), "320.00".to_owned())
    );
    // Its term ends after six months.
    w.app.clock.advance_months(6);
    w.app.fire_timers().await;
    assert_eq!(w.policy(&shopper, &number).await["state"], "matured");
    w.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_failed_collection_starts_grace_with_notice_and_the_policy_lapses_unpaid() {
    let w = world().await;
    let phone = "+821055500003";
    // A bank account with two premiums' worth: the third month cannot be collected.
    let shopper = holder_at_institution(
        &w.app,
        &w.operator,
        "bank",
        "1501",
        "bank_account",
        json!({"initial_deposit": usd("60.00")}),
        phone,
    )
    .await;
    let product = w.product(json!({})).await;
    let policy = w.buy_and_approve(&shopper, phone, &product).await;
    let number = w.issue(&policy).await;
    w.deliver_documents(&number).await;
    // Bank money moves into the freezing account each month.
    assert_eq!(
        w.app.account_of_kind(&shopper, "bank_account").await.0,
        "30.00"
    );
    w.app.clock.advance_months(1);
    w.app.fire_timers().await;
    assert_eq!(
        w.app.account_of_kind(&shopper, "bank_account").await.0,
        "0.00"
    );
    assert_eq!(
        w.policy(&shopper, &number).await["installments_collected"],
        2
    );

    w.app.clock.advance_months(1);
    w.app.fire_timers().await;
    let view = w.policy(&shopper, &number).await;
    assert_eq!(view["state"], "grace", "{view}");
    assert_eq!(view["overdue_installment"], 3);
    assert_eq!(view["installments_collected"], 2);
    let notice = last_text(&w.app, phone).await;
    assert!(notice.contains("could not be collected"), "{notice}");
    assert!(notice.contains("lapses"), "{notice}");
    let grace_ends = view["grace_ends_at"].as_str().unwrap().to_owned();

    // Paying without money is refused; the grace runs on.
    let unpaid = w
        .app
        .post_idempotent(
            &format!("/v1/insurance/policies/{number}/overdue-premium"),
            Some(&shopper),
            json!({}),
        )
        .await;
    assert_eq!(
        unpaid.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{unpaid:?}"
    );
    assert_eq!(unpaid.code(), "insufficient_funds");

    // Thirteen days later the policy still stands; at fourteen it lapses.
    w.app.clock.advance(Duration::days(13));
    w.app.fire_timers().await;
    assert_eq!(w.policy(&shopper, &number).await["state"], "grace");
    w.app
        .clock
        .advance(Duration::days(1) + Duration::minutes(1));
    w.app.fire_timers().await;
    let view = w.policy(&shopper, &number).await;
    assert_eq!(view["state"], "lapsed", "{view}");
    assert!(view["ended_at"].is_string());
    assert!(grace_ends.as_str() <= view["ended_at"].as_str().unwrap());
    assert!(last_text(&w.app, phone).await.contains("has lapsed"));
    let feed = w.app.get("/v1/events", Some(&w.insurer)).await;
    let kinds: Vec<&str> = feed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"premium.failed") && kinds.contains(&"policy.lapsed"),
        "{kinds:?}"
    );

    // No more collections after the lapse; the two premiums held for months of cover can
    // still be settled.
    w.app.clock.advance(Duration::days(60));
    w.app.fire_timers().await;
    assert_eq!(
        w.policy(&shopper, &number).await["installments_collected"],
        2
    );
    assert_eq!(w.request_settlement(&number).await.status, StatusCode::OK);
    let settled = w
        .answer_settlement(&shopper, phone, &number, 1, "approve")
        .await;
    assert_eq!(settled.status, StatusCode::OK, "{settled:?}");
    assert_eq!(w.insurer_balance().await, "28.50");
    // A lapsed policy cannot be cancelled for a refund.
    let late = w
        .app
        .post_idempotent(
            &format!("/v1/insurance/policies/{number}/cancel"),
            Some(&shopper),
            json!({}),
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{late:?}");
    // The insurer never asks for premium 2: ninety days after the lapse it returns to the
    // holder's bank account, and the settled one stays paid.
    w.app.clock.advance(Duration::days(31));
    w.app.fire_timers().await;
    let view = w.policy(&shopper, &number).await;
    assert_eq!(view["premiums"][0]["state"], "settled", "{view}");
    assert_eq!(view["premiums"][1]["state"], "cancelled", "{view}");
    assert_eq!(
        w.app.account_of_kind(&shopper, "bank_account").await.0,
        "30.00"
    );
    assert_eq!(w.insurer_balance().await, "28.50");
    assert!(last_text(&w.app, phone).await.contains("not claimed"));
    w.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn an_overdue_premium_paid_during_grace_keeps_the_policy_in_force() {
    let w = world().await;
    let phone = "+821055500004";
    let (_, shopper) = w.app.shopper(&w.operator, phone, "30.00").await;
    let product = w.product(json!({})).await;
    let policy = w.buy_and_approve(&shopper, phone, &product).await;
    let number = w.issue(&policy).await;
    w.app.clock.advance_months(1);
    w.app.fire_timers().await;
    assert_eq!(w.policy(&shopper, &number).await["state"], "grace");

    // The holder tops up and pays; the cycle goes on from the second premium.
    let accounts = w.app.get("/v1/accounts", Some(&shopper)).await;
    let prepaid = accounts.body[0]["id"].as_str().unwrap().to_owned();
    let topped = w
        .app
        .post_idempotent(
            &format!("/v1/accounts/{prepaid}/deposits"),
            Some(&w.operator),
            json!({"amount": usd("100.00")}),
        )
        .await;
    assert_eq!(topped.status, StatusCode::CREATED, "{topped:?}");
    let paid = w
        .app
        .post_idempotent(
            &format!("/v1/insurance/policies/{number}/overdue-premium"),
            Some(&shopper),
            json!({}),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{paid:?}");
    assert_eq!(paid.body["state"], "in_force");
    assert_eq!(paid.body["installments_collected"], 2);
    assert!(paid.body["grace_ends_at"].is_null());
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "70.00");

    // The grace period's end no longer lapses it; the third premium falls due as planned.
    w.app.clock.advance(Duration::days(15));
    w.app.fire_timers().await;
    assert_eq!(w.policy(&shopper, &number).await["state"], "in_force");
    w.app.clock.advance(Duration::days(16));
    w.app.fire_timers().await;
    let view = w.policy(&shopper, &number).await;
    assert_eq!(view["installments_collected"], 3);
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "40.00");
    // Not in grace any more: nothing overdue to pay.
    let nothing = w
        .app
        .post_idempotent(
            &format!("/v1/insurance/policies/{number}/overdue-premium"),
            Some(&shopper),
            json!({}),
        )
        .await;
    assert_eq!(nothing.status, StatusCode::CONFLICT, "{nothing:?}");
    w.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn free_look_cancellation_returns_exactly_every_premium_paid_or_held() {
    let w = world().await;
    let phone = "+821055500005";
    let (_, shopper) = w.app.shopper(&w.operator, phone, "200.00").await;
    let product = w.product(json!({})).await;
    let policy = w.buy_and_approve(&shopper, phone, &product).await;
    let number = w.issue(&policy).await;
    // The certificate comes late: a second premium is collected first.
    w.app.clock.advance_months(1);
    w.app.fire_timers().await;
    w.app.clock.advance(Duration::days(3));
    w.deliver_documents(&number).await;
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "140.00");

    // The first premium is paid to the insurer; the second is asked for and left pending.
    assert_eq!(w.request_settlement(&number).await.status, StatusCode::OK);
    let settled = w
        .answer_settlement(&shopper, phone, &number, 1, "approve")
        .await;
    assert_eq!(settled.status, StatusCode::OK, "{settled:?}");
    assert_eq!(w.insurer_balance().await, "28.50");
    assert_eq!(w.app.platform_commission(&w.operator).await, "1.50");
    let requested = w.request_settlement(&number).await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    assert_eq!(
        requested.body["premiums"][1]["state"],
        "settlement_requested"
    );

    // Ten days into the free-look period the holder cancels: both premiums come back, to the
    // cent, from the insurer, the platform and the freezing account.
    w.app.clock.advance(Duration::days(10));
    let cancelled = w
        .app
        .post_idempotent(
            &format!("/v1/insurance/policies/{number}/cancel"),
            Some(&shopper),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    assert_eq!(cancelled.body["returned"], usd("60.00"));
    assert_eq!(cancelled.body["policy"]["state"], "cancelled");
    assert_eq!(cancelled.body["policy"]["premiums"][0]["state"], "refunded");
    assert_eq!(
        cancelled.body["policy"]["premiums"][1]["state"],
        "cancelled"
    );
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "200.00");
    assert_eq!(w.insurer_balance().await, "0.00");
    assert_eq!(w.app.platform_commission(&w.operator).await, "0.00");
    assert!(
        last_text(&w.app, phone)
            .await
            .contains("60.00 USD returned")
    );
    // The pending settlement confirmation died with it, and its auto-settlement.
    w.app.clock.advance(Duration::days(5));
    w.app.fire_timers().await;
    assert_eq!(w.insurer_balance().await, "0.00");
    // Nothing more is collected.
    w.app.clock.advance(Duration::days(40));
    w.app.fire_timers().await;
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "200.00");
    w.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn the_free_look_period_ends_fifteen_days_after_the_certificate() {
    let w = world().await;
    let phone = "+821055500006";
    let (_, shopper) = w.app.shopper(&w.operator, phone, "100.00").await;
    let product = w.product(json!({})).await;
    let policy = w.buy_and_approve(&shopper, phone, &product).await;
    let number = w.issue(&policy).await;
    w.deliver_documents(&number).await;
    let view = w.policy(&shopper, &number).await;
    assert_eq!(view["free_look_days"], 15);
    w.app
        .clock
        .advance(Duration::days(15) + Duration::seconds(1));
    let late = w
        .app
        .post_idempotent(
            &format!("/v1/insurance/policies/{number}/cancel"),
            Some(&shopper),
            json!({}),
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{late:?}");
    assert_eq!(late.code(), "free_look_ended");
    assert_eq!(w.policy(&shopper, &number).await["state"], "in_force");
    // The holder's right is its own: another card holder cannot cancel it.
    let (_, other) = w.app.shopper(&w.operator, "+821055500016", "1.00").await;
    let stranger = w
        .app
        .post_idempotent(
            &format!("/v1/insurance/policies/{number}/cancel"),
            Some(&other),
            json!({}),
        )
        .await;
    assert_eq!(stranger.status, StatusCode::NOT_FOUND, "{stranger:?}");
    w.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn an_application_denied_unanswered_or_declined_returns_the_first_premium() {
    let w = world().await;
    let phone = "+821055500007";
    let (_, shopper) = w.app.shopper(&w.operator, phone, "100.00").await;
    let product = w.product(json!({})).await;

    // Denied on the phone.
    let bought = w.buy(&shopper, &product).await;
    let challenge = bought.body["pending_confirmation"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = w.app.code_for(phone, &challenge).await;
    let denied = w.app.answer(&challenge, &code, "deny").await;
    assert_eq!(denied.status, StatusCode::OK, "{denied:?}");
    let id = bought.body["policy_id"].as_str().unwrap();
    assert_eq!(w.policy(&shopper, id).await["state"], "not_taken");
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "100.00");

    // Not answered within the code's ten minutes.
    let bought = w.buy(&shopper, &product).await;
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "70.00");
    w.app.clock.advance(Duration::minutes(11));
    w.app.fire_timers().await;
    let id = bought.body["policy_id"].as_str().unwrap();
    let view = w.policy(&shopper, id).await;
    assert_eq!(view["state"], "not_taken", "{view}");
    assert_eq!(view["premiums"][0]["state"], "expired");
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "100.00");

    // Declined at the insurer's recheck.
    let policy = w.buy_and_approve(&shopper, phone, &product).await;
    let no_reason = w.recheck(&policy, json!({"decision": "decline"})).await;
    assert_eq!(no_reason.status, StatusCode::BAD_REQUEST, "{no_reason:?}");
    let declined = w
        .recheck(
            &policy,
            json!({"decision": "decline", "reason": "medical history"}),
        )
        .await;
    assert_eq!(declined.status, StatusCode::OK, "{declined:?}");
    assert_eq!(declined.body["state"], "declined");
    assert!(declined.body["policy_number"].is_null());
    assert!(last_text(&w.app, phone).await.contains("declined"));
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "100.00");

    // Not rechecked within seven days: declined by itself.
    let policy = w.buy_and_approve(&shopper, phone, &product).await;
    w.app
        .clock
        .advance(Duration::days(7) + Duration::minutes(1));
    w.app.fire_timers().await;
    assert_eq!(w.policy(&shopper, &policy).await["state"], "declined");
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "100.00");
    w.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn bad_products_and_purchases_are_refused_with_stable_codes() {
    let w = world().await;
    let phone = "+821055500008";
    let (shopper_id, shopper) = w.app.shopper(&w.operator, phone, "10.00").await;
    let create = |body: Value| {
        let mut full = json!({"name": "Term life", "coverage": "Death",
            "coverage_amount": usd("1000.00"), "premium": usd("30.00"), "term_months": 12,
            "payment_plan": "monthly", "service_company_id": w.service_id});
        for (key, value) in body.as_object().unwrap() {
            full[key] = value.clone();
        }
        full
    };
    for (changes, code) in [
        (json!({"term_months": 0}), "policy_term_invalid"),
        (json!({"grace_days": 3}), "grace_period_invalid"),
        (json!({"free_look_days": 90}), "free_look_period_invalid"),
        (
            json!({"service_company_id": shopper_id}),
            "service_company_invalid",
        ),
        (json!({"name": ""}), "text_empty"),
        (json!({"name": "Term\u{0}life"}), "text_control_character"),
        (json!({"premium": usd("0.00")}), "invalid_request"),
        (
            json!({"premium": {"amount": "1.001", "currency": "USD"}}),
            "amount_scale",
        ),
    ] {
        let reply = w
            .app
            .post(
                "/v1/insurance/products",
                Some(&w.insurer),
                create(changes.clone()),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{changes}: {reply:?}"
        );
        assert_eq!(reply.code(), code, "{changes}: {reply:?}");
    }
    // Only insurers list products; only operators onboard insurers.
    let forbidden = w
        .app
        .post("/v1/insurance/products", Some(&shopper), create(json!({})))
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN, "{forbidden:?}");
    let forbidden = w
        .app
        .post(
            "/v1/insurance/insurers",
            Some(&w.insurer),
            json!({"display_name": "X", "username": "x-insurer", "password": STAFF_PASSWORD}),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN, "{forbidden:?}");

    let product = w.product(json!({})).await;
    // A purchase moves money: it needs an Idempotency-Key.
    let keyless = w
        .app
        .post(
            "/v1/insurance/policies",
            Some(&shopper),
            json!({"product_id": product}),
        )
        .await;
    assert_eq!(keyless.code(), "idempotency_key_required", "{keyless:?}");
    // Not enough money for the first premium.
    let poor = w.buy(&shopper, &product).await;
    assert_eq!(poor.status, StatusCode::UNPROCESSABLE_ENTITY, "{poor:?}");
    assert_eq!(poor.code(), "insufficient_funds");
    // A product taken off sale cannot be bought.
    let off = w
        .app
        .request(
            Method::PATCH,
            &format!("/v1/insurance/products/{product}"),
            Some(&w.insurer),
            Some(json!({"active": false})),
            &[],
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{off:?}");
    let unavailable = w.buy(&shopper, &product).await;
    assert_eq!(unavailable.code(), "product_unavailable", "{unavailable:?}");
    assert!(
        !w.app
            .get("/v1/insurance/products", Some(&shopper))
            .await
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == product.as_str())
    );
    // An insurer cannot buy; a policy reference must be an id or a number.
    let insurer_buys = w.buy(&w.insurer, &product).await;
    assert_eq!(
        insurer_buys.status,
        StatusCode::FORBIDDEN,
        "{insurer_buys:?}"
    );
    let bad_ref = w
        .app
        .get("/v1/insurance/policies/nope", Some(&shopper))
        .await;
    assert_eq!(bad_ref.status, StatusCode::BAD_REQUEST, "{bad_ref:?}");
    // The same key with the same body replays the first answer, and moves no money twice.
    let mut texts_before = w.app.texts(phone).await.len();
    let product2 = w.product(json!({"premium": usd("5.00")})).await;
    for _ in 0..2 {
        let reply = w
            .app
            .request(
                Method::POST,
                "/v1/insurance/policies",
                Some(&shopper),
                Some(json!({"product_id": product2})),
                &[("idempotency-key", "buy-once")],
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    }
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "5.00");
    texts_before += 1;
    assert_eq!(w.app.texts(phone).await.len(), texts_before);
    w.app.assert_ledger_clean().await;
    let _ = &w.insurer_id;
}

#[tokio::test]
async fn a_card_replaced_with_a_new_number_keeps_paying_the_policy() {
    let w = world().await;
    let phone = "+821055500010";
    let issued = issued_card(
        &w.app,
        &w.operator,
        "bank",
        "1502",
        "bank_account",
        json!({"initial_deposit": usd("100.00")}),
        phone,
    )
    .await;
    let product = w.product(json!({})).await;
    let policy = w.buy_and_approve(&issued.holder, phone, &product).await;
    let number = w.issue(&policy).await;
    let replaced = w
        .app
        .post(
            &format!("/v1/institution/cards/{}/replace", issued.card),
            Some(&issued.desk),
            json!({}),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::CREATED, "{replaced:?}");
    let new_card = replaced.body["card_number"].as_str().unwrap().to_owned();
    w.app.clock.advance_months(1);
    w.app.fire_timers().await;
    let view = w.policy(&issued.holder, &number).await;
    assert_eq!(view["state"], "in_force", "{view}");
    assert_eq!(view["installments_collected"], 2);
    assert_eq!(view["card"], CardNumber::parse(&new_card).unwrap().masked());
    assert_eq!(
        w.app
            .account_of_kind(&issued.holder, "bank_account")
            .await
            .0,
        "40.00"
    );
    w.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_cancellation_racing_the_settlement_answer_still_returns_everything_once() {
    let w = world().await;
    let phone = "+821055500011";
    let (_, shopper) = w.app.shopper(&w.operator, phone, "100.00").await;
    let product = w.product(json!({})).await;
    let policy = w.buy_and_approve(&shopper, phone, &product).await;
    let number = w.issue(&policy).await;
    w.deliver_documents(&number).await;
    assert_eq!(w.request_settlement(&number).await.status, StatusCode::OK);
    let view = w.policy(&shopper, &number).await;
    let challenge = view["premiums"][0]["pending_confirmation"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = w.app.code_for(phone, &challenge).await;
    let cancel_path = format!("/v1/insurance/policies/{number}/cancel");
    let (answered, cancelled) = tokio::join!(
        w.app.answer(&challenge, &code, "approve"),
        w.app
            .post_idempotent(&cancel_path, Some(&shopper), json!({})),
    );
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    assert_eq!(cancelled.body["returned"], usd("30.00"));
    // Whichever came first, the answer either paid and was taken back, or found the
    // confirmation withdrawn.
    assert!(
        answered.status == StatusCode::OK || answered.status == StatusCode::CONFLICT,
        "{answered:?}"
    );
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "100.00");
    assert_eq!(w.insurer_balance().await, "0.00");
    assert_eq!(w.app.platform_commission(&w.operator).await, "0.00");
    w.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn a_premium_settlement_denied_on_the_phone_is_mediated_by_an_operator() {
    let w = world().await;
    let phone = "+821055500012";
    let (_, shopper) = w.app.shopper(&w.operator, phone, "100.00").await;
    let product = w.product(json!({})).await;
    let policy = w.buy_and_approve(&shopper, phone, &product).await;
    let number = w.issue(&policy).await;
    w.deliver_documents(&number).await;
    assert_eq!(w.request_settlement(&number).await.status, StatusCode::OK);
    let denied = w
        .answer_settlement(&shopper, phone, &number, 1, "deny")
        .await;
    assert_eq!(denied.status, StatusCode::OK, "{denied:?}");
    assert_eq!(denied.body["outcome"], "disputed");
    let view = w.policy(&w.insurer, &number).await;
    assert_eq!(view["premiums"][0]["state"], "disputed");
    let order = view["premiums"][0]["order_number"]
        .as_str()
        .unwrap()
        .to_owned();
    let queue = w.app.get("/v1/operator/disputes", Some(&w.operator)).await;
    assert!(
        queue
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["order_number"] == order.as_str() && d["vertical"] == "insurance"),
        "{queue:?}"
    );
    let mediated = w
        .app
        .post_idempotent(
            &format!("/v1/operator/disputes/{order}/mediation"),
            Some(&w.operator),
            json!({"outcome": "split", "to_seller": usd("10.00"),
                   "note": "cover for part of the month was not in force"}),
        )
        .await;
    assert_eq!(mediated.status, StatusCode::OK, "{mediated:?}");
    assert_eq!(mediated.body["refunded_to_buyer"], usd("20.00"));
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "90.00");
    assert_eq!(w.insurer_balance().await, "9.50");
    let view = w.policy(&shopper, &number).await;
    assert_eq!(view["premiums"][0]["state"], "settled");
    w.app.assert_ledger_clean().await;
}

fn at(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_certificate_never_delivered_starts_the_free_look_thirty_days_after_issue() {
    let w = world().await;
    let phone = "+821055500021";
    let (_, shopper) = w.app.shopper(&w.operator, phone, "500.00").await;
    let product = w.product(json!({})).await;
    let first = w.buy_and_approve(&shopper, phone, &product).await;
    let first = w.issue(&first).await;
    let second = w.buy_and_approve(&shopper, phone, &product).await;
    let second = w.issue(&second).await;

    // Bounded from the issue on: the delivery deadline (30 days) plus the 15 days' period,
    // and the holder is told so with the number.
    let view = w.policy(&shopper, &first).await;
    let ends = at(&view["free_look_ends_at"]);
    assert_eq!(ends - at(&view["issued_at"]), Duration::days(45), "{view}");
    assert!(last_text(&w.app, phone).await.contains("at the latest"));

    // 44 days on, no certificate ever recorded: still within it; everything comes back.
    w.app.clock.advance(Duration::days(44));
    w.app.fire_timers().await;
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "380.00");
    let cancelled = w
        .app
        .post_idempotent(
            &format!("/v1/insurance/policies/{first}/cancel"),
            Some(&shopper),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    assert_eq!(cancelled.body["returned"], usd("60.00"));
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "440.00");

    // A certificate delivered after the deadline does not open the period again.
    w.deliver_documents(&second).await;
    let view = w.policy(&shopper, &second).await;
    assert_eq!(at(&view["free_look_ends_at"]), ends, "{view}");
    w.app
        .clock
        .advance(Duration::days(1) + Duration::seconds(1));
    let late = w
        .app
        .post_idempotent(
            &format!("/v1/insurance/policies/{second}/cancel"),
            Some(&shopper),
            json!({}),
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{late:?}");
    assert_eq!(late.code(), "free_look_ended");
    assert_eq!(w.policy(&shopper, &second).await["state"], "in_force");
    w.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn premiums_of_an_ended_policy_nobody_claims_return_to_the_holder_after_ninety_days() {
    let w = world().await;
    let phone = "+821055500022";
    let (_, shopper) = w.app.shopper(&w.operator, phone, "100.00").await;
    // A month's cover paid at once; the certificate is never delivered.
    let product = w
        .product(
            json!({"name": "Travel", "premium": usd("40.00"), "term_months": 1,
                        "payment_plan": "lump_sum", "grace_days": 7}),
        )
        .await;
    let policy = w.buy_and_approve(&shopper, phone, &product).await;
    let number = w.issue(&policy).await;
    w.app.clock.advance_months(1);
    w.app.fire_timers().await;
    assert_eq!(w.policy(&shopper, &number).await["state"], "matured");
    // The insurer still cannot be paid without the documents; it was told how long it has.
    let refused = w.request_settlement(&number).await;
    assert_eq!(refused.code(), "documents_missing", "{refused:?}");
    let feed = w.app.get("/v1/events", Some(&w.insurer)).await;
    let matured = feed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "policy.matured")
        .unwrap_or_else(|| panic!("no policy.matured in {feed:?}"))
        .clone();
    assert!(
        matured.to_string().contains("settle_held_premiums_by"),
        "{matured}"
    );
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "60.00");

    // Not a day before ninety days…
    w.app.clock.advance(Duration::days(89));
    w.app.fire_timers().await;
    let view = w.policy(&shopper, &number).await;
    assert_eq!(view["premiums"][0]["state"], "frozen", "{view}");
    // …and then the premium returns to the holder, with a text and a notice to the insurer.
    w.app
        .clock
        .advance(Duration::days(1) + Duration::minutes(1));
    w.app.fire_timers().await;
    let view = w.policy(&shopper, &number).await;
    assert_eq!(view["premiums"][0]["state"], "cancelled", "{view}");
    assert_eq!(view["state"], "matured");
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "100.00");
    assert!(last_text(&w.app, phone).await.contains("not claimed"));
    let feed = w.app.get("/v1/events", Some(&w.insurer)).await;
    assert!(
        feed.body
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "premiums.returned"),
        "{feed:?}"
    );
    let history = w
        .app
        .get(
            &format!("/v1/insurance/policies/{number}/history"),
            Some(&shopper),
        )
        .await;
    assert!(
        history
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "unclaimed_premiums_returned"),
        "{history:?}"
    );
    w.app.assert_ledger_clean().await;
}

/// Moves `cents` out of (or, with `back`, into) the insurer's withdrawal account, as a payout
/// to its bank would: the API has no payout yet, so the ledger is driven directly.
async fn insurer_payout(w: &World, cents: i64, back: bool) {
    use holdfast_core::ledger::{self, AccountKind, Leg, NewAccount, NewTransfer, TransferKind};
    use holdfast_core::{Currency, Money};
    let accounts = w.app.get("/v1/accounts", Some(&w.insurer)).await;
    let withdrawal: holdfast_core::ids::AccountId = accounts
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "withdrawal")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let owner: holdfast_core::ids::PartyId = w.insurer_id.parse().unwrap();
    let usd = Currency::from_str("USD").unwrap();
    let money = Money::from_minor(cents, usd).unwrap();
    let txn = holdfast_core::db::begin_write(&w.app.state.db)
        .await
        .unwrap();
    let bank = ledger::get_or_open_keyed_account_in_txn(
        &txn,
        &w.app.clock,
        NewAccount {
            key: Some(format!("test-bank:{owner}")),
            kind: AccountKind::External,
            owner,
            institution: None,
            currency: usd,
            credit_limit: Money::zero(usd),
            credit_class: None,
        },
    )
    .await
    .unwrap();
    let (from, to) = if back {
        (bank.id, withdrawal)
    } else {
        (withdrawal, bank.id)
    };
    ledger::post_transfer_in_txn(
        &txn,
        &w.app.clock,
        NewTransfer {
            key: format!("test-payout:{}", uuid::Uuid::now_v7()),
            kind: TransferKind::Deposit,
            currency: usd,
            legs: vec![Leg::debit(from, money), Leg::credit(to, money)],
            hold: None,
            case: None,
        },
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
}

#[tokio::test]
async fn a_cancellation_meeting_a_premium_paid_out_moves_nothing_and_keeps_the_right() {
    let w = world().await;
    let phone = "+821055500023";
    let (_, shopper) = w.app.shopper(&w.operator, phone, "500.00").await;
    let product = w.product(json!({})).await;
    let policy = w.buy_and_approve(&shopper, phone, &product).await;
    let number = w.issue(&policy).await;
    w.deliver_documents(&number).await;
    assert_eq!(w.request_settlement(&number).await.status, StatusCode::OK);
    let settled = w
        .answer_settlement(&shopper, phone, &number, 1, "approve")
        .await;
    assert_eq!(settled.status, StatusCode::OK, "{settled:?}");
    // The insurer takes its 28.50 out to its bank.
    insurer_payout(&w, 2850, false).await;
    assert_eq!(w.insurer_balance().await, "0.00");

    // Within the period the holder cancels: the platform cannot return money it no longer
    // holds, so nothing moves, and the answer says why.
    let cancel_path = format!("/v1/insurance/policies/{number}/cancel");
    let blocked = w
        .app
        .post_idempotent(&cancel_path, Some(&shopper), json!({}))
        .await;
    assert_eq!(blocked.status, StatusCode::CONFLICT, "{blocked:?}");
    assert_eq!(blocked.code(), "premium_paid_out");
    let view = w.policy(&shopper, &number).await;
    assert_eq!(view["state"], "in_force");
    assert_eq!(view["premiums"][0]["state"], "settled");
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "470.00");
    assert_eq!(w.app.platform_commission(&w.operator).await, "1.50");
    // The insurer was told what to return; the attempt is on the timeline.
    let feed = w.app.get("/v1/events", Some(&w.insurer)).await;
    assert!(
        feed.body
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "policy.cancellation_blocked"),
        "{feed:?}"
    );
    w.app.assert_ledger_clean().await;

    // The period ends; then the insurer returns the money. The holder asked in time, so the
    // cancellation still goes through, returning everything exactly once.
    w.app.clock.advance(Duration::days(16));
    insurer_payout(&w, 2850, true).await;
    let cancelled = w
        .app
        .post_idempotent(&cancel_path, Some(&shopper), json!({}))
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{cancelled:?}");
    assert_eq!(cancelled.body["returned"], usd("30.00"));
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "500.00");
    assert_eq!(w.insurer_balance().await, "0.00");
    assert_eq!(w.app.platform_commission(&w.operator).await, "0.00");
    w.app.assert_ledger_clean().await;
}

/// How many times the lock-order race runs: on PostgreSQL a deadlock showed up in about one
/// run in three before the lock order was made one, so twelve runs miss it about once in a
/// hundred; SQLite serialises writers and needs only a couple.
fn race_runs() -> usize {
    if holdfast_tests::on_postgres() { 12 } else { 2 }
}

/// The holder approves premium 1's settlement on the phone while the cycle collects premium 2
/// from the same credit line: both write the line's account and the policy. Each takes the
/// policy before anything of its cases (the house lock order), so neither can wait for the
/// other in a circle — before, the answer locked the case and the account first and the policy
/// last, the cycle the other way round, and PostgreSQL killed one of them as a deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_settlement_answer_racing_the_monthly_collection_neither_deadlocks_nor_fails() {
    for run in 0..race_runs() {
        let w = Arc::new(world().await);
        let phone = "+821055500020";
        let shopper = holder_at_institution(
            &w.app,
            &w.operator,
            "card_company",
            "2402",
            "ec_credit_line_card",
            json!({"credit_limit": usd("500.00")}),
            phone,
        )
        .await;
        let product = w.product(json!({})).await;
        let policy = w.buy_and_approve(&shopper, phone, &product).await;
        let number = w.issue(&policy).await;
        w.deliver_documents(&number).await;
        // Just before premium 2 falls due the insurer asks for premium 1; the holder answers
        // just after it fell due, while the cycle collects it.
        let due = w.policy(&shopper, &number).await["next_premium_due_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap();
        w.app
            .clock
            .advance(due - w.app.clock.now() - Duration::minutes(2));
        assert_eq!(w.request_settlement(&number).await.status, StatusCode::OK);
        let view = w.policy(&shopper, &number).await;
        let challenge = view["premiums"][0]["pending_confirmation"]["challenge_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let code = w.app.code_for(phone, &challenge).await;
        w.app.clock.advance(Duration::minutes(3));
        let answer = {
            let w = w.clone();
            tokio::spawn(async move { w.app.answer(&challenge, &code, "approve").await })
        };
        let cycle = {
            let w = w.clone();
            tokio::spawn(async move { w.app.fire_timers().await })
        };
        let (answered, fired) = (answer.await.unwrap(), cycle.await.unwrap());
        assert_eq!(answered.status, StatusCode::OK, "run {run}: {answered:?}");
        assert_eq!(answered.body["outcome"], "settled", "run {run}");
        assert_eq!(fired, 1, "run {run}: premium 2's timer fired, not failed");
        let view = w.policy(&shopper, &number).await;
        assert_eq!(view["installments_collected"], 2, "run {run}: {view}");
        assert_eq!(view["premiums"][0]["state"], "settled", "run {run}");
        assert_eq!(view["premiums"][1]["state"], "frozen", "run {run}");
        // Premium 1 drawn on the line, premium 2 reserved on it; the insurer paid once.
        assert_eq!(
            w.app.account_of_kind(&shopper, "card_ec_line").await,
            ("-30.00".to_owned(), "440.00".to_owned()),
            "run {run}"
        );
        assert_eq!(w.insurer_balance().await, "28.50", "run {run}");
        w.app.assert_ledger_clean().await;
    }
}

/// Every `$ref` in `value`.
fn refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => found.push(target.clone()),
                    _ => refs(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_describes_insurance_and_card_present() {
    let app = TestApp::spawn().await;
    let doc = app.get("/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let paths = doc.body["paths"].as_object().unwrap();
    for path in [
        "/v1/insurance/insurers",
        "/v1/insurance/products",
        "/v1/insurance/policies",
        "/v1/insurance/policies/{policy}/recheck",
        "/v1/insurance/policies/{policy}/settlement-request",
        "/v1/insurance/policies/{policy}/cancel",
        "/v1/insurance/policies/{policy}/overdue-premium",
        "/v1/insurance/certificates/{policy_number}/delivery",
        "/v1/card-present/terminals",
        "/v1/card-present/authorisations",
        "/v1/card-present/authorisations/{authorisation_id}/capture",
        "/v1/card-present/armed-approvals",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    let schemas = doc.body["components"]["schemas"].as_object().unwrap();
    for schema in [
        "PolicyView",
        "Authorisation",
        "ArmedApproval",
        "PolicyPendingConfirmation",
        "CardPresentPendingConfirmation",
    ] {
        assert!(schemas.contains_key(schema), "{schema} missing");
    }
    let mut found = Vec::new();
    refs(&doc.body, &mut found);
    for target in found {
        let name = target.trim_start_matches("#/components/schemas/");
        assert!(schemas.contains_key(name), "{target} does not resolve");
    }
}

fn utc(y: i32, m: u32, d: u32, h: u32, min: u32, sec: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, sec).unwrap()
}

/// Issues a 12-month policy at `start` and walks the calendar through all twelve premiums:
/// each falls due exactly a whole number of months after the issue (clamped to a shorter
/// month's end), is not collected a minute before, is collected at its due time, and the term
/// ends twelve months after the issue. The clock moves to each due date read from the policy,
/// never by a count of days standing for a month.
async fn twelve_monthly_premiums_from(start: DateTime<Utc>) {
    let w = world_at(start).await;
    let phone = "+821055500090";
    let (_, shopper) = w.app.shopper(&w.operator, phone, "400.00").await;
    let product = w.product(json!({})).await;
    let policy = w.buy_and_approve(&shopper, phone, &product).await;
    let number = w.issue(&policy).await;
    let view = w.policy(&shopper, &number).await;
    let issued = at(&view["issued_at"]);
    assert_eq!(issued, start, "issued at the start: {view}");
    assert_eq!(view["installments_collected"], 1);

    for n in 2..=12_u32 {
        let due = issued.checked_add_months(Months::new(n - 1)).unwrap();
        let view = w.policy(&shopper, &number).await;
        assert_eq!(
            at(&view["next_premium_due_at"]),
            due,
            "premium {n} from {start}: {view}"
        );
        w.app.clock.set(due - Duration::minutes(1));
        w.app.fire_timers().await;
        let view = w.policy(&shopper, &number).await;
        assert_eq!(
            view["installments_collected"],
            n - 1,
            "premium {n} taken early (from {start}): {view}"
        );
        w.app.clock.set(due);
        w.app.fire_timers().await;
        let view = w.policy(&shopper, &number).await;
        assert_eq!(
            view["installments_collected"], n,
            "premium {n} not taken at {due} (from {start}): {view}"
        );
        assert_eq!(view["state"], "in_force", "{view}");
        assert!(
            last_text(&w.app, phone)
                .await
                .contains(&format!("premium {n} of 12")),
            "premium {n}"
        );
    }

    let view = w.policy(&shopper, &number).await;
    assert!(view["next_premium_due_at"].is_null(), "{view}");
    let term_end = issued.checked_add_months(Months::new(12)).unwrap();
    w.app.clock.set(term_end - Duration::minutes(1));
    w.app.fire_timers().await;
    assert_eq!(w.policy(&shopper, &number).await["state"], "in_force");
    w.app.clock.set(term_end);
    w.app.fire_timers().await;
    assert_eq!(w.policy(&shopper, &number).await["state"], "matured");
    assert_eq!(w.app.account_of_kind(&shopper, "prepaid").await.0, "40.00");
    w.app.assert_ledger_clean().await;
}

#[tokio::test]
async fn twelve_premiums_from_the_29th_of_january_keep_the_29th_but_in_february() {
    twelve_monthly_premiums_from(utc(2027, 1, 29, 10, 0, 0)).await;
}

#[tokio::test]
async fn twelve_premiums_from_the_30th_of_january() {
    twelve_monthly_premiums_from(utc(2027, 1, 30, 10, 0, 0)).await;
}

#[tokio::test]
async fn twelve_premiums_from_the_31st_of_january_follow_each_months_end() {
    twelve_monthly_premiums_from(utc(2027, 1, 31, 10, 0, 0)).await;
}

#[tokio::test]
async fn twelve_premiums_from_the_31st_of_january_of_a_leap_year() {
    twelve_monthly_premiums_from(utc(2028, 1, 31, 10, 0, 0)).await;
}

#[tokio::test]
async fn twelve_premiums_from_the_28th_of_february() {
    twelve_monthly_premiums_from(utc(2027, 2, 28, 10, 0, 0)).await;
}

#[tokio::test]
async fn twelve_premiums_from_a_leap_day() {
    twelve_monthly_premiums_from(utc(2028, 2, 29, 10, 0, 0)).await;
}

#[tokio::test]
async fn twelve_premiums_from_new_years_eve_a_minute_before_midnight() {
    twelve_monthly_premiums_from(utc(2026, 12, 31, 23, 59, 30)).await;
}

#[tokio::test]
async fn twelve_premiums_from_the_31st_of_july() {
    twelve_monthly_premiums_from(utc(2026, 7, 31, 12, 0, 0)).await;
}
