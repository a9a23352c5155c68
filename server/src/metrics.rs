//! Prometheus metrics: the recorder (installed by the server, once per process), the HTTP
//! request layer, and the gauges sampled when `/metrics` is scraped.
//!
//! The `metrics` facade has one global recorder per process; core and the verticals count
//! their outcomes through it ([`holdfast_core::outcomes`]). A recorder passed per
//! [`AppState`] is not possible for them: `metrics::with_local_recorder` covers a synchronous
//! closure only, never a request's `.await`s. So [`install`] installs the global recorder on
//! the first call and hands every later caller (each test's server) the same handle. With
//! `--metrics off` nothing is installed: every count then goes to the facade's no-op recorder,
//! and the request layer is not added at all.
//!
//! Backlogs, ages and lags are sampled at scrape time, not by a background loop: a handful of
//! aggregate queries on existing indexes (`outbox_due`, `timers_due`), run only as often as
//! Prometheus asks, always current, and nothing to stop at shutdown.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use holdfast_core::banking::statements::EntryStatus;
use holdfast_core::entities::{bank_entries, outbox, timers};
use holdfast_core::outbox::DeliveryStatus;
use holdfast_core::timers::TimerStatus;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sea_orm::{ColumnTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, QuerySelect};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const HTTP_REQUESTS: &str = "holdfast_http_requests_total";
pub const HTTP_DURATION: &str = "holdfast_http_request_duration_seconds";
pub const OUTBOX_BACKLOG: &str = "holdfast_outbox_backlog_messages";
pub const OUTBOX_OLDEST_AGE: &str = "holdfast_outbox_oldest_undelivered_age_seconds";
pub const TIMERS_DUE: &str = "holdfast_timers_due";
pub const TIMERS_OLDEST_LAG: &str = "holdfast_timers_oldest_due_lag_seconds";
pub const TIMERS_FAILED: &str = "holdfast_timers_failed";
pub const BANK_OPEN_ITEMS: &str = "holdfast_bank_open_items";
pub const DB_POOL_CONNECTIONS: &str = "holdfast_db_pool_connections";
pub const DB_POOL_MAX: &str = "holdfast_db_pool_max_connections";
pub const SAMPLE_FAILURES: &str = "holdfast_metrics_sample_failures_total";

/// Request latency buckets, in seconds: a millisecond to ten seconds.
const LATENCY_BUCKETS_SECS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into their buckets between scrapes (a scrape folds
/// them too): keeps memory flat when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// What `/metrics` serves and who may read it.
#[derive(Clone)]
pub struct Metrics {
    pub handle: PrometheusHandle,
    /// A bearer token for the scraper (`--metrics-token`); an operator's JWT works as well.
    pub token: Option<SecretString>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Whether `presented` is the configured scrape token (compared in constant time).
    pub fn token_matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.token.as_ref().is_some_and(|token| {
            token
                .expose_secret()
                .as_bytes()
                .ct_eq(presented.as_bytes())
                .into()
        })
    }
}

/// Installs the process's Prometheus recorder on the first call; later calls get the same
/// handle.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    static INSTALLED: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut installed = INSTALLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(HTTP_DURATION.to_owned()),
            &LATENCY_BUCKETS_SECS,
        )?
        .install_recorder()?;
    describe();
    *installed = Some(handle.clone());
    Ok(handle)
}

/// Folds histogram samples into buckets every [`UPKEEP_INTERVAL`] until the process ends.
pub fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

fn describe() {
    use holdfast_core::outcomes as o;
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "Requests served, by route template, method and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer a request, by route template and method"
    );
    describe_counter!(
        o::HOLDS_PLACED,
        "Holds placed, by mode (move: money frozen; reserve: credit reserved)"
    );
    describe_counter!(
        o::HOLDS_RESOLVED,
        "Holds resolved, by mode and resolution (posted, voided, expired)"
    );
    describe_counter!(
        o::SETTLEMENTS,
        "Escrow cases settled, by vertical and how (approved, auto_settled, mediated)"
    );
    describe_counter!(o::DISPUTES_OPENED, "Disputes opened, by vertical");
    describe_counter!(
        o::DISPUTES_RESOLVED,
        "Disputes mediated, by vertical and outcome (released, refunded)"
    );
    describe_counter!(
        o::CHALLENGE_OUTCOMES,
        "Phone challenge outcomes, by purpose and outcome"
    );
    describe_counter!(
        o::RECONCILIATIONS,
        "Days of an institution's bank account reconciled, by result (clean, discrepancy)"
    );
    describe_counter!(
        holdfast_core::outbox::DELIVERY_FAILURES,
        "Failed outbox deliveries, by channel and whether it was the last try"
    );
    describe_gauge!(
        OUTBOX_BACKLOG,
        "Outbox messages not yet delivered (sampled at scrape)"
    );
    describe_gauge!(
        OUTBOX_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest undelivered outbox message"
    );
    describe_gauge!(TIMERS_DUE, "Timers due now and not yet fired");
    describe_gauge!(
        TIMERS_OLDEST_LAG,
        Unit::Seconds,
        "How long the oldest due timer has waited past its deadline"
    );
    describe_gauge!(
        TIMERS_FAILED,
        "Timers given up after repeated handler failures, waiting for an operator"
    );
    describe_gauge!(
        BANK_OPEN_ITEMS,
        "Bank statement entries waiting for an operator (unmatched or mismatched)"
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Database pool connections, by state (in_use, idle)"
    );
    describe_gauge!(DB_POOL_MAX, "The database pool's size limit");
    describe_counter!(
        SAMPLE_FAILURES,
        "Scrapes whose database sample failed (the gauges kept their last values)"
    );
}

/// A method from the fixed set, or `other`: a client can send any token as a method.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts and times each request by its route template (never the concrete path, which can
/// hold an id or a phone number); requests no route matched share the label `unmatched`.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_str().to_owned();
    metrics::histogram!(HTTP_DURATION, "route" => route.clone(), "method" => method)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(HTTP_REQUESTS, "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

/// Sets the sampled gauges from the database and the pool. A failed query leaves its gauges
/// as they were and is counted, so that the rest of the scrape still answers.
pub async fn sample(state: &AppState) {
    if let Err(error) = sample_queues(&state.db, state.core.clock.now()).await {
        tracing::warn!(%error, "metrics sample failed");
        metrics::counter!(SAMPLE_FAILURES).increment(1);
    }
    sample_pool(&state.db);
}

async fn sample_queues(
    db: &DatabaseConnection,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), sea_orm::DbErr> {
    let age_secs = |oldest: Option<chrono::DateTime<chrono::Utc>>| {
        oldest.map_or(0.0, |at| {
            (now - at).num_milliseconds().max(0) as f64 / 1000.0
        })
    };
    // Each an index range scan: outbox (status, next_attempt_at), timers (status, due_at),
    // bank entries (status).
    let (backlog, oldest_message): (i64, Option<chrono::DateTime<chrono::Utc>>) =
        outbox::Entity::find()
            .select_only()
            .column_as(outbox::Column::Id.count(), "backlog")
            .column_as(outbox::Column::CreatedAt.min(), "oldest")
            .filter(outbox::Column::Status.eq(DeliveryStatus::Pending))
            .into_tuple()
            .one(db)
            .await?
            .unwrap_or((0, None));
    let (due, oldest_due): (i64, Option<chrono::DateTime<chrono::Utc>>) = timers::Entity::find()
        .select_only()
        .column_as(timers::Column::Id.count(), "due")
        .column_as(timers::Column::DueAt.min(), "oldest")
        .filter(timers::Column::Status.eq(TimerStatus::Pending))
        .filter(timers::Column::DueAt.lte(now))
        .into_tuple()
        .one(db)
        .await?
        .unwrap_or((0, None));
    let failed: i64 = timers::Entity::find()
        .select_only()
        .column_as(timers::Column::Id.count(), "failed")
        .filter(timers::Column::Status.eq(TimerStatus::Failed))
        .into_tuple()
        .one(db)
        .await?
        .unwrap_or(0);
    let bank_open_items: i64 = bank_entries::Entity::find()
        .select_only()
        .column_as(bank_entries::Column::Id.count(), "open")
        .filter(bank_entries::Column::Status.is_in(EntryStatus::OPEN))
        .into_tuple()
        .one(db)
        .await?
        .unwrap_or(0);
    metrics::gauge!(OUTBOX_BACKLOG).set(backlog as f64);
    metrics::gauge!(OUTBOX_OLDEST_AGE).set(age_secs(oldest_message));
    metrics::gauge!(TIMERS_DUE).set(due as f64);
    metrics::gauge!(TIMERS_OLDEST_LAG).set(age_secs(oldest_due));
    metrics::gauge!(TIMERS_FAILED).set(failed as f64);
    metrics::gauge!(BANK_OPEN_ITEMS).set(bank_open_items as f64);
    Ok(())
}

/// The readers' pool (on SQLite the writer's one connection is outside it). sqlx does not
/// report how long an acquire waited, so there is no wait-time metric.
fn sample_pool(db: &DatabaseConnection) {
    let (size, idle, max) = match db.get_database_backend() {
        DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            )
        }
        DbBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            )
        }
        _ => return,
    };
    let idle = u32::try_from(idle).unwrap_or(u32::MAX);
    metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "in_use")
        .set(f64::from(size.saturating_sub(idle)));
    metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(f64::from(idle));
    metrics::gauge!(DB_POOL_MAX).set(f64::from(max));
}
