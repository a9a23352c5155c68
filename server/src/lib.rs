//! Holdfast's API server: one axum application under `/v1`, with its background workers.

pub mod api;
pub mod app;
pub mod auth;
pub mod backup;
pub mod bank_gateways;
pub mod config;
pub mod console;
pub mod delivery;
pub mod demo;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod lifecycle;
pub mod metrics;
pub mod openapi;
pub mod phone_gateways;
pub mod state;
pub mod telemetry;
pub mod txn;
pub mod workers;

pub use state::AppState;

use anyhow::Context;
use auth::JwtKeys;
use axum::Router;
use hmac::Mac;
use holdfast_core::challenge::{ChallengeKeys, ChallengePolicy, keyed_mac};
use holdfast_core::db::{self, PoolSize};
use holdfast_core::onboarding::{self, StaffCredentials};
use holdfast_core::parties::{Party, Role};
use holdfast_core::phone::{PhoneGateway, PhoneSimulator};
use holdfast_core::webhook_target::TargetPolicy;
use holdfast_core::{Clock, Core, CoreResult, funding, parties};
use holdfast_migrations::{Migrator, MigratorTrait};
use sea_orm::DatabaseConnection;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

/// The application router for `state`.
pub fn app(state: AppState) -> Router {
    api::router(state)
}

/// Opens the database, applies migrations, and creates the platform's own parties.
pub async fn open_database(url: &str, pool: PoolSize) -> anyhow::Result<DatabaseConnection> {
    let db = db::connect(url, pool)
        .await
        .context("could not open the database")?;
    Migrator::up(&db, None)
        .await
        .context("could not apply migrations")?;
    let clock = Clock::system();
    // The bootstrap's own transaction: there is no application state yet (the service secret
    // and keys come after the database), so it cannot go through the runner.
    let txn = db::begin_write(&db).await?;
    parties::ensure_platform_in_txn(&txn, &clock).await?;
    funding::ensure_default_institution_in_txn(&txn, &clock).await?;
    txn.commit().await?;
    Ok(db)
}

/// Staff with a username and password, created outside a request: the bootstrap's first
/// operator, the demo's users, tests. The password is hashed first (argon2 is slow on purpose,
/// and SQLite's write lock should not wait on it), then the party is written through the
/// runner ([`AppState::in_write_txn`]).
pub async fn create_staff(
    state: &AppState,
    role: Role,
    display_name: &str,
    username: &str,
    password: &str,
) -> CoreResult<(Party, String)> {
    let credentials =
        StaffCredentials::hash(&state.core.passwords, username, password, None).await?;
    state
        .in_write_txn(async |txn, core| {
            onboarding::create_staff_in_txn(txn, core, role, display_name, credentials).await
        })
        .await
}

/// The service secret that signs tokens and phone codes: `configured` (the `--jwt-secret` flag,
/// at least [`config::MIN_SECRET_CHARS`] characters) when given, otherwise the random secret
/// stored in `db` (generated at first start). Nothing is compiled in: a token minted for one
/// database does not verify on another.
pub async fn service_secret(
    db: &DatabaseConnection,
    configured: Option<&SecretString>,
) -> anyhow::Result<Vec<u8>> {
    match configured {
        Some(secret) => {
            let secret = secret.expose_secret();
            anyhow::ensure!(
                secret.chars().count() >= config::MIN_SECRET_CHARS,
                "HOLDFAST_JWT_SECRET must have at least {} characters",
                config::MIN_SECRET_CHARS
            );
            Ok(secret.as_bytes().to_vec())
        }
        None => holdfast_core::service_secret::load_or_create(db, &Clock::system())
            .await
            .context("could not read or store the service secret"),
    }
}

/// Keys for tokens and phone codes, each derived from the one service secret.
pub fn keys_from_secret(secret: &[u8], token_ttl_secs: i64) -> (JwtKeys, ChallengeKeys) {
    let mut mac = keyed_mac(secret);
    mac.update(b"holdfast jwt signing v1");
    let signing_key = mac.finalize().into_bytes();
    (
        JwtKeys::new(&signing_key, token_ttl_secs),
        ChallengeKeys::derive(secret),
    )
}

/// What a server's state is built from.
pub struct Settings {
    pub secret: Vec<u8>,
    pub token_ttl_secs: i64,
    pub policy: ChallengePolicy,
    pub auto_settle: chrono::Duration,
    /// `None`: the built-in simulator, its inbox readable over the API.
    pub gateway: Option<Arc<dyn PhoneGateway>>,
    pub webhook_secret: Option<Vec<u8>>,
    /// Where webhooks may go: public addresses only, unless private ones are allowed for
    /// development.
    pub webhook_policy: TargetPolicy,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("token_ttl_secs", &self.token_ttl_secs)
            .field("auto_settle", &self.auto_settle)
            .finish_non_exhaustive()
    }
}

pub fn build_state(db: DatabaseConnection, clock: Clock, settings: Settings) -> AppState {
    let (jwt, challenge_keys) = keys_from_secret(&settings.secret, settings.token_ttl_secs);
    let core = Core::new(clock.clone(), challenge_keys, settings.policy)
        .with_auto_settle(settings.auto_settle);
    let simulator_key = settings
        .gateway
        .is_none()
        .then(state::SimulatorKey::generate);
    let simulator = PhoneSimulator::new(db.clone(), clock.clone());
    let inbox_arrivals = simulator.arrivals();
    let gateway: Arc<dyn PhoneGateway> = settings.gateway.unwrap_or_else(|| Arc::new(simulator));
    let login_throttle = Arc::new(holdfast_core::login_throttle::LoginThrottle::new(
        clock.clone(),
    ));
    let courier = Arc::new(delivery::Courier::new(
        gateway.clone(),
        db.clone(),
        clock,
        settings.webhook_policy,
    ));
    AppState {
        gateway,
        courier,
        db,
        core,
        jwt,
        simulator_key,
        login_throttle,
        inbox_arrivals,
        webhook_policy: settings.webhook_policy,
        metrics: None,
        lifecycle: lifecycle::Lifecycle::default(),
        bank_gateway: None,
        simulated_bank: None,
        webhook_secret: settings
            .webhook_secret
            .map(|secret| state::WebhookSecret(Arc::from(secret))),
    }
}

impl AppState {
    /// The same state serving `/metrics` and counting requests (`--metrics on`).
    pub fn with_metrics(mut self, metrics: metrics::Metrics) -> AppState {
        self.metrics = Some(metrics);
        self
    }

    /// The same state with webhooks allowed (or not) to private targets: tests and development
    /// setups with a receiver on this machine say so explicitly.
    pub fn with_webhook_policy(mut self, policy: TargetPolicy) -> AppState {
        self.courier = Arc::new(delivery::Courier::new(
            self.gateway.clone(),
            self.db.clone(),
            self.core.clock.clone(),
            policy,
        ));
        self.webhook_policy = policy;
        self
    }

    /// The same state with another request timeout (`--request-timeout-secs`). Call it before
    /// the state is shared: it gives the state a lifecycle of its own.
    pub fn with_request_timeout(mut self, timeout: std::time::Duration) -> AppState {
        self.lifecycle = lifecycle::Lifecycle::new(timeout);
        self
    }
}

/// The state of a server using the phone simulator (development and tests).
pub fn simulator_state(
    db: DatabaseConnection,
    clock: Clock,
    secret: &[u8],
    token_ttl_secs: i64,
    policy: ChallengePolicy,
) -> AppState {
    build_state(
        db,
        clock,
        Settings {
            secret: secret.to_vec(),
            token_ttl_secs,
            policy,
            auto_settle: chrono::Duration::hours(holdfast_core::DEFAULT_AUTO_SETTLE_HOURS),
            gateway: None,
            webhook_secret: None,
            webhook_policy: TargetPolicy::PublicOnly,
        },
    )
    .with_bank_gateway(&bank_gateways::BankGatewayKind::Simulator)
}
