//! Insurance: products, policies, premiums, certificates and insurer settlement.

use crate::state::AppState;
use axum::Router;
use utoipa::OpenApi;

pub fn routes() -> Router<AppState> {
    Router::new()
}

/// This module's part of the OpenAPI document (merged into the whole one).
#[derive(OpenApi)]
#[openapi(tags((name = "insurance")))]
pub struct Doc;
