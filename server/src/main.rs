use anyhow::Context;
use clap::Parser;
use holdfast_core::Clock;
use holdfast_core::challenge::ChallengePolicy;
use holdfast_core::parties::Role;
use holdfast_core::phone::PhoneGateway;
use holdfast_core::webhook_target::TargetPolicy;
use holdfast_server::config::{Cli, Command, Config, GatewayKind, Switch};
use holdfast_server::phone_gateways::{Channel, HttpPhoneGateway};
use holdfast_server::telemetry;
use holdfast_server::workers::{self, WorkerIntervals};
use holdfast_server::{
    Settings, build_state, demo, open_database, service_secret, simulator_state,
};
use secrecy::ExposeSecret;
use std::future::IntoFuture;
use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = init_logging(&cli.config)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Migrate => {
            open_database(&cli.config.database_url(), cli.config.pool_size()).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::CreateOperator {
            username,
            display_name,
        } => create_operator(cli.config, &username, &display_name).await,
        Command::Openapi => {
            // For client generators and validators; touches no database.
            println!(
                "{}",
                serde_json::to_string_pretty(&holdfast_server::openapi::document())?
            );
            Ok(())
        }
        Command::Backup { path } => {
            holdfast_server::backup::backup(&cli.config.database_url(), &path).await
        }
        Command::Audit => holdfast_server::backup::audit_command(&cli.config.database_url()).await,
    }
}

/// The log subscriber, and the trace exporter if one is configured; the guard flushes the
/// exporter when dropped, so `main` holds it until the server has stopped.
fn init_logging(config: &Config) -> anyhow::Result<telemetry::TelemetryGuard> {
    Ok(telemetry::init(
        config.log_format,
        config.otlp_endpoint.as_ref(),
    )?)
}

fn policy(config: &Config) -> anyhow::Result<ChallengePolicy> {
    ChallengePolicy::default()
        .with_ttls(&config.challenge_ttls)
        .map_err(|e| anyhow::anyhow!("HOLDFAST_CHALLENGE_TTLS: {e}"))
}

/// The phone gateway the configuration asks for; `None` is the simulator.
fn gateway(config: &Config) -> anyhow::Result<Option<Arc<dyn PhoneGateway>>> {
    let kind = match config.phone_gateway {
        Some(kind) => kind,
        None if config.uses_postgres() => anyhow::bail!(
            "with PostgreSQL, choose HOLDFAST_PHONE_GATEWAY: sms, ars, or simulator (development \
             only: its inbox, codes included, is readable by operators over the API)"
        ),
        None => GatewayKind::Simulator,
    };
    let channel = match kind {
        GatewayKind::Simulator => {
            tracing::warn!(
                "phone gateway: the SIMULATOR; every code is readable over the API by an \
                 operator or with the simulator key"
            );
            return Ok(None);
        }
        GatewayKind::Sms => Channel::Sms,
        GatewayKind::Ars => Channel::Ars,
    };
    let url = config
        .phone_gateway_url
        .as_deref()
        .context("HOLDFAST_PHONE_GATEWAY_URL is required for the sms and ars gateways")?;
    let token = config
        .phone_gateway_token
        .clone()
        .context("HOLDFAST_PHONE_GATEWAY_TOKEN is required for the sms and ars gateways")?;
    Ok(Some(Arc::new(HttpPhoneGateway::new(channel, url, token)?)))
}

/// The settlement period: at least a second, at most a year.
fn auto_settle(config: &Config) -> anyhow::Result<chrono::Duration> {
    if !(1..=366 * 24 * 3600).contains(&config.auto_settle_secs) {
        anyhow::bail!("HOLDFAST_AUTO_SETTLE_SECS must be 1 second to a year");
    }
    Ok(chrono::Duration::seconds(config.auto_settle_secs))
}

fn settings(config: &Config, secret: Vec<u8>) -> anyhow::Result<Settings> {
    Ok(Settings {
        secret,
        token_ttl_secs: config.token_ttl_secs,
        policy: policy(config)?,
        auto_settle: auto_settle(config)?,
        gateway: gateway(config)?,
        webhook_secret: config
            .phone_webhook_secret
            .as_ref()
            .map(|s| s.expose_secret().as_bytes().to_vec()),
        webhook_policy: if config.webhook_allow_private {
            tracing::warn!("webhooks may go to private and loopback addresses (development only)");
            TargetPolicy::AllowPrivate
        } else {
            TargetPolicy::PublicOnly
        },
    })
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // The configuration is checked before the database is touched; the secret may live there.
    let mut settings = settings(&config, Vec::new())?;
    let url = config.database_url();
    let db = open_database(&url, config.pool_size()).await?;
    settings.secret = service_secret(&db, config.jwt_secret.as_ref()).await?;
    if config.jwt_secret.is_none() {
        tracing::info!("signing with the service secret stored in the database");
    }
    let gateway_name = if settings.gateway.is_some() {
        "provider"
    } else {
        "simulator"
    };
    tracing::info!(
        database = if config.uses_postgres() {
            "postgresql"
        } else {
            "sqlite"
        },
        "database ready"
    );
    if config.request_timeout_secs == 0 || config.shutdown_grace_secs == 0 {
        anyhow::bail!(
            "HOLDFAST_REQUEST_TIMEOUT_SECS and HOLDFAST_SHUTDOWN_GRACE_SECS must be at least 1"
        );
    }
    if let Some(token) = &config.metrics_token {
        anyhow::ensure!(
            token.expose_secret().chars().count() >= holdfast_server::config::MIN_SECRET_CHARS,
            "HOLDFAST_METRICS_TOKEN must have at least {} characters",
            holdfast_server::config::MIN_SECRET_CHARS
        );
    }
    let bank_gateway = config.bank_gateway();
    let mut state = build_state(db, Clock::system(), settings)
        .with_request_timeout(Duration::from_secs(config.request_timeout_secs))
        .with_bank_gateway(&bank_gateway);
    if config.metrics == Switch::On {
        let handle = holdfast_server::metrics::install()?;
        holdfast_server::metrics::spawn_upkeep(handle.clone());
        state = state.with_metrics(holdfast_server::metrics::Metrics {
            handle,
            token: config.metrics_token.clone(),
        });
    }
    // Installed before the port opens: a SIGTERM from then on starts a graceful shutdown
    // instead of killing the process.
    let mut terminate = signal(SignalKind::terminate()).context("could not watch for SIGTERM")?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("could not listen on {}", config.bind))?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let simulator_key = state
        .simulator_key
        .as_ref()
        .map(|key| key.expose().to_owned());
    if config.demo {
        let seeded = demo::seed(&state).await?;
        println!(
            "{}",
            demo::instructions(&seeded, &base_url, simulator_key.as_deref())
        );
    } else if let Some(key) = &simulator_key {
        // On standard output, not in the log: it opens an inbox full of codes.
        println!("phone simulator inbox: send 'x-simulator-key: {key}' (or an operator's token)");
    }
    let lifecycle = state.lifecycle.clone();
    let workers = workers::spawn(
        state.clone(),
        WorkerIntervals {
            bank_runs: Duration::from_secs(config.bank_run_interval_secs.max(1)),
            ..WorkerIntervals::default()
        },
    );
    tracing::info!(%base_url, phone_gateway = gateway_name, bank_gateway = ?bank_gateway, "listening");
    // The peer address feeds the login throttle.
    let server = axum::serve(
        listener,
        holdfast_server::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown({
        let lifecycle = lifecycle.clone();
        async move { lifecycle.stopping().await }
    });
    let mut server = std::pin::pin!(server.into_future());
    let ended_early = tokio::select! {
        served = &mut server => Some(served),
        () = signalled(&mut terminate) => None,
    };
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    if let Some(served) = ended_early {
        // The listener failed: stop the workers too, then report it.
        lifecycle.begin_shutdown();
        let _ = tokio::time::timeout(grace, workers.join()).await;
        return Ok(served?);
    }
    // /readyz turns 503 now; the server stops accepting; workers stop between units.
    lifecycle.begin_shutdown();
    tracing::info!(grace_secs = grace.as_secs(), "shutting down");
    let drained = tokio::time::timeout(grace, async {
        let served = server.await;
        workers.join().await;
        served
    })
    .await;
    match drained {
        Ok(served) => {
            served?;
            tracing::info!("stopped");
            Ok(())
        }
        Err(_) => {
            tracing::error!(
                grace_secs = grace.as_secs(),
                "shutdown grace passed with requests or workers still running; exiting"
            );
            std::process::exit(1)
        }
    }
}

/// SIGTERM (systemd, Docker, Kubernetes) or Ctrl-C.
async fn signalled(terminate: &mut Signal) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

async fn create_operator(config: Config, username: &str, display_name: &str) -> anyhow::Result<()> {
    let password = match std::env::var("HOLDFAST_OPERATOR_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            eprintln!("Password for operator '{username}' (10+ characters), then Enter:");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let db = open_database(&config.database_url(), config.pool_size()).await?;
    let secret = service_secret(&db, config.jwt_secret.as_ref()).await?;
    let state = simulator_state(
        db,
        Clock::system(),
        &secret,
        3600,
        ChallengePolicy::default(),
    );
    let (party, username) =
        holdfast_server::create_staff(&state, Role::Operator, display_name, username, &password)
            .await?;
    println!("operator '{username}' created (party {})", party.id);
    Ok(())
}
