//! Loads settled retail orders straight into the database, so the benchmark can show how
//! throughput holds up as the tables grow (10⁴ vs 10⁶ stored orders) without running a million
//! lifecycles first.
//!
//! Each preloaded order has what a real settled order leaves behind in the tables the hot paths
//! read and index: its escrow case, its posted hold, a freeze and a settlement transfer with
//! balanced postings, two approved challenges, case events, the retail order, its line and its
//! parcel, two delivered phone messages, two closed timers and an idempotency record. The
//! shopper's money comes from one deposit, and the cached balances move by exactly the
//! postings' sums, so the ledger audit stays clean.

use anyhow::{Context, bail};
use holdfast_core::check_digit::luhn_digit;
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value,
};
use uuid::Uuid;

/// Rows per transaction.
const CHUNK: u64 = 20_000;
/// Rows per `INSERT … VALUES` into the staging table.
const VALUES_PER_STATEMENT: usize = 500;

/// What every preloaded order refers to: one shopper's card and account, the supplier, and
/// the accounts money passes through.
struct Refs {
    payer: Uuid,
    payer_account: Uuid,
    card: Uuid,
    phone: String,
    payee: Uuid,
    payee_account: Uuid,
    freezing: Uuid,
    commission: Uuid,
    external: Uuid,
    institution: Uuid,
    commodity: Uuid,
}

async fn uuid_of(db: &DatabaseConnection, sql: &str, values: Vec<Value>) -> anyhow::Result<Uuid> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            values,
        ))
        .await?
        .with_context(|| format!("preload: nothing found for {sql}"))?;
    Ok(row.try_get_by_index::<Uuid>(0)?)
}

fn placeholders(backend: DbBackend, sql: &str) -> String {
    // The queries are written with `?`; PostgreSQL numbers its parameters.
    if backend != DbBackend::Postgres {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

async fn refs(db: &DatabaseConnection, supplier: Uuid) -> anyhow::Result<Refs> {
    let b = db.get_database_backend();
    let q = |sql: &str| placeholders(b, sql);
    let card_row = db
        .query_one_raw(Statement::from_string(
            b,
            "SELECT c.id, c.holder_party_id, c.funding_account_id, c.phone_e164, a.institution_party_id \
             FROM cards c JOIN accounts a ON a.id = c.funding_account_id \
             WHERE a.kind = 'prepaid' AND a.currency = 'USD' ORDER BY c.created_at LIMIT 1",
        ))
        .await?
        .context("preload: no shopper with a prepaid USD card")?;
    let institution: Uuid = card_row.try_get_by_index(4)?;
    Ok(Refs {
        card: card_row.try_get_by_index(0)?,
        payer: card_row.try_get_by_index(1)?,
        payer_account: card_row.try_get_by_index(2)?,
        phone: card_row.try_get_by_index(3)?,
        payee: supplier,
        payee_account: uuid_of(
            db,
            &q("SELECT id FROM accounts WHERE owner_party_id = ? AND kind = 'withdrawal' AND currency = 'USD'"),
            vec![supplier.into()],
        )
        .await?,
        freezing: uuid_of(
            db,
            &q("SELECT id FROM accounts WHERE kind = 'freezing' AND currency = 'USD' ORDER BY account_key LIMIT 1"),
            vec![],
        )
        .await?,
        commission: uuid_of(db, &q("SELECT id FROM accounts WHERE account_key = 'commission:USD'"), vec![]).await?,
        external: uuid_of(
            db,
            &q("SELECT id FROM accounts WHERE kind = 'external' AND currency = 'USD' AND institution_party_id = ?"),
            vec![institution.into()],
        )
        .await?,
        institution,
        commodity: uuid_of(
            db,
            &q("SELECT id FROM retail_commodities WHERE supplier_party_id = ? ORDER BY created_at LIMIT 1"),
            vec![supplier.into()],
        )
        .await?,
    })
}

/// A valid order number that real orders cannot take: `8` and ten digits of `n`, and the Luhn
/// digit (a real order picking the same number is refused by the unique index and draws again).
fn order_number(n: u64) -> String {
    let payload = format!("8{n:010}");
    let check = luhn_digit(&payload).unwrap_or(0);
    format!("{payload}{check}")
}

/// Loads `count` settled orders of `price_minor` (USD, `commission_minor` to the platform) from
/// the first prepaid shopper to `supplier`. Run it after at least one real lifecycle, so the
/// accounts it posts to exist.
pub async fn settled_orders(
    url: &str,
    supplier: &str,
    count: u64,
    price_minor: i64,
    commission_minor: i64,
) -> anyhow::Result<()> {
    let db = Database::connect(url).await?;
    let backend = db.get_database_backend();
    let supplier: Uuid = supplier.parse()?;
    let refs = refs(&db, supplier).await?;
    let (new_id, now) = match backend {
        DbBackend::Postgres => ("gen_random_uuid()", "now()"),
        DbBackend::Sqlite => (
            "randomblob(16)",
            "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')",
        ),
        _ => bail!("preload: PostgreSQL or SQLite only"),
    };
    let uuid_type = if backend == DbBackend::Postgres {
        "uuid"
    } else {
        "BLOB"
    };

    let mut done = 0;
    while done < count {
        let size = CHUNK.min(count - done);
        let txn = db.begin().await?;
        txn.execute_unprepared(&format!(
            "CREATE TEMP TABLE preload_ids (n BIGINT PRIMARY KEY, order_number VARCHAR(20), \
             case_id {uuid_type}, hold_id {uuid_type}, freeze_id {uuid_type}, settle_id {uuid_type}, \
             ch_order {uuid_type}, ch_settle {uuid_type}, order_id {uuid_type}, parcel_id {uuid_type})"
        ))
        .await?;
        let rows: Vec<u64> = (done..done + size).collect();
        for batch in rows.chunks(VALUES_PER_STATEMENT) {
            let mut sql = String::from(
                "INSERT INTO preload_ids (n, order_number, case_id, hold_id, freeze_id, settle_id, \
                 ch_order, ch_settle, order_id, parcel_id) VALUES ",
            );
            let mut values: Vec<Value> = Vec::with_capacity(batch.len() * 10);
            for (i, n) in batch.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str("(?,?,?,?,?,?,?,?,?,?)");
                values.push(i64::try_from(*n)?.into());
                values.push(order_number(*n).into());
                for _ in 0..8 {
                    values.push(Uuid::now_v7().into());
                }
            }
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                placeholders(backend, &sql),
                values,
            ))
            .await?;
        }
        let r = &refs;
        let price = price_minor;
        let net = price_minor - commission_minor;
        let fixed: Vec<Value> = vec![];
        let statements = [
            format!(
                "INSERT INTO escrow_cases (id, order_number, vertical, payer_party_id, funding_account_id, \
                 payee_party_id, payee_account_id, payee_name, amount, commission, currency, state, hold_id, \
                 order_challenge_id, settlement_challenge_id, created_at, updated_at, payer_card_id, \
                 settlement_amount, delivered_at, terms) \
                 SELECT case_id, order_number, 'retail', {payer}, {payer_account}, {payee}, {payee_account}, \
                 'Preloaded supplier', {price}, {commission_minor}, 'USD', 'settled', hold_id, ch_order, ch_settle, \
                 {now}, {now}, {card}, NULL, {now}, NULL FROM preload_ids",
                payer = lit(backend, r.payer),
                payer_account = lit(backend, r.payer_account),
                payee = lit(backend, r.payee),
                payee_account = lit(backend, r.payee_account),
                card = lit(backend, r.card),
            ),
            format!(
                "INSERT INTO holds (id, idempotency_key, funding_account_id, freezing_account_id, institution_party_id, \
                 amount, currency, mode, status, expires_at, posted_amount, resolution_key, resolved_at, created_at) \
                 SELECT hold_id, 'preload:' || n || ':hold', {payer_account}, {freezing}, {institution}, {price}, 'USD', \
                 'move', 'posted', NULL, {price}, 'preload:' || n || ':post', {now}, {now} FROM preload_ids",
                payer_account = lit(backend, r.payer_account),
                freezing = lit(backend, r.freezing),
                institution = lit(backend, r.institution),
            ),
            format!(
                "INSERT INTO transfers (id, idempotency_key, kind, hold_id, case_id, created_at) \
                 SELECT freeze_id, 'preload:' || n || ':freeze', 'freeze', hold_id, NULL, {now} FROM preload_ids"
            ),
            format!(
                "INSERT INTO transfers (id, idempotency_key, kind, hold_id, case_id, created_at) \
                 SELECT settle_id, 'preload:' || n || ':settle', 'settle', hold_id, NULL, {now} FROM preload_ids"
            ),
            postings(backend, new_id, now, "freeze_id", r.payer_account, -price),
            postings(backend, new_id, now, "freeze_id", r.freezing, price),
            postings(backend, new_id, now, "settle_id", r.freezing, -price),
            postings(backend, new_id, now, "settle_id", r.payee_account, net),
            postings(
                backend,
                new_id,
                now,
                "settle_id",
                r.commission,
                commission_minor,
            ),
            challenge(backend, now, "ch_order", "order", r, price),
            challenge(backend, now, "ch_settle", "settlement", r, price),
            format!(
                "INSERT INTO case_events (id, case_id, kind, from_state, to_state, detail, at) \
                 SELECT {new_id}, case_id, 'opened', NULL, 'awaiting_order_confirmation', NULL, {now} FROM preload_ids"
            ),
            format!(
                "INSERT INTO case_events (id, case_id, kind, from_state, to_state, detail, at) \
                 SELECT {new_id}, case_id, 'order_approved', 'awaiting_order_confirmation', 'frozen', NULL, {now} FROM preload_ids"
            ),
            format!(
                "INSERT INTO case_events (id, case_id, kind, from_state, to_state, detail, at) \
                 SELECT {new_id}, case_id, 'settled', 'settlement_requested', 'settled', NULL, {now} FROM preload_ids"
            ),
            format!(
                "INSERT INTO retail_orders (id, case_id, shopper_party_id, supplier_party_id, created_at) \
                 SELECT order_id, case_id, {payer}, {payee}, {now} FROM preload_ids",
                payer = lit(backend, r.payer),
                payee = lit(backend, r.payee),
            ),
            format!(
                "INSERT INTO retail_order_lines (id, order_id, line_no, commodity_id, name, unit_price, quantity, commission) \
                 SELECT {new_id}, order_id, 1, {commodity}, 'Preloaded kettle', {price}, 1, {commission_minor} FROM preload_ids",
                commodity = lit(backend, r.commodity),
            ),
            format!(
                "INSERT INTO retail_parcels (id, case_id, distributor_party_id, destination, status, delivered_at, created_at, updated_at) \
                 SELECT parcel_id, case_id, NULL, 'preloaded', 'delivered', {now}, {now}, {now} FROM preload_ids"
            ),
            format!(
                "INSERT INTO outbox (id, channel, destination, payload, status, attempts, next_attempt_at, lease_until, \
                 last_error, created_at, delivered_at, last_status_code, event_id) \
                 SELECT {new_id}, 'phone', '{phone}', '{{\"redacted\":true}}', 'delivered', 1, {now}, NULL, NULL, {now}, {now}, NULL, NULL \
                 FROM preload_ids CROSS JOIN (SELECT 1 AS k UNION ALL SELECT 2) two",
                phone = r.phone,
            ),
            format!(
                "INSERT INTO phone_inbox (id, phone_e164, challenge_id, body, created_at) \
                 SELECT {new_id}, '{phone}', ch_order, 'Holdfast: preloaded order confirmation', {now} FROM preload_ids",
                phone = r.phone,
            ),
            format!(
                "INSERT INTO phone_inbox (id, phone_e164, challenge_id, body, created_at) \
                 SELECT {new_id}, '{phone}', ch_settle, 'Holdfast: preloaded settlement confirmation', {now} FROM preload_ids",
                phone = r.phone,
            ),
            format!(
                "INSERT INTO timers (id, kind, subject_id, due_at, status, attempts, lease_until, fired_at, last_error, created_at) \
                 SELECT {new_id}, 'case_order_deadline', case_id, {now}, 'cancelled', 0, NULL, NULL, NULL, {now} FROM preload_ids"
            ),
            format!(
                "INSERT INTO timers (id, kind, subject_id, due_at, status, attempts, lease_until, fired_at, last_error, created_at) \
                 SELECT {new_id}, 'case_auto_settle', case_id, {now}, 'cancelled', 0, NULL, NULL, NULL, {now} FROM preload_ids"
            ),
            format!(
                "INSERT INTO idempotency_records (scope, key, fingerprint, status_code, response_body, created_at) \
                 SELECT 'preload', 'order-' || n, 'preload', 201, '{{}}', {now} FROM preload_ids"
            ),
        ];
        for sql in statements {
            txn.execute_raw(Statement::from_sql_and_values(
                backend,
                sql.as_str(),
                fixed.clone(),
            ))
            .await
            .with_context(|| format!("preload: {}", sql.chars().take(80).collect::<String>()))?;
        }
        txn.execute_unprepared("DROP TABLE preload_ids").await?;
        txn.commit().await?;
        done += size;
    }

    // The shopper's money for all of them, paid in once; then the cached balances move by
    // exactly what the postings added: the supplier's payouts, the platform's commission and
    // the deposit's source. (The shopper's own account got the deposit and paid it all out.)
    let txn = db.begin().await?;
    let total = i64::try_from(count)? * price_minor;
    let deposit = Uuid::now_v7();
    let statements = [
        format!(
            "INSERT INTO transfers (id, idempotency_key, kind, hold_id, case_id, created_at) \
             VALUES ({}, 'preload:deposit:{deposit}', 'deposit', NULL, NULL, {now})",
            lit(backend, deposit)
        ),
        format!(
            "INSERT INTO postings (id, transfer_id, account_id, amount, currency, created_at) VALUES \
             ({}, {d}, {}, {}, 'USD', {now}), ({}, {d}, {}, {total}, 'USD', {now})",
            lit(backend, Uuid::now_v7()),
            lit(backend, refs.external),
            -total,
            lit(backend, Uuid::now_v7()),
            lit(backend, refs.payer_account),
            d = lit(backend, deposit),
        ),
        format!(
            "UPDATE accounts SET balance = balance - {total} WHERE id = {}",
            lit(backend, refs.external)
        ),
        format!(
            "UPDATE accounts SET balance = balance + {} WHERE id = {}",
            i64::try_from(count)? * (price_minor - commission_minor),
            lit(backend, refs.payee_account)
        ),
        format!(
            "UPDATE accounts SET balance = balance + {} WHERE id = {}",
            i64::try_from(count)? * commission_minor,
            lit(backend, refs.commission)
        ),
    ];
    for sql in statements {
        txn.execute_unprepared(&sql).await?;
    }
    txn.commit().await?;
    // A database that grew over months has been vacuumed, analysed and checkpointed; without
    // this the benchmark would measure autovacuum and the checkpoint catching up with the load.
    match backend {
        DbBackend::Postgres => {
            db.execute_unprepared("VACUUM (ANALYZE)").await?;
            db.execute_unprepared("CHECKPOINT").await?;
        }
        _ => {
            db.execute_unprepared("ANALYZE").await?;
            db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await?;
        }
    }
    db.close().await?;
    Ok(())
}

/// A UUID written into SQL (ours, never input).
fn lit(backend: DbBackend, id: Uuid) -> String {
    match backend {
        DbBackend::Postgres => format!("'{id}'::uuid"),
        _ => format!("X'{}'", id.simple()),
    }
}

fn postings(
    backend: DbBackend,
    new_id: &str,
    now: &str,
    transfer: &str,
    account: Uuid,
    amount: i64,
) -> String {
    format!(
        "INSERT INTO postings (id, transfer_id, account_id, amount, currency, created_at) \
         SELECT {new_id}, {transfer}, {}, {amount}, 'USD', {now} FROM preload_ids",
        lit(backend, account)
    )
}

fn challenge(
    backend: DbBackend,
    now: &str,
    column: &str,
    purpose: &str,
    r: &Refs,
    price: i64,
) -> String {
    format!(
        "INSERT INTO challenges (id, purpose, party_id, phone_e164, subject_id, amount, currency, payee, order_number, \
         digest, code_mac, status, failed_attempts, max_attempts, sends, expires_at, created_at, resolved_at, note, terms) \
         SELECT {column}, '{purpose}', {payer}, '{phone}', case_id, {price}, 'USD', 'Preloaded supplier', order_number, \
         'preload', 'preload', 'approved', 0, 5, 1, {now}, {now}, {now}, NULL, NULL FROM preload_ids",
        payer = lit(backend, r.payer),
        phone = r.phone,
    )
}
