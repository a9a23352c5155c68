//! The process's lifecycle as requests and workers see it: whether it is shutting down, when
//! each background worker last went round its loop, and how long a request may take.
//!
//! Shutdown, in order (`main`): a signal (SIGTERM or Ctrl-C) calls [`Lifecycle::begin_shutdown`],
//! which turns `/readyz` to 503 at once (a load balancer stops sending) and tells the server to
//! stop accepting and the workers to stop after their current unit of work (one timer, one
//! outbox batch, one account's fold). In-flight requests finish; the workers are joined; then
//! the process exits 0. If that takes longer than the grace period, it exits 1.

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The default of `--request-timeout-secs`: above the longest long poll (the simulator inbox
/// waits at most 30 s), below the default shutdown grace.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(35);

/// The default of `--shutdown-grace-secs`: in-flight requests (at most the request timeout)
/// and the workers' current unit of work must end within it.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(40);

/// A worker is stale (and the process not ready) when it has not gone round its loop for this
/// many of its poll intervals…
const STALE_INTERVALS: u32 = 4;
/// …and for at least this long: one round may legitimately take a while (a batch of webhooks
/// to slow receivers, a backlog of timers).
const MIN_STALE_AFTER: Duration = Duration::from_secs(30);

/// The background workers `/readyz` watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Worker {
    Outbox,
    Timers,
    Fold,
    SessionSweep,
    BankRuns,
}

impl Worker {
    pub const ALL: [Worker; 5] = [
        Worker::Outbox,
        Worker::Timers,
        Worker::Fold,
        Worker::SessionSweep,
        Worker::BankRuns,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Worker::Outbox => "outbox",
            Worker::Timers => "timers",
            Worker::Fold => "fold",
            Worker::SessionSweep => "session_sweep",
            Worker::BankRuns => "bank_runs",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// When a worker last went round, and how long it may stay away.
#[derive(Debug, Clone, Copy)]
struct Heartbeat {
    at: Instant,
    stale_after: Duration,
}

#[derive(Debug)]
struct Inner {
    stop: watch::Sender<bool>,
    heartbeats: Mutex<[Option<Heartbeat>; Worker::ALL.len()]>,
    request_timeout: Duration,
}

/// Shared by the server, its workers and `/readyz`; cheap to clone.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

/// Why the workers are not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkersState {
    Running,
    /// Some worker was never started in this process.
    NotStarted,
    /// Some worker has not gone round its loop for too long.
    Stale(Worker),
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle::new(DEFAULT_REQUEST_TIMEOUT)
    }
}

impl Lifecycle {
    pub fn new(request_timeout: Duration) -> Lifecycle {
        let (stop, _) = watch::channel(false);
        Lifecycle {
            inner: Arc::new(Inner {
                stop,
                heartbeats: Mutex::new([None; Worker::ALL.len()]),
                request_timeout,
            }),
        }
    }

    pub fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// Starts the shutdown; true the first time.
    pub fn begin_shutdown(&self) -> bool {
        !self.inner.stop.send_replace(true)
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.inner.stop.borrow()
    }

    /// Turns true when the shutdown begins (workers watch it).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.inner.stop.subscribe()
    }

    /// Resolves once the shutdown has begun.
    pub async fn stopping(&self) {
        let mut stop = self.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot fail while we wait.
        let _ = stop.wait_for(|stopping| *stopping).await;
    }

    /// `worker` went round its loop now; it is stale after `poll` times a few (at least
    /// [`MIN_STALE_AFTER`]) without another beat.
    pub fn beat(&self, worker: Worker, poll: Duration) {
        self.beat_at(worker, poll, Instant::now());
    }

    /// [`Lifecycle::beat`] at a given instant (tests make a worker look stale with it).
    pub fn beat_at(&self, worker: Worker, poll: Duration, at: Instant) {
        let stale_after = poll.saturating_mul(STALE_INTERVALS).max(MIN_STALE_AFTER);
        if let Ok(mut beats) = self.inner.heartbeats.lock() {
            beats[worker.index()] = Some(Heartbeat { at, stale_after });
        }
    }

    /// Whether every worker has beaten recently, as of `now`.
    pub fn workers(&self, now: Instant) -> WorkersState {
        let Ok(beats) = self.inner.heartbeats.lock() else {
            return WorkersState::NotStarted;
        };
        for worker in Worker::ALL {
            match beats[worker.index()] {
                None => return WorkersState::NotStarted,
                Some(beat) if now.saturating_duration_since(beat.at) > beat.stale_after => {
                    return WorkersState::Stale(worker);
                }
                Some(_) => {}
            }
        }
        WorkersState::Running
    }
}

/// Answers `503 request_timeout` in the error envelope when the rest of the stack takes longer
/// than the request timeout. The handler's future is dropped: a write transaction not yet
/// committed rolls back with its idempotency claim (they are one transaction), and one whose
/// commit was already sent is whole; a client that sent an `Idempotency-Key` learns which by
/// sending it again.
pub async fn request_deadline(
    State(lifecycle): State<Lifecycle>,
    request: Request,
    next: Next,
) -> Response {
    let limit = lifecycle.request_timeout();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(timeout_ms = limit.as_millis() as u64, "request timed out");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request_timeout",
                format!(
                    "the request took longer than {} ms and was abandoned; a write sent with an \
                     Idempotency-Key can be sent again to learn its outcome",
                    limit.as_millis()
                ),
            )
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat_all(lifecycle: &Lifecycle, at: Instant) {
        for worker in Worker::ALL {
            lifecycle.beat_at(worker, Duration::from_millis(500), at);
        }
    }

    #[test]
    fn workers_that_never_beat_are_not_started() {
        let lifecycle = Lifecycle::default();
        assert_eq!(lifecycle.workers(Instant::now()), WorkersState::NotStarted);
    }

    #[test]
    fn a_worker_silent_past_its_allowance_is_stale_and_a_recent_one_is_not() {
        let lifecycle = Lifecycle::default();
        let start = Instant::now();
        beat_all(&lifecycle, start);
        assert_eq!(lifecycle.workers(start), WorkersState::Running);
        assert_eq!(
            lifecycle.workers(start + MIN_STALE_AFTER),
            WorkersState::Running
        );
        lifecycle.beat_at(
            Worker::Outbox,
            Duration::from_millis(500),
            start + MIN_STALE_AFTER,
        );
        assert_eq!(
            lifecycle.workers(start + MIN_STALE_AFTER + Duration::from_secs(1)),
            WorkersState::Stale(Worker::Timers)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_slower_than_the_timeout_gets_the_error_envelope() {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let lifecycle = Lifecycle::new(Duration::from_millis(100));
        let app = axum::Router::new()
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/quick", axum::routing::get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                lifecycle,
                request_deadline,
            ));
        let request = |path| {
            axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap_or_default()
        };
        let quick = app.clone().oneshot(request("/quick")).await;
        let quick = quick.unwrap_or_else(|never| match never {});
        assert_eq!(quick.status(), StatusCode::OK);
        let slow = app.oneshot(request("/slow")).await;
        let slow = slow.unwrap_or_else(|never| match never {});
        assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = slow.into_body().collect().await.map(|b| b.to_bytes());
        let body: serde_json::Value =
            serde_json::from_slice(&body.unwrap_or_default()).unwrap_or_default();
        assert_eq!(body["error"]["code"], "request_timeout");
    }

    #[test]
    fn the_shutdown_begins_once() {
        let lifecycle = Lifecycle::default();
        assert!(!lifecycle.is_shutting_down());
        assert!(lifecycle.begin_shutdown());
        assert!(!lifecycle.begin_shutdown());
        assert!(lifecycle.is_shutting_down());
    }
}
