use anyhow::Context;
use clap::Parser;
use holdfast_core::challenge::ChallengePolicy;
use holdfast_core::db::PoolSize;
use holdfast_core::{Clock, onboarding};
use holdfast_server::config::{
    Cli, Command, Config, DEVELOPMENT_JWT_SECRET, LogFormat, MIN_SECRET_CHARS,
};
use holdfast_server::workers::{self, WorkerIntervals};
use holdfast_server::{demo, open_database, simulator_state};
use secrecy::ExposeSecret;
use std::io::BufRead;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.config.log_format);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Migrate => {
            open_database(&cli.config.database_url(), PoolSize::default()).await?;
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

fn policy(config: &Config) -> ChallengePolicy {
    ChallengePolicy {
        default_ttl: chrono::Duration::seconds(config.order_confirmation_secs.clamp(30, 600)),
        settlement_ttl: chrono::Duration::seconds(config.auto_settle_secs.max(10)),
        ..ChallengePolicy::default()
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let secret = secret(&config)?;
    let url = config.database_url();
    let db = open_database(&url, PoolSize::default()).await?;
    tracing::info!(
        database = if config.uses_postgres() {
            "postgresql"
        } else {
            "sqlite"
        },
        "database ready"
    );
    let state = simulator_state(
        db,
        Clock::system(),
        &secret,
        config.token_ttl_secs,
        policy(&config),
    );
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
    tracing::info!(%base_url, phone_gateway = "simulator", "listening");
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
    let db = open_database(&config.database_url(), PoolSize::default()).await?;
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
