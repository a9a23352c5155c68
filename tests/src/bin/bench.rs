//! The benchmark: starts a `holdfast` server on a fresh SQLite file or PostgreSQL database and
//! drives N full retail lifecycles over HTTP at concurrency C — place order → approve on the
//! phone (code from the simulator inbox) → delivery recorded with the order number →
//! settlement request → approve → released — then prints lifecycles/s, API calls/s, latency
//! percentiles per step and the server's peak RSS, and verifies the ledger and every payout.
//!
//! cargo build --release -p holdfast-server -p holdfast-tests
//! target/release/holdfast-bench --lifecycles 2000 --concurrency 64
//! target/release/holdfast-bench --postgres postgres://postgres@127.0.0.1:5432/postgres …
//! target/release/holdfast-bench --postgres … --instances 2   (two servers, clients split)
//! target/release/holdfast-bench --metrics compare   (per-call latency with /metrics on vs off)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::bail;
use clap::Parser;
use holdfast_tests::driver::{self, Api, STEPS, Server};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "Holdfast's lifecycle benchmark")]
struct Args {
    /// Lifecycles to run (after the warm-up).
    #[arg(long, default_value_t = 1000)]
    lifecycles: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Shoppers (cards, phones) the clients share; default: one per client.
    #[arg(long)]
    shoppers: Option<usize>,
    /// Suppliers the shoppers buy from (shopper i buys from supplier i mod this).
    #[arg(long, default_value_t = 8)]
    suppliers: usize,
    /// Run on PostgreSQL: an admin URL on which the benchmark may create its database.
    #[arg(long, env = "BENCH_POSTGRES_URL")]
    postgres: Option<String>,
    /// Settled orders to load first, to measure how throughput holds as the tables grow.
    #[arg(long, default_value_t = 0)]
    preload: u64,
    /// Server processes on the same database; the clients are split evenly between them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    instances: u16,
    /// Lifecycles run before measuring (connection pools, caches).
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// The servers' Prometheus metrics: `on`, `off`, or `compare` — a second server with
    /// metrics off on the same store, the measured lifecycles split into eight rounds taken
    /// off, on, on, off, … (so that the tables' growth and the machine's load weigh on both
    /// alike), and per-call p50 and p99 printed for each.
    #[arg(long, value_enum, default_value_t = MetricsMode::On)]
    metrics: MetricsMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MetricsMode {
    On,
    Off,
    Compare,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    print_round_trips(args.postgres.clone())?;
    let workdir = tempfile::tempdir()?;
    let run = std::process::id();
    let store = driver::fresh_store(
        args.postgres.as_deref(),
        workdir.path(),
        &format!("holdfast_bench_{run}"),
    )
    .await?;
    let database = match &store {
        driver::Store::Sqlite(_) => "sqlite",
        driver::Store::Postgres(_) => "postgresql",
    };
    let metrics_env = match args.metrics {
        MetricsMode::Off => "off",
        MetricsMode::On | MetricsMode::Compare => "on",
    };
    let server = Server::start(
        store.clone(),
        workdir.path(),
        &[("HOLDFAST_METRICS", metrics_env)],
    )
    .await?;
    let unmetered = match args.metrics {
        MetricsMode::Compare if args.instances > 1 => {
            bail!("--metrics compare runs one server of each kind: leave --instances at 1")
        }
        MetricsMode::Compare => Some(
            Server::start(
                store.clone(),
                workdir.path(),
                &[("HOLDFAST_METRICS", "off")],
            )
            .await?,
        ),
        MetricsMode::On | MetricsMode::Off => None,
    };
    let mut others = Vec::new();
    for _ in 1..args.instances {
        others.push(server.another(workdir.path()).await?);
    }
    let api = Api::new(&server.url).recording();
    // Client i talks to instance i mod N, for the whole of each of its lifecycles.
    let apis: Vec<Api> = std::iter::once(api.clone())
        .chain(others.iter().map(|other| api.on(&other.url)))
        .collect();
    let shoppers = args.shoppers.unwrap_or(args.concurrency).max(1);
    // Workers take lifecycles as they free up, so one shopper may run more than its share:
    // fund each for twice the even split.
    let per_shopper = 2 * (args.lifecycles + args.warmup) / shoppers + 2;
    let deposit = format!("{}.00", per_shopper * 10 + 10);
    let cast = Arc::new(driver::cast(&api, run, args.suppliers, shoppers, &deposit).await?);

    // Warm-up, unmeasured; it also opens every account the preloaded orders post to.
    let warm = run_lifecycles(&apis, &cast, args.warmup.max(1), args.concurrency, "warm").await?;
    if args.preload > 0 {
        let started = Instant::now();
        holdfast_tests::preload::settled_orders(
            &store.url(),
            &cast.sellers[0].id,
            args.preload,
            cast.price_minor,
            cast.commission_minor,
        )
        .await?;
        println!(
            "preloaded {} settled orders in {:.1} s",
            args.preload,
            started.elapsed().as_secs_f64()
        );
    }
    let database_name = match &store {
        driver::Store::Postgres(url) => driver::database_name(url),
        driver::Store::Sqlite(_) => None,
    };
    let admin = args.postgres.clone();
    let writes_before = match (&admin, &database_name) {
        (Some(admin), Some(name)) => Some(settled_write_stats(admin, name).await?),
        _ => None,
    };
    api.take_latencies();
    let started = Instant::now();
    let (measured, mut calls) = match &unmetered {
        Some(off) => {
            let off_apis = [api.on(&off.url)];
            compare_metrics(&apis, &off_apis, &cast, &args).await?
        }
        None => {
            let ran =
                run_lifecycles(&apis, &cast, args.lifecycles, args.concurrency, "run").await?;
            (ran, api.take_latencies())
        }
    };
    let timings = &measured.timings;
    let elapsed = started.elapsed();
    calls.sort();

    let lifecycles_per_sec = args.lifecycles as f64 / elapsed.as_secs_f64();
    let calls_per_lifecycle = calls.len() as f64 / args.lifecycles as f64;
    println!("\nHoldfast lifecycle benchmark on {database}");
    println!("  lifecycles          {}", args.lifecycles);
    println!("  concurrency         {}", args.concurrency);
    println!("  server instances    {}", args.instances);
    println!("  preloaded orders    {}", args.preload);
    println!("  elapsed             {:.2} s", elapsed.as_secs_f64());
    println!("  lifecycles/s        {lifecycles_per_sec:.1}");
    println!(
        "  API calls/s         {:.0} ({calls_per_lifecycle:.2} per lifecycle)",
        calls.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  latency per call    p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&calls, 50.0)),
        ms(percentile(&calls, 95.0)),
        ms(percentile(&calls, 99.0))
    );
    println!("  latency per step (ms)        p50      p95      p99");
    for (step, name) in STEPS.iter().enumerate() {
        let mut column: Vec<Duration> = timings.iter().map(|t| t[step]).collect();
        column.sort();
        println!(
            "    {name:<24} {:>8.2} {:>8.2} {:>8.2}",
            ms(percentile(&column, 50.0)),
            ms(percentile(&column, 95.0)),
            ms(percentile(&column, 99.0))
        );
    }
    if let (Some(admin), Some(name), Some(before)) = (&admin, &database_name, writes_before) {
        let after = settled_write_stats(admin, name).await?;
        let rows = after.saturating_sub(before) as f64;
        let per_lifecycle = rows / args.lifecycles as f64;
        println!(
            "  rows written        {per_lifecycle:.1} per lifecycle, {:.1} per writing call ({WRITING_CALLS} per lifecycle)",
            per_lifecycle / WRITING_CALLS as f64
        );
        // For the ceiling script, which runs pgbench with as many single-row writes per
        // transaction as one writing call makes.
        println!(
            "  ceiling: rows_per_write_call={:.2} write_calls_per_sec={:.1} concurrency={}",
            per_lifecycle / WRITING_CALLS as f64,
            lifecycles_per_sec * WRITING_CALLS as f64,
            args.concurrency
        );
    }
    for instance in std::iter::once(&server).chain(&others) {
        match instance.peak_rss_kb() {
            Some(kb) => println!("  server peak RSS     {:.1} MB", kb as f64 / 1024.0),
            None => println!("  server peak RSS     unknown"),
        }
    }

    // The ledger balances, and every lifecycle paid the supplier price minus commission.
    let audit = api
        .get("/v1/operator/ledger/audit", Some(&cast.operator))
        .await?
        .ok()?;
    let clean = audit["unbalanced_transfers"]
        .as_array()
        .is_some_and(Vec::is_empty)
        && audit["balance_mismatches"]
            .as_array()
            .is_some_and(Vec::is_empty)
        && audit["overdrawn_accounts"]
            .as_array()
            .is_some_and(Vec::is_empty)
        && audit["freezing_mismatches"]
            .as_array()
            .is_some_and(Vec::is_empty)
        && audit["reservation_mismatches"]
            .as_array()
            .is_some_and(Vec::is_empty)
        && audit["net_by_currency"]["USD"] == "0.00";
    // Every supplier was paid price minus commission for each of its lifecycles, no more.
    let mut underpaid = Vec::new();
    for (index, seller) in cast.sellers.iter().enumerate() {
        let accounts = api.get("/v1/accounts", Some(&seller.token)).await?.ok()?;
        let paid = accounts
            .as_array()
            .and_then(|a| a.iter().find(|x| x["kind"] == "withdrawal"))
            .and_then(|x| x["balance"].as_str())
            .unwrap_or("0.00")
            .to_owned();
        let preloaded = if index == 0 { args.preload } else { 0 };
        let lifecycles =
            (warm.by_seller[index] + measured.by_seller[index]) as i64 + preloaded as i64;
        let expected_minor = lifecycles * (cast.price_minor - cast.commission_minor);
        let expected = format!("{}.{:02}", expected_minor / 100, expected_minor % 100);
        if paid != expected {
            underpaid.push(format!(
                "supplier {index}: paid {paid}, expected {expected}"
            ));
        }
    }
    println!(
        "  ledger audit        {}",
        if clean { "clean" } else { "FAILED" }
    );
    println!(
        "  suppliers paid      {}",
        if underpaid.is_empty() {
            format!(
                "all {} exactly price − commission per lifecycle",
                cast.sellers.len()
            )
        } else {
            underpaid.join("; ")
        }
    );
    if !clean || !underpaid.is_empty() {
        bail!("verification failed (the database is kept for a look): audit {audit}");
    }
    drop(others);
    drop(unmetered);
    drop(server);
    if let (Some(admin), Some(name)) = (&admin, &database_name) {
        use sea_orm::ConnectionTrait;
        let db = sea_orm::Database::connect(admin).await?;
        db.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await?;
    }
    Ok(())
}

/// Prints what each call of one lifecycle costs the database (statements, begins, commits,
/// round trips), counted in process on a database of the same kind, one call at a time: the
/// same figures every run, however busy the machine. On a thread and runtime of its own, so
/// that every statement of a call runs on the thread that counts it.
fn print_round_trips(postgres_admin: Option<String>) -> anyhow::Result<()> {
    let report = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let (app, counter) =
                holdfast_tests::TestApp::spawn_counted_on(postgres_admin.as_deref()).await;
            let trace = holdfast_tests::roundtrips::trace_lifecycle(&app, &counter).await;
            anyhow::Ok(trace.report())
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the round-trip trace panicked"))??;
    println!("Database round trips per call (one client, in process, after a warm-up lifecycle)");
    print!("{report}");
    Ok(())
}

/// Calls of a lifecycle that write: the order, its approval, the delivery, the settlement
/// request and its approval (the outbox's and timers' own writes are counted with them).
const WRITING_CALLS: u64 = 5;

/// Rows inserted, updated and deleted in database `name` so far, once PostgreSQL's statistics
/// have caught up (backends report them when idle, up to some seconds late).
async fn settled_write_stats(admin: &str, name: &str) -> anyhow::Result<u64> {
    use sea_orm::ConnectionTrait;
    let db = sea_orm::Database::connect(admin).await?;
    let sql = format!(
        "SELECT CAST(tup_inserted + tup_updated + tup_deleted AS BIGINT) FROM pg_stat_database WHERE datname = '{}'",
        name.replace('\'', "")
    );
    // An idle backend reports after up to ten seconds: wait until the count has not moved
    // for longer than that.
    let (mut last, mut unchanged) = (None, 0);
    for _ in 0..60 {
        let _ = db
            .execute_unprepared("SELECT pg_stat_clear_snapshot()")
            .await;
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                sql.clone(),
            ))
            .await?;
        let now = row
            .and_then(|r| r.try_get_by_index::<i64>(0).ok())
            .unwrap_or(0);
        if last == Some(now) {
            unchanged += 1;
            if unchanged >= 6 {
                break;
            }
        } else {
            unchanged = 0;
        }
        last = Some(now);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    db.close().await?;
    Ok(last.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
}

/// Rounds of `--metrics compare`: a multiple of four.
const COMPARE_ROUNDS: usize = 8;

/// Runs the measured lifecycles in [`COMPARE_ROUNDS`] rounds, on the server without metrics
/// (`off`) and the one with them (`on`) in the order off, on, on, off, …, and prints per-call p50 and p99 of
/// each. Returns every round's lifecycles and calls together.
async fn compare_metrics(
    on: &[Api],
    off: &[Api],
    cast: &Arc<driver::Cast>,
    args: &Args,
) -> anyhow::Result<(Ran, Vec<Duration>)> {
    let per_round = (args.lifecycles / COMPARE_ROUNDS).max(1);
    let mut all = Ran {
        timings: Vec::new(),
        by_seller: vec![0; cast.sellers.len()],
    };
    let (mut with, mut without, mut calls) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..COMPARE_ROUNDS {
        // Off, on, on, off, again: a load that drifts weighs on both alike.
        let metered = matches!(round % 4, 1 | 2);
        let (apis, label) = if metered { (on, "on") } else { (off, "off") };
        // Each round's own idempotency keys: the rounds run on one store.
        let keys = format!("metrics-{label}-{round}");
        let ran = run_lifecycles(apis, cast, per_round, args.concurrency, &keys).await?;
        let round_calls = on[0].take_latencies();
        println!(
            "  round {round} metrics {label:<3}   {} calls, p50 {:.2} ms",
            round_calls.len(),
            ms(percentile(&sorted(round_calls.clone()), 50.0))
        );
        if metered {
            with.extend_from_slice(&round_calls);
        } else {
            without.extend_from_slice(&round_calls);
        }
        calls.extend(round_calls);
        all.timings.extend(ran.timings);
        for (seller, sold) in ran.by_seller.into_iter().enumerate() {
            all.by_seller[seller] += sold;
        }
    }
    let (with, without) = (sorted(with), sorted(without));
    let (p50_on, p50_off) = (percentile(&with, 50.0), percentile(&without, 50.0));
    println!(
        "\nPer-call latency, metrics on vs off ({} lifecycles each)",
        COMPARE_ROUNDS / 2 * per_round
    );
    println!(
        "  metrics off         p50 {:.2} ms, p99 {:.2} ms",
        ms(p50_off),
        ms(percentile(&without, 99.0))
    );
    println!(
        "  metrics on          p50 {:.2} ms, p99 {:.2} ms",
        ms(p50_on),
        ms(percentile(&with, 99.0))
    );
    println!(
        "  p50 change          {:+.1} %",
        (p50_on.as_secs_f64() / p50_off.as_secs_f64().max(f64::MIN_POSITIVE) - 1.0) * 100.0
    );
    // The metered server really counted: its scrape, as the operator.
    let scraped = on[0]
        .http
        .get(format!("{}/metrics", on[0].base))
        .bearer_auth(&cast.operator)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let served: f64 = scraped
        .lines()
        .filter(|line| line.starts_with("holdfast_http_requests_total{"))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    println!("  metered server      {served} requests counted");
    Ok((all, calls))
}

fn sorted(mut durations: Vec<Duration>) -> Vec<Duration> {
    durations.sort();
    durations
}

/// What a batch of lifecycles took, and how many each supplier sold.
struct Ran {
    timings: Vec<[Duration; 7]>,
    by_seller: Vec<usize>,
}

async fn run_lifecycles(
    apis: &[Api],
    cast: &Arc<driver::Cast>,
    total: usize,
    concurrency: usize,
    label: &str,
) -> anyhow::Result<Ran> {
    let label: Arc<str> = Arc::from(label);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let api = apis[worker % apis.len()].clone();
        let cast = cast.clone();
        let next = next.clone();
        let label = label.clone();
        workers.push(tokio::spawn(async move {
            let mut timings = Vec::new();
            let shopper = &cast.shoppers[worker % cast.shoppers.len()];
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    return Ok::<_, anyhow::Error>((shopper.seller, timings));
                }
                let key = format!("{label}-{worker}-{index}");
                timings.push(driver::lifecycle(&api, &cast, shopper, &key).await?);
            }
        }));
    }
    let mut ran = Ran {
        timings: Vec::with_capacity(total),
        by_seller: vec![0; cast.sellers.len()],
    };
    for worker in workers {
        let (seller, timings) = worker.await??;
        ran.by_seller[seller] += timings.len();
        ran.timings.extend(timings);
    }
    Ok(ran)
}
