//! The shutdown suite: SIGTERM in the middle of a steady load. The server must finish what it
//! began (no response cut off), exit 0 within its grace period, and lose nothing: timers that
//! come due while it is down fire after the restart, every order a client was told about
//! exists once, and the ledger audit is clean.

use super::{Args, audit_clean, drop_database, timed_orders, until_all, world};
use anyhow::{Context, bail, ensure};
use holdfast_tests::audit;
use holdfast_tests::driver::{Api, Cast, CutOff, Reply};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const GRACE_SECS: u64 = 20;
const SETTLEMENT_SECS: u64 = 4;

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// Idempotency keys of orders the server answered as placed.
    placed: Mutex<HashSet<String>>,
    answered: AtomicUsize,
    /// Requests that got no answer at all (refused or closed before the response began): sent
    /// again with the same key once the server is back.
    unanswered: AtomicUsize,
    /// Responses whose status arrived but whose body did not: must stay 0.
    cut_off: AtomicUsize,
    stop: AtomicBool,
}

/// Sends one call until it is answered, counting what happened on the way.
async fn until_answered<F: Future<Output = anyhow::Result<Reply>>>(
    seen: &Seen,
    call: impl Fn() -> F,
) -> anyhow::Result<Reply> {
    let started = Instant::now();
    loop {
        match call().await {
            Ok(reply) => {
                seen.answered.fetch_add(1, Ordering::Relaxed);
                return Ok(reply);
            }
            Err(error) if error.downcast_ref::<CutOff>().is_some() => {
                seen.cut_off.fetch_add(1, Ordering::Relaxed);
                println!("    cut off: {error:#}");
            }
            Err(error) if error.downcast_ref::<reqwest::Error>().is_some() => {
                seen.unanswered.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => return Err(error),
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("no answer for two minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One client: orders placed and approved, one after another, until told to stop.
async fn client(api: Api, cast: Arc<Cast>, index: usize, seen: Arc<Seen>) -> anyhow::Result<()> {
    let shopper = cast.shoppers[index % cast.shoppers.len()].clone();
    let seller = &cast.sellers[shopper.seller];
    let mut round = 0;
    while !seen.stop.load(Ordering::Relaxed) {
        let key = format!("shutdown-{index}-{round}");
        round += 1;
        let body = json!({"lines": [{"commodity_id": seller.commodity, "quantity": 1}]});
        let placed = until_answered(&seen, || {
            api.post_keyed("/v1/retail/orders", Some(&shopper.token), &body, &key)
        })
        .await?;
        if !placed.status.is_success() {
            // Out of money: this client has done its share.
            break;
        }
        seen.placed.lock().await.insert(key);
        let challenge = placed.body["pending_confirmation"]["challenge_id"]
            .as_str()
            .context("challenge")?
            .to_owned();
        let code = until_answered(&seen, || async {
            api.code_for(&shopper.phone, &challenge)
                .await
                .map(|code| Reply {
                    status: reqwest::StatusCode::OK,
                    body: json!(code),
                })
        })
        .await?;
        let code = code.body.as_str().unwrap_or_default().to_owned();
        until_answered(&seen, || api.answer(&challenge, &code, "approve")).await?;
    }
    Ok(())
}

pub async fn suite_shutdown(args: &Args) -> anyhow::Result<()> {
    println!(
        "shutdown: {} clients placing and approving orders, SIGTERM in the middle",
        args.clients
    );
    let (settlement, grace) = (SETTLEMENT_SECS.to_string(), GRACE_SECS.to_string());
    let mut world = world(
        args,
        "shutdown",
        args.clients,
        &[
            ("HOLDFAST_AUTO_SETTLE_SECS", &settlement),
            ("HOLDFAST_SHUTDOWN_GRACE_SECS", &grace),
            // "shutting down" and "stopped" are info lines.
            ("RUST_LOG", "info,sqlx=warn,sea_orm=warn"),
        ],
    )
    .await?;
    // Settlements whose timers come due while the server is down.
    let timed = timed_orders(&world.api, &world.cast, args.timed.min(30), "timed").await?;

    let seen = Arc::new(Seen::default());
    let clients: Vec<_> = (0..args.clients)
        .map(|index| {
            let (api, cast, seen) = (world.api.clone(), world.cast.clone(), seen.clone());
            tokio::spawn(client(api, cast, index, seen))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let answered_before = seen.answered.load(Ordering::Relaxed);
    let (status, took) = world
        .server
        .terminate(Duration::from_secs(GRACE_SECS + 5))
        .await?;
    // Answers that arrived between the look before the signal and the exit: requests in
    // flight when it came, finished by the drain.
    let drained = seen.answered.load(Ordering::Relaxed) - answered_before;
    println!(
        "  SIGTERM after {answered_before} answers: exited with {status} in {:.2} s, {drained} answered meanwhile",
        took.as_secs_f64()
    );
    let log = world.server.log();
    ensure!(
        status.success(),
        "the server exited with {status}; its log:\n{log}"
    );
    ensure!(
        took < Duration::from_secs(GRACE_SECS),
        "the shutdown took longer than its grace"
    );
    ensure!(
        log.contains("shutting down") && log.contains("stopped"),
        "the log does not say \"shutting down\" and \"stopped\":\n{log}"
    );
    tokio::time::sleep(Duration::from_secs(SETTLEMENT_SECS + 1)).await;
    let dir = world._dir.path().to_owned();
    world.server.restart(&dir).await?;
    // The clients go on with the keys they had; then they stop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    seen.stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await??;
    }
    let cut_off = seen.cut_off.load(Ordering::Relaxed);
    println!(
        "  {} answers, {} calls unanswered while down (sent again), {cut_off} cut off",
        seen.answered.load(Ordering::Relaxed),
        seen.unanswered.load(Ordering::Relaxed),
    );
    ensure!(cut_off == 0, "{cut_off} responses were cut off");

    until_all(&world.api, &timed, "settled", Duration::from_secs(30)).await?;
    println!(
        "  {} settlements due while the server was down settled after the restart",
        timed.len()
    );
    let placed = seen.placed.lock().await.len() + timed.len();
    let findings = audit::audit(&world.url, &world.api, &world.cast.operator).await?;
    ensure!(
        findings.cases as usize == placed,
        "orders lost or doubled: {placed} placed, {} stored",
        findings.cases
    );
    audit_clean(&world, "shutdown").await?;
    drop_database(args, world).await;
    Ok(())
}
