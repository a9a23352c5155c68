//! Card-present authorisation: a shop terminal, confirmed on the holder's phone.

use crate::state::AppState;
use axum::Router;
use utoipa::OpenApi;

pub fn routes() -> Router<AppState> {
    Router::new()
}

/// This module's part of the OpenAPI document (merged into the whole one).
#[derive(OpenApi)]
#[openapi(tags((name = "card-present")))]
pub struct Doc;
