//! Counts what one API call costs the database: statements, transactions and commits, and so
//! its round trips. The throughput of a call is bounded by its round trips (issue 15), and a
//! count, unlike a latency, needs no quiet machine: one client, one call at a time, the same
//! answer every run.
//!
//! Statements are counted by sea-orm's per-statement metric callback (with their SQL, so a
//! call's reads and writes can be listed per table), on SQLite on the one writer's connection
//! too ([`holdfast_core::db::observe_statements`]); `BEGIN` and `SAVEPOINT`, `COMMIT` and
//! `RELEASE` are counted from sea-orm's own trace spans, caught by a subscriber that listens to
//! nothing else, on the calling thread only. Every begin ends in exactly one commit or rollback,
//! so a call's round trips are its statements plus twice its begins and savepoints. On SQLite
//! a request is a savepoint inside the writer's transaction, which commits it with the others
//! of its group (alone, when one client calls at a time): its `SAVEPOINT` and `RELEASE` are two
//! more statements than PostgreSQL's, on a database in the same process.
//!
//! [`trace_lifecycle`] runs the benchmark's retail lifecycle in process, one call at a time,
//! and tallies each call: the benchmark prints it, and a test pins it.

use crate::TestApp;
use axum::http::StatusCode;
use holdfast_core::funding;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What the database was asked during one call (or several, added up).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Statements sent (reads and writes), `BEGIN`/`COMMIT` not included.
    pub statements: u64,
    /// Transactions begun (`BEGIN`).
    pub begins: u64,
    /// Savepoints begun inside a transaction (`SAVEPOINT`; on SQLite, each request's in the
    /// writer's transaction).
    pub savepoints: u64,
    /// Transactions committed (`COMMIT`; a savepoint's `RELEASE` is not one).
    pub commits: u64,
    /// Statements per (verb, table): `("SELECT", "cards") → 2`.
    pub by_table: BTreeMap<(String, String), u64>,
}

impl Tally {
    /// Every exchange with the database: each statement, and each begin with its commit or
    /// rollback.
    pub fn round_trips(&self) -> u64 {
        self.statements + 2 * (self.begins + self.savepoints)
    }

    pub fn add(&mut self, other: &Tally) {
        self.statements += other.statements;
        self.begins += other.begins;
        self.savepoints += other.savepoints;
        self.commits += other.commits;
        for (key, count) in &other.by_table {
            *self.by_table.entry(key.clone()).or_default() += count;
        }
    }

    /// The statements per table, most first: `cards 3 (SELECT 2, UPDATE 1)`.
    pub fn tables(&self) -> String {
        let mut per_table: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
        for ((verb, table), count) in &self.by_table {
            per_table
                .entry(table.as_str())
                .or_default()
                .push((verb.as_str(), *count));
        }
        let mut rows: Vec<(u64, String)> = per_table
            .into_iter()
            .map(|(table, verbs)| {
                let total: u64 = verbs.iter().map(|(_, n)| n).sum();
                let detail: Vec<String> = verbs.iter().map(|(v, n)| format!("{v} {n}")).collect();
                (total, format!("{table} {total} ({})", detail.join(", ")))
            })
            .collect();
        rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        rows.into_iter()
            .map(|(_, row)| row)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The verb and the first table of a statement, as sea-query writes them.
fn classify(sql: &str) -> (String, String) {
    let verb = sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    let after = match verb.as_str() {
        "SELECT" | "DELETE" | "WITH" => " FROM ",
        "INSERT" => " INTO ",
        "UPDATE" => "UPDATE ",
        _ => "",
    };
    let table = if after.is_empty() {
        String::new()
    } else {
        sql.find(after)
            .map(|at| &sql[at + after.len()..])
            .and_then(|rest| rest.split_whitespace().next())
            .map(|name| {
                name.trim_matches(|c: char| c == '"' || c == '`' || c == '(' || c == ',')
                    .to_owned()
            })
            .unwrap_or_default()
    };
    (verb, table)
}

/// A counter attached to one database connection (and every clone made after it).
#[derive(Clone, Default)]
pub struct Counter {
    tally: Arc<Mutex<Tally>>,
}

impl Counter {
    /// Counts every statement `db` (and the clones made from it from now on) sends, and on
    /// SQLite its writer's.
    pub async fn attach(&self, db: &mut sea_orm::DatabaseConnection) {
        let tally = self.tally.clone();
        // `ROUNDTRIPS_SQL=1` prints each counted statement (its SQL, never its values).
        let print = std::env::var_os("ROUNDTRIPS_SQL").is_some();
        let observer: holdfast_core::db::StatementObserver = Arc::new(move |info| {
            if print {
                eprintln!("  sql: {}", info.statement.sql);
            }
            let key = classify(&info.statement.sql);
            if let Ok(mut tally) = tally.lock() {
                tally.statements += 1;
                *tally.by_table.entry(key).or_default() += 1;
            }
        });
        holdfast_core::db::observe_statements(db, observer)
            .await
            .expect("the counter attaches");
    }

    /// What was counted since the last take; starts again from zero.
    pub fn take(&self) -> Tally {
        self.tally
            .lock()
            .map(|mut tally| std::mem::take(&mut *tally))
            .unwrap_or_default()
    }

    /// Runs `call` with begins and commits counted too (on this thread: the in-process router
    /// runs the call on the caller's task) and returns its tally.
    pub async fn count<T>(&self, call: impl Future<Output = T>) -> (T, Tally) {
        let _ = self.take();
        if std::env::var_os("ROUNDTRIPS_SQL").is_some() {
            eprintln!("-- call");
        }
        let spans = Arc::new(TransactionSpans::default());
        let value = {
            let _guard = tracing::subscriber::set_default(spans.clone());
            call.await
        };
        let mut tally = self.take();
        tally.begins = spans.begins.load(Ordering::Relaxed);
        tally.savepoints = spans.savepoints.load(Ordering::Relaxed);
        // Every savepoint of a call that succeeded was released, in a span named `commit`.
        tally.commits = spans
            .commits
            .load(Ordering::Relaxed)
            .saturating_sub(tally.savepoints);
        (value, tally)
    }
}

/// A tracing subscriber that only counts sea-orm's `begin` and `commit` spans of a
/// transaction (`DatabaseTransaction::begin` is the one that sends `BEGIN` or `SAVEPOINT`;
/// the connection's `begin_with_options` wrapping it has no `backend` field).
#[derive(Default)]
struct TransactionSpans {
    begins: AtomicU64,
    savepoints: AtomicU64,
    commits: AtomicU64,
    next_id: AtomicU64,
}

const TRANSACTION_TARGET: &str = "sea_orm::database::transaction";

impl tracing::Subscriber for TransactionSpans {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.is_span()
            && metadata.target() == TRANSACTION_TARGET
            && (metadata.name() == "commit"
                || (metadata.name() == "begin" && metadata.fields().field("backend").is_some()))
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        match span.metadata().name() {
            // A transaction is begun with options (`begin_write` always names SQLite's mode);
            // a savepoint inside one with none.
            "begin" if top_level(span) => self.begins.fetch_add(1, Ordering::Relaxed),
            "begin" => self.savepoints.fetch_add(1, Ordering::Relaxed),
            _ => self.commits.fetch_add(1, Ordering::Relaxed),
        };
        tracing::span::Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, _: &tracing::Event<'_>) {}

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// Whether a `begin` span opens a transaction rather than a savepoint. On SQLite a transaction
/// is begun with its mode named (`begin_write` and the writer always name it) and a savepoint
/// with none; sea-orm drops the SQLite mode on other databases, where the server opens no
/// savepoints.
fn top_level(span: &tracing::span::Attributes<'_>) -> bool {
    #[derive(Default)]
    struct Fields {
        sqlite: bool,
        mode_named: bool,
    }
    impl tracing::field::Visit for Fields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            match field.name() {
                "backend" => self.sqlite = format!("{value:?}") == "Sqlite",
                "sqlite_transaction_mode" => {
                    self.mode_named = format!("{value:?}").starts_with("Some")
                }
                _ => {}
            }
        }
    }
    let mut fields = Fields::default();
    span.record(&mut fields);
    !fields.sqlite || fields.mode_named
}

/// The calls of one retail lifecycle as the benchmark makes them, in order.
pub const CALLS: [&str; 7] = [
    "place_order",
    "approve_order",
    "find_parcel",
    "record_delivery",
    "request_settlement",
    "view_order",
    "approve_settlement",
];

/// One lifecycle's tallies: each call's in [`CALLS`] order, and the work beside the calls (the
/// outbox worker delivering the phone messages, the phone reading its codes), which the
/// benchmark's load also causes but no client waits for in a call of its own.
#[derive(Debug, Clone)]
pub struct LifecycleTrace {
    pub calls: Vec<(&'static str, Tally)>,
    pub outbox: Tally,
    pub code_reads: Tally,
}

impl LifecycleTrace {
    /// The lifecycle's calls added up.
    pub fn total(&self) -> Tally {
        let mut total = Tally::default();
        for (_, tally) in &self.calls {
            total.add(tally);
        }
        total
    }

    pub fn call(&self, name: &str) -> &Tally {
        &self
            .calls
            .iter()
            .find(|(call, _)| *call == name)
            .unwrap_or_else(|| panic!("no call {name}"))
            .1
    }

    /// The table the benchmark prints.
    pub fn report(&self) -> String {
        let mut out = String::from(
            "  call                   round trips  statements  begins  savepoints  commits\n",
        );
        let row = |name: &str, t: &Tally| {
            format!(
                "    {name:<22} {:>9} {:>11} {:>7} {:>11} {:>8}\n",
                t.round_trips(),
                t.statements,
                t.begins,
                t.savepoints,
                t.commits
            )
        };
        for (name, tally) in &self.calls {
            out.push_str(&row(name, tally));
        }
        out.push_str(&row("lifecycle", &self.total()));
        out.push_str("  beside the calls\n");
        out.push_str(&row("outbox delivery", &self.outbox));
        out.push_str(&row("phone code reads", &self.code_reads));
        out.push_str("  statements per table in the lifecycle's calls\n");
        out.push_str(&format!("    {}\n", self.total().tables()));
        out
    }
}

/// Everyone the lifecycle needs, set up as the benchmark's cast is: a carrier, a supplier
/// shipping with it by default at 5 % commission, a 10.00 USD commodity, a shopper on a
/// prepaid card with a delivery address, logged in on its phone.
struct Cast {
    carrier: String,
    supplier: String,
    commodity: String,
    shopper: String,
    phone: String,
}

async fn cast(app: &TestApp) -> Cast {
    let operator = app.harness_operator().await;
    let (carrier_id, carrier) = app.distributor(&operator, "Carrier").await;
    let (_, supplier) = app
        .onboard_staff(
            &operator,
            "/v1/operator/suppliers",
            "sup",
            json!({"display_name": "Bench Supplies", "commission_rate": "0.05",
                   "default_distributor_id": carrier_id}),
        )
        .await;
    let commodity = app
        .post(
            "/v1/retail/commodities",
            Some(&supplier),
            json!({"name": "Bench kettle", "price": {"amount": "10.00", "currency": "USD"}}),
        )
        .await;
    assert_eq!(commodity.status, StatusCode::CREATED, "{commodity:?}");
    let phone = crate::world::random_phone();
    let created = app
        .post_idempotent(
            "/v1/operator/shoppers",
            Some(&operator),
            json!({"display_name": "Shopper", "phone": phone, "currency": "USD",
                   "initial_deposit": {"amount": "100.00", "currency": "USD"},
                   "delivery_address": "1 Bench Street"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let card = created.body["card"]["card_number"].as_str().unwrap();
    let shopper = app.card_login(card, &phone).await;
    // Every shard of the freezing account open beforehand: a case picks its shard at random,
    // and the first case on a shard opens it (two statements more), which would make the
    // count vary from run to run.
    app.state
        .in_write_txn(async |txn, core| {
            for shard in 0..funding::FREEZING_SHARDS {
                funding::freezing_shard_in_txn(
                    txn,
                    &core.clock,
                    funding::DEFAULT_INSTITUTION,
                    holdfast_core::money::Currency::USD,
                    shard,
                )
                .await?;
            }
            Ok::<_, holdfast_core::CoreError>(())
        })
        .await
        .unwrap();
    Cast {
        carrier,
        supplier,
        commodity: commodity.body["id"].as_str().unwrap().to_owned(),
        shopper,
        phone,
    }
}

/// Sets up the cast, runs one lifecycle unmeasured (the first settlement opens accounts, as
/// the benchmark's warm-up does), then one measured, call by call. `app`'s database must have
/// been opened with `counter` attached ([`TestApp::spawn_counted`]).
pub async fn trace_lifecycle(app: &TestApp, counter: &Counter) -> LifecycleTrace {
    let cast = cast(app).await;
    let _warm_up = lifecycle(app, counter, &cast).await;
    lifecycle(app, counter, &cast).await
}

async fn lifecycle(app: &TestApp, counter: &Counter, cast: &Cast) -> LifecycleTrace {
    let mut calls = Vec::new();
    let mut outbox = Tally::default();
    let mut code_reads = Tally::default();

    let (placed, tally) = counter
        .count(app.place_order(&cast.shopper, &cast.commodity, 1))
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{placed:?}");
    calls.push(("place_order", tally));
    let number = placed.body["order_number"].as_str().unwrap().to_owned();
    let challenge = placed.body["pending_confirmation"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let code = read_code(app, counter, cast, &challenge, &mut outbox, &mut code_reads).await;
    let (approved, tally) = counter
        .count(app.answer(&challenge, &code, "approve"))
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    calls.push(("approve_order", tally));

    let (parcels, tally) = counter
        .count(app.get(
            &format!("/v1/distributor/parcels?order_number={number}"),
            Some(&cast.carrier),
        ))
        .await;
    assert_eq!(parcels.status, StatusCode::OK, "{parcels:?}");
    calls.push(("find_parcel", tally));
    let parcel = parcels.body[0]["parcel_id"].as_str().unwrap().to_owned();

    let (delivered, tally) = counter
        .count(app.post(
            &format!("/v1/distributor/parcels/{parcel}/tracking"),
            Some(&cast.carrier),
            json!({"kind": "delivered", "location": "door", "order_number": number}),
        ))
        .await;
    assert!(delivered.status.is_success(), "{delivered:?}");
    calls.push(("record_delivery", tally));

    let (requested, tally) = counter
        .count(app.post(
            &format!("/v1/retail/orders/{number}/settlement-request"),
            Some(&cast.supplier),
            json!({}),
        ))
        .await;
    assert_eq!(requested.status, StatusCode::OK, "{requested:?}");
    calls.push(("request_settlement", tally));

    let (view, tally) = counter
        .count(app.get(&format!("/v1/retail/orders/{number}"), Some(&cast.shopper)))
        .await;
    assert_eq!(view.status, StatusCode::OK, "{view:?}");
    calls.push(("view_order", tally));
    let settlement = view.body["pending_confirmation"]["challenge_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let code = read_code(
        app,
        counter,
        cast,
        &settlement,
        &mut outbox,
        &mut code_reads,
    )
    .await;
    let (settled, tally) = counter
        .count(app.answer(&settlement, &code, "approve"))
        .await;
    assert_eq!(settled.status, StatusCode::OK, "{settled:?}");
    assert_eq!(settled.body["outcome"], "settled", "{settled:?}");
    calls.push(("approve_settlement", tally));

    // The messages the calls left in the outbox (to the phone, the supplier, the carrier).
    let ((), tally) = counter.count(app.deliver()).await;
    outbox.add(&tally);
    LifecycleTrace {
        calls,
        outbox,
        code_reads,
    }
}

/// Delivers the outbox as the worker would, then reads the code as the benchmark's phone does
/// (the simulator inbox, filtered to the challenge); each counted apart from the calls.
async fn read_code(
    app: &TestApp,
    counter: &Counter,
    cast: &Cast,
    challenge: &str,
    outbox: &mut Tally,
    code_reads: &mut Tally,
) -> String {
    let operator = app.harness_operator().await;
    let ((), tally) = counter.count(app.deliver()).await;
    outbox.add(&tally);
    let (inbox, tally) = counter
        .count(app.get(
            &format!(
                "/v1/phone-simulator/{}/messages?challenge_id={challenge}",
                cast.phone
            ),
            Some(&operator),
        ))
        .await;
    code_reads.add(&tally);
    assert_eq!(inbox.status, StatusCode::OK, "{inbox:?}");
    inbox.body[0]["code"].as_str().unwrap().to_owned()
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn a_statement_is_classified_by_its_verb_and_first_table() {
        let c = |sql: &str| {
            let (verb, table) = classify(sql);
            format!("{verb} {table}")
        };
        assert_eq!(
            c(r#"SELECT "cards"."id" FROM "cards" WHERE "cards"."id" = $1"#),
            "SELECT cards"
        );
        assert_eq!(
            c(r#"INSERT INTO "case_events" ("id", "case_id") VALUES ($1, $2)"#),
            "INSERT case_events"
        );
        assert_eq!(
            c(r#"UPDATE "accounts" SET "balance" = $1 WHERE "id" = $2"#),
            "UPDATE accounts"
        );
        assert_eq!(
            c(r#"DELETE FROM "timers" WHERE "id" = $1"#),
            "DELETE timers"
        );
    }
}
