use anyhow::Context;
use clap::Parser;
use holdfast_core::challenge::ChallengePolicy;
use holdfast_core::phone::PhoneGateway;
use holdfast_core::webhook_target::TargetPolicy;
use holdfast_core::{Clock, onboarding};
use holdfast_server::config::{
    Cli, Command, Config, DEVELOPMENT_JWT_SECRET, GatewayKind, LogFormat, MIN_SECRET_CHARS,
};
use holdfast_server::phone_gateways::{Channel, HttpPhoneGateway};
use holdfast_server::workers::{self, WorkerIntervals};
use holdfast_server::{Settings, build_state, demo, open_database, simulator_state};
use secrecy::ExposeSecret;
use std::io::BufRead;
use std::sync::Arc;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.config.log_format);
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
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The service secret: required with PostgreSQL; a logged development default with SQLite.
fn secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    match &config.jwt_secret {
        Some(secret) => {
            let secret = secret.expose_secret();
            anyhow::ensure!(
                secret.chars().count() >= MIN_SECRET_CHARS,
                "HOLDFAST_JWT_SECRET must have at least {MIN_SECRET_CHARS} characters"
            );
            Ok(secret.as_bytes().to_vec())
        }
        None if config.uses_postgres() => {
            anyhow::bail!("HOLDFAST_JWT_SECRET is required when DATABASE_URL points at PostgreSQL")
        }
        None => {
            tracing::warn!(
                "using the built-in DEVELOPMENT secret for tokens and phone codes; \
                 set HOLDFAST_JWT_SECRET for anything but local development"
            );
            Ok(DEVELOPMENT_JWT_SECRET.as_bytes().to_vec())
        }
    }
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
             only: its inbox, codes included, is readable over the API)"
        ),
        None => GatewayKind::Simulator,
    };
    let channel = match kind {
        GatewayKind::Simulator => {
            tracing::warn!("phone gateway: the SIMULATOR; every code is readable over the API");
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

fn settings(config: &Config) -> anyhow::Result<Settings> {
    Ok(Settings {
        secret: secret(config)?,
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
    let settings = settings(&config)?;
    let gateway_name = if settings.gateway.is_some() {
        "provider"
    } else {
        "simulator"
    };
    let url = config.database_url();
    let db = open_database(&url, config.pool_size()).await?;
    tracing::info!(
        database = if config.uses_postgres() {
            "postgresql"
        } else {
            "sqlite"
        },
        "database ready"
    );
    let state = build_state(db, Clock::system(), settings);
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("could not listen on {}", config.bind))?;
    let base_url = format!("http://{}", listener.local_addr()?);
    if config.demo {
        let seeded = demo::seed(&state).await?;
        println!("{}", demo::instructions(&seeded, &base_url));
    }
    let (stop, stopped) = watch::channel(false);
    workers::spawn(state.clone(), WorkerIntervals::default(), stopped);
    tracing::info!(%base_url, phone_gateway = gateway_name, "listening");
    axum::serve(listener, holdfast_server::app(state))
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        })
        .await?;
    Ok(())
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
    let secret = secret(&config)?;
    let db = open_database(&config.database_url(), config.pool_size()).await?;
    let state = simulator_state(
        db,
        Clock::system(),
        &secret,
        3600,
        ChallengePolicy::default(),
    );
    let (party, username) =
        onboarding::create_operator(&state.db, &state.core, display_name, username, &password)
            .await?;
    println!("operator '{username}' created (party {})", party.id);
    Ok(())
}
