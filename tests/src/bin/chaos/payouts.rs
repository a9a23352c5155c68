//! The payouts suite: suppliers with money on their withdrawal accounts ask to be paid out,
//! many clients at once (amounts and "all", each request with its own `Idempotency-Key`, some
//! sent twice), while bank runs hand the payouts to the simulated bank; the server is killed
//! (SIGKILL) in the middle and restarted on the same database, and every request whose answer
//! was lost is sent again with its key. Then: every key made the one payout it was answered
//! with (none if refused), every payout is paid, the bank booked each exactly once, the money
//! paid is the money that left the withdrawal accounts, the day reconciles clean against the
//! bank, and the audit is clean.

use super::{Args, audit_clean, drop_database, is_transport, until_up, world};
use anyhow::{Context, bail, ensure};
use holdfast_tests::driver::{self, Api, Reply, SUPPLIER_SECOND_PASSWORD, minor_units};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The institution's own account at the simulated bank, and the account every payee is paid to.
const OWN_IBAN: &str = "DE89370400440532013000";
const PAYEE_IBAN: &str = "DE44500105175407324931";
/// Payout requests per client (each client then asks for "all" once more).
const ROUNDS: usize = 25;
/// Settled orders per client before the payouts: 38.00 for each client on its supplier's
/// withdrawal account, more than its requests take on average (0.01 to 2.00 each).
const ORDERS_PER_CLIENT: usize = 4;

/// What the clients were told, to compare with the database and the bank.
#[derive(Default)]
struct Told {
    /// Each key's answer: the payout (its id and amount in minor units), or refused for funds.
    answers: Mutex<HashMap<String, Option<(String, i64)>>>,
    sent: AtomicUsize,
    replays: AtomicUsize,
    /// Sends that got no answer (the server was down) and went again with the same key.
    resent: AtomicUsize,
    stop_runs: AtomicBool,
}

/// Sends a payout request until the server answers it: after a transport failure (the crash)
/// the same request goes again with the same key.
async fn send(
    api: &Api,
    token: &str,
    body: &Value,
    key: &str,
    told: &Told,
) -> anyhow::Result<Reply> {
    let started = Instant::now();
    loop {
        told.sent.fetch_add(1, Ordering::Relaxed);
        match api
            .post_keyed("/v1/payee/payouts", Some(token), body, key)
            .await
        {
            Ok(reply) => return Ok(reply),
            Err(error) if is_transport(&error) => {
                told.resent.fetch_add(1, Ordering::Relaxed);
                until_up(api).await;
            }
            Err(error) => return Err(error),
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("no answer to payout {key} for two minutes");
        }
    }
}

/// The payout an answer names, or `None` for a refusal for funds; anything else fails.
fn outcome(key: &str, reply: &Reply) -> anyhow::Result<Option<(String, i64)>> {
    if reply.status.as_u16() == 201 {
        let id = reply.body["id"].as_str().context("payout id")?.to_owned();
        let amount = minor_units(
            reply.body["amount"]["amount"]
                .as_str()
                .context("payout amount")?,
        )?;
        Ok(Some((id, amount)))
    } else if reply.code() == "insufficient_funds" {
        Ok(None)
    } else {
        bail!("payout {key}: {} {}", reply.status, reply.body)
    }
}

/// One client: `ROUNDS` payouts of random amounts, then one of everything, some sent twice (one
/// after the other, or both at once); then a key that paid out, with another amount.
async fn client(
    api: Api,
    token: String,
    index: usize,
    seed: u64,
    told: Arc<Told>,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut last_paid = None;
    for round in 0..=ROUNDS {
        let key = format!("payout-{index}-{round}");
        // Everything, last: the clients of one supplier race to empty its account. (Earlier,
        // an "all" would leave the rest of the run nothing to pay out.)
        let amount = if round == ROUNDS {
            "all".to_owned()
        } else {
            let cents = rng.random_range(1..=200);
            format!("{}.{:02}", cents / 100, cents % 100)
        };
        let body = json!({"currency": "USD", "amount": amount});
        let roll: f64 = rng.random();
        let first = if roll < 0.1 {
            // Both at once: one waits for the other and answers the same.
            let (a, b) = tokio::join!(
                send(&api, &token, &body, &key, &told),
                send(&api, &token, &body, &key, &told)
            );
            let (a, b) = (a?, b?);
            told.replays.fetch_add(1, Ordering::Relaxed);
            ensure!(
                outcome(&key, &a)? == outcome(&key, &b)?,
                "payout {key} sent twice at once answered {a:?} and {b:?}"
            );
            a
        } else {
            send(&api, &token, &body, &key, &told).await?
        };
        let paid = outcome(&key, &first)?;
        if roll > 0.85 {
            // Again, later: the same answer, nothing moved.
            let again = send(&api, &token, &body, &key, &told).await?;
            told.replays.fetch_add(1, Ordering::Relaxed);
            ensure!(
                outcome(&key, &again)? == paid,
                "payout {key} replayed answered {again:?}, first {first:?}"
            );
        }
        if paid.is_some() {
            last_paid = Some(key.clone());
        }
        told.answers.lock().await.insert(key, paid);
    }
    // A key that paid out, with another amount: refused, and nothing moves. (A refused
    // request is not remembered: its key sent again is a new request.)
    if let Some(key) = last_paid {
        let body = json!({"currency": "USD", "amount": "0.07"});
        let reused = send(&api, &token, &body, &key, &told).await?;
        ensure!(
            reused.status.as_u16() == 409 && reused.code() == "idempotency_key_reused",
            "a key reused for another amount: {reused:?}"
        );
    }
    Ok(())
}

/// The rows of `sql` as strings and numbers (each column read as text, or else as an integer).
async fn rows(
    db: &DatabaseConnection,
    sql: &str,
    columns: usize,
) -> anyhow::Result<Vec<Vec<String>>> {
    let found = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .with_context(|| format!("query failed: {sql}"))?;
    found
        .iter()
        .map(|row| {
            (0..columns)
                .map(|i| {
                    row.try_get_by_index::<String>(i)
                        .or_else(|_| row.try_get_by_index::<i64>(i).map(|n| n.to_string()))
                        .or_else(|_| row.try_get_by_index::<uuid::Uuid>(i).map(|u| u.to_string()))
                        .map_err(|e| anyhow::anyhow!("column {i} of {sql}: {e:?}"))
                })
                .collect()
        })
        .collect()
}

/// Waits until no payout is pending or sent (the bank runs took and booked them all).
async fn until_all_paid(db: &DatabaseConnection, within: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let open = rows(
            db,
            "SELECT status, COUNT(*) FROM payouts WHERE status <> 'paid' GROUP BY status",
            2,
        )
        .await?;
        if open.is_empty() {
            return Ok(());
        }
        if started.elapsed() > within {
            bail!("payouts not paid within {within:?}: {open:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn suite_payouts(args: &Args, seed: u64) -> anyhow::Result<()> {
    println!(
        "payouts: {} clients asking for payouts while bank runs go to the simulated bank, SIGKILL in the middle",
        args.clients
    );
    let mut world = world(
        args,
        "payouts",
        args.clients,
        &[
            ("HOLDFAST_BANK_GATEWAY", "simulator"),
            ("HOLDFAST_BANK_RUN_INTERVAL_SECS", "1"),
        ],
    )
    .await?;
    let (api, cast) = (world.api.clone(), world.cast.clone());

    // The bank that pays them out: an institution with its own account in USD.
    let username = format!("payout-bank-{}", std::process::id());
    let created = api
        .post(
            "/v1/operator/institutions",
            Some(&cast.operator),
            &json!({"display_name": "Payout Bank", "code": "0042", "kind": "bank",
                    "username": username, "password": "institution-password"}),
        )
        .await?
        .ok()?;
    let institution = created["institution"]["party_id"]
        .as_str()
        .context("institution id")?
        .to_owned();
    let desk = api.login(&username, "institution-password").await?;
    api.call(
        reqwest::Method::PUT,
        "/v1/institution/bank-accounts/USD",
        Some(&desk),
        Some(&json!({"iban": OWN_IBAN, "holder_name": "Payout Bank"})),
        None,
    )
    .await?
    .ok()?;

    // Money on the suppliers' withdrawal accounts: whole order lifecycles, one task a shopper.
    let orders = args.clients * ORDERS_PER_CLIENT;
    let next = Arc::new(AtomicUsize::new(0));
    let mut earning = Vec::new();
    for shopper in cast.shoppers.clone() {
        let (api, cast, next) = (api.clone(), cast.clone(), next.clone());
        earning.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < orders {
                let key = format!("earn-{}", uuid::Uuid::now_v7().simple());
                driver::lifecycle(&api, &cast, &shopper, &key).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in earning {
        task.await??;
    }

    // Each supplier's account to be paid to, confirmed with its second password.
    let mut before = Vec::with_capacity(cast.sellers.len());
    for seller in &cast.sellers {
        let registered = api
            .post(
                "/v1/payee/destinations",
                Some(&seller.token),
                &json!({"iban": PAYEE_IBAN, "holder_name": "Bench Supplies"}),
            )
            .await?
            .ok()?;
        let id = registered["id"].as_str().context("destination id")?;
        api.post(
            &format!("/v1/payee/destinations/{id}/confirm"),
            Some(&seller.token),
            &json!({"second_password": SUPPLIER_SECOND_PASSWORD}),
        )
        .await?
        .ok()?;
        before.push(api.balance(&seller.token, "withdrawal").await?);
    }
    println!(
        "  {orders} orders settled: {:.2} USD on {} withdrawal accounts",
        before.iter().sum::<i64>() as f64 / 100.0,
        before.len()
    );

    // The load: clients share the suppliers (their requests race for the same money); an
    // operator asks for bank runs too, between the worker's.
    let told = Arc::new(Told::default());
    let started = Instant::now();
    let clients: Vec<_> = (0..args.clients)
        .map(|index| {
            let token = cast.sellers[index % cast.sellers.len()].token.clone();
            tokio::spawn(client(api.clone(), token, index, seed, told.clone()))
        })
        .collect();
    let runner = {
        let (api, operator, told) = (api.clone(), cast.operator.clone(), told.clone());
        tokio::spawn(async move {
            while !told.stop_runs.load(Ordering::Relaxed) {
                // Failures are the crash's: the worker and the next call carry on.
                let _ = api
                    .post("/v1/operator/bank-runs", Some(&operator), &json!({}))
                    .await;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };
    // Kill it once a third of the requests went out: in the middle of the load and the runs.
    let total = args.clients * (ROUNDS + 2);
    while told.sent.load(Ordering::Relaxed) < total / 3
        && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    world.server.kill9()?;
    let sent_at_crash = told.sent.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dir = world._dir.path().to_owned();
    world.server.restart(&dir).await?;
    let db = Database::connect(&world.url).await?;
    // What the crash left in flight, for the record: payouts waiting for a run or for the
    // bank's statement, files the bank may or may not have taken, statements not imported.
    let in_flight = rows(
        &db,
        "SELECT status, COUNT(*) FROM payouts GROUP BY status ORDER BY status",
        2,
    )
    .await?
    .iter()
    .map(|row| format!("{} {}", row[1], row[0]))
    .collect::<Vec<_>>()
    .join(", ");
    let count = async |sql: &str| -> anyhow::Result<String> {
        Ok(rows(&db, sql, 1).await?.concat().concat())
    };
    let files_open = count("SELECT COUNT(*) FROM bank_files WHERE handed_over_at IS NULL").await?;
    let statements_open =
        count("SELECT COUNT(*) FROM simulated_bank_statements WHERE delivered_at IS NULL").await?;
    println!(
        "  killed the server (SIGKILL) after {sent_at_crash} requests, restarted; payouts then: {in_flight}; \
         {files_open} bank files not marked handed over, {statements_open} bank statements not imported"
    );
    for task in clients {
        task.await??;
    }
    told.stop_runs.store(true, Ordering::Relaxed);
    runner.await?;
    let load = started.elapsed();

    until_all_paid(&db, Duration::from_secs(60)).await?;

    // Every key made exactly the payout its answer named (or none, refused), nothing else.
    let answers = told.answers.lock().await.clone();
    let promised: HashMap<String, i64> = answers.values().flatten().cloned().collect();
    let paid_keys = answers.values().flatten().count();
    ensure!(
        promised.len() == paid_keys,
        "two keys were answered with the same payout"
    );
    let stored = rows(
        &db,
        "SELECT id, status, end_to_end_id, CAST(amount AS BIGINT) FROM payouts",
        4,
    )
    .await?;
    let mut stored_ids = HashSet::new();
    let mut paid_sum = 0;
    for row in &stored {
        let (id, status, amount) = (&row[0], &row[1], row[3].parse::<i64>()?);
        ensure!(status == "paid", "payout {id} ended {status}");
        ensure!(
            promised.get(id) == Some(&amount),
            "payout {id} of {amount} is not one a client was answered with"
        );
        stored_ids.insert(id.clone());
        paid_sum += amount;
    }
    ensure!(
        stored_ids.len() == promised.len(),
        "{} payouts answered, {} stored",
        promised.len(),
        stored_ids.len()
    );

    // The bank booked each payout once, for its amount, and nothing else.
    let booked = rows(
        &db,
        "SELECT p.id, COUNT(e.id), CAST(COALESCE(SUM(e.amount), 0) AS BIGINT) FROM payouts p \
         LEFT JOIN simulated_bank_entries e ON e.end_to_end_id = p.end_to_end_id \
         GROUP BY p.id",
        3,
    )
    .await?;
    for row in &booked {
        let (count, sum) = (row[1].parse::<i64>()?, row[2].parse::<i64>()?);
        ensure!(
            count == 1 && -sum == promised[&row[0]],
            "payout {} booked {count} times at the bank for {sum}",
            row[0]
        );
    }
    let strays = rows(
        &db,
        "SELECT e.reference FROM simulated_bank_entries e WHERE NOT EXISTS \
         (SELECT 1 FROM payouts p WHERE p.end_to_end_id = e.end_to_end_id)",
        1,
    )
    .await?;
    ensure!(
        strays.is_empty(),
        "the bank booked what no payout is: {strays:?}"
    );

    // The money paid out is the money that left the withdrawal accounts.
    let mut debited = 0;
    for (seller, before) in cast.sellers.iter().zip(&before) {
        debited += before - api.balance(&seller.token, "withdrawal").await?;
    }
    ensure!(
        debited == paid_sum,
        "{debited} left the withdrawal accounts, {paid_sum} was paid"
    );

    // The bank closes the day; the institution's books agree with it.
    let day = chrono::Utc::now().date_naive();
    api.post(
        "/v1/simulator/bank/close-day",
        Some(&cast.operator),
        &json!({"institution_id": institution, "day": day}),
    )
    .await?
    .ok()?;
    let reconciled = api
        .post(
            "/v1/institution/reconciliations",
            Some(&desk),
            &json!({"day": day, "currency": "USD"}),
        )
        .await?
        .ok()?;
    ensure!(
        reconciled["clean"] == true && reconciled["differences"] == json!([]),
        "the day does not reconcile: {reconciled}"
    );
    let closing = minor_units(
        reconciled["bank_closing"]
            .as_str()
            .context("closing balance")?,
    )?;
    ensure!(
        closing == -paid_sum,
        "the bank's closing balance is {}, {paid_sum} was paid",
        reconciled["bank_closing"]
    );
    db.close().await?;

    println!(
        "  {} requests in {:.1} s ({} replays, {} sent again after no answer): {} payouts of {:.2} USD, {} refused for funds; all paid, each booked once; debited = paid; reconciliation clean",
        told.sent.load(Ordering::Relaxed),
        load.as_secs_f64(),
        told.replays.load(Ordering::Relaxed),
        told.resent.load(Ordering::Relaxed),
        promised.len(),
        paid_sum as f64 / 100.0,
        answers.len() - paid_keys,
    );
    audit_clean(&world, "payouts").await?;
    drop_database(args, world).await;
    Ok(())
}
