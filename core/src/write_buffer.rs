//! A write transaction's buffer of append-only rows: case events, party events and outbox
//! messages are queued while a use case runs and written as one multi-row `INSERT` per table
//! just before the commit, instead of one statement per row (issue 15: round trips are what a
//! call costs). It also keeps the party's active webhook endpoints the transaction already
//! read, so a call that tells the same party twice reads them once.
//!
//! The runner that owns a transaction wraps its work in [`buffered`]: the rows wait in a
//! task-local buffer bound to that transaction, and are flushed when the work ends well,
//! before the runner commits; an error drops them with the rollback. A row queued for any
//! other transaction (a savepoint of a use case, a transaction begun by hand), or outside a
//! scope, is written at once, as before. So no row can be committed unflushed: the only way
//! in is inside the scope, whose `Ok` is returned after the flush.
//!
//! Nothing reads these rows back inside the transaction that writes them except the case
//! history ([`crate::escrow::events`]), which flushes first ([`flush_for`]); no unique index
//! and no foreign key points at them.

use crate::entities::{cards, case_events, outbox, party_events, webhook_endpoints};
use sea_orm::sea_query::PostgresQueryBuilder;
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryTrait, Statement,
};
use std::cell::RefCell;
use std::collections::HashMap;
use uuid::Uuid;

/// At most this many rows per statement: well inside SQLite's and PostgreSQL's limits on
/// bound values (13 columns × 500).
const MAX_ROWS_PER_INSERT: usize = 500;

#[derive(Default)]
struct Buffer {
    /// The transaction the rows belong to, by address (it is borrowed for the whole scope).
    txn: usize,
    party_events: Vec<party_events::ActiveModel>,
    case_events: Vec<case_events::ActiveModel>,
    outbox: Vec<outbox::ActiveModel>,
    /// Each party's active endpoints as this transaction read them.
    endpoints: HashMap<Uuid, Vec<webhook_endpoints::Model>>,
    /// Cards this transaction read without a lock (forgotten when it changes one): a call
    /// that checks the paying card twice reads it once. Never kept beyond the transaction.
    cards: HashMap<Uuid, cards::Model>,
}

impl Buffer {
    fn is_empty(&self) -> bool {
        self.party_events.is_empty() && self.case_events.is_empty() && self.outbox.is_empty()
    }
}

tokio::task_local! {
    static BUFFER: RefCell<Buffer>;
}

fn address<C: ?Sized>(db: &C) -> usize {
    std::ptr::from_ref(db).cast::<()>() as usize
}

/// Runs `work` with the rows it queues for `txn` buffered, and writes them when it succeeds.
/// The caller commits `txn` only after an `Ok` (an `Err` has dropped the rows: roll back).
pub async fn buffered<T, E: From<DbErr>>(
    txn: &DatabaseTransaction,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let buffer = Buffer {
        txn: address(txn),
        ..Buffer::default()
    };
    // On the heap: a use case's future is large, and the scope would carry it on the stack of
    // whoever polls it (a debug build's test thread overflows).
    let work = Box::pin(work);
    BUFFER
        .scope(RefCell::new(buffer), async {
            let value = work.await?;
            flush_for(txn).await?;
            debug_assert!(BUFFER.with(|b| b.borrow().is_empty()));
            Ok(value)
        })
        .await
}

/// Queues `rows` when `db` is the buffered transaction; hands them back otherwise, for the
/// caller to write now.
fn queue<R>(
    db: &impl ConnectionTrait,
    rows: Vec<R>,
    into: impl FnOnce(&mut Buffer) -> &mut Vec<R>,
) -> Option<Vec<R>> {
    let at = address(db);
    let mut rows = Some(rows);
    let _outside = BUFFER.try_with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        if buffer.txn == at
            && let Some(rows) = rows.take()
        {
            into(&mut buffer).extend(rows);
        }
    });
    rows
}

pub(crate) async fn insert_party_event(
    db: &impl ConnectionTrait,
    row: party_events::ActiveModel,
) -> Result<(), DbErr> {
    match queue(db, vec![row], |b| &mut b.party_events) {
        None => Ok(()),
        Some(rows) => insert_all(db, rows).await,
    }
}

pub(crate) async fn insert_case_events(
    db: &impl ConnectionTrait,
    rows: Vec<case_events::ActiveModel>,
) -> Result<(), DbErr> {
    match queue(db, rows, |b| &mut b.case_events) {
        None => Ok(()),
        Some(rows) => insert_all(db, rows).await,
    }
}

pub(crate) async fn insert_outbox(
    db: &impl ConnectionTrait,
    rows: Vec<outbox::ActiveModel>,
) -> Result<(), DbErr> {
    match queue(db, rows, |b| &mut b.outbox) {
        None => Ok(()),
        Some(rows) => insert_all(db, rows).await,
    }
}

/// `party`'s active webhook endpoints: read once per buffered transaction.
pub(crate) async fn active_endpoints(
    db: &impl ConnectionTrait,
    party: Uuid,
) -> Result<Vec<webhook_endpoints::Model>, DbErr> {
    use sea_orm::{ColumnTrait, QueryFilter};
    let at = address(db);
    let known = BUFFER
        .try_with(|buffer| {
            let buffer = buffer.borrow();
            (buffer.txn == at)
                .then(|| buffer.endpoints.get(&party).cloned())
                .flatten()
        })
        .ok()
        .flatten();
    if let Some(known) = known {
        return Ok(known);
    }
    let endpoints = webhook_endpoints::Entity::find()
        .filter(webhook_endpoints::Column::PartyId.eq(party))
        .filter(webhook_endpoints::Column::Active.eq(true))
        .all(db)
        .await?;
    let _outside = BUFFER.try_with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        if buffer.txn == at {
            buffer.endpoints.insert(party, endpoints.clone());
        }
    });
    Ok(endpoints)
}

/// Forgets what the buffered transaction read of `party`'s endpoints (they were just changed).
pub(crate) fn forget_endpoints(db: &impl ConnectionTrait, party: Uuid) {
    let at = address(db);
    let _outside = BUFFER.try_with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        if buffer.txn == at {
            buffer.endpoints.remove(&party);
        }
    });
}

/// The card `id` as the buffered transaction `db` read it before, if it did.
pub(crate) fn card_read_before(db: &impl ConnectionTrait, id: Uuid) -> Option<cards::Model> {
    let at = address(db);
    BUFFER
        .try_with(|buffer| {
            let buffer = buffer.borrow();
            (buffer.txn == at)
                .then(|| buffer.cards.get(&id).cloned())
                .flatten()
        })
        .ok()
        .flatten()
}

/// Keeps a card the buffered transaction `db` read.
pub(crate) fn card_read(db: &impl ConnectionTrait, card: &cards::Model) {
    let at = address(db);
    let _outside = BUFFER.try_with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        if buffer.txn == at {
            buffer.cards.insert(card.id, card.clone());
        }
    });
}

/// Forgets a card the buffered transaction `db` is changing.
pub(crate) fn forget_card(db: &impl ConnectionTrait, id: Uuid) {
    let at = address(db);
    let _outside = BUFFER.try_with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        if buffer.txn == at {
            buffer.cards.remove(&id);
        }
    });
}

/// Writes what is queued for `db` now, when `db` is the buffered transaction: before a read
/// of the rows in the same transaction.
pub async fn flush_for(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    let at = address(db);
    let taken = BUFFER
        .try_with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            (buffer.txn == at).then(|| {
                (
                    std::mem::take(&mut buffer.party_events),
                    std::mem::take(&mut buffer.case_events),
                    std::mem::take(&mut buffer.outbox),
                )
            })
        })
        .ok()
        .flatten();
    let Some((party, case, outbox)) = taken else {
        return Ok(());
    };
    if db.get_database_backend() == DbBackend::Postgres
        && [party.len(), case.len(), outbox.len()]
            .iter()
            .all(|&rows| rows <= MAX_ROWS_PER_INSERT)
    {
        return insert_together(db, party, case, outbox).await;
    }
    insert_all(db, party).await?;
    insert_all(db, case).await?;
    insert_all(db, outbox).await
}

async fn insert_all<A>(db: &impl ConnectionTrait, rows: Vec<A>) -> Result<(), DbErr>
where
    A: sea_orm::ActiveModelTrait,
{
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(MAX_ROWS_PER_INSERT).collect();
        <A::Entity as EntityTrait>::insert_many(chunk)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// On PostgreSQL the three inserts are one statement (data-modifying CTEs): one round trip.
async fn insert_together(
    db: &impl ConnectionTrait,
    party: Vec<party_events::ActiveModel>,
    case: Vec<case_events::ActiveModel>,
    outbox: Vec<outbox::ActiveModel>,
) -> Result<(), DbErr> {
    let mut parts = Vec::new();
    let mut values = Vec::new();
    let mut add = |(sql, bound): (String, sea_orm::sea_query::Values)| {
        parts.push(renumbered(&sql, values.len()));
        values.extend(bound.0);
    };
    if !party.is_empty() {
        add(party_events::Entity::insert_many(party)
            .query()
            .build(PostgresQueryBuilder));
    }
    if !case.is_empty() {
        add(case_events::Entity::insert_many(case)
            .query()
            .build(PostgresQueryBuilder));
    }
    if !outbox.is_empty() {
        add(outbox::Entity::insert_many(outbox)
            .query()
            .build(PostgresQueryBuilder));
    }
    let Some(last) = parts.pop() else {
        return Ok(());
    };
    let mut sql = String::new();
    for (at, part) in parts.iter().enumerate() {
        sql.push_str(if at == 0 { "WITH " } else { ", " });
        sql.push_str(&format!("w{at} AS ({part})"));
    }
    if !sql.is_empty() {
        sql.push(' ');
    }
    sql.push_str(&last);
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await?;
    Ok(())
}

/// `sql` with its placeholders `$n` moved up by `offset`. The SQL sea-query writes for an
/// insert holds quoted identifiers and placeholders only: every value is bound.
fn renumbered(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            digits.push(d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&digits),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::renumbered;

    #[test]
    fn placeholders_are_moved_past_the_earlier_statements_values() {
        assert_eq!(
            renumbered(
                r#"INSERT INTO "t" ("a", "b") VALUES ($1, $2), ($3, $10)"#,
                5
            ),
            r#"INSERT INTO "t" ("a", "b") VALUES ($6, $7), ($8, $15)"#
        );
        assert_eq!(renumbered("SELECT 1", 3), "SELECT 1");
    }
}
