//! The bank side under concurrent transactions on PostgreSQL: tasks on several pooled
//! connections, released together, must still pay each payout at most once, never overdraw
//! a withdrawal account, put each payout in one file, import a statement once and settle a
//! payout one way. Run only when `TEST_DATABASE_URL` names a PostgreSQL server (SQLite's single
//! writer serialises these by construction).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bank;

use bank::*;
use holdfast_core::CoreError;
use holdfast_core::banking::destinations::{self, BankAccount, DestinationStatus};
use holdfast_core::banking::payouts::{self, BankOutcome, Payout, PayoutAmount, PayoutStatus};
use holdfast_core::banking::{runs, statements};
use holdfast_core::db;
use holdfast_core::entities::{bank_entries, payout_destinations, transfers};
use holdfast_core::ids::PayoutDestinationId;
use holdfast_core::ledger::Applied;
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::Barrier;

/// A world on PostgreSQL, or `None` (with a message) when the tests run on SQLite.
async fn postgres_world() -> Option<Arc<World>> {
    if postgres_url().is_none() {
        eprintln!("skipped: set TEST_DATABASE_URL to a PostgreSQL server to run the race tests");
        return None;
    }
    let w = world().await;
    w.confirmed_destination().await;
    w.own_account().await;
    Some(Arc::new(w))
}

/// One attempt, as a request handler makes it: its own transaction, committed on success; a
/// failed commit is an error like any other (never a panic, which would hide a lost request).
async fn attempt<T>(
    w: &World,
    step: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, CoreError>,
) -> Result<T, CoreError> {
    let txn = db::begin_write(&w.db).await?;
    let value = step(&txn).await?;
    txn.commit().await?;
    Ok(value)
}

/// Runs `tasks` copies of `step` (given the task's number) released together by a barrier.
async fn race<T, F>(
    w: &Arc<World>,
    tasks: usize,
    step: impl Fn(Arc<World>, usize) -> F + Send + Clone + 'static,
) -> Vec<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let (w, barrier, step) = (Arc::clone(w), Arc::clone(&barrier), step.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                step(w, task).await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks);
    for handle in handles {
        results.push(handle.await.unwrap());
    }
    results
}

/// A lost race: the database refused the loser's write, and the same request again succeeds.
fn retryable(error: &CoreError) -> bool {
    matches!(error, CoreError::Conflict | CoreError::Busy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_payout_request_from_eight_tasks_moves_the_money_once() {
    let Some(w) = postgres_world().await else {
        return;
    };
    let amount = PayoutAmount::Exactly(usd(40_00));
    let results = race(&w, 8, move |w, _| async move {
        let request = w.request("same-key", amount);
        attempt(&w, async |txn| {
            payouts::request_in_txn(txn, &w.clock, request).await
        })
        .await
    })
    .await;
    let mut first = None;
    for result in &results {
        match result {
            Ok(Applied::New(payout)) => {
                assert!(first.replace(payout.id).is_none(), "two new payouts");
            }
            Ok(Applied::Already(_)) => {}
            Err(error) => assert!(retryable(error), "{error:?}"),
        }
    }
    let first = first.expect("one task made the payout");
    // Each loser, asking again, is given the one payout: no request is lost.
    for result in results {
        if result.is_err() {
            let again = w.pay_out("same-key", amount).await.unwrap().into_inner();
            assert_eq!(again.id, first);
        }
    }
    assert_eq!(w.balance(w.withdrawal).await, 60_00);
    assert_eq!(w.in_transit().await, 40_00);
    w.assert_audit_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payouts_racing_for_one_withdrawal_account_never_overdraw_it() {
    let Some(w) = postgres_world().await else {
        return;
    };
    // Four "everything" and four of 30.00: 100.00 cannot cover them all.
    let results = race(&w, 8, |w, task| async move {
        let amount = if task % 2 == 0 {
            PayoutAmount::All(USD)
        } else {
            PayoutAmount::Exactly(usd(30_00))
        };
        let request = w.request(&format!("k{task}"), amount);
        attempt(&w, async |txn| {
            payouts::request_in_txn(txn, &w.clock, request).await
        })
        .await
    })
    .await;
    let mut paid_out = 0;
    for result in results {
        match result {
            Ok(Applied::New(payout)) => paid_out += payout.amount.minor(),
            Ok(Applied::Already(payout)) => panic!("distinct keys, yet {payout:?}"),
            Err(CoreError::InsufficientFunds { .. }) => {}
            Err(error) => assert!(retryable(&error), "{error:?}"),
        }
    }
    assert!(paid_out > 0, "someone was paid");
    assert!(paid_out <= 10_000, "{paid_out}");
    let left = w.balance(w.withdrawal).await;
    assert!(left >= 0, "overdrawn: {left}");
    assert_eq!(left + paid_out, 10_000);
    assert_eq!(w.in_transit().await, paid_out);
    w.assert_audit_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_bank_runs_at_once_put_each_payout_in_exactly_one_file() {
    let Some(w) = postgres_world().await else {
        return;
    };
    let mut pending = Vec::new();
    for key in 0..6 {
        pending.push(
            w.pay_out(&format!("k{key}"), PayoutAmount::Exactly(usd(10_00)))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let results = race(&w, 2, |w, _| async move {
        attempt(&w, async |txn| {
            runs::prepare_run_in_txn(txn, &w.clock, w.bank).await
        })
        .await
    })
    .await;
    let mut in_files = Vec::new();
    let mut files = 0;
    for result in results {
        // A run that lost every payout to the other writes no file (and is no error).
        let Ok(run) = result else {
            assert!(retryable(result.as_ref().unwrap_err()), "{result:?}");
            continue;
        };
        for file in run {
            files += 1;
            for payout in runs::payouts_in_file(&w.db, file.id).await.unwrap() {
                assert_eq!(payout.bank_file, Some(file.id));
                assert!(file.content.contains(&payout.end_to_end_id));
                in_files.push(payout.id);
            }
        }
    }
    let once: HashSet<_> = in_files.iter().copied().collect();
    assert_eq!(once.len(), in_files.len(), "a payout in two files");
    let all: HashSet<_> = pending.iter().map(|p| p.id).collect();
    assert_eq!(once, all);
    assert!(files >= 1);
    for payout in &pending {
        let now = payouts::get(&w.db, w.seller, payout.id).await.unwrap();
        assert_eq!(now.status, PayoutStatus::Sent);
    }
    w.assert_audit_clean().await;
}

/// Pays out `amounts` and sends them in one run.
async fn sent(w: &World, amounts: &[i64]) -> Vec<Payout> {
    let mut sent = Vec::new();
    for (n, minor) in amounts.iter().enumerate() {
        sent.push(
            w.pay_out(&format!("sent{n}"), PayoutAmount::Exactly(usd(*minor)))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    w.write(async |txn| runs::prepare_run_in_txn(txn, &w.clock, w.bank).await)
        .await
        .unwrap();
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_statement_imported_by_four_tasks_settles_its_payouts_once() {
    let Some(w) = postgres_world().await else {
        return;
    };
    let payouts = sent(&w, &[30_00, 20_00]).await;
    let debit = |n: usize, payout: &Payout| {
        entry(
            &format!("B{n}"),
            &payout.amount.amount().to_string(),
            "DBIT",
            &format!(
                "<Refs><EndToEndId>{}</EndToEndId></Refs>",
                payout.end_to_end_id
            ),
        )
    };
    let xml = notification("N1", &(debit(1, &payouts[0]) + &debit(2, &payouts[1])));
    let results = race(&w, 4, move |w, _| {
        let xml = xml.clone();
        async move {
            attempt(&w, async |txn| {
                statements::import_in_txn(txn, &w.clock, w.bank, &xml).await
            })
            .await
        }
    })
    .await;
    let mut new = 0;
    for result in results {
        match result {
            Ok(Applied::New(summary)) => {
                new += 1;
                assert_eq!(summary.payouts_paid, 2);
            }
            Ok(Applied::Already(_)) => {}
            Err(error) => assert!(retryable(&error), "{error:?}"),
        }
    }
    assert_eq!(new, 1, "imported once");
    for payout in &payouts {
        let now = payouts::get(&w.db, w.seller, payout.id).await.unwrap();
        assert_eq!(now.status, PayoutStatus::Paid);
    }
    let entries = bank_entries::Entity::find().count(&w.db).await.unwrap();
    assert_eq!(entries, 2);
    assert_eq!(w.in_transit().await, 0);
    assert_eq!(w.balance(w.withdrawal).await, 50_00);
    w.assert_audit_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paid_and_returned_racing_leave_one_consistent_state() {
    let Some(w) = postgres_world().await else {
        return;
    };
    // Several rounds, to give the two outcomes many chances to meet.
    let payouts = sent(&w, &[10_00, 10_00, 10_00, 10_00, 10_00]).await;
    let mut returned_total = 0;
    for payout in &payouts {
        let e2e = payout.end_to_end_id.clone();
        let results = race(&w, 2, move |w, task| {
            let e2e = e2e.clone();
            async move {
                let outcome = if task == 0 {
                    BankOutcome::Paid
                } else {
                    BankOutcome::Returned {
                        reason: "AC04 closed account".into(),
                    }
                };
                attempt(&w, async |txn| {
                    payouts::record_outcome_in_txn(txn, &w.clock, &e2e, outcome).await
                })
                .await
            }
        })
        .await;
        for result in &results {
            if let Err(error) = result {
                // Refused because the other came first: `Conflict` when it was already past
                // the read, `InvalidTransition` (paid after returned) when it was not.
                assert!(
                    retryable(error) || matches!(error, CoreError::InvalidTransition { .. }),
                    "{error:?}"
                );
            }
        }
        assert!(results.iter().any(Result::is_ok), "{results:?}");
        let now = payouts::get(&w.db, w.seller, payout.id).await.unwrap();
        match now.status {
            PayoutStatus::Paid => {}
            PayoutStatus::Returned => {
                returned_total += payout.amount.minor();
                assert!(now.return_reason.is_some());
            }
            other => panic!("{other:?}"),
        }
        // The money moved as the final state says, and once.
        let transfers = async |suffix: &str| {
            transfers::Entity::find()
                .filter(
                    transfers::Column::IdempotencyKey.eq(format!("payout:{}:{suffix}", payout.id)),
                )
                .count(&w.db)
                .await
                .unwrap()
        };
        let (paid, returned) = (transfers("paid").await, transfers("returned").await);
        match now.status {
            PayoutStatus::Paid => assert_eq!((paid, returned), (1, 0)),
            _ => assert_eq!(returned, 1),
        }
    }
    assert_eq!(w.in_transit().await, 0);
    assert_eq!(w.balance(w.withdrawal).await, 50_00 + returned_total);
    w.assert_audit_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notification_and_the_days_statement_imported_at_once_settle_each_entry_once() {
    let Some(w) = postgres_world().await else {
        return;
    };
    let payouts = sent(&w, &[30_00, 20_00]).await;
    let debit = |reference: &str, payout: &Payout| {
        entry(
            reference,
            &payout.amount.amount().to_string(),
            "DBIT",
            &format!(
                "<Refs><EndToEndId>{}</EndToEndId></Refs>",
                payout.end_to_end_id
            ),
        )
    };
    // The same two bookings, in opposite orders, under two message ids.
    let (first, second) = (debit("B1", &payouts[0]), debit("B2", &payouts[1]));
    let files = [
        notification("N1", &format!("{first}{second}")),
        notification("EOD1", &format!("{second}{first}")),
    ];
    let summaries = race(&w, 4, move |w, task| {
        let xml = files[task % 2].clone();
        async move {
            // As a retrying importer would: a lost race is tried again, never dropped.
            for _ in 0..20 {
                let result = attempt(&w, async |txn| {
                    statements::import_in_txn(txn, &w.clock, w.bank, &xml).await
                })
                .await;
                match result {
                    Err(error) if retryable(&error) => continue,
                    other => return other.unwrap(),
                }
            }
            panic!("still refused after 20 attempts");
        }
    })
    .await;
    let paid: u32 = summaries
        .iter()
        .filter(|s| s.is_new())
        .map(|s| s.clone().into_inner().payouts_paid)
        .sum();
    let for_operator: u32 = summaries
        .iter()
        .map(|s| s.clone().into_inner().for_operator)
        .sum();
    assert_eq!((paid, for_operator), (2, 0));
    let entries = bank_entries::Entity::find().count(&w.db).await.unwrap();
    assert_eq!(entries, 2);
    for payout in &payouts {
        let now = payouts::get(&w.db, w.seller, payout.id).await.unwrap();
        assert_eq!(now.status, PayoutStatus::Paid);
    }
    assert_eq!(w.in_transit().await, 0);
    assert_eq!(w.balance(w.withdrawal).await, 50_00);
    w.assert_audit_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn destinations_registered_and_confirmed_at_once_leave_one_pending_and_one_active() {
    let Some(w) = postgres_world().await else {
        return;
    };
    const IBANS: [&str; 4] = [
        "GB82 WEST 1234 5698 7654 32",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91 ABNA 0417 1643 00",
        "BE68 5390 0754 7034",
    ];
    let registered = race(&w, 4, |w, task| async move {
        attempt(&w, async |txn| {
            destinations::register_in_txn(
                txn,
                &w.clock,
                w.seller,
                BankAccount::iban(IBANS[task])?,
                "Seller Ltd",
            )
            .await
        })
        .await
    })
    .await;
    for result in &registered {
        if let Err(error) = result {
            assert!(retryable(error), "{error:?}");
        }
    }
    let of_seller = |status: DestinationStatus| {
        let w = Arc::clone(&w);
        async move {
            payout_destinations::Entity::find()
                .filter(payout_destinations::Column::PartyId.eq(w.seller.uuid()))
                .filter(payout_destinations::Column::Status.eq(status))
                .all(&w.db)
                .await
                .unwrap()
        }
    };
    let pending = of_seller(DestinationStatus::Pending).await;
    assert_eq!(pending.len(), 1);
    let pending = PayoutDestinationId::from_uuid(pending[0].id);

    let confirmed = race(&w, 4, move |w, _| async move {
        attempt(&w, async |txn| {
            destinations::confirm_in_txn(txn, &w.clock, w.seller, pending).await
        })
        .await
    })
    .await;
    let mut confirmations = 0;
    for result in &confirmed {
        match result {
            Ok(destination) => {
                confirmations += 1;
                assert_eq!(destination.id, pending);
            }
            Err(error) => assert!(
                retryable(error) || matches!(error, CoreError::InvalidTransition { .. }),
                "{error:?}"
            ),
        }
    }
    assert_eq!(confirmations, 1);
    let active = of_seller(DestinationStatus::Active).await;
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].id, pending.uuid());
    assert!(of_seller(DestinationStatus::Pending).await.is_empty());
}
