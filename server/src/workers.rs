//! Background work that runs in every server process: delivering the outbox, firing due
//! timers, folding append-only accounts' postings into their balances, and sweeping expired
//! console sessions. All are safe to run in several processes against one PostgreSQL.

use crate::app::timers::TimerDispatch;
use crate::lifecycle::Worker;
use crate::state::AppState;
use holdfast_core::CoreResult;
use holdfast_core::ledger;
use holdfast_core::timers::{self, Fired};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How often idle workers look for work they were not woken for.
#[derive(Debug, Clone, Copy)]
pub struct WorkerIntervals {
    pub outbox_poll: Duration,
    pub timer_poll: Duration,
    /// How often expired console sessions are deleted.
    pub session_sweep: Duration,
    /// How often pending payouts go out in a bank run (`--bank-run-interval-secs`).
    pub bank_runs: Duration,
}

impl Default for WorkerIntervals {
    fn default() -> Self {
        WorkerIntervals {
            outbox_poll: Duration::from_millis(500),
            timer_poll: Duration::from_millis(500),
            session_sweep: Duration::from_secs(60),
            bank_runs: Duration::from_secs(300),
        }
    }
}

/// Fires every timer that is due now; returns how many fired. Tests call this directly after
/// moving the clock.
pub async fn fire_due_timers(state: &AppState) -> CoreResult<usize> {
    fire_due_timers_until(state, &watch::channel(false).1).await
}

/// Fires due timers one at a time until none is due or `stop` turns true. Each timer is one
/// unit (lease, then fire or record the failure, which clears the lease): stopping between
/// two never leaves a timer leased, so another instance can take the rest at once.
async fn fire_due_timers_until(
    state: &AppState,
    stop: &watch::Receiver<bool>,
) -> CoreResult<usize> {
    let dispatch = TimerDispatch {
        core: state.core.clone(),
    };
    let mut fired = 0;
    while !*stop.borrow() {
        // A failed handler's transaction was rolled back: what it counted did not happen.
        let next = holdfast_core::outcomes::after_commit_if(
            timers::fire_next(&state.db, &state.core.clock, &dispatch),
            |fired| matches!(fired, Ok(Fired::Fired(_))),
        );
        match next.await? {
            Fired::Idle => return Ok(fired),
            Fired::Fired(_) => fired += 1,
            Fired::Skipped(_) | Fired::Failed(_) => {}
        }
    }
    Ok(fired)
}

/// Delivers every due outbox message now.
pub async fn deliver_outbox(state: &AppState) -> CoreResult<usize> {
    deliver_outbox_until(state, &watch::channel(false).1).await
}

/// Delivers due outbox messages a batch at a time until none is due or `stop` turns true. A
/// batch is one unit: its leased messages are sent and their outcomes recorded before the
/// worker looks at `stop`.
async fn deliver_outbox_until(state: &AppState, stop: &watch::Receiver<bool>) -> CoreResult<usize> {
    let mut delivered = 0;
    while !*stop.borrow() {
        let round = holdfast_core::outbox::deliver_due(
            &state.db,
            &state.core.clock,
            state.courier.as_ref(),
            holdfast_core::outbox::MAX_BATCH,
        )
        .await?;
        delivered += round.delivered;
        if round.delivered + round.retried + round.failed == 0 {
            break;
        }
    }
    Ok(delivered)
}

/// How often the fold step runs. Readers add an account's unfolded postings to its balance, so
/// the backlog costs reads a little; folding often keeps it to a few hundred rows at most.
pub const FOLD_POLL: Duration = Duration::from_millis(200);

/// Accounts one fold round looks at.
const FOLD_ACCOUNTS_PER_ROUND: u64 = 64;

/// Folds the unfolded postings of append-only accounts into their balances, one account per
/// transaction (its row lock held for four statements), until none is left or every account
/// left is held by another transaction. Returns how many postings it folded. Tests call it
/// directly.
pub async fn fold_postings(state: &AppState) -> CoreResult<u64> {
    let mut folded = 0;
    loop {
        let accounts = ledger::accounts_to_fold(&state.db, FOLD_ACCOUNTS_PER_ROUND).await?;
        let mut progress = false;
        for account in accounts {
            // Its own transaction, outside the request runner: a fold wakes no outbox.
            let txn = holdfast_core::db::begin_write(&state.db).await?;
            let done = ledger::fold_account_in_txn(&txn, account, ledger::MAX_FOLD_BATCH).await?;
            txn.commit().await?;
            if let Some(done) = done
                && done.postings > 0
            {
                folded += done.postings;
                progress = true;
            }
        }
        // Each account is its own unit; a shutdown waits for one round, not the whole backlog
        // (the rest is folded by the next process, and readers add it meanwhile).
        if !progress || state.lifecycle.is_shutting_down() {
            return Ok(folded);
        }
    }
}

/// The running workers, to be joined at shutdown.
#[derive(Debug)]
pub struct Workers {
    tasks: JoinSet<()>,
}

impl Workers {
    /// Waits until every worker has finished its current unit of work and stopped (after
    /// [`crate::lifecycle::Lifecycle::begin_shutdown`]). A worker that panicked is logged.
    pub async fn join(mut self) {
        while let Some(result) = self.tasks.join_next().await {
            if let Err(error) = result {
                tracing::error!(%error, "a background worker ended abnormally");
            }
        }
    }
}

/// Starts the workers; each beats the state's lifecycle at every round (`/readyz` watches) and
/// stops, between units of work, once its shutdown begins.
pub fn spawn(state: AppState, intervals: WorkerIntervals) -> Workers {
    let mut tasks = JoinSet::new();
    tasks.spawn(outbox_loop(state.clone(), intervals.outbox_poll));
    tasks.spawn(repeat(
        state.clone(),
        Worker::Fold,
        FOLD_POLL,
        fold_postings,
    ));
    tasks.spawn(timer_loop(state.clone(), intervals.timer_poll));
    tasks.spawn(repeat(
        state.clone(),
        Worker::SessionSweep,
        intervals.session_sweep,
        crate::console::session::sweep_expired,
    ));
    // A round is its own units (a run per institution, a file per hand-over); a file left
    // between prepared and taken is handed over by the next round, here or elsewhere.
    tasks.spawn(repeat(
        state,
        Worker::BankRuns,
        intervals.bank_runs,
        crate::bank_gateways::bank_round,
    ));
    Workers { tasks }
}

/// Runs `round` every `every` until shutdown; a failed round is logged and retried next time.
async fn repeat<T, E: std::fmt::Display>(
    state: AppState,
    worker: Worker,
    every: Duration,
    round: impl AsyncFn(&AppState) -> Result<T, E>,
) {
    let mut shutdown = state.lifecycle.subscribe();
    while !*shutdown.borrow() {
        state.lifecycle.beat(worker, every);
        if let Err(error) = round(&state).await {
            tracing::warn!(%error, worker = worker.name(), "background round failed");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn outbox_loop(state: AppState, poll: Duration) {
    let mut shutdown = state.lifecycle.subscribe();
    while !*shutdown.borrow() {
        state.lifecycle.beat(Worker::Outbox, poll);
        if let Err(error) = deliver_outbox_until(&state, &shutdown).await {
            tracing::warn!(%error, "outbox delivery round failed");
        }
        tokio::select! {
            () = state.core.outbox_woken() => {}
            () = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn timer_loop(state: AppState, poll: Duration) {
    let mut shutdown = state.lifecycle.subscribe();
    while !*shutdown.borrow() {
        state.lifecycle.beat(Worker::Timers, poll);
        match fire_due_timers_until(&state, &shutdown).await {
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
