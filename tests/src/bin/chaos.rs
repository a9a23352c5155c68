//! The reliability suites, on PostgreSQL, against real `holdfast` processes:
//!
//! - `random`: many clients run random retail episodes at once — orders, approvals, denials,
//!   wrong codes, double answers, replays, cancels, refusals, partial settlements, disputes —
//!   then an operator mediates every dispute, and the audit runs;
//! - `crash`: the same load, with the server killed (SIGKILL) mid-run and restarted; an order
//!   whose answer was lost is sent again with its key, settlements left pending across the
//!   crash settle after it; the audit runs, and every order a client placed exists exactly once;
//! - `two-instances`: two servers on one database race for the same auto-settlement timers;
//!   each fires once;
//! - `replays`: idempotent requests replayed many times, concurrently: one effect each, and the
//!   same key with another body is refused with 409;
//! - `shutdown`: clients place and approve orders while the server gets SIGTERM: no response
//!   is cut off, it exits 0 within its grace, settlements due while it is down settle after
//!   the restart, every order exists once, and the audit runs;
//! - `payouts`: suppliers' payouts requested concurrently (some replayed) while bank runs go to
//!   the simulated bank, the server killed (SIGKILL) mid-run and unanswered requests sent again
//!   with their keys: each key one payout, all paid, each booked once at the bank, paid =
//!   debited, the day reconciled clean.
//!
//! After each, the audit (see `holdfast_tests::audit`) proves from the rows that no money was
//! created, lost or moved twice. Exit status 0 only if every suite passed.
//!
//! cargo build --release -p holdfast-server -p holdfast-tests
//! target/release/holdfast-chaos --suite all                      # full size
//! target/release/holdfast-chaos --suite all --episodes 300 --replays 1000 --timed 20   # CI

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{Context, bail, ensure};
use clap::{Parser, ValueEnum};
use holdfast_tests::audit;
use holdfast_tests::driver::{self, Api, Cast, Server, Shopper};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[path = "chaos/payouts.rs"]
mod payouts;
#[path = "chaos/shutdown.rs"]
mod shutdown;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Suite {
    Random,
    Crash,
    TwoInstances,
    Replays,
    /// SIGTERM during load: nothing cut off, exit 0 within the grace, no timer lost.
    Shutdown,
    /// Payouts during a SIGKILL: none lost or sent twice, the day reconciles with the bank.
    Payouts,
    All,
}

#[derive(Debug, Parser)]
#[command(about = "Holdfast's reliability suites (PostgreSQL)")]
struct Args {
    /// Which suite to run.
    #[arg(long, value_enum, default_value_t = Suite::All)]
    suite: Suite,
    /// An admin URL on which the suites may create their databases.
    #[arg(
        long,
        env = "CHAOS_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Random episodes (one order each) in the random and crash suites.
    #[arg(long, default_value_t = 2000)]
    episodes: usize,
    /// Replayed requests in the replay suite.
    #[arg(long, default_value_t = 10_000)]
    replays: usize,
    /// Orders whose settlement is left to its timer (crash and two-instances suites).
    #[arg(long, default_value_t = 100)]
    timed: usize,
    /// Seed for the random choices (printed; pass it to run the same choices again).
    #[arg(long)]
    seed: Option<u64>,
}

/// A server with a cast on a fresh database of its own.
struct World {
    server: Server,
    api: Api,
    cast: Arc<Cast>,
    url: String,
    _dir: tempfile::TempDir,
}

async fn world(
    args: &Args,
    name: &str,
    shoppers: usize,
    env: &[(&str, &str)],
) -> anyhow::Result<World> {
    let dir = tempfile::tempdir()?;
    let run = std::process::id();
    let store = driver::fresh_store(
        Some(&args.postgres),
        dir.path(),
        &format!("holdfast_chaos_{name}_{run}"),
    )
    .await?;
    let url = store.url();
    let server = Server::start(store, dir.path(), env).await?;
    let api = Api::new(&server.url);
    let cast = Arc::new(driver::cast(&api, run, 4, shoppers, "100000.00").await?);
    Ok(World {
        server,
        api,
        cast,
        url,
        _dir: dir,
    })
}

async fn drop_database(args: &Args, world: World) {
    let name = driver::database_name(&world.url).unwrap_or_default();
    drop(world);
    if let Ok(db) = sea_orm::Database::connect(&args.postgres).await {
        use sea_orm::ConnectionTrait;
        let _ = db
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
    }
}

/// Runs the audit and fails on any finding.
async fn audit_clean(world: &World, suite: &str) -> anyhow::Result<()> {
    let findings = audit::audit(&world.url, &world.api, &world.cast.operator).await?;
    println!(
        "  audit: {} cases, {} holds, {} transfers — {}",
        findings.cases,
        findings.holds,
        findings.transfers,
        if findings.is_clean() {
            "clean".to_owned()
        } else {
            format!("{} problems", findings.problems.len())
        }
    );
    if !findings.is_clean() {
        for problem in findings.problems.iter().take(20) {
            println!("    {problem}");
        }
        bail!("{suite}: the audit found problems");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Random episodes
// ---------------------------------------------------------------------------------------------

/// What the clients saw, to compare with what the database holds.
#[derive(Default)]
struct Tally {
    /// Idempotency keys of orders the server confirmed it placed.
    placed: Mutex<HashSet<String>>,
    episodes: AtomicUsize,
    transport_errors: AtomicUsize,
    settled: AtomicUsize,
    disputed: AtomicUsize,
    refused_funds: AtomicUsize,
}

/// An HTTP failure that is not an answer (the server is down): the episode stops there.
fn is_transport(error: &anyhow::Error) -> bool {
    error.downcast_ref::<reqwest::Error>().is_some()
        || error.downcast_ref::<driver::CutOff>().is_some()
}

/// Waits until the server answers its health check again (after a crash).
async fn until_up(api: &Api) {
    for _ in 0..600 {
        if let Ok(reply) = api.get("/healthz", None).await
            && reply.status.is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Places an order with `key`, sending it again with the same key after a transport failure
/// (a crash) until the server answers: the answer is the first one's, never a second order.
async fn place(
    api: &Api,
    cast: &Cast,
    shopper: &Shopper,
    key: &str,
    tally: &Tally,
) -> anyhow::Result<Option<Value>> {
    let seller = &cast.sellers[shopper.seller];
    let body = json!({"lines": [{"commodity_id": seller.commodity, "quantity": 1}]});
    loop {
        match api
            .post_keyed("/v1/retail/orders", Some(&shopper.token), &body, key)
            .await
        {
            Ok(reply) if reply.status.is_success() => {
                tally.placed.lock().await.insert(key.to_owned());
                return Ok(Some(reply.body));
            }
            Ok(reply) if reply.code() == "insufficient_funds" => {
                tally.refused_funds.fetch_add(1, Ordering::Relaxed);
                return Ok(None);
            }
            Ok(reply) => bail!("placing an order: {} {}", reply.status, reply.body),
            Err(error) if is_transport(&error) => {
                tally.transport_errors.fetch_add(1, Ordering::Relaxed);
                until_up(api).await;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn state_of(api: &Api, shopper: &Shopper, number: &str) -> anyhow::Result<String> {
    let view = api
        .get(&format!("/v1/retail/orders/{number}"), Some(&shopper.token))
        .await?
        .ok()?;
    Ok(view["state"].as_str().unwrap_or_default().to_owned())
}

/// Answers `challenge` from two clients at once: exactly one answer may take effect.
async fn double_answer(api: &Api, challenge: &str, code: &str) -> anyhow::Result<()> {
    let (first, second) = tokio::join!(
        api.answer(challenge, code, "approve"),
        api.answer(challenge, code, "approve")
    );
    let (first, second) = (first?, second?);
    let wins = [first.status, second.status]
        .iter()
        .filter(|s| s.is_success())
        .count();
    ensure!(
        wins == 1,
        "a double answer took effect {wins} times: {first:?} / {second:?}"
    );
    let loser = if first.status.is_success() {
        &second
    } else {
        &first
    };
    ensure!(loser.status.as_u16() == 409, "the losing answer: {loser:?}");
    Ok(())
}

/// One order, taken down a random path.
async fn episode(
    api: &Api,
    cast: &Cast,
    shopper: &Shopper,
    key: &str,
    rng: &mut StdRng,
    tally: &Tally,
) -> anyhow::Result<()> {
    let seller = &cast.sellers[shopper.seller];
    tally.episodes.fetch_add(1, Ordering::Relaxed);
    let Some(order) = place(api, cast, shopper, key, tally).await? else {
        return Ok(());
    };
    let number = order["order_number"]
        .as_str()
        .context("order number")?
        .to_owned();
    if rng.random_bool(0.1) {
        // A replay of the same request: the same order, not a second one.
        let body = json!({"lines": [{"commodity_id": seller.commodity, "quantity": 1}]});
        let replay = api
            .post_keyed("/v1/retail/orders", Some(&shopper.token), &body, key)
            .await?
            .ok()?;
        ensure!(
            replay["order_number"] == number.as_str(),
            "a replay made another order: {replay}"
        );
    }
    let challenge = order["pending_confirmation"]["challenge_id"]
        .as_str()
        .context("challenge")?
        .to_owned();
    let code = api.code_for(&shopper.phone, &challenge).await?;
    let roll: f64 = rng.random();
    if roll < 0.08 {
        api.answer(&challenge, &code, "deny").await?.ok()?;
        return Ok(());
    } else if roll < 0.14 {
        // Left unanswered; half of those are cancelled by the shopper.
        if rng.random_bool(0.5) {
            api.post(
                &format!("/v1/retail/orders/{number}/cancel"),
                Some(&shopper.token),
                &json!({}),
            )
            .await?
            .ok()?;
        }
        return Ok(());
    } else if roll < 0.20 {
        let wrong = if code == "000000" { "000001" } else { "000000" };
        let refused = api.answer(&challenge, wrong, "approve").await?;
        ensure!(
            refused.code() == "challenge_wrong_code",
            "a wrong code: {refused:?}"
        );
        api.answer(&challenge, &code, "approve").await?.ok()?;
    } else if roll < 0.26 {
        double_answer(api, &challenge, &code).await?;
    } else {
        api.answer(&challenge, &code, "approve").await?.ok()?;
    }

    // Frozen. The shopper may cancel, the supplier may refuse, before anything is sent.
    let roll: f64 = rng.random();
    if roll < 0.05 {
        api.post(
            &format!("/v1/retail/orders/{number}/cancel"),
            Some(&shopper.token),
            &json!({}),
        )
        .await?
        .ok()?;
        return Ok(());
    } else if roll < 0.08 {
        api.post(
            &format!("/v1/retail/orders/{number}/refuse"),
            Some(&seller.token),
            &json!({"reason": "out of stock"}),
        )
        .await?
        .ok()?;
        return Ok(());
    } else if roll < 0.75 {
        let parcels = api
            .get(
                &format!("/v1/distributor/parcels?order_number={number}"),
                Some(&cast.carrier),
            )
            .await?
            .ok()?;
        let parcel = parcels[0]["parcel_id"]
            .as_str()
            .context("parcel")?
            .to_owned();
        api.post(
            &format!("/v1/distributor/parcels/{parcel}/tracking"),
            Some(&cast.carrier),
            &json!({"kind": "delivered", "location": "door", "order_number": number}),
        )
        .await?
        .ok()?;
    }

    // The supplier asks to be paid, sometimes for part of the order.
    let request = if rng.random_bool(0.1) {
        json!({"amount": {"amount": "6.00", "currency": "USD"}})
    } else {
        json!({})
    };
    api.post(
        &format!("/v1/retail/orders/{number}/settlement-request"),
        Some(&seller.token),
        &request,
    )
    .await?
    .ok()?;
    let view = api
        .get(&format!("/v1/retail/orders/{number}"), Some(&shopper.token))
        .await?
        .ok()?;
    let settlement = view["pending_confirmation"]["challenge_id"]
        .as_str()
        .context("settlement challenge")?
        .to_owned();
    let code = api.code_for(&shopper.phone, &settlement).await?;
    let roll: f64 = rng.random();
    if roll < 0.10 {
        api.answer(&settlement, &code, "deny").await?.ok()?;
        tally.disputed.fetch_add(1, Ordering::Relaxed);
    } else if roll < 0.15 {
        api.post(
            &format!("/v1/retail/orders/{number}/dispute"),
            Some(&shopper.token),
            &json!({"reason": "not what I ordered"}),
        )
        .await?
        .ok()?;
        tally.disputed.fetch_add(1, Ordering::Relaxed);
    } else if roll < 0.20 {
        // Left to the settlement period.
    } else if roll < 0.25 {
        double_answer(api, &settlement, &code).await?;
        tally.settled.fetch_add(1, Ordering::Relaxed);
    } else {
        let settled = api.answer(&settlement, &code, "approve").await?.ok()?;
        ensure!(settled["state"] == "settled", "not settled: {settled}");
        tally.settled.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// `episodes` random episodes from `clients` clients; stops an episode at a transport failure.
async fn run_episodes(
    api: &Api,
    cast: &Arc<Cast>,
    clients: usize,
    episodes: usize,
    seed: u64,
    label: &str,
    tally: Arc<Tally>,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (api, cast, next, tally) = (api.clone(), cast.clone(), next.clone(), tally.clone());
        let label = label.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut rng =
                StdRng::seed_from_u64(seed ^ (client as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            // Two clients share each shopper: their orders race for the same money.
            let shopper = &cast.shoppers[client / 2 % cast.shoppers.len()];
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= episodes {
                    return Ok::<_, anyhow::Error>(());
                }
                let key = format!("{label}-{client}-{index}");
                match episode(&api, &cast, shopper, &key, &mut rng, &tally).await {
                    Ok(()) => {}
                    Err(error) if is_transport(&error) => {
                        tally.transport_errors.fetch_add(1, Ordering::Relaxed);
                        until_up(&api).await;
                    }
                    // Around a crash an answer may no longer fit (the settlement period ended
                    // while the server was down, a response was lost): a refusal ends the
                    // episode. A server error never does.
                    Err(error)
                        if label == "crash"
                            && !error.to_string().contains("500 Internal Server Error") => {}
                    Err(error) => {
                        return Err(error.context(format!("client {client}, episode {index}")));
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// The operator mediates every open dispute: release, refund or an even split, at random.
async fn mediate_all(world: &World, rng: &mut StdRng) -> anyhow::Result<usize> {
    let mut mediated = 0;
    loop {
        let queue = world
            .api
            .get(
                "/v1/operator/disputes?limit=100",
                Some(&world.cast.operator),
            )
            .await?
            .ok()?;
        let list = queue.as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            return Ok(mediated);
        }
        for dispute in list {
            let number = dispute["order_number"].as_str().context("order number")?;
            let amount = dispute["amount"]["amount"].as_str().context("amount")?;
            let body = match rng.random_range(0..3) {
                0 => json!({"outcome": "release", "note": "the goods were as described"}),
                1 => json!({"outcome": "refund", "note": "the goods never arrived"}),
                _ => {
                    let minor = (amount.replace('.', "").parse::<i64>()? / 2).max(1);
                    json!({"outcome": "split", "note": "half of it was damaged",
                        "to_seller": {"amount": format!("{}.{:02}", minor / 100, minor % 100), "currency": "USD"}})
                }
            };
            world
                .api
                .post_keyed(
                    &format!("/v1/operator/disputes/{number}/mediation"),
                    Some(&world.cast.operator),
                    &body,
                    &format!("mediate-{number}"),
                )
                .await?
                .ok()?;
            mediated += 1;
        }
    }
}

async fn suite_random(args: &Args, seed: u64) -> anyhow::Result<()> {
    println!(
        "random: {} episodes from {} clients",
        args.episodes, args.clients
    );
    let world = world(args, "random", args.clients.div_ceil(2), &[]).await?;
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    run_episodes(
        &world.api,
        &world.cast,
        args.clients,
        args.episodes,
        seed,
        "random",
        tally.clone(),
    )
    .await?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mediated = mediate_all(&world, &mut rng).await?;
    println!(
        "  {} episodes in {:.1} s: {} settled on the phone, {} disputed ({mediated} mediated), {} refused for funds",
        tally.episodes.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        tally.settled.load(Ordering::Relaxed),
        tally.disputed.load(Ordering::Relaxed),
        tally.refused_funds.load(Ordering::Relaxed),
    );
    audit_clean(&world, "random").await?;
    drop_database(args, world).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Crash
// ---------------------------------------------------------------------------------------------

/// Orders approved and asked to be settled, left for the settlement period to end.
async fn timed_orders(
    api: &Api,
    cast: &Cast,
    count: usize,
    label: &str,
) -> anyhow::Result<Vec<(Shopper, String)>> {
    let mut numbers = Vec::with_capacity(count);
    for index in 0..count {
        let shopper = cast.shoppers[index % cast.shoppers.len()].clone();
        let seller = &cast.sellers[shopper.seller];
        let order = api
            .post_keyed(
                "/v1/retail/orders",
                Some(&shopper.token),
                &json!({"lines": [{"commodity_id": seller.commodity, "quantity": 1}]}),
                &format!("{label}-{index}"),
            )
            .await?
            .ok()?;
        let number = order["order_number"].as_str().context("number")?.to_owned();
        let challenge = order["pending_confirmation"]["challenge_id"]
            .as_str()
            .context("challenge")?;
        let code = api.code_for(&shopper.phone, challenge).await?;
        api.answer(challenge, &code, "approve").await?.ok()?;
        api.post(
            &format!("/v1/retail/orders/{number}/settlement-request"),
            Some(&seller.token),
            &json!({}),
        )
        .await?
        .ok()?;
        numbers.push((shopper, number));
    }
    Ok(numbers)
}

/// Waits until every one of `orders` reached `state`.
async fn until_all(
    api: &Api,
    orders: &[(Shopper, String)],
    state: &str,
    within: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let mut waiting = 0;
        for (shopper, number) in orders {
            if state_of(api, shopper, number).await? != state {
                waiting += 1;
            }
        }
        if waiting == 0 {
            return Ok(());
        }
        if started.elapsed() > within {
            bail!(
                "{waiting} of {} orders did not become {state} within {within:?}",
                orders.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn suite_crash(args: &Args, seed: u64) -> anyhow::Result<()> {
    const SETTLEMENT_SECS: u64 = 4;
    println!(
        "crash: {} episodes from {} clients, SIGKILL during the run",
        args.episodes, args.clients
    );
    let settlement = SETTLEMENT_SECS.to_string();
    let mut world = world(
        args,
        "crash",
        args.clients.div_ceil(2),
        &[("HOLDFAST_AUTO_SETTLE_SECS", &settlement)],
    )
    .await?;
    let tally = Arc::new(Tally::default());

    // Settlements pending at the crash: their timers are due while the server is down.
    let timed = timed_orders(&world.api, &world.cast, args.timed.min(50), "timed").await?;

    let load = {
        let (api, cast, tally) = (world.api.clone(), world.cast.clone(), tally.clone());
        let (clients, episodes) = (args.clients, args.episodes);
        tokio::spawn(async move {
            run_episodes(&api, &cast, clients, episodes, seed, "crash", tally).await
        })
    };
    // Let the load run, then crash the server in the middle of it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    world.server.kill9()?;
    let down_at = Instant::now();
    println!(
        "  killed the server (SIGKILL) with {} episodes started",
        tally.episodes.load(Ordering::Relaxed)
    );
    tokio::time::sleep(Duration::from_secs(SETTLEMENT_SECS + 1)).await;
    let dir = world._dir.path().to_owned();
    world.server.restart(&dir).await?;
    println!("  restarted after {:.1} s", down_at.elapsed().as_secs_f64());
    load.await??;

    // Timers that came due while the server was down fire after the restart.
    until_all(&world.api, &timed, "settled", Duration::from_secs(30)).await?;
    println!(
        "  {} settlements pending at the crash settled after the restart",
        timed.len()
    );

    // Nothing lost or doubled: the database holds exactly the orders clients were told exist
    // (each client's keys, plus the timed ones).
    let placed = tally.placed.lock().await.len() + timed.len();
    let findings = audit::audit(&world.url, &world.api, &world.cast.operator).await?;
    println!(
        "  {} orders placed as the clients saw it ({} transport errors retried or abandoned); {} in the database",
        placed,
        tally.transport_errors.load(Ordering::Relaxed),
        findings.cases
    );
    ensure!(
        findings.cases as usize == placed,
        "orders lost or doubled: {placed} placed, {} stored",
        findings.cases
    );
    let mut rng = StdRng::seed_from_u64(seed);
    mediate_all(&world, &mut rng).await?;
    audit_clean(&world, "crash").await?;
    drop_database(args, world).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Two instances
// ---------------------------------------------------------------------------------------------

async fn suite_two_instances(args: &Args) -> anyhow::Result<()> {
    const SETTLEMENT_SECS: u64 = 3;
    println!(
        "two-instances: {} settlements left to their timers, two servers on one database",
        args.timed
    );
    let settlement = SETTLEMENT_SECS.to_string();
    let world = world(
        args,
        "two",
        8,
        &[("HOLDFAST_AUTO_SETTLE_SECS", &settlement)],
    )
    .await?;
    let second = world.server.another(world._dir.path()).await?;
    let second_api = Api::new(&second.url);
    // Half the orders through each server; both servers' timer workers race for all of them.
    let half = args.timed / 2;
    let mut orders = timed_orders(&world.api, &world.cast, half, "first").await?;
    orders.extend(timed_orders(&second_api, &world.cast, args.timed - half, "second").await?);
    until_all(&world.api, &orders, "settled", Duration::from_secs(60)).await?;
    println!("  all {} settled by their timers", orders.len());
    // Each case's timer fired once: one auto-settlement event, one release (the audit's checks).
    audit_clean(&world, "two-instances").await?;
    drop(second);
    drop_database(args, world).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Replays
// ---------------------------------------------------------------------------------------------

async fn suite_replays(args: &Args) -> anyhow::Result<()> {
    const PER_KEY: usize = 100;
    let keys = (args.replays / PER_KEY).max(1);
    println!(
        "replays: {keys} orders, each sent {PER_KEY} times with its key, {} at once",
        args.clients
    );
    let world = world(args, "replays", 1, &[]).await?;
    let shopper = world.cast.shoppers[0].clone();
    let seller = world.cast.sellers[shopper.seller].clone();
    let before = balance(&world.api, &shopper.token).await?;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(args.clients));
    let mut numbers = HashSet::new();
    let started = Instant::now();
    for index in 0..keys {
        let key = format!("replay-{index}");
        let mut sends = Vec::with_capacity(PER_KEY);
        for _ in 0..PER_KEY {
            let (api, token, commodity, key, permit) = (
                world.api.clone(),
                shopper.token.clone(),
                seller.commodity.clone(),
                key.clone(),
                in_flight.clone(),
            );
            sends.push(tokio::spawn(async move {
                let _permit = permit.acquire().await?;
                api.post_keyed(
                    "/v1/retail/orders",
                    Some(&token),
                    &json!({"lines": [{"commodity_id": commodity, "quantity": 1}]}),
                    &key,
                )
                .await
            }));
        }
        let mut answered = HashSet::new();
        for send in sends {
            let reply = send.await??;
            ensure!(reply.status.as_u16() == 201, "a replay answered {reply:?}");
            answered.insert(
                reply.body["order_number"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        ensure!(
            answered.len() == 1,
            "one key made {} orders",
            answered.len()
        );
        numbers.extend(answered);
    }
    let elapsed = started.elapsed();
    ensure!(
        numbers.len() == keys,
        "{keys} keys made {} orders",
        numbers.len()
    );

    // One effect each: the money of exactly `keys` orders left the account.
    let after = balance(&world.api, &shopper.token).await?;
    let spent = before - after;
    let expected = keys as i64 * world.cast.price_minor;
    ensure!(
        spent == expected,
        "replays spent {spent} minor units, expected {expected}"
    );

    // The same key with another body is refused, and changes nothing.
    let other = world
        .api
        .post_keyed(
            "/v1/retail/orders",
            Some(&shopper.token),
            &json!({"lines": [{"commodity_id": seller.commodity, "quantity": 2}]}),
            "replay-0",
        )
        .await?;
    ensure!(
        other.status.as_u16() == 409 && other.code() == "idempotency_key_reused",
        "another body: {other:?}"
    );
    ensure!(
        balance(&world.api, &shopper.token).await? == after,
        "a refused replay moved money"
    );

    // Answers replay too: the same approval sent many times approves once.
    let number = numbers.iter().next().context("an order")?.clone();
    let view = world
        .api
        .get(&format!("/v1/retail/orders/{number}"), Some(&shopper.token))
        .await?
        .ok()?;
    let challenge = view["pending_confirmation"]["challenge_id"]
        .as_str()
        .context("challenge")?
        .to_owned();
    let code = world.api.code_for(&shopper.phone, &challenge).await?;
    let mut answers = Vec::new();
    for _ in 0..PER_KEY.min(args.replays) {
        let (api, challenge, code) = (world.api.clone(), challenge.clone(), code.clone());
        answers.push(tokio::spawn(async move {
            api.call(
                reqwest::Method::POST,
                &format!("/v1/challenges/{challenge}/answer"),
                None,
                Some(&json!({"code": code, "decision": "approve"})),
                Some("answer-once"),
            )
            .await
        }));
    }
    for answer in answers {
        let reply = answer.await??;
        ensure!(
            reply.status.is_success() && reply.body["state"] == "frozen",
            "a replayed answer: {reply:?}"
        );
    }
    println!(
        "  {} requests in {:.1} s: {} orders, each paid once; another body under a used key → 409",
        keys * PER_KEY,
        elapsed.as_secs_f64(),
        numbers.len()
    );
    audit_clean(&world, "replays").await?;
    drop_database(args, world).await;
    Ok(())
}

/// A shopper's prepaid balance, in minor units.
async fn balance(api: &Api, token: &str) -> anyhow::Result<i64> {
    api.balance(token, "prepaid").await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(rand::random);
    println!("holdfast-chaos, seed {seed}");
    driver::server_binary()?;
    let all = args.suite == Suite::All;
    if all || args.suite == Suite::Random {
        suite_random(&args, seed).await?;
    }
    if all || args.suite == Suite::Crash {
        suite_crash(&args, seed).await?;
    }
    if all || args.suite == Suite::TwoInstances {
        suite_two_instances(&args).await?;
    }
    if all || args.suite == Suite::Replays {
        suite_replays(&args).await?;
    }
    if all || args.suite == Suite::Shutdown {
        shutdown::suite_shutdown(&args).await?;
    }
    if all || args.suite == Suite::Payouts {
        payouts::suite_payouts(&args, seed).await?;
    }
    println!("holdfast-chaos: every suite passed");
    Ok(())
}
