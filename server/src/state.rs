use crate::auth::JwtKeys;
use holdfast_core::Core;
use holdfast_core::phone::PhoneGateway;
use sea_orm::DatabaseConnection;
use std::sync::Arc;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub core: Core,
    pub jwt: JwtKeys,
    pub gateway: Arc<dyn PhoneGateway>,
    /// The phone simulator's inbox is readable over the API (development and tests only).
    pub simulator_inbox: bool,
}
