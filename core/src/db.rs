//! Database plumbing shared by core and the verticals: connecting with the right pool and
//! pragmas, write transactions, the money column type, and error classification.

use sea_orm::sea_query::{ArrayType, ColumnType, Nullable, ValueType, ValueTypeErr};
use sea_orm::{
    ColIdx, ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    QueryResult, TransactionOptions, TransactionTrait, TryGetError, TryGetable, Value,
};
use std::time::Duration;

/// How many connections to open. SQLite allows one writer at a time, so a few connections
/// serve readers while write transactions queue on the busy timeout.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    pub sqlite: u32,
    pub postgres: u32,
}

impl Default for PoolSize {
    fn default() -> Self {
        PoolSize {
            sqlite: 4,
            postgres: 32,
        }
    }
}

/// Opens `url` (`sqlite://path?mode=rwc` or `postgres://…`). SQLite gets WAL, `synchronous =
/// NORMAL` (durable at checkpoints, never corrupt), foreign keys and a busy timeout, because
/// sea-orm's defaults (one connection, rollback journal) serialise everything.
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
            });
    } else {
        options.max_connections(pool.postgres).min_connections(1);
    }
    Database::connect(options).await
}

/// Begins a transaction that will write. On SQLite it takes the write lock at once (`BEGIN
/// IMMEDIATE`): a deferred transaction that reads and then writes can fail with
/// `SQLITE_BUSY` when another writer got in between, and no busy timeout helps then.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
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
