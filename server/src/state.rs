use crate::auth::JwtKeys;
use holdfast_core::Core;
use holdfast_core::phone::PhoneGateway;
use sea_orm::DatabaseConnection;
use std::sync::Arc;

/// The key the phone provider signs its inbound replies with. Never printed.
#[derive(Clone)]
pub struct WebhookSecret(pub Arc<[u8]>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

/// The key that opens the phone simulator's inbox (header `x-simulator-key`), generated at each
/// start. Never logged by `Debug`.
#[derive(Clone)]
pub struct SimulatorKey(pub Arc<str>);

impl SimulatorKey {
    /// 32 random bytes from the operating system, as hex.
    pub fn generate() -> SimulatorKey {
        use rand::TryRngCore;
        let mut bytes = [0u8; 32];
        // The OS source failing is not recoverable; ThreadRng (seeded from it) is the fallback.
        if rand::rngs::OsRng.try_fill_bytes(&mut bytes).is_err() {
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        }
        SimulatorKey(Arc::from(hex::encode(bytes)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(presented).into()
    }
}

impl std::fmt::Debug for SimulatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimulatorKey(…)")
    }
}

/// Everything a request handler needs; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub core: Core,
    pub jwt: JwtKeys,
    pub gateway: Arc<dyn PhoneGateway>,
    /// Delivers the outbox: texts through `gateway`, events to webhooks.
    pub courier: Arc<crate::delivery::Courier>,
    /// The phone simulator's inbox is readable over the API (development and tests only), by
    /// an operator or with this key; `None` when a real gateway is configured.
    pub simulator_key: Option<SimulatorKey>,
    /// Signalled when the simulator delivers a message (long-polling readers wait on it).
    pub inbox_arrivals: Arc<tokio::sync::Notify>,
    /// Verifies the phone provider's signed inbound replies; `None` turns that endpoint off.
    pub webhook_secret: Option<WebhookSecret>,
    /// Wrong passwords per (username, client address) and per client address.
    pub login_throttle: Arc<holdfast_core::login_throttle::LoginThrottle>,
    /// Where parties' webhooks may go (public addresses only by default).
    pub webhook_policy: holdfast_core::webhook_target::TargetPolicy,
    /// `/metrics` and the request counters; `None` with `--metrics off`.
    pub metrics: Option<crate::metrics::Metrics>,
    /// Shutdown, the workers' heartbeats, the request timeout.
    pub lifecycle: crate::lifecycle::Lifecycle,
    /// Where bank runs' files go (`--bank-gateway`); `None`: no bank, payouts wait.
    pub bank_gateway: Option<Arc<dyn holdfast_core::banking::runs::BankGateway>>,
    /// The simulated bank, when it is the gateway: its endpoints for development and tests.
    pub simulated_bank: Option<Arc<crate::bank_gateways::SimulatedBank>>,
}
