//! Pharmacy: prescriptions between hospitals and drugstores, paid through escrow.

use crate::state::AppState;
use axum::Router;
use utoipa::OpenApi;

pub fn routes() -> Router<AppState> {
    Router::new()
}

/// This module's part of the OpenAPI document (merged into the whole one).
#[derive(OpenApi)]
#[openapi(tags((name = "pharmacy")))]
pub struct Doc;
