//! Holdfast's escrow core: money, the double-entry ledger, holds, phone challenges, the escrow
//! case state machine, durable timers and the outbox. It knows nothing of HTTP; verticals and
//! the server call its plain functions.
//!
//! Functions named `*_in_txn` run inside a transaction their caller owns; the others open and
//! commit their own.

pub mod banking;
pub mod cards;
pub mod challenge;
pub mod check_digit;
pub mod clock;
pub mod db;
pub mod entities;
pub mod error;
pub mod escrow;
pub mod events;
pub mod funding;
pub mod holds;
pub mod ids;
pub mod ledger;
pub mod login;
pub mod login_throttle;
pub mod money;
pub mod onboarding;
pub mod order_number;
pub mod outbox;
pub mod outcomes;
pub mod paging;
pub mod parties;
pub mod passwords;
pub mod phone;
pub mod phone_number;
pub mod rate;
pub mod service_secret;
pub mod text;
pub mod timers;
pub mod vertical;
pub mod webhook_target;
pub mod webhooks;
pub mod write_buffer;

pub use clock::Clock;
pub use error::{CoreError, CoreResult, ErrorKind};
pub use money::{Currency, Money};
pub use rate::BasisPoints;
pub use timers::TimerKind;
pub use vertical::Vertical;

use challenge::{ChallengeKeys, ChallengePolicy};
use std::sync::Arc;
use tokio::sync::Notify;

/// What every use case needs besides a database connection: the clock, the key that MACs
/// phone codes, the confirmation policy, and a way to wake the outbox worker after a commit.
#[derive(Clone, Debug)]
pub struct Core {
    pub clock: Clock,
    pub keys: ChallengeKeys,
    pub policy: ChallengePolicy,
    /// How long a settlement request waits for the buyer before it pays out by itself.
    pub auto_settle: chrono::Duration,
    /// Runs password hashes off the async workers, a bounded number at a time.
    pub passwords: passwords::PasswordWork,
    outbox_wakeup: Arc<Notify>,
}

/// The settlement period when none is configured: 72 hours.
pub const DEFAULT_AUTO_SETTLE_HOURS: i64 = 72;

impl Core {
    pub fn new(clock: Clock, keys: ChallengeKeys, policy: ChallengePolicy) -> Core {
        Core {
            clock,
            keys,
            policy,
            auto_settle: chrono::Duration::hours(DEFAULT_AUTO_SETTLE_HOURS),
            passwords: passwords::PasswordWork::for_this_machine(),
            outbox_wakeup: Arc::new(Notify::new()),
        }
    }

    /// Sets the settlement period (at least ten seconds, for demos).
    pub fn with_auto_settle(mut self, period: chrono::Duration) -> Core {
        self.auto_settle = period.max(chrono::Duration::seconds(10));
        self
    }

    /// Tells the outbox worker that new messages were committed.
    pub fn wake_outbox(&self) {
        self.outbox_wakeup.notify_one();
    }

    /// Resolves when [`Core::wake_outbox`] was called (or at once if it was since the last wait).
    pub async fn outbox_woken(&self) {
        self.outbox_wakeup.notified().await;
    }
}
