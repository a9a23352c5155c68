//! Database plumbing shared by core and the verticals: connecting with the right pool and
//! pragmas, write transactions, the money column type, and error classification.

use sea_orm::sea_query::{ArrayType, ColumnType, Nullable, ValueType, ValueTypeErr};
use sea_orm::{
    ColIdx, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, ExecResult, QueryResult, Statement, TransactionOptions, TransactionTrait,
    TryGetError, TryGetable, Value,
};
use std::sync::Arc;
use std::time::Duration;

mod writer;

pub use writer::MAX_GROUP as SQLITE_MAX_GROUP;

/// How many connections to open. On SQLite the pool serves readers (write transactions run on
/// the writer's own connection). On PostgreSQL 16, measured with the benchmark (release, 600
/// lifecycles at 64 clients, back to back on the 2-core box): 8 connections 69.9 lifecycles/s,
/// per call p99 367 ms; 16: 80.4/s, p99 314 ms; 32: 85.4/s, p99 466 ms. More connections than
/// cores only queue on the hot account rows inside PostgreSQL, where the wait is longer.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    pub sqlite: u32,
    pub postgres: u32,
}

impl Default for PoolSize {
    fn default() -> Self {
        PoolSize {
            sqlite: 4,
            postgres: 16,
        }
    }
}

/// Prepared statements each connection keeps. sqlx keeps 100 by default; the server runs
/// about 300 distinct query sites (counted over core, server and the verticals), more once
/// `IN` lists and multi-row inserts of different lengths are told apart, so with 100 a
/// lifecycle keeps evicting and re-preparing (a round trip each on PostgreSQL).
pub const STATEMENT_CACHE: usize = 1024;

/// Opens `url` (`sqlite://path?mode=rwc` or `postgres://…`). SQLite gets WAL, `synchronous =
/// NORMAL` (durable at checkpoints, never corrupt), foreign keys and a busy timeout, because
/// sea-orm's defaults (one connection, rollback journal) serialise everything; its pool serves
/// readers, and write transactions go to the writer's own connection ([`begin_write`]).
/// PostgreSQL on this machine (loopback or a Unix socket) is reached without TLS unless the URL
/// or `PGSSLMODE` asks for it.
pub async fn connect(url: &str, pool: PoolSize) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30));
    if url.starts_with("sqlite:") {
        options
            .max_connections(pool.sqlite)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|opts| {
                opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    .create_if_missing(true)
                    .statement_cache_capacity(STATEMENT_CACHE)
            });
    } else {
        let plain = local_without_tls_preference(url, std::env::var_os("PGSSLMODE").is_some());
        options
            .max_connections(pool.postgres)
            .min_connections(1)
            .map_sqlx_postgres_opts(move |opts| {
                let opts = opts.statement_cache_capacity(STATEMENT_CACHE);
                if plain {
                    opts.ssl_mode(sea_orm::sqlx::postgres::PgSslMode::Disable)
                } else {
                    opts
                }
            });
    }
    Database::connect(options).await
}

/// Whether a PostgreSQL URL points at this machine (loopback, or a Unix socket: no host, or a
/// `host=/path` parameter) and says nothing about TLS (no `sslmode`, no `PGSSLMODE`): then TLS
/// only costs a handshake and encryption on every round trip.
pub fn local_without_tls_preference(url: &str, pgsslmode_set: bool) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    if !matches!(parsed.scheme(), "postgres" | "postgresql") || pgsslmode_set {
        return false;
    }
    let mut socket_param = false;
    for (key, value) in parsed.query_pairs() {
        match key.as_ref() {
            "sslmode" | "ssl-mode" | "sslrootcert" | "sslcert" | "sslkey" => return false,
            "host" if value.starts_with('/') => socket_param = true,
            "host" => return false,
            _ => {}
        }
    }
    match parsed.host() {
        None => true,
        // `postgres:` is not a special scheme to the URL standard: an address comes as text.
        Some(url::Host::Domain(name)) => {
            socket_param
                || name.is_empty()
                || name.eq_ignore_ascii_case("localhost")
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
    }
}

/// Something told of each statement sent (its SQL and time): a counter, in tests and the
/// benchmark.
pub type StatementObserver = Arc<dyn Fn(&sea_orm::metric::Info<'_>) + Send + Sync>;

/// Calls `observer` for every statement sent for `db` from now on, including, on SQLite, the
/// statements of the one writer that runs `db`'s write transactions on its own connection
/// (sea-orm's per-statement callback alone would see the readers' pool only).
pub async fn observe_statements(
    db: &mut DatabaseConnection,
    observer: StatementObserver,
) -> Result<(), DbErr> {
    if db.get_database_backend() == DbBackend::Sqlite
        && let Some(writer) = writer::Writer::of(db).await?
    {
        writer.observe(observer.clone());
    }
    db.set_metric_callback(move |info| observer(info));
    Ok(())
}

/// Begins a transaction that will write.
///
/// On SQLite every write transaction of the process runs on one connection, owned by a writer
/// task ([`writer`]): the transaction is a savepoint in the writer's open transaction, and its
/// [`WriteTxn::commit`] returns once the group it joined is committed. The writer begins with
/// `BEGIN IMMEDIATE`: a deferred transaction that reads and then writes can fail with
/// `SQLITE_BUSY` when another process wrote in between. (An in-memory database, which another
/// connection cannot see, keeps a transaction of its own on the pool.)
///
/// On PostgreSQL it is a transaction of its own on the pool.
pub async fn begin_write(db: &DatabaseConnection) -> Result<WriteTxn, DbErr> {
    if db.get_database_backend() == DbBackend::Sqlite
        && let Some(writer) = writer::Writer::of(db).await?
    {
        return Ok(WriteTxn(Txn::Group(writer.begin().await?)));
    }
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await?;
    Ok(WriteTxn(Txn::Own(txn)))
}

/// A write transaction from [`begin_write`]: use it as the `DatabaseTransaction` it derefs to,
/// then [`WriteTxn::commit`]. Dropped without a commit, it rolls back (on SQLite, to its own
/// savepoint: the other requests of its group are untouched).
pub struct WriteTxn(Txn);

enum Txn {
    Own(DatabaseTransaction),
    Group(writer::GroupTxn),
}

impl WriteTxn {
    /// Commits; on SQLite, returns when the writer's group commit has (or has not) succeeded,
    /// so an `Ok` is as durable as a commit of its own.
    pub async fn commit(self) -> Result<(), DbErr> {
        match self.0 {
            Txn::Own(txn) => txn.commit().await,
            Txn::Group(txn) => txn.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        match self.0 {
            Txn::Own(txn) => txn.rollback().await,
            Txn::Group(txn) => txn.rollback().await,
        }
    }
}

impl std::ops::Deref for WriteTxn {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        match &self.0 {
            Txn::Own(txn) => txn,
            Txn::Group(txn) => &txn.savepoint,
        }
    }
}

impl std::fmt::Debug for WriteTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Txn::Own(_) => "WriteTxn(own transaction)",
            Txn::Group(_) => "WriteTxn(savepoint in the SQLite writer's group)",
        })
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for WriteTxn {
    fn get_database_backend(&self) -> DbBackend {
        (**self).get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        (**self).execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        (**self).execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        (**self).query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        (**self).query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        (**self).support_returning()
    }

    fn is_mock_connection(&self) -> bool {
        (**self).is_mock_connection()
    }
}

/// A unique index refused the row: someone already claimed this key.
pub fn is_unique_violation(error: &DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// Errors worth retrying: PostgreSQL serialization failures and deadlocks, SQLite busy/locked.
pub fn is_retryable(error: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    let (DbErr::Exec(RuntimeErr::SqlxError(sqlx_error))
    | DbErr::Query(RuntimeErr::SqlxError(sqlx_error))
    | DbErr::Conn(RuntimeErr::SqlxError(sqlx_error))) = error
    else {
        return false;
    };
    match sqlx_error.as_ref() {
        sea_orm::sqlx::Error::Database(db_error) => matches!(
            db_error.code().as_deref(),
            Some("40001" | "40P01" | "55P03" | "5" | "6" | "517" | "261")
        ),
        sea_orm::sqlx::Error::PoolTimedOut => true,
        _ => false,
    }
}

/// A database error described for the log without the values it may quote (PostgreSQL's
/// detail line repeats the offending key, which can be a username or a phone number).
pub fn describe(error: &DbErr) -> String {
    use sea_orm::RuntimeErr;
    match error {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            sea_orm::sqlx::Error::Database(db_error) => format!(
                "database error sqlstate={} constraint={} table={}",
                db_error.code().as_deref().unwrap_or("-"),
                db_error.constraint().unwrap_or("-"),
                db_error.table().unwrap_or("-"),
            ),
            other => format!("sqlx error: {}", sqlx_kind(other)),
        },
        DbErr::RecordNotFound(_) => "record not found".to_owned(),
        DbErr::Type(_) | DbErr::Json(_) => "value conversion error".to_owned(),
        _ => "database error".to_owned(),
    }
}

fn sqlx_kind(error: &sea_orm::sqlx::Error) -> &'static str {
    use sea_orm::sqlx::Error;
    match error {
        Error::PoolTimedOut => "pool timed out",
        Error::PoolClosed => "pool closed",
        Error::Io(_) => "io",
        Error::Tls(_) => "tls",
        Error::Protocol(_) => "protocol",
        Error::RowNotFound => "row not found",
        Error::ColumnDecode { .. } | Error::Decode(_) => "decode",
        _ => "other",
    }
}

pub fn backend(db: &impl sea_orm::ConnectionTrait) -> DbBackend {
    db.get_database_backend()
}

/// A money amount in integer minor units, as stored: `NUMERIC(20,0)` on PostgreSQL, `INTEGER`
/// on SQLite. Reads accept either representation, so sums (`NUMERIC` on PostgreSQL even over
/// integers) decode too; no value ever passes through a float.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MinorUnits(pub i64);

impl From<MinorUnits> for Value {
    fn from(value: MinorUnits) -> Self {
        Value::BigInt(Some(value.0))
    }
}

impl TryGetable for MinorUnits {
    fn try_get_by<I: ColIdx>(res: &QueryResult, index: I) -> Result<Self, TryGetError> {
        if res.try_as_pg_row().is_some() {
            match <rust_decimal::Decimal as TryGetable>::try_get_by(res, index) {
                Ok(decimal) => decimal_to_minor(decimal).map(MinorUnits),
                Err(TryGetError::Null(column)) => Err(TryGetError::Null(column)),
                // An integer expression (a count, a cast) rather than a money column.
                Err(_) => <i64 as TryGetable>::try_get_by(res, index).map(MinorUnits),
            }
        } else {
            <i64 as TryGetable>::try_get_by(res, index).map(MinorUnits)
        }
    }
}

fn decimal_to_minor(decimal: rust_decimal::Decimal) -> Result<i64, TryGetError> {
    use rust_decimal::prelude::ToPrimitive;
    if !decimal.fract().is_zero() {
        return Err(TryGetError::DbErr(DbErr::Type(format!(
            "money column holds a fraction of a minor unit: {decimal}"
        ))));
    }
    decimal.to_i64().ok_or_else(|| {
        TryGetError::DbErr(DbErr::Type(format!("money column out of range: {decimal}")))
    })
}

impl ValueType for MinorUnits {
    fn try_from(value: Value) -> Result<Self, ValueTypeErr> {
        match value {
            Value::BigInt(Some(v)) => Ok(MinorUnits(v)),
            Value::Int(Some(v)) => Ok(MinorUnits(i64::from(v))),
            Value::Decimal(Some(d)) => decimal_to_minor(d)
                .map(MinorUnits)
                .map_err(|_| ValueTypeErr),
            _ => Err(ValueTypeErr),
        }
    }

    fn type_name() -> String {
        "MinorUnits".to_owned()
    }

    fn array_type() -> ArrayType {
        ArrayType::BigInt
    }

    fn column_type() -> ColumnType {
        ColumnType::BigInteger
    }
}

impl Nullable for MinorUnits {
    fn null() -> Value {
        Value::BigInt(None)
    }
}

impl sea_orm::IntoActiveValue<MinorUnits> for MinorUnits {
    fn into_active_value(self) -> sea_orm::ActiveValue<MinorUnits> {
        sea_orm::ActiveValue::Set(self)
    }
}

#[cfg(test)]
mod tests {
    use super::local_without_tls_preference as plain;

    #[test]
    fn tls_is_left_out_only_for_this_machine_when_nothing_asks_for_it() {
        assert!(plain("postgres://postgres@127.0.0.1:5432/holdfast", false));
        assert!(plain("postgresql://u:p@localhost/holdfast", false));
        assert!(plain("postgres://u@[::1]:5432/holdfast", false));
        assert!(plain("postgres:///holdfast", false));
        assert!(plain(
            "postgres:///holdfast?host=/var/run/postgresql",
            false
        ));
        assert!(!plain("postgres://u@db.example.com/holdfast", false));
        assert!(!plain("postgres://u@10.0.0.5/holdfast", false));
        assert!(!plain(
            "postgres://u@127.0.0.1/holdfast?sslmode=require",
            false
        ));
        assert!(!plain(
            "postgres://u@127.0.0.1/holdfast?sslmode=disable",
            false
        ));
        assert!(!plain("postgres://u@127.0.0.1/holdfast", true));
        assert!(!plain("sqlite://holdfast.db?mode=rwc", false));
    }
}
