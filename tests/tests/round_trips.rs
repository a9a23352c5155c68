//! The database round trips of each call of a retail lifecycle, pinned: an upper bound per
//! call, so that a change that adds a read or a write to a hot call fails here and has to
//! lower no bound to pass. Counted in process, one call at a time ([`roundtrips`]), on SQLite
//! or on PostgreSQL when `TEST_DATABASE_URL` is set. The benchmark prints the same table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_tests::TestApp;
use holdfast_tests::roundtrips::{self, CALLS};

/// (call, most round trips on SQLite, on PostgreSQL, most commits), today's figures: lower
/// them as calls get cheaper. Before the first cuts (issue 15), on both: 31, 26, 4, 20, 18, 7,
/// 30 — 136 a lifecycle; before the write buffer (case and party events and outbox rows written
/// together at commit, cards and webhook endpoints read once per call), SQLite 124 and
/// PostgreSQL 106. A writing call's events and outbox rows are one multi-row insert per table
/// (on PostgreSQL one statement for the three, with data-modifying CTEs, which SQLite lacks).
/// On SQLite a writing call is a savepoint in the one writer's transaction: its `SAVEPOINT` and
/// `RELEASE` count as two more. Placing an order reads its freezing shard's fixed facts once
/// per process (the ledger keeps them after): whether this run's shard was seen before is up to
/// the case's random id, so its bound allows that one read.
const BOUNDS: [(&str, u64, u64, u64); 7] = [
    ("place_order", 29, 25, 1),
    ("approve_order", 20, 17, 1),
    ("find_parcel", 3, 3, 0),
    ("record_delivery", 16, 12, 1),
    ("request_settlement", 16, 12, 1),
    ("view_order", 6, 6, 0),
    ("approve_settlement", 23, 19, 1),
];

#[tokio::test]
async fn each_call_of_a_retail_lifecycle_stays_within_its_round_trips() {
    let (app, counter) = TestApp::spawn_counted().await;
    let trace = roundtrips::trace_lifecycle(&app, &counter).await;
    println!("{}", trace.report());
    assert_eq!(BOUNDS.map(|b| b.0), CALLS);
    let mut over = Vec::new();
    for (call, on_sqlite, on_postgres, most_commits) in BOUNDS {
        let most = if holdfast_tests::on_postgres() {
            on_postgres
        } else {
            on_sqlite
        };
        let tally = trace.call(call);
        if tally.round_trips() > most || tally.commits > most_commits {
            over.push(format!(
                "{call}: {} round trips (at most {most}), {} commits (at most {most_commits}): {}",
                tally.round_trips(),
                tally.commits,
                tally.tables()
            ));
        }
    }
    assert!(over.is_empty(), "over budget:\n{}", over.join("\n"));
    // The counter counts: a writing call begins and commits its one transaction.
    let placed = trace.call("place_order");
    assert_eq!((placed.begins, placed.commits), (1, 1));
    assert!(placed.statements > 0);
}
