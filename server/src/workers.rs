//! Background work that runs in every server process: delivering the outbox, firing due
//! timers, and sweeping expired console sessions. All are safe to run in several processes
//! against one PostgreSQL.

use crate::app::timers::TimerDispatch;
use crate::state::AppState;
use holdfast_core::CoreResult;
use holdfast_core::timers::{self, Fired};
use std::time::Duration;
use tokio::sync::watch;

/// How often idle workers look for work they were not woken for.
#[derive(Debug, Clone, Copy)]
pub struct WorkerIntervals {
    pub outbox_poll: Duration,
    pub timer_poll: Duration,
    /// How often expired console sessions are deleted.
    pub session_sweep: Duration,
}

impl Default for WorkerIntervals {
    fn default() -> Self {
        WorkerIntervals {
            outbox_poll: Duration::from_millis(500),
            timer_poll: Duration::from_millis(500),
            session_sweep: Duration::from_secs(60),
        }
    }
}

/// Fires every timer that is due now; returns how many fired. Tests call this directly after
/// moving the clock.
pub async fn fire_due_timers(state: &AppState) -> CoreResult<usize> {
    let dispatch = TimerDispatch {
        core: state.core.clone(),
    };
    let mut fired = 0;
    loop {
        match timers::fire_next(&state.db, &state.core.clock, &dispatch).await? {
            Fired::Idle => return Ok(fired),
            Fired::Fired(_) => fired += 1,
            Fired::Skipped(_) | Fired::Failed(_) => {}
        }
    }
}

/// Delivers every due outbox message now.
pub async fn deliver_outbox(state: &AppState) -> CoreResult<usize> {
    let mut delivered = 0;
    loop {
        let round = holdfast_core::outbox::deliver_due(
            &state.db,
            &state.core.clock,
            state.courier.as_ref(),
            holdfast_core::outbox::MAX_BATCH,
        )
        .await?;
        delivered += round.delivered;
        if round.delivered + round.retried + round.failed == 0 {
            return Ok(delivered);
        }
    }
}

/// Starts the workers; they stop when `shutdown` turns true.
pub fn spawn(state: AppState, intervals: WorkerIntervals, shutdown: watch::Receiver<bool>) {
    tokio::spawn(outbox_loop(
        state.clone(),
        intervals.outbox_poll,
        shutdown.clone(),
    ));
    tokio::spawn(timer_loop(
        state.clone(),
        intervals.timer_poll,
        shutdown.clone(),
    ));
    tokio::spawn(session_sweep_loop(state, intervals.session_sweep, shutdown));
}

async fn session_sweep_loop(state: AppState, every: Duration, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if let Err(error) = crate::console::session::sweep_expired(&state).await {
            tracing::warn!(%error, "console session sweep failed");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn outbox_loop(state: AppState, poll: Duration, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if let Err(error) = deliver_outbox(&state).await {
            tracing::warn!(%error, "outbox delivery round failed");
        }
        tokio::select! {
            () = state.core.outbox_woken() => {}
            () = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn timer_loop(state: AppState, poll: Duration, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        match fire_due_timers(&state).await {
            Ok(fired) if fired > 0 => {
                state.core.wake_outbox();
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "timer round failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => {}
        }
    }
}
