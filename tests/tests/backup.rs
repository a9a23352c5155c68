//! Backups taken while the server writes restore to a clean ledger. On SQLite the copy is
//! `holdfast backup`'s (`VACUUM INTO`, on a connection of its own, as the separate process
//! would have); on PostgreSQL it is `pg_dump -Fc` restored by `pg_restore` into a new database.
//! Either way the copy is opened as the database of a fresh server, the reliability suites'
//! audit (and the `holdfast audit` subcommand's) finds nothing wrong, and every order whose
//! placement was answered before the backup began is in it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use holdfast_core::Clock;
use holdfast_core::challenge::ChallengePolicy;
use holdfast_core::db::PoolSize;
use holdfast_core::parties::Role;
use holdfast_server::{backup, create_staff, open_database, simulator_state};
use holdfast_tests::driver::{Api, replace_database};
use holdfast_tests::world::{Shop, random_phone};
use holdfast_tests::{SECRET, STAFF_PASSWORD, TestApp, audit, postgres_url, test_epoch};
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Shoppers buying at once while the backup runs.
const WRITERS: usize = 4;
/// Orders placed before the backup starts, so the copy has something to prove.
const ORDERS_BEFORE: usize = 6;

/// Orders whose placement the server has answered, in that order.
type Committed = Arc<Mutex<Vec<(String, String)>>>;

/// The code `phone` received for `challenge`. The writers deliver the outbox at once, and a
/// message another writer's delivery has claimed shows up when that delivery ends: poll.
async fn code_on(app: &TestApp, phone: &str, challenge: &str) -> String {
    for _ in 0..500 {
        app.deliver().await;
        let inbox = app.inbox(phone, "limit=100").await;
        assert_eq!(inbox.status, StatusCode::OK, "{inbox:?}");
        let code = inbox.body.as_array().unwrap().iter().find_map(|m| {
            (m["challenge_id"] == challenge)
                .then(|| m["code"].as_str().map(str::to_owned))
                .flatten()
        });
        if let Some(code) = code {
            return code;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no code for {challenge} reached {phone}")
}

/// Answers `challenge` yes on `phone`.
async fn approve_on(app: &TestApp, phone: &str, challenge: &str) {
    let code = code_on(app, phone, challenge).await;
    let approved = app.answer(challenge, &code, "approve").await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
}

/// One whole purchase: placed (recorded in `committed` once answered), approved on the phone,
/// settlement asked for and approved.
async fn purchase(shop: &Shop, shopper: &str, phone: &str, committed: &Committed) {
    let placed = shop.app.place_order(shopper, &shop.commodity, 1).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{placed:?}");
    let number = placed.body["order_number"].as_str().unwrap().to_owned();
    committed
        .lock()
        .unwrap()
        .push((number.clone(), shopper.to_owned()));
    let challenge = placed.body["pending_confirmation"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    approve_on(&shop.app, phone, &challenge).await;
    let requested = shop
        .app
        .post(
            &format!("/v1/retail/orders/{number}/settlement-request"),
            Some(&shop.supplier),
            json!({}),
        )
        .await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    let settlement = shop.app.pending_confirmation(shopper, &number).await;
    approve_on(&shop.app, phone, &settlement).await;
}

/// Runs `copy` while [`WRITERS`] shoppers keep buying, once [`ORDERS_BEFORE`] orders are in;
/// the writers go on for a while after it. Returns the shop and the orders answered before
/// the copy began.
async fn copy_under_load<F, Fut>(copy: F) -> (Shop, Vec<(String, String)>)
where
    F: FnOnce(Arc<TestApp>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let shop = Shop::spawn(&random_phone(), "1000.00", "10.00", "0.05").await;
    let committed: Committed = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // Every shopper logs in (reading its code) before anyone buys.
    let mut shoppers = Vec::new();
    for _ in 0..WRITERS {
        let phone = random_phone();
        let (_, shopper) = shop.app.shopper(&shop.operator, &phone, "1000.00").await;
        shoppers.push((shopper, phone));
    }
    let mut writers = Vec::new();
    for (shopper, phone) in shoppers {
        let shop = Shop {
            app: shop.app.clone(),
            operator: shop.operator.clone(),
            supplier_id: shop.supplier_id.clone(),
            supplier: shop.supplier.clone(),
            shopper: shopper.clone(),
            phone: phone.clone(),
            commodity: shop.commodity.clone(),
        };
        let (committed, stop) = (committed.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                purchase(&shop, &shopper, &phone, &committed).await;
            }
        }));
    }
    while committed.lock().unwrap().len() < ORDERS_BEFORE {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let before = committed.lock().unwrap().clone();
    copy(shop.app.clone()).await;
    // The original moves on past the copy before the writers stop.
    let after_copy = committed.lock().unwrap().len();
    while committed.lock().unwrap().len() < after_copy + WRITERS {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }
    shop.app.assert_ledger_clean().await;
    (shop, before)
}

/// Opens `url` (a restored copy) as the database of a fresh server listening on loopback, and
/// checks it: both audits clean, every order of `expected` there, fewer orders than `original`
/// (the copy is a snapshot, not the final state).
async fn check_copy(url: &str, expected: &[(String, String)], original: &TestApp) {
    let found = backup::audit(url).await.unwrap();
    assert!(found.is_clean(), "holdfast audit on the copy: {found:?}");
    assert!(found.transfers > 0, "an empty copy proves nothing");

    let db = open_database(url, PoolSize::default()).await.unwrap();
    let state = simulator_state(
        db,
        Clock::manual(test_epoch()),
        SECRET,
        3600,
        ChallengePolicy::default(),
    );
    create_staff(
        &state,
        Role::Operator,
        "Operator",
        "restore-check",
        STAFF_PASSWORD,
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = holdfast_server::app(state.clone());
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    let api = Api::new(&base);
    let operator = api.login("restore-check", STAFF_PASSWORD).await.unwrap();
    let findings = audit::audit(url, &api, &operator).await.unwrap();
    assert!(
        findings.is_clean(),
        "audit of the copy: {:?}",
        findings.problems
    );
    for (number, shopper) in expected {
        let order = api
            .get(&format!("/v1/retail/orders/{number}"), Some(shopper))
            .await
            .unwrap();
        assert_eq!(
            order.status,
            reqwest::StatusCode::OK,
            "order {number}, answered before the backup began, is missing from the copy: {}",
            order.body
        );
    }
    let in_copy = count_cases(&state.db).await;
    let in_original = count_cases(&original.state.db).await;
    assert!(
        in_copy < in_original,
        "the copy ({in_copy} cases) should predate orders placed after it ({in_original})"
    );
    server.abort();
    state.db.close().await.unwrap();
}

async fn count_cases(db: &impl ConnectionTrait) -> i64 {
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT COUNT(*) FROM escrow_cases",
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get_by_index::<i64>(0)
    .unwrap()
}

/// The single-value answer of `sql` on `db`.
async fn text_of(db: &impl ConnectionTrait, sql: &str, column: usize) -> String {
    db.query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<String>(column)
        .unwrap()
}

/// Runs `program` with `args` to completion off the runtime's threads; panics with its
/// output if it fails.
async fn run(program: &'static str, args: Vec<String>) {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(program).args(&args).output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_under_load_restores_to_a_clean_ledger_with_every_earlier_order() {
    match postgres_url() {
        None => sqlite_backup_under_load().await,
        Some(admin) => postgres_dump_under_load(&admin).await,
    }
}

async fn sqlite_backup_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("holdfast-backup.db");
    let (shop, before) = copy_under_load(|app| {
        let copy = copy.clone();
        async move {
            // `PRAGMA database_list`: (seq, name, file) of the main database.
            let file = text_of(&app.state.db, "PRAGMA database_list", 2).await;
            let url = format!("sqlite://{file}?mode=rwc");
            backup::backup_sqlite(&url, &copy).await.unwrap();
        }
    })
    .await;
    let url = format!("sqlite://{}", copy.display());
    check_copy(&url, &before, &shop.app).await;
}

async fn postgres_dump_under_load(admin: &str) {
    if !installed("pg_dump") || !installed("pg_restore") {
        eprintln!(
            "*** skipped: pg_dump or pg_restore is not on the PATH (install the PostgreSQL \
             client of the server's major version) ***"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("holdfast.dump");
    let dump_arg = dump.display().to_string();
    let admin_url = admin.to_owned();
    let (shop, before) = copy_under_load(|app| async move {
        let name = text_of(&app.state.db, "SELECT current_database()", 0).await;
        let source = replace_database(&admin_url, &name);
        run(
            "pg_dump",
            vec![
                "-Fc".into(),
                "-f".into(),
                dump_arg,
                "--dbname".into(),
                source,
            ],
        )
        .await;
    })
    .await;
    // A name the CI's clean-up of interrupted runs recognises.
    let restored = format!("holdfast_test_restore_{}", uuid::Uuid::new_v4().simple());
    let server = Database::connect(admin).await.unwrap();
    server
        .execute_unprepared(&format!("CREATE DATABASE \"{restored}\""))
        .await
        .unwrap();
    let url = replace_database(admin, &restored);
    run(
        "pg_restore",
        vec![
            "--no-owner".into(),
            "--exit-on-error".into(),
            "--dbname".into(),
            url.clone(),
            dump.display().to_string(),
        ],
    )
    .await;
    check_copy(&url, &before, &shop.app).await;
    server
        .execute_unprepared(&format!(
            "DROP DATABASE IF EXISTS \"{restored}\" WITH (FORCE)"
        ))
        .await
        .unwrap();
    server.close().await.unwrap();
}

#[tokio::test]
async fn a_backup_never_overwrites_a_file_and_points_postgresql_to_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    let url = format!("sqlite://{}?mode=rwc", source.display());
    open_database(&url, PoolSize::default())
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    let existing = dir.path().join("kept.db");
    std::fs::write(&existing, b"an operator's file").unwrap();
    let refused = backup::backup_sqlite(&url, &existing).await.unwrap_err();
    assert!(refused.to_string().contains("exists already"), "{refused}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"an operator's file");

    // A path that would break a spliced statement is only a file name to a bound one.
    let odd = dir.path().join("it's a copy; DROP TABLE x.db");
    backup::backup_sqlite(&url, &odd).await.unwrap();
    assert!(
        backup::audit(&format!("sqlite://{}", odd.display()))
            .await
            .unwrap()
            .is_clean()
    );

    let missing = dir.path().join("missing.db");
    let refused = backup::backup_sqlite(
        &format!("sqlite://{}?mode=rwc", missing.display()),
        &dir.path().join("out.db"),
    )
    .await
    .unwrap_err();
    assert!(format!("{refused:#}").contains("must exist"), "{refused:#}");
    assert!(
        !missing.exists(),
        "a backup must not create the database it copies"
    );

    let refused = backup::backup(
        "postgres://postgres@127.0.0.1/holdfast",
        &dir.path().join("pg"),
    )
    .await
    .unwrap_err();
    assert!(refused.to_string().contains("pg_dump -Fc"), "{refused}");
}

/// The audit subcommand's check is the ledger's own: a copy with a posting tampered with is
/// not clean.
#[tokio::test]
async fn the_audit_of_a_tampered_copy_is_not_clean() {
    let dir = tempfile::tempdir().unwrap();
    let shop = Shop::spawn(&random_phone(), "100.00", "10.00", "0.05").await;
    if postgres_url().is_some() {
        // The subcommand's database is the tests' own there; the SQLite file is enough to
        // prove the check can fail.
        let found = backup::audit(&pg_url_of(&shop.app).await).await.unwrap();
        assert!(found.is_clean(), "{found:?}");
        return;
    }
    let file = text_of(&shop.app.state.db, "PRAGMA database_list", 2).await;
    let copy = dir.path().join("copy.db");
    backup::backup_sqlite(&format!("sqlite://{file}"), &copy)
        .await
        .unwrap();
    let url = format!("sqlite://{}", copy.display());
    let tampered = Database::connect(&url).await.unwrap();
    tampered
        .execute_unprepared("UPDATE postings SET amount = amount + 1 WHERE rowid = (SELECT MIN(rowid) FROM postings)")
        .await
        .unwrap();
    tampered.close().await.unwrap();
    let found = backup::audit(&url).await.unwrap();
    assert!(
        !found.is_clean(),
        "a tampered posting went unnoticed: {found:?}"
    );
}

async fn pg_url_of(app: &TestApp) -> String {
    let name = text_of(&app.state.db, "SELECT current_database()", 0).await;
    replace_database(&postgres_url().unwrap(), &name)
}
