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

/// Order → approve → settlement request → approve, for one shopper.
async fn lifecycle(app: &TestApp, shop: &Shop, shopper: &str, phone: &str) {
    let (number, challenge) = app.placed_order(shopper, &shop.commodity, 1).await;
    let approved = app.answer_on(phone, &challenge, "approve").await;
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
    let settled = app.answer_on(phone, &settlement, "approve").await;
    assert_eq!(settled.status, StatusCode::OK, "{settled:?}");
    assert_eq!(settled.body["outcome"], "settled", "{settled:?}");
}

/// Each append-only account's row version and lock marker (PostgreSQL's `xmin` and `xmax`):
/// an update changes the first, a row lock (`FOR UPDATE`) the second.
async fn hot_row_versions(app: &TestApp) -> Vec<(String, String, String)> {
    let rows = app
        .state
        .db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT id::text AS id, xmin::text AS xmin, xmax::text AS xmax FROM accounts \
             WHERE append_only ORDER BY id",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            (
                row.try_get::<String>("", "id").unwrap(),
                row.try_get::<String>("", "xmin").unwrap(),
                row.try_get::<String>("", "xmax").unwrap(),
            )
        })
        .collect()
}

/// Sessions of this database waiting for a lock while running a statement on `accounts`.
async fn waiting_on_accounts(app: &TestApp) -> usize {
    let row = app
        .state
        .db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query ILIKE '%\"accounts\"%'",
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
        assert_eq!(
            hot_row_versions(&app).await,
            before,
            "a lifecycle updated or locked a shared account's row"
        );
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
