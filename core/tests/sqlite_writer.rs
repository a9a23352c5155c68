//! SQLite's writer commits write transactions in groups: a request that fails rolls back only
//! its own savepoint, and a group commit that fails fails every request in the group.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use holdfast_core::db::{self, PoolSize, WriteTxn};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use std::future::Future;

async fn open(dir: &tempfile::TempDir) -> DatabaseConnection {
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
    let db = db::connect(
        &url,
        PoolSize {
            sqlite: 2,
            postgres: 2,
        },
    )
    .await
    .unwrap();
    db.execute_unprepared(
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);
         CREATE TABLE child (id INTEGER PRIMARY KEY,
           parent INTEGER NOT NULL REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);",
    )
    .await
    .unwrap();
    db
}

async fn insert(txn: &WriteTxn, table: &str, id: i64) -> Result<(), sea_orm::DbErr> {
    let sql = match table {
        "parent" => format!("INSERT INTO parent (id) VALUES ({id})"),
        // A child of a parent that does not exist: accepted now, refused at the commit.
        _ => format!(
            "INSERT INTO child (id, parent) VALUES ({id}, {})",
            1000 + id
        ),
    };
    txn.execute_unprepared(&sql).await.map(|_| ())
}

async fn ids(db: &DatabaseConnection, table: &str) -> Vec<i64> {
    db.query_all_raw(sea_orm::Statement::from_string(
        db.get_database_backend(),
        format!("SELECT id FROM {table} ORDER BY id"),
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get_by_index::<i64>(0).unwrap())
    .collect()
}

/// Starts `request` as a task and lets it run until it waits for the writer: on this
/// single-threaded runtime the spawned task runs before the test's next step.
async fn queued<F>(request: F) -> tokio::task::JoinHandle<Result<(), sea_orm::DbErr>>
where
    F: Future<Output = Result<(), sea_orm::DbErr>> + Send + 'static,
{
    let handle = tokio::spawn(request);
    tokio::task::yield_now().await;
    handle
}

#[tokio::test(flavor = "current_thread")]
async fn a_failing_request_does_not_undo_the_others_in_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    // The first request holds the writer while three more queue behind it, so that they run
    // in the same open transaction.
    let first = db::begin_write(&db).await.unwrap();
    insert(&first, "parent", 1).await.unwrap();
    let second = queued({
        let db = db.clone();
        async move {
            let txn = db::begin_write(&db).await?;
            insert(&txn, "parent", 2).await?;
            txn.commit().await
        }
    })
    .await;
    let failing = queued({
        let db = db.clone();
        async move {
            let txn = db::begin_write(&db).await?;
            insert(&txn, "parent", 3).await?;
            // The primary key is taken: the request fails, and its row 3 must go with it.
            insert(&txn, "parent", 2).await?;
            txn.commit().await
        }
    })
    .await;
    let fourth = queued({
        let db = db.clone();
        async move {
            let txn = db::begin_write(&db).await?;
            insert(&txn, "parent", 4).await?;
            txn.commit().await
        }
    })
    .await;
    first.commit().await.unwrap();
    second.await.unwrap().unwrap();
    assert!(db::is_unique_violation(
        &failing.await.unwrap().unwrap_err()
    ));
    fourth.await.unwrap().unwrap();
    assert_eq!(ids(&db, "parent").await, [1, 2, 4]);

    // An explicit rollback also takes only its own rows.
    let txn = db::begin_write(&db).await.unwrap();
    insert(&txn, "parent", 5).await.unwrap();
    txn.rollback().await.unwrap();
    let txn = db::begin_write(&db).await.unwrap();
    insert(&txn, "parent", 6).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(ids(&db, "parent").await, [1, 2, 4, 6]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_failing_group_commit_fails_every_request_in_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir).await;
    let first = db::begin_write(&db).await.unwrap();
    insert(&first, "parent", 1).await.unwrap();
    // Its savepoint is released without complaint; the deferred foreign key fails the commit
    // of the whole group.
    let orphan = queued({
        let db = db.clone();
        async move {
            let txn = db::begin_write(&db).await?;
            insert(&txn, "child", 1).await?;
            txn.commit().await
        }
    })
    .await;
    let third = queued({
        let db = db.clone();
        async move {
            let txn = db::begin_write(&db).await?;
            insert(&txn, "parent", 3).await?;
            txn.commit().await
        }
    })
    .await;
    assert!(first.commit().await.is_err(), "the group commit failed");
    assert!(orphan.await.unwrap().is_err());
    assert!(third.await.unwrap().is_err());
    assert!(ids(&db, "parent").await.is_empty());
    assert!(ids(&db, "child").await.is_empty());

    // The writer starts the next group clean.
    let txn = db::begin_write(&db).await.unwrap();
    insert(&txn, "parent", 7).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(ids(&db, "parent").await, [7]);
}
