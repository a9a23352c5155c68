//! Set-ups that several test files share, so each file states only what it tests: staff of any
//! role onboarded by the operator with [`STAFF_PASSWORD`] and logged in, an institution's
//! [`Desk`], cards issued by it, a retail [`Shop`] (a supplier, a shopper on a prepaid card and
//! one commodity), and the reads tests make of orders, accounts and phones.
//!
//! Every helper asserts the status it expects, so a set-up that goes wrong fails where it went
//! wrong rather than in the assertion after it.

use crate::{Reply, STAFF_PASSWORD, TestApp};
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

/// A random valid Korean mobile number, so tests never share a simulated phone.
pub fn random_phone() -> String {
    loop {
        let digits = uuid::Uuid::new_v4().as_u128() as u32 % 100_000_000;
        let candidate = format!("+8210{digits:08}");
        if holdfast_core::phone_number::PhoneNumber::parse(&candidate).is_ok() {
            return candidate;
        }
    }
}

/// `body` with every field of `extra` added (or replaced).
pub fn merged(mut body: Value, extra: Value) -> Value {
    if let Some(fields) = extra.as_object() {
        for (key, value) in fields {
            body[key] = value.clone();
        }
    }
    body
}

/// An institution's desk: its party id and its staff's token.
pub struct Desk {
    pub id: String,
    pub token: String,
}

/// The body of a card issue request for an adult's personal card on `mapping`, in USD;
/// `terms` adds (or replaces) fields: credit limits, a first deposit, `"seller": true`…
pub fn card_request(mapping: &str, phone: &str, terms: Value) -> Value {
    merged(
        json!({"holder_name": "Holder", "age_class": "adult", "purchase_type": "personal",
               "mapping_kind": mapping, "currency": "USD", "phone": phone}),
        terms,
    )
}

impl TestApp {
    /// Onboards a party through the operator's endpoint `path` with `body` plus a fresh
    /// username (starting `prefix`) and [`STAFF_PASSWORD`], then logs it in. Returns the
    /// onboarding answer's body and the party's token.
    pub async fn onboard_staff(
        &self,
        operator: &str,
        path: &str,
        prefix: &str,
        body: Value,
    ) -> (Value, String) {
        let username = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        let body = merged(
            body,
            json!({"username": username, "password": STAFF_PASSWORD}),
        );
        let created = self.post(path, Some(operator), body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{path}: {created:?}");
        let token = self.password_login(&username, STAFF_PASSWORD).await;
        (created.body, token)
    }

    /// A carrier (distributor) named `name`; returns its id and token.
    pub async fn distributor(&self, operator: &str, name: &str) -> (String, String) {
        let (created, token) = self
            .onboard_staff(
                operator,
                "/v1/operator/distributors",
                "carrier",
                json!({"display_name": name}),
            )
            .await;
        (party_id(&created), token)
    }

    /// An institution with the four-digit `code` and `kind` (bank, card_company,
    /// department_store); `extra` adds fields such as `credit_class_caps`, `card_fee_rate` or
    /// `shares_freezing_with`. Its staff are logged in.
    pub async fn institution(&self, operator: &str, code: &str, kind: &str, extra: Value) -> Desk {
        let (created, token) = self
            .onboard_staff(
                operator,
                "/v1/operator/institutions",
                "inst",
                merged(
                    json!({"display_name": format!("Institution {code}"), "code": code,
                           "kind": kind}),
                    extra,
                ),
            )
            .await;
        assert_eq!(created["institution"]["code"], code);
        Desk {
            id: created["institution"]["party_id"]
                .as_str()
                .unwrap()
                .to_owned(),
            token,
        }
    }

    /// Issues a card at `desk` (with a fresh `Idempotency-Key`); returns the whole answer,
    /// which must be 201.
    pub async fn issue_card(&self, desk: &Desk, body: Value) -> Value {
        let issued = self
            .post_idempotent("/v1/institution/cards", Some(&desk.token), body)
            .await;
        assert_eq!(issued.status, StatusCode::CREATED, "{issued:?}");
        issued.body
    }

    /// Places an order that must be accepted; returns (order number, order challenge).
    pub async fn placed_order(
        &self,
        shopper: &str,
        commodity: &str,
        quantity: u32,
    ) -> (String, String) {
        let placed = self.place_order(shopper, commodity, quantity).await;
        assert_eq!(placed.status, StatusCode::CREATED, "{placed:?}");
        assert_eq!(placed.body["state"], "awaiting_order_confirmation");
        (
            placed.body["order_number"].as_str().unwrap().to_owned(),
            placed.body["pending_confirmation"]["challenge_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    }

    /// Answers `challenge` with the code `phone` received for it.
    pub async fn answer_on(&self, phone: &str, challenge: &str, decision: &str) -> Reply {
        let code = self.code_for(phone, challenge).await;
        self.answer(challenge, &code, decision).await
    }

    /// The state of order `number` as `token` (its shopper) sees it.
    pub async fn order_state(&self, token: &str, number: &str) -> String {
        let order = self
            .get(&format!("/v1/retail/orders/{number}"), Some(token))
            .await;
        assert_eq!(order.status, StatusCode::OK, "{order:?}");
        order.body["state"].as_str().unwrap().to_owned()
    }

    /// The caller's first account whose `field` is `value` (`"kind"`, `"id"`…), as
    /// `GET /v1/accounts` shows it; it must exist.
    pub async fn account_where(&self, token: &str, field: &str, value: &str) -> Value {
        let accounts = self.get("/v1/accounts", Some(token)).await;
        assert_eq!(accounts.status, StatusCode::OK, "{accounts:?}");
        accounts
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a[field] == value)
            .unwrap_or_else(|| panic!("no account with {field} {value} in {}", accounts.body))
            .clone()
    }

    /// (balance, available) of the caller's first account of `kind`, which must exist.
    pub async fn account_of_kind(&self, token: &str, kind: &str) -> (String, String) {
        balance_and_available(&self.account_where(token, "kind", kind).await)
    }

    /// Every message `phone` received (after delivering the outbox), newest first.
    pub async fn messages(&self, phone: &str) -> Vec<Value> {
        self.deliver().await;
        let inbox = self.inbox(phone, "limit=100").await;
        assert_eq!(inbox.status, StatusCode::OK, "{inbox:?}");
        inbox.body.as_array().unwrap().clone()
    }

    /// Every text `phone` received, newest first.
    pub async fn texts(&self, phone: &str) -> Vec<String> {
        self.messages(phone)
            .await
            .iter()
            .map(|m| m["body"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// (balance, available) of an account as `GET /v1/accounts` shows it.
pub fn balance_and_available(account: &Value) -> (String, String) {
    (
        account["balance"].as_str().unwrap().to_owned(),
        account["available"]["amount"].as_str().unwrap().to_owned(),
    )
}

/// The `party_id` of an onboarding answer.
pub fn party_id(created: &Value) -> String {
    created["party_id"].as_str().unwrap().to_owned()
}

/// A retail shop on one app: an operator, a supplier with one commodity, and a shopper with an
/// EC card on a prepaid balance, logged in on `phone`.
pub struct Shop {
    pub app: Arc<TestApp>,
    pub operator: String,
    pub supplier_id: String,
    pub supplier: String,
    pub shopper: String,
    pub phone: String,
    pub commodity: String,
}

impl Shop {
    /// A shop on a fresh app: the shopper has `deposit` USD; the commodity costs `price` with
    /// the platform's commission `rate`.
    pub async fn spawn(phone: &str, deposit: &str, price: &str, rate: &str) -> Shop {
        Shop::on(
            Arc::new(TestApp::spawn().await),
            phone,
            deposit,
            price,
            rate,
        )
        .await
    }

    /// [`Shop::spawn`] on an app the caller started.
    pub async fn on(
        app: Arc<TestApp>,
        phone: &str,
        deposit: &str,
        price: &str,
        rate: &str,
    ) -> Shop {
        let operator = app.operator_token().await;
        let (supplier_id, supplier) = app.supplier(&operator, "Acme Supplies").await;
        let (_, shopper) = app.shopper(&operator, phone, deposit).await;
        let commodity = app.commodity(&supplier, price, rate).await;
        Shop {
            app,
            operator,
            supplier_id,
            supplier,
            shopper,
            phone: phone.to_owned(),
            commodity,
        }
    }

    /// The shopper orders `quantity` of the commodity; returns (order number, challenge).
    pub async fn order(&self, quantity: u32) -> (String, String) {
        self.app
            .placed_order(&self.shopper, &self.commodity, quantity)
            .await
    }

    /// The shopper answers `challenge` on its phone.
    pub async fn answer(&self, challenge: &str, decision: &str) -> Reply {
        self.app.answer_on(&self.phone, challenge, decision).await
    }

    /// The order's state as the shopper sees it.
    pub async fn state(&self, number: &str) -> String {
        self.app.order_state(&self.shopper, number).await
    }
}
