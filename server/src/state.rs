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

/// Everything a request handler needs; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub core: Core,
    pub jwt: JwtKeys,
    pub gateway: Arc<dyn PhoneGateway>,
    /// Delivers the outbox: texts through `gateway`, events to webhooks.
    pub courier: Arc<crate::delivery::Courier>,
    /// The phone simulator's inbox is readable over the API (development and tests only).
    pub simulator_inbox: bool,
    /// Signalled when the simulator delivers a message (long-polling readers wait on it).
    pub inbox_arrivals: Arc<tokio::sync::Notify>,
    /// Verifies the phone provider's signed inbound replies; `None` turns that endpoint off.
    pub webhook_secret: Option<WebhookSecret>,
    /// Where parties' webhooks may go (public addresses only by default).
    pub webhook_policy: holdfast_core::webhook_target::TargetPolicy,
}
