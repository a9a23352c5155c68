//! Hot accounts under load: many lifecycles at once on one seller's withdrawal account, the
//! platform's commission and the freezing shards. Postings to them are appended, so no
//! lifecycle updates or locks their rows; balances are exact before the fold step runs and the
//! same after it. On PostgreSQL (CI sets `TEST_DATABASE_URL`) the requests truly overlap, and the
//! rows' system columns prove no transaction touched them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use holdfast_tests::TestApp;
use holdfast_tests::world::Shop;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const LIFECYCLES: usize = 24;

/// The code `phone` received for `challenge`. Other clients deliver the outbox at the same
/// time and skip each other's locked messages, so a message may arrive a moment later: look
/// again until it is there.
async fn code_for(app: &TestApp, phone: &str, challenge: &str) -> String {
    for _ in 0..1_000 {
        app.deliver().await;
        let inbox = app.inbox(phone, "limit=100").await;
        assert_eq!(inbox.status, StatusCode::OK, "{inbox:?}");
        let code = inbox.body.as_array().and_then(|messages| {
            messages
                .iter()
                .find(|m| m["challenge_id"] == challenge)
                .and_then(|m| m["code"].as_str().map(str::to_owned))
        });
        if let Some(code) = code {
            return code;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("no code for {challenge}");
}

async fn approve(app: &TestApp, phone: &str, challenge: &str) -> holdfast_tests::Reply {
    let code = code_for(app, phone, challenge).await;
    app.answer(challenge, &code, "approve").await
}

/// Order → approve → settlement request → approve, for one shopper.
async fn lifecycle(app: &TestApp, shop: &Shop, shopper: &str, phone: &str) {
    let (number, challenge) = app.placed_order(shopper, &shop.commodity, 1).await;
    let approved = approve(app, phone, &challenge).await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    let requested = app
        .post(
            &format!("/v1/retail/orders/{number}/settlement-request"),
            Some(&shop.supplier),
            json!({}),
        )
        .await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    let settlement = app.pending_confirmation(shopper, &number).await;
    let settled = approve(app, phone, &settlement).await;
    assert_eq!(settled.status, StatusCode::OK, "{settled:?}");
    assert_eq!(settled.body["outcome"], "settled", "{settled:?}");
}

/// Each append-only account's row version (PostgreSQL's `xmin`, which every update of the row
/// changes). Its `xmax` does change: each posting's foreign key takes a `KEY SHARE` lock on its
/// account, which blocks nobody but a delete or a key change.
async fn hot_row_versions(app: &TestApp) -> Vec<(String, String)> {
    let rows = app
        .state
        .db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT id::text AS id, xmin::text AS xmin FROM accounts \
             WHERE append_only ORDER BY id",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            (
                row.try_get::<String>("", "id").unwrap(),
                row.try_get::<String>("", "xmin").unwrap(),
            )
        })
        .collect()
}

/// Sessions of this database waiting for a lock while running a statement that reads, locks
/// or updates `accounts`. Not inserts: two lifecycles may open the same freezing shard at once,
/// and the second waits for the first's unique key, once per account.
async fn waiting_on_accounts(app: &TestApp) -> usize {
    let row = app
        .state
        .db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query ILIKE '%\"accounts\"%' \
             AND query NOT ILIKE 'INSERT%'",
        ))
        .await
        .unwrap()
        .unwrap();
    usize::try_from(row.try_get::<i64>("", "n").unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_lifecycles_on_one_seller_never_touch_the_shared_rows_and_fold_exactly() {
    let app = Arc::new(TestApp::spawn().await);
    let shop = Arc::new(Shop::on(app.clone(), "+821066660000", "100.00", "10.00", "0.05").await);
    let mut shoppers = Vec::new();
    for i in 1..=LIFECYCLES {
        let phone = format!("+8210666{i:05}");
        let (_, token) = app.shopper(&shop.operator, &phone, "100.00").await;
        shoppers.push((token, phone));
    }
    // One lifecycle first opens the seller's withdrawal account, the commission account and
    // the freezing shard; then everything is folded.
    lifecycle(&app, &shop, &shop.shopper, &shop.phone).await;
    holdfast_server::workers::fold_postings(&app.state)
        .await
        .unwrap();
    let on_postgres = app.backend() == DbBackend::Postgres;
    let before = if on_postgres {
        hot_row_versions(&app).await
    } else {
        Vec::new()
    };

    // A sampler watches for sessions queued on an account row lock while the lifecycles run.
    let running = Arc::new(AtomicBool::new(true));
    let most_waiting = Arc::new(AtomicUsize::new(0));
    let sampler = on_postgres.then(|| {
        let (app, running, most_waiting) = (app.clone(), running.clone(), most_waiting.clone());
        tokio::spawn(async move {
            let mut samples = 0usize;
            while running.load(Ordering::Relaxed) {
                most_waiting.fetch_max(waiting_on_accounts(&app).await, Ordering::Relaxed);
                samples += 1;
                tokio::task::yield_now().await;
            }
            samples
        })
    });
    let mut tasks = Vec::new();
    for (token, phone) in shoppers {
        let (app, shop) = (app.clone(), shop.clone());
        tasks.push(tokio::spawn(async move {
            lifecycle(&app, &shop, &token, &phone).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    running.store(false, Ordering::Relaxed);
    if let Some(sampler) = sampler {
        let samples = sampler.await.unwrap();
        assert!(samples > 0);
        assert_eq!(
            most_waiting.load(Ordering::Relaxed),
            0,
            "sessions queued on an account row lock"
        );
    }

    // Exact before the fold: every lifecycle paid 9.50 to the seller and 0.50 commission.
    let paid = LIFECYCLES + 1;
    let expect = |cents: usize| format!("{}.{:02}", cents / 100, cents % 100);
    assert_eq!(
        app.balance(&shop.supplier, "withdrawal").await,
        expect(paid * 950)
    );
    assert_eq!(
        app.platform_commission(&shop.operator).await,
        expect(paid * 50)
    );
    let audit = holdfast_core::ledger::audit(&app.state.db).await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    // Per lifecycle: the freezing shard's credit and debit, the seller's and the platform's
    // credits — appended, none folded yet.
    assert_eq!(audit.unfolded_postings, 4 * LIFECYCLES as u64, "{audit:?}");
    if on_postgres {
        // Accounts opened during the run (freezing shards of new shoppers) are new rows; those
        // that existed before must not have been updated.
        let after = hot_row_versions(&app).await;
        let still: Vec<_> = after
            .into_iter()
            .filter(|row| before.iter().any(|b| b.0 == row.0))
            .collect();
        assert_eq!(still, before, "a lifecycle updated a shared account's row");
    }

    let folded = holdfast_server::workers::fold_postings(&app.state)
        .await
        .unwrap();
    assert_eq!(folded, 4 * LIFECYCLES as u64);
    assert_eq!(
        holdfast_server::workers::fold_postings(&app.state)
            .await
            .unwrap(),
        0,
        "folding again folds nothing"
    );
    let audit = holdfast_core::ledger::audit(&app.state.db).await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    assert_eq!(audit.unfolded_postings, 0);
    assert_eq!(
        app.balance(&shop.supplier, "withdrawal").await,
        expect(paid * 950)
    );
    assert_eq!(
        app.platform_commission(&shop.operator).await,
        expect(paid * 50)
    );
}
