//! `/readyz`: whether this process should get traffic. `/healthz` says it is alive.

use crate::lifecycle::WorkersState;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use holdfast_migrations::{Migrator, MigratorTrait};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use std::time::{Duration, Instant};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long the database may take to answer the readiness check.
pub const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ready))
}

/// A check that failed, by a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotReady {
    /// SIGTERM or Ctrl-C arrived: finishing in-flight requests, taking no new ones.
    ShuttingDown,
    /// The database did not answer a trivial query within 2 seconds.
    DatabaseUnreachable,
    /// The database's applied migrations are not exactly this binary's.
    MigrationsNotCurrent,
    /// The background workers were not started in this process.
    WorkersNotStarted,
    /// A background worker has not gone round its loop for several of its poll intervals.
    WorkerStale,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    #[schema(example = "ready")]
    pub status: &'static str,
    /// The checks that failed; empty when ready.
    pub failed: Vec<NotReady>,
}

/// Readiness: 200 only when the database answers, its migrations are this binary's, the
/// background workers run, and no shutdown has begun; otherwise 503 naming the failed checks.
/// Unauthenticated; says nothing but the codes.
#[utoipa::path(get, path = "/readyz", tag = "system", responses(
    (status = 200, description = "Ready for traffic", body = Readiness),
    (status = 503, description = "Not ready; `failed` names why", body = Readiness)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let readiness = check(&state).await;
    let status = if readiness.failed.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

/// Runs every check (each failing one is named, not just the first).
pub async fn check(state: &AppState) -> Readiness {
    let mut failed = Vec::new();
    if state.lifecycle.is_shutting_down() {
        failed.push(NotReady::ShuttingDown);
    }
    match tokio::time::timeout(DATABASE_CHECK_TIMEOUT, database(&state.db)).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => failed.push(NotReady::MigrationsNotCurrent),
        Ok(Err(())) | Err(_) => failed.push(NotReady::DatabaseUnreachable),
    }
    match state.lifecycle.workers(Instant::now()) {
        WorkersState::Running => {}
        WorkersState::NotStarted => failed.push(NotReady::WorkersNotStarted),
        WorkersState::Stale(worker) => {
            tracing::warn!(worker = worker.name(), "background worker stale");
            failed.push(NotReady::WorkerStale);
        }
    }
    Readiness {
        status: if failed.is_empty() {
            "ready"
        } else {
            "not_ready"
        },
        failed,
    }
}

/// Whether the database answers (`Err` if not) and its migrations are current.
async fn database(db: &DatabaseConnection) -> Result<bool, ()> {
    db.ping().await.map_err(|_| ())?;
    // A migration applied that this binary does not know (a newer binary ran) is an error
    // here, and so not current either.
    Ok(Migrator::get_pending_migrations(db)
        .await
        .is_ok_and(|pending| pending.is_empty()))
}
