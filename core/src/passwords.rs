//! Password hashing off the async workers. Argon2 takes tens of milliseconds of CPU by design;
//! run inline it would stall every request sharing the worker thread, so a flood of logins could
//! hold up money-moving calls. Each hash runs on tokio's blocking pool, at most [`PasswordWork`]'s
//! limit at a time; the rest wait their turn without occupying a worker.

use crate::error::{CoreError, CoreResult};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The longest a login waits for a hashing slot before it is refused as busy.
pub const MAX_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The bound on concurrent password hashes, shared by everything that hashes or verifies.
#[derive(Clone, Debug)]
pub struct PasswordWork {
    permits: Arc<Semaphore>,
    limit: u32,
}

impl PasswordWork {
    pub fn new(limit: u32) -> PasswordWork {
        let limit = limit.max(1);
        PasswordWork {
            permits: Arc::new(Semaphore::new(limit as usize)),
            limit,
        }
    }

    /// Two hashes per core: the cores stay busy, and a queue forms instead of a pile-up.
    pub fn for_this_machine() -> PasswordWork {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        PasswordWork::new(u32::try_from(cores.saturating_mul(2)).unwrap_or(u32::MAX))
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Runs `work` on the blocking pool once a permit is free.
    pub async fn run<T, F>(&self, work: F) -> CoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        // A flood queues here; past the wait, the caller is told to come back (503 with
        // Retry-After) rather than wait without end.
        let permit = tokio::time::timeout(MAX_QUEUE_WAIT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| CoreError::Busy)?
            .map_err(|_| CoreError::Busy)?;
        // The permit travels with the work: a caller that gives up does not free a slot while
        // its hash still runs.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|_| CoreError::Internal("password hashing failed"))
    }

    /// Takes every permit until the returned guard drops: no hash starts meanwhile. For tests
    /// and demonstrations that show what waits on hashing and what does not.
    pub async fn occupy_all(&self) -> CoreResult<OwnedSemaphorePermit> {
        self.permits
            .clone()
            .acquire_many_owned(self.limit)
            .await
            .map_err(|_| CoreError::Busy)
    }
}
