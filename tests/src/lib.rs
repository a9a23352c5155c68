//! A test harness that drives the real application router over HTTP requests, each test on a
//! database of its own: a fresh SQLite file, or — when `TEST_DATABASE_URL` names a PostgreSQL
//! server — a fresh PostgreSQL database created for the test and dropped after it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod audit;
pub mod browser;
pub mod console;
pub mod driver;
pub mod preload;
pub mod roundtrips;
pub mod world;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::{DateTime, TimeZone, Utc};
use driver::replace_database;
use holdfast_core::Clock;
use holdfast_core::challenge::ChallengePolicy;
use holdfast_core::db::PoolSize;
use holdfast_core::webhook_target::TargetPolicy;
use holdfast_server::{AppState, open_database, simulator_state, workers};
use http_body_util::BodyExt;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

/// The password every staff login the tests create uses.
pub const STAFF_PASSWORD: &str = "staff-password-1";

/// An amount in US dollars, as the API takes it: `{"amount": "12.50", "currency": "USD"}`.
pub fn usd(amount: &str) -> Value {
    json!({"amount": amount, "currency": "USD"})
}

/// Where every test's clock starts unless the test is about the calendar: a fixed instant, so
/// that no test depends on the day it runs. A Wednesday in March, mid-month, nothing special
/// about it: tests that need a month's end or a leap day start there with
/// [`TestApp::spawn_at`].
pub fn test_epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 11, 9, 30, 0).unwrap()
}

/// Where the test's database lives, and how to get rid of it.
enum Storage {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Storage::Postgres { admin_url, name } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop cannot await; a short-lived runtime on its own thread can.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    if let Ok(admin) = Database::connect(&admin_url).await {
                        let _ = admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await;
                        let _ = admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// Which database the tests run on.
pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres"))
}

pub fn on_postgres() -> bool {
    postgres_url().is_some()
}

/// A fresh, empty database of the kind the tests run on (not yet migrated); dropped with it.
pub struct TestDatabase {
    pub url: String,
    pub pool: PoolSize,
    storage: Storage,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        TestDatabase::create_on(postgres_url().as_deref()).await
    }

    /// A fresh database on the PostgreSQL server `postgres_admin` reaches, or a SQLite file.
    pub async fn create_on(postgres_admin: Option<&str>) -> TestDatabase {
        let (url, storage, pool) = match postgres_admin.map(str::to_owned) {
            Some(admin_url) => {
                let name = format!("holdfast_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(&admin_url)
                    .await
                    .expect("TEST_DATABASE_URL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .unwrap();
                admin.close().await.unwrap();
                (
                    replace_database(&admin_url, &name),
                    Storage::Postgres { admin_url, name },
                    PoolSize {
                        sqlite: 4,
                        postgres: 16,
                    },
                )
            }
            None => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                (url, Storage::Sqlite(dir), PoolSize::default())
            }
        };
        TestDatabase { url, pool, storage }
    }
}

pub struct TestApp {
    pub state: AppState,
    pub router: Router,
    pub clock: Clock,
    /// An operator of the harness's own, for setup steps only an operator may take.
    harness_operator: tokio::sync::OnceCell<String>,
    _storage: Storage,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: axum::http::HeaderMap,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(ChallengePolicy::default()).await
    }

    /// A test about the calendar: the clock starts at `start`.
    pub async fn spawn_at(start: DateTime<Utc>) -> TestApp {
        TestApp::spawn_starting(
            ChallengePolicy::default(),
            TargetPolicy::AllowPrivate,
            start,
        )
        .await
    }

    pub async fn spawn_with(policy: ChallengePolicy) -> TestApp {
        // Tests' webhook receivers listen on 127.0.0.1: allowed here on purpose.
        TestApp::spawn_starting(policy, TargetPolicy::AllowPrivate, test_epoch()).await
    }

    /// A server with the production webhook rule: public targets only.
    pub async fn spawn_public_webhooks_only() -> TestApp {
        TestApp::spawn_starting(
            ChallengePolicy::default(),
            TargetPolicy::PublicOnly,
            test_epoch(),
        )
        .await
    }

    async fn spawn_starting(
        policy: ChallengePolicy,
        webhooks: TargetPolicy,
        start: DateTime<Utc>,
    ) -> TestApp {
        TestApp::spawn_on(TestDatabase::create().await, policy, webhooks, start, None).await
    }

    /// A test app whose every statement, begin and commit is counted
    /// ([`roundtrips::Counter`]), on the tests' database.
    pub async fn spawn_counted() -> (TestApp, roundtrips::Counter) {
        TestApp::spawn_counted_on(postgres_url().as_deref()).await
    }

    /// [`TestApp::spawn_counted`] on a fresh database of the PostgreSQL server `postgres_admin`
    /// reaches, or on a SQLite file.
    pub async fn spawn_counted_on(postgres_admin: Option<&str>) -> (TestApp, roundtrips::Counter) {
        let counter = roundtrips::Counter::default();
        let app = TestApp::spawn_on(
            TestDatabase::create_on(postgres_admin).await,
            ChallengePolicy::default(),
            TargetPolicy::AllowPrivate,
            test_epoch(),
            Some(&counter),
        )
        .await;
        (app, counter)
    }

    async fn spawn_on(
        database: TestDatabase,
        policy: ChallengePolicy,
        webhooks: TargetPolicy,
        start: DateTime<Utc>,
        counter: Option<&roundtrips::Counter>,
    ) -> TestApp {
        let mut db = open_database(&database.url, database.pool).await.unwrap();
        if let Some(counter) = counter {
            counter.attach(&mut db).await;
        }
        let clock = Clock::manual(start);
        let state =
            simulator_state(db, clock.clone(), SECRET, 3600, policy).with_webhook_policy(webhooks);
        TestApp {
            router: holdfast_server::app(state.clone()),
            state,
            clock,
            harness_operator: tokio::sync::OnceCell::new(),
            _storage: database.storage,
        }
    }

    /// The same app with another request timeout (its lifecycle is a new one).
    pub fn with_request_timeout(mut self, timeout: std::time::Duration) -> TestApp {
        self.state = self.state.with_request_timeout(timeout);
        self.router = holdfast_server::app(self.state.clone());
        self
    }

    /// How many rows `table` has.
    pub async fn count_rows(&self, table: &str) -> i64 {
        let row = self
            .state
            .db
            .query_one_raw(Statement::from_string(
                self.backend(),
                format!("SELECT COUNT(*) FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    }

    pub fn backend(&self) -> DbBackend {
        self.state.db.get_database_backend()
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = match body {
            Some(body) => builder
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
            None => builder.body(Body::empty()).unwrap(),
        };
        self.send(request).await
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.request(Method::GET, path, token, None, &[]).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.request(Method::POST, path, token, Some(body), &[])
            .await
    }

    /// Delivers the outbox now, as the worker would.
    pub async fn deliver(&self) {
        workers::deliver_outbox(&self.state).await.unwrap();
    }

    /// Fires every timer due at the (manual) clock's time.
    pub async fn fire_timers(&self) -> usize {
        workers::fire_due_timers(&self.state).await.unwrap()
    }

    pub async fn operator_token(&self) -> String {
        let username = format!("op-{}", uuid::Uuid::new_v4().simple());
        holdfast_server::create_staff(
            &self.state,
            holdfast_core::parties::Role::Operator,
            "Operator",
            &username,
            "operator-password",
        )
        .await
        .unwrap();
        self.password_login(&username, "operator-password").await
    }

    pub async fn password_login(&self, username: &str, password: &str) -> String {
        let reply = self
            .post(
                "/v1/auth/login",
                None,
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.body["access_token"].as_str().unwrap().to_owned()
    }

    /// A supplier; returns its id and token.
    pub async fn supplier(&self, operator: &str, name: &str) -> (String, String) {
        let (created, token) = self
            .onboard_staff(
                operator,
                "/v1/operator/suppliers",
                "sup",
                json!({"display_name": name}),
            )
            .await;
        (world::party_id(&created), token)
    }

    /// A shopper with an EC card on a prepaid balance, logged in on the phone; returns its id
    /// and token.
    pub async fn shopper(&self, operator: &str, phone: &str, deposit: &str) -> (String, String) {
        let (id, card) = self.prepaid_card(operator, phone, deposit).await;
        (id, self.card_login(&card, phone).await)
    }

    /// An EC card on a prepaid account, issued through the operator; returns the holder's id
    /// and the card number.
    pub async fn prepaid_card(
        &self,
        operator: &str,
        phone: &str,
        deposit: &str,
    ) -> (String, String) {
        let reply = self
            .post_idempotent(
                "/v1/operator/shoppers",
                Some(operator),
                json!({"display_name": "Shopper", "phone": phone, "currency": "USD",
                       "initial_deposit": {"amount": deposit, "currency": "USD"}}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        (
            reply.body["party_id"].as_str().unwrap().to_owned(),
            reply.body["card"]["card_number"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    }

    /// Logs in with `card` on the phone mapped to it; returns the token.
    pub async fn card_login(&self, card: &str, phone: &str) -> String {
        let started = self
            .post("/v1/auth/card-login", None, json!({"card_number": card}))
            .await;
        assert_eq!(started.status, StatusCode::ACCEPTED, "{started:?}");
        let challenge = started.body["challenge_id"].as_str().unwrap().to_owned();
        let code = self.code_for(phone, &challenge).await;
        let answered = self.answer(&challenge, &code, "approve").await;
        assert_eq!(answered.status, StatusCode::OK, "{answered:?}");
        answered.body["token"]["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A POST with a fresh `Idempotency-Key`, as money-moving requests need.
    pub async fn post_idempotent(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        let key = uuid::Uuid::new_v4().to_string();
        self.request(
            Method::POST,
            path,
            token,
            Some(body),
            &[("idempotency-key", &key)],
        )
        .await
    }

    /// The newest code the phone received for `challenge`, read from the simulator's inbox.
    pub async fn code_for(&self, phone: &str, challenge: &str) -> String {
        self.deliver().await;
        let inbox = self.inbox(phone, "limit=100").await;
        assert_eq!(inbox.status, StatusCode::OK, "{inbox:?}");
        inbox
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["challenge_id"] == challenge)
            .and_then(|m| m["code"].as_str())
            .unwrap_or_else(|| panic!("no code for {challenge} in {}", inbox.body))
            .to_owned()
    }

    /// The simulator's inbox of `phone`, read with the harness's operator token; `query` is
    /// the query string without `?`.
    pub async fn inbox(&self, phone: &str, query: &str) -> Reply {
        let operator = self.harness_operator().await;
        let path = if query.is_empty() {
            format!("/v1/phone-simulator/{phone}/messages")
        } else {
            format!("/v1/phone-simulator/{phone}/messages?{query}")
        };
        self.get(&path, Some(&operator)).await
    }

    pub async fn answer(&self, challenge: &str, code: &str, decision: &str) -> Reply {
        self.post(
            &format!("/v1/challenges/{challenge}/answer"),
            None,
            json!({"code": code, "decision": decision}),
        )
        .await
    }

    /// A commodity of `supplier` with the platform's commission `rate` (which the operator
    /// sets); returns its id.
    pub async fn commodity(&self, supplier: &str, price: &str, rate: &str) -> String {
        let reply = self
            .post(
                "/v1/retail/commodities",
                Some(supplier),
                json!({"name": "Thing", "price": {"amount": price, "currency": "USD"}}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
        let id = reply.body["id"].as_str().unwrap().to_owned();
        let operator = self.harness_operator().await;
        let set = self
            .request(
                Method::PUT,
                &format!("/v1/operator/commodities/{id}/commission"),
                Some(&operator),
                Some(json!({"commission_rate": rate})),
                &[],
            )
            .await;
        assert_eq!(set.status, StatusCode::OK, "{set:?}");
        id
    }

    /// The harness's own operator token.
    pub async fn harness_operator(&self) -> String {
        self.harness_operator
            .get_or_init(|| self.operator_token())
            .await
            .clone()
    }

    pub async fn place_order(&self, shopper: &str, commodity: &str, quantity: u32) -> Reply {
        self.post_idempotent(
            "/v1/retail/orders",
            Some(shopper),
            json!({"lines": [{"commodity_id": commodity, "quantity": quantity}]}),
        )
        .await
    }

    /// The id of the order's pending phone confirmation, as its shopper sees it.
    pub async fn pending_confirmation(&self, shopper: &str, order_number: &str) -> String {
        let order = self
            .get(&format!("/v1/retail/orders/{order_number}"), Some(shopper))
            .await;
        order.body["pending_confirmation"]["challenge_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no pending confirmation: {order:?}"))
            .to_owned()
    }

    /// The balance of the caller's first account of `kind`, as a decimal string.
    pub async fn balance(&self, token: &str, kind: &str) -> String {
        let accounts = self.get("/v1/accounts", Some(token)).await;
        accounts
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["kind"] == kind)
            .map(|a| a["balance"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| "0.00".to_owned())
    }

    pub async fn platform_commission(&self, operator: &str) -> String {
        let accounts = self
            .get("/v1/operator/accounts?owner=platform", Some(operator))
            .await;
        accounts
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["kind"] == "commission")
            .map(|a| a["balance"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| "0.00".to_owned())
    }

    /// Asserts the ledger audit finds nothing wrong.
    pub async fn assert_ledger_clean(&self) {
        let audit = holdfast_core::ledger::audit(&self.state.db).await.unwrap();
        assert!(audit.is_clean(), "ledger audit failed: {audit:?}");
    }

    /// Runs raw SQL (for tests that tamper with rows on purpose).
    pub async fn execute(&self, sql: &str) {
        self.state
            .db
            .execute_raw(Statement::from_string(self.backend(), sql.to_owned()))
            .await
            .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use crate::driver::{database_name, replace_database};
    use holdfast_core::cards::CardNumber;
    use holdfast_core::order_number::OrderNumber;

    /// Every run of digits and dashes shaped like an order number (`1234-5678-9015`) or an
    /// EC card number (`1001-2112-3456-7897`) in `text`.
    fn numbers_in(text: &str) -> Vec<&str> {
        text.split(|c: char| !(c.is_ascii_digit() || c == '-'))
            .map(|run| run.trim_matches('-'))
            .filter(|run| {
                let groups: Vec<&str> = run.split('-').collect();
                (groups.len() == 3 || groups.len() == 4) && groups.iter().all(|g| g.len() == 4)
            })
            .collect()
    }

    #[test]
    fn the_example_numbers_in_the_readme_and_the_api_docs_pass_their_check_digits() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let mut texts = vec![std::fs::read_to_string(format!("{root}/README.md")).unwrap()];
        for entry in std::fs::read_dir(format!("{root}/server/src/api")).unwrap() {
            texts.push(std::fs::read_to_string(entry.unwrap().path()).unwrap());
        }
        let mut checked = 0;
        for text in &texts {
            for number in numbers_in(text) {
                if number.len() == 14 {
                    assert!(OrderNumber::parse(number).is_ok(), "order number {number}");
                } else {
                    assert!(CardNumber::parse(number).is_ok(), "card number {number}");
                }
                checked += 1;
            }
        }
        // The README's card number and the OpenAPI's order number at least.
        assert!(checked >= 2, "only {checked} example numbers found");
        assert_eq!(numbers_in("x 1234-5678-9012, y"), ["1234-5678-9012"]);
        assert!(OrderNumber::parse("1234-5678-9012").is_err());
    }

    #[test]
    fn the_database_name_is_replaced_in_a_url() {
        assert_eq!(
            replace_database("postgres://u@127.0.0.1:5432/postgres", "t1"),
            "postgres://u@127.0.0.1:5432/t1"
        );
        assert_eq!(
            replace_database("postgres://u@127.0.0.1:5432/postgres?sslmode=disable", "t1"),
            "postgres://u@127.0.0.1:5432/t1?sslmode=disable"
        );
        assert_eq!(
            replace_database("postgres://127.0.0.1", "t1"),
            "postgres://127.0.0.1/t1"
        );
        assert_eq!(
            database_name("postgres://u@127.0.0.1:5432/holdfast_bench_7?sslmode=disable")
                .as_deref(),
            Some("holdfast_bench_7")
        );
        assert_eq!(database_name("postgres://127.0.0.1"), None);
    }
}
