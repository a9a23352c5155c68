//! The operator's backup and its check: `holdfast backup <path>` copies a SQLite database while
//! the server runs, and `holdfast audit` proves the ledger of any database (a restored copy
//! first of all) from its rows.
//!
//! The copy is SQLite's `VACUUM INTO`: one read transaction, so in WAL mode it is a consistent
//! snapshot of every commit before it began, taken while the server keeps writing (readers and
//! the one writer do not block each other). PostgreSQL has its own tools for this, which know
//! its roles, encodings and versions better than we could: `pg_dump -Fc` and `pg_restore`.

use anyhow::{Context, bail};
use holdfast_core::ledger::{self, LedgerAudit};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};
use std::path::Path;
use std::time::Duration;

/// What an operator is told to run instead on PostgreSQL.
pub const PG_DUMP_ADVICE: &str = "on PostgreSQL, back up with pg_dump and restore with \
     pg_restore: `pg_dump -Fc -f holdfast.dump \"$DATABASE_URL\"`, then into an empty database \
     `pg_restore --no-owner -d \"$RESTORE_URL\" holdfast.dump`";

/// Opens a database that must already exist: unlike the server, neither creates a SQLite file
/// nor runs migrations (a backup or an audit changes nothing). One connection is enough.
async fn open_existing(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .max_connections(1)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10));
    if url.starts_with("sqlite:") {
        options.map_sqlx_sqlite_opts(|opts| {
            opts.create_if_missing(false)
                // The server's writer holds the write lock in short bursts; wait them out.
                .busy_timeout(Duration::from_secs(30))
        });
    }
    Database::connect(options)
        .await
        .context("could not open the database (it must exist)")
}

/// Copies the SQLite database at `url` to a new file `destination`, consistently, while other
/// processes (a running server) read and write it. Refuses an existing `destination`.
pub async fn backup_sqlite(url: &str, destination: &Path) -> anyhow::Result<()> {
    if destination.exists() {
        bail!(
            "{} exists already: a backup never overwrites a file",
            destination.display()
        );
    }
    let target = destination
        .to_str()
        .context("the backup path is not valid UTF-8")?;
    let db = open_existing(url).await?;
    if db.get_database_backend() != DbBackend::Sqlite {
        bail!("{PG_DUMP_ADVICE}");
    }
    // A bound parameter: the path is never spliced into SQL. SQLite itself also refuses a
    // target that exists and is not empty, which closes the gap after the check above.
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        "VACUUM INTO ?",
        [target.into()],
    ))
    .await
    .with_context(|| format!("could not write the backup to {target}"))?;
    db.close().await?;
    Ok(())
}

/// `holdfast backup <path>`.
pub async fn backup(database_url: &str, destination: &Path) -> anyhow::Result<()> {
    if !database_url.starts_with("sqlite:") {
        bail!("{PG_DUMP_ADVICE}");
    }
    backup_sqlite(database_url, destination).await?;
    println!("backup written to {}", destination.display());
    Ok(())
}

/// Runs the ledger audit against the database at `url` (which must be migrated: a copy from
/// an older version is brought forward by `holdfast migrate`).
pub async fn audit(url: &str) -> anyhow::Result<LedgerAudit> {
    let db = open_existing(url).await?;
    let found = ledger::audit(&db)
        .await
        .map_err(|e| anyhow::anyhow!("the audit could not run: {}", e.log_description()))
        .context("is the database migrated? `holdfast migrate` brings an older copy forward")?;
    db.close().await?;
    Ok(found)
}

/// `holdfast audit`: prints the audit as JSON; an error (exit status 1) if it found anything.
pub async fn audit_command(url: &str) -> anyhow::Result<()> {
    let found = audit(url).await?;
    println!("{}", serde_json::to_string_pretty(&found)?);
    if !found.is_clean() {
        bail!("the ledger audit found differences (listed above)");
    }
    Ok(())
}
