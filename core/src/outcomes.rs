//! Counts of money and challenge outcomes, through the `metrics` facade. Core installs no
//! recorder: without one (the server's `--metrics off`, core's own tests) a count costs a
//! check of the global recorder and nothing else.
//!
//! Each outcome is counted at the one place it happens, inside its transaction; it is
//! recorded only if that transaction commits. The runner that owns a transaction wraps it in
//! [`after_commit`]: the outcomes its use case counts wait in a task-local list and are
//! recorded when the transaction's future ends well, or dropped with the rollback. Outside
//! such a scope (a caller that owns its transaction without the wrapper) a count is recorded
//! at once.
//!
//! Labels come from closed enums only (hold mode, vertical, purpose, outcome): never an id,
//! an order number or a phone.

use crate::challenge::ChallengePurpose;
use crate::holds::HoldMode;
use crate::vertical::Vertical;
use std::cell::RefCell;

pub const HOLDS_PLACED: &str = "holdfast_holds_placed_total";
pub const HOLDS_RESOLVED: &str = "holdfast_holds_resolved_total";
pub const SETTLEMENTS: &str = "holdfast_settlements_total";
pub const DISPUTES_OPENED: &str = "holdfast_disputes_opened_total";
pub const DISPUTES_RESOLVED: &str = "holdfast_disputes_resolved_total";
pub const CHALLENGE_OUTCOMES: &str = "holdfast_challenge_outcomes_total";
pub const RECONCILIATIONS: &str = "holdfast_reconciliations_total";

/// How a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldResolution {
    Posted,
    Voided,
    Expired,
}

/// How a case came to be settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettledBy {
    /// The buyer approved on the phone.
    Approved,
    /// Nobody answered within the settlement period.
    AutoSettled,
    /// An operator mediated a dispute and released money to the seller.
    Mediated,
}

/// What one answer (or the clock) did to a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeOutcome {
    Approved,
    Denied,
    WrongCode,
    Locked,
    Expired,
    /// What it confirmed changed or went away (binding mismatch, order cancelled).
    Voided,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    HoldPlaced(HoldMode),
    HoldResolved(HoldMode, HoldResolution),
    Settled(Vertical, SettledBy),
    DisputeOpened(Vertical),
    /// `to_seller`: the mediation released money to the seller (else all of it was refunded).
    DisputeResolved {
        vertical: Vertical,
        to_seller: bool,
    },
    Challenge(ChallengePurpose, ChallengeOutcome),
    /// A day of an institution's bank account reconciled (and stored): clean, or with
    /// differences for an operator.
    Reconciled {
        clean: bool,
    },
}

tokio::task_local! {
    static PENDING: RefCell<Vec<Outcome>>;
}

/// Counts `outcome` when the enclosing [`after_commit`] scope commits, or now outside one.
pub fn count(outcome: Outcome) {
    let deferred = PENDING.try_with(|pending| pending.borrow_mut().push(outcome));
    if deferred.is_err() {
        record(outcome);
    }
}

/// Runs `transaction` (a future that begins, works and commits) and records the outcomes
/// counted inside it only if it returns `Ok`. Nested inside another scope it adds nothing:
/// the outermost transaction decides.
pub async fn after_commit<T, E>(transaction: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    after_commit_if(transaction, Result::is_ok).await
}

/// [`after_commit`] for a transaction whose result says in its own way whether it committed
/// (`committed`).
pub async fn after_commit_if<T>(
    transaction: impl Future<Output = T>,
    committed: impl FnOnce(&T) -> bool,
) -> T {
    if PENDING.try_with(|_| ()).is_ok() {
        return transaction.await;
    }
    let (result, pending) = PENDING
        .scope(RefCell::new(Vec::new()), async {
            let result = transaction.await;
            (result, PENDING.with(|pending| pending.take()))
        })
        .await;
    if committed(&result) {
        pending.into_iter().for_each(record);
    }
    result
}

fn hold_mode(mode: HoldMode) -> &'static str {
    match mode {
        HoldMode::Move => "move",
        HoldMode::Reserve => "reserve",
    }
}

fn record(outcome: Outcome) {
    match outcome {
        Outcome::HoldPlaced(mode) => {
            metrics::counter!(HOLDS_PLACED, "mode" => hold_mode(mode)).increment(1);
        }
        Outcome::HoldResolved(mode, resolution) => {
            let resolution = match resolution {
                HoldResolution::Posted => "posted",
                HoldResolution::Voided => "voided",
                HoldResolution::Expired => "expired",
            };
            metrics::counter!(HOLDS_RESOLVED, "mode" => hold_mode(mode), "resolution" => resolution)
                .increment(1);
        }
        Outcome::Settled(vertical, how) => {
            let how = match how {
                SettledBy::Approved => "approved",
                SettledBy::AutoSettled => "auto_settled",
                SettledBy::Mediated => "mediated",
            };
            metrics::counter!(SETTLEMENTS, "vertical" => vertical.as_str(), "how" => how)
                .increment(1);
        }
        Outcome::DisputeOpened(vertical) => {
            metrics::counter!(DISPUTES_OPENED, "vertical" => vertical.as_str()).increment(1);
        }
        Outcome::DisputeResolved {
            vertical,
            to_seller,
        } => {
            let outcome = if to_seller { "released" } else { "refunded" };
            metrics::counter!(DISPUTES_RESOLVED, "vertical" => vertical.as_str(), "outcome" => outcome)
                .increment(1);
        }
        Outcome::Challenge(purpose, outcome) => {
            let outcome = match outcome {
                ChallengeOutcome::Approved => "approved",
                ChallengeOutcome::Denied => "denied",
                ChallengeOutcome::WrongCode => "wrong_code",
                ChallengeOutcome::Locked => "locked",
                ChallengeOutcome::Expired => "expired",
                ChallengeOutcome::Voided => "voided",
            };
            metrics::counter!(CHALLENGE_OUTCOMES, "purpose" => purpose.as_str(), "outcome" => outcome)
                .increment(1);
        }
        Outcome::Reconciled { clean } => {
            let result = if clean { "clean" } else { "discrepancy" };
            metrics::counter!(RECONCILIATIONS, "result" => result).increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outcomes_of_a_rolled_back_transaction_are_dropped_and_of_a_committed_one_kept() {
        let failed: Result<(), ()> = after_commit(async {
            count(Outcome::HoldPlaced(HoldMode::Move));
            Err(())
        })
        .await;
        assert!(failed.is_err());
        let kept = after_commit(async {
            count(Outcome::HoldPlaced(HoldMode::Move));
            // Nested: the outer scope keeps it until the outer transaction ends.
            let inner: Result<(), ()> = after_commit(async {
                count(Outcome::DisputeOpened(Vertical::Retail));
                Ok(())
            })
            .await;
            assert!(inner.is_ok());
            Ok::<_, ()>(PENDING.with(|pending| pending.borrow().clone()))
        })
        .await;
        assert_eq!(
            kept,
            Ok(vec![
                Outcome::HoldPlaced(HoldMode::Move),
                Outcome::DisputeOpened(Vertical::Retail)
            ])
        );
    }
}
