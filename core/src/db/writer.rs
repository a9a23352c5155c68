//! SQLite's one writer: a task that owns a connection of its own and runs every write
//! transaction of the process on it, one after another, committing them in groups.
//!
//! SQLite lets one connection write at a time. With write transactions spread over a pool,
//! each waits for the file lock in the busy handler (sleeps, context switches) and pays a
//! commit of its own. Here a request asks the writer for a slot and gets a savepoint inside
//! the writer's open transaction (`BEGIN IMMEDIATE`); it runs its use case on it and hands it
//! back to commit (the writer releases the savepoint) or drops it (rolled back to the
//! savepoint: its neighbours are untouched). While requests are waiting, the next one starts
//! in the same transaction; when none is waiting, or the group is full, the writer commits
//! once and tells every request of the group the outcome. A request's `commit` returns only
//! after that commit: a failed group commit fails every request in it (the idempotency claims
//! they wrote go with it), and a committed answer is as durable as before (WAL, `synchronous
//! = NORMAL`).
//!
//! A request that is rolled back closes its group (the rest of the group commits at once),
//! so that an error that ends SQLite's transaction by itself (I/O, out of memory) fails the
//! group's commit and cannot leave later requests running outside a transaction.

use sea_orm::{
    DatabaseConnection, DatabaseTransaction, DbErr, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Requests committed together at most; a bound on how long other processes (a second
/// instance, the command line) wait for the file lock.
pub const MAX_GROUP: usize = 32;

/// How long a request waits for its turn before giving up (like the pool's acquire timeout):
/// a caller that asks for a second write transaction while holding one gets an error instead
/// of waiting for itself forever.
const TURN_TIMEOUT: Duration = Duration::from_secs(30);

/// A request's turn: its savepoint, and where to say how it ended.
struct Slot {
    savepoint: DatabaseTransaction,
    done: oneshot::Sender<Done>,
}

enum Done {
    /// Release the savepoint, and answer once the group is committed (or not).
    Commit {
        savepoint: DatabaseTransaction,
        outcome: oneshot::Sender<Result<(), DbErr>>,
    },
}

type Turn = oneshot::Sender<Result<Slot, DbErr>>;

/// The writer for one database file.
#[derive(Clone)]
pub(super) struct Writer {
    turns: mpsc::UnboundedSender<Turn>,
    /// Told of every statement the writer's connection sends, once someone asks
    /// ([`super::observe_statements`]: the tests' and the benchmark's counter).
    observer: Arc<RwLock<Option<super::StatementObserver>>>,
}

/// One writer per SQLite file in the process (several `DatabaseConnection`s to one file share
/// it). Kept until its task ends (its runtime stopped), then replaced.
static WRITERS: Mutex<Option<HashMap<PathBuf, Writer>>> = Mutex::new(None);

impl Writer {
    /// The writer for `db`'s file, started on first use with a connection of its own (the
    /// pool's options: WAL, `synchronous`, busy timeout, statement cache). `None` for an
    /// in-memory database, where another connection would see another database.
    pub(super) async fn of(db: &DatabaseConnection) -> Result<Option<Writer>, DbErr> {
        let pool = db.get_sqlite_connection_pool();
        let options = pool.connect_options();
        let file = options.get_filename().to_path_buf();
        let in_memory = {
            let name = file.to_string_lossy();
            name.is_empty() || name == ":memory:" || name.starts_with("file:sqlx-in-memory")
        };
        if in_memory {
            return Ok(None);
        }
        if let Some(writer) = Self::registered(&file) {
            return Ok(Some(writer));
        }
        let connection = sea_orm::sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with((*options).clone())
            .await
            .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(Arc::new(e))))?;
        let mut connection = sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(connection);
        let observer: Arc<RwLock<Option<super::StatementObserver>>> = Arc::default();
        let observing = observer.clone();
        connection.set_metric_callback(move |info| {
            if let Some(observe) = observing.read().ok().and_then(|o| o.clone()) {
                observe(info);
            }
        });
        let mut writers = WRITERS.lock().unwrap_or_else(|e| e.into_inner());
        let writers = writers.get_or_insert_with(HashMap::new);
        // Another caller may have started one meanwhile: keep the first.
        if let Some(writer) = writers.get(&file)
            && !writer.turns.is_closed()
        {
            return Ok(Some(writer.clone()));
        }
        let (turns, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(connection, queue));
        let writer = Writer { turns, observer };
        writers.insert(file, writer.clone());
        Ok(Some(writer))
    }

    /// Tells `observer` of every statement the writer sends from now on.
    pub(super) fn observe(&self, observer: super::StatementObserver) {
        if let Ok(mut slot) = self.observer.write() {
            *slot = Some(observer);
        }
    }

    fn registered(file: &Path) -> Option<Writer> {
        let writers = WRITERS.lock().unwrap_or_else(|e| e.into_inner());
        writers
            .as_ref()?
            .get(file)
            .filter(|w| !w.turns.is_closed())
            .cloned()
    }

    /// Waits for this request's turn: a savepoint in the writer's transaction.
    pub(super) async fn begin(&self) -> Result<GroupTxn, DbErr> {
        let (turn, slot) = oneshot::channel();
        self.turns.send(turn).map_err(|_| stopped())?;
        let slot = tokio::time::timeout(TURN_TIMEOUT, slot)
            .await
            .map_err(|_| {
                DbErr::Custom("timed out waiting for the SQLite writer (a write transaction opened inside another?)".to_owned())
            })?
            .map_err(|_| stopped())??;
        Ok(GroupTxn {
            savepoint: slot.savepoint,
            done: slot.done,
        })
    }
}

fn stopped() -> DbErr {
    DbErr::Custom("the SQLite writer has stopped".to_owned())
}

/// A request's savepoint in the writer's transaction. Dropped without [`GroupTxn::commit`], it
/// rolls back to the savepoint (fields drop in order: the savepoint's rollback is queued on the
/// connection before the writer hears that the request is gone).
pub(super) struct GroupTxn {
    pub(super) savepoint: DatabaseTransaction,
    done: oneshot::Sender<Done>,
}

impl GroupTxn {
    /// Hands the savepoint back to be released, and waits for the group's commit.
    pub(super) async fn commit(self) -> Result<(), DbErr> {
        let GroupTxn { savepoint, done } = self;
        let (outcome, committed) = oneshot::channel();
        done.send(Done::Commit { savepoint, outcome })
            .map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?
    }

    /// Rolls back to the savepoint now, then gives the turn back.
    pub(super) async fn rollback(self) -> Result<(), DbErr> {
        let GroupTxn { savepoint, done } = self;
        let result = savepoint.rollback().await;
        drop(done);
        result
    }
}

/// How a request's turn ended.
enum Served {
    /// Its savepoint was released into the group; the sender gets the group's outcome.
    Released(oneshot::Sender<Result<(), DbErr>>),
    /// Rolled back (or never started): it closes the group.
    RolledBack,
    /// It had stopped waiting before its turn came.
    Gone,
}

async fn run(connection: DatabaseConnection, mut turns: mpsc::UnboundedReceiver<Turn>) {
    while let Some(first) = turns.recv().await {
        if first.is_closed() {
            continue;
        }
        let group = match connection
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await
        {
            Ok(group) => group,
            Err(error) => {
                let _ = first.send(Err(error));
                continue;
            }
        };
        let mut members = Vec::new();
        let mut next = Some(first);
        while let Some(turn) = next.take() {
            match serve(&group, turn).await {
                Served::Released(outcome) => members.push(outcome),
                Served::Gone => {}
                Served::RolledBack => break,
            }
            if members.len() >= MAX_GROUP {
                break;
            }
            next = turns.try_recv().ok();
        }
        let committed = if members.is_empty() {
            group.rollback().await
        } else {
            group.commit().await
        };
        if let Err(error) = &committed {
            tracing::error!(
                requests = members.len(),
                error = %super::describe(error),
                "SQLite group commit failed; every request in it fails"
            );
        }
        for member in members {
            let _ = member.send(committed.clone());
        }
    }
}

async fn serve(group: &DatabaseTransaction, turn: Turn) -> Served {
    if turn.is_closed() {
        return Served::Gone;
    }
    let savepoint = match group.begin().await {
        Ok(savepoint) => savepoint,
        Err(error) => {
            let _ = turn.send(Err(error));
            return Served::RolledBack;
        }
    };
    let (done, finished) = oneshot::channel();
    if let Err(Ok(slot)) = turn.send(Ok(Slot { savepoint, done })) {
        // It stopped waiting just now: roll its (empty) savepoint back.
        let _ = slot.savepoint.rollback().await;
        return Served::Gone;
    }
    match finished.await {
        Ok(Done::Commit { savepoint, outcome }) => match savepoint.commit().await {
            Ok(()) => Served::Released(outcome),
            Err(error) => {
                let _ = outcome.send(Err(error));
                Served::RolledBack
            }
        },
        // Dropped: its savepoint's rollback is queued on the connection, ahead of whatever
        // the writer runs next.
        Err(_) => Served::RolledBack,
    }
}
