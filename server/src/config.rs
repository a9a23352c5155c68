//! Configuration from flags and environment variables (flags win).

use clap::{Args, Parser, Subcommand, ValueEnum};
use holdfast_core::db::PoolSize;
use secrecy::SecretString;
use std::net::SocketAddr;

#[derive(Debug, Parser)]
#[command(
    name = "holdfast",
    version,
    about = "Escrow and phone-confirmation settlement service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server (the default).
    Serve,
    /// Create an operator account. The password is read from HOLDFAST_OPERATOR_PASSWORD, or
    /// from standard input if that is not set.
    CreateOperator {
        #[arg(long)]
        username: String,
        #[arg(long, default_value = "Operator")]
        display_name: String,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Print the OpenAPI document (the one served at /openapi.json) and exit.
    Openapi,
    /// Copy the SQLite database to a new file while the server runs (PostgreSQL: use pg_dump).
    Backup {
        /// The new file; an existing one is never overwritten.
        path: std::path::PathBuf,
    },
    /// Run the ledger audit against the database (a restored copy, say); exit status 1 if it
    /// finds a difference.
    Audit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GatewayKind {
    Simulator,
    Sms,
    Ars,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(
        long,
        env = "HOLDFAST_BIND",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub bind: SocketAddr,
    /// `postgres://…` for production; without it, a SQLite file in the working directory.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Signs tokens and phone codes; at least 32 characters. Without it, a random secret is
    /// generated at first start and kept in the database.
    #[arg(
        long,
        env = "HOLDFAST_JWT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub jwt_secret: Option<SecretString>,
    /// Seed a demo supplier, shopper and catalogue, and print how to use them.
    #[arg(long, env = "HOLDFAST_DEMO", global = true)]
    pub demo: bool,
    /// Lifetime of access tokens.
    #[arg(
        long,
        env = "HOLDFAST_TOKEN_TTL_SECS",
        default_value_t = 3600,
        global = true
    )]
    pub token_ttl_secs: i64,
    /// How long a phone code lives, per purpose, in seconds (at most 600): `order=300,login=120`.
    /// An order unanswered when its code expires is cancelled and its money returned.
    #[arg(
        long,
        env = "HOLDFAST_CHALLENGE_TTLS",
        default_value = "",
        global = true
    )]
    pub challenge_ttls: String,
    /// How long a settlement request waits for the shopper before it settles by itself
    /// (default 72 hours; shorten it for a demo).
    #[arg(long, env = "HOLDFAST_AUTO_SETTLE_SECS", default_value_t = 72 * 3600, global = true)]
    pub auto_settle_secs: i64,
    /// Where phone messages go. The simulator (the default on SQLite) keeps them in an inbox
    /// readable over the API; with PostgreSQL it must be chosen explicitly.
    #[arg(long, env = "HOLDFAST_PHONE_GATEWAY", value_enum, global = true)]
    pub phone_gateway: Option<GatewayKind>,
    /// The SMS or ARS provider's endpoint.
    #[arg(long, env = "HOLDFAST_PHONE_GATEWAY_URL", global = true)]
    pub phone_gateway_url: Option<String>,
    /// The bearer token for the provider's endpoint.
    #[arg(
        long,
        env = "HOLDFAST_PHONE_GATEWAY_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub phone_gateway_token: Option<SecretString>,
    /// Verifies the provider's inbound replies (`POST /v1/phone/inbound`); without it that
    /// endpoint is off.
    #[arg(
        long,
        env = "HOLDFAST_PHONE_WEBHOOK_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub phone_webhook_secret: Option<SecretString>,
    /// Let webhooks go to loopback, private and other non-public addresses (development and
    /// tests only: a receiver on this machine). Off, such targets are refused at registration
    /// and again at each delivery.
    #[arg(long, env = "HOLDFAST_WEBHOOK_ALLOW_PRIVATE", global = true)]
    pub webhook_allow_private: bool,
    /// Logs on standard output: `text` (coloured only when that is a terminal) or `json`, one
    /// object a line. `RUST_LOG` filters them (default `info,sqlx=warn,sea_orm=warn`).
    #[arg(long, env = "HOLDFAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Send traces to this OpenTelemetry collector (OTLP over HTTP, protobuf), e.g.
    /// `http://127.0.0.1:4318`; off without it. Spans go to this address and nowhere else.
    #[arg(
        long,
        env = "HOLDFAST_OTLP_ENDPOINT",
        value_name = "URL",
        global = true
    )]
    pub otlp_endpoint: Option<crate::telemetry::OtlpEndpoint>,
    /// How long SIGTERM or Ctrl-C waits for in-flight requests and the workers' current unit
    /// of work before the process gives up and exits 1.
    #[arg(
        long,
        env = "HOLDFAST_SHUTDOWN_GRACE_SECS",
        default_value_t = 40,
        global = true
    )]
    pub shutdown_grace_secs: u64,
    /// A request that takes longer is answered `503 request_timeout` (and its uncommitted
    /// write rolled back). Keep it below the shutdown grace.
    #[arg(
        long,
        env = "HOLDFAST_REQUEST_TIMEOUT_SECS",
        default_value_t = 35,
        global = true
    )]
    pub request_timeout_secs: u64,
    /// Database connections in the pool (default 4 on SQLite, for readers beside the writer's
    /// own connection; 16 on PostgreSQL).
    #[arg(long, env = "HOLDFAST_DB_POOL", global = true)]
    pub db_pool: Option<u32>,
    /// Prometheus metrics at `/metrics`. Off, no recorder is installed and requests are not
    /// counted (the benchmark compares the two).
    #[arg(long, env = "HOLDFAST_METRICS", value_enum, default_value_t = Switch::On, global = true)]
    pub metrics: Switch,
    /// A bearer token for the Prometheus scraper to read `/metrics` with (an operator's JWT
    /// works as well). Without it only operators can read the metrics.
    #[arg(
        long,
        env = "HOLDFAST_METRICS_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub metrics_token: Option<SecretString>,
    /// Where bank runs' pain.001 files go: `simulator` (the simulated bank: development, tests,
    /// the demo), `files:<directory>` (written there for the institution's file channel), or
    /// `off` (payouts wait). Default: the simulator on SQLite or with `--demo`, `off` on
    /// PostgreSQL — a production database never pays into a simulated bank by accident.
    #[arg(long, env = "HOLDFAST_BANK_GATEWAY", global = true)]
    pub bank_gateway: Option<crate::bank_gateways::BankGatewayKind>,
    /// Seconds between bank runs (pending payouts written into files and handed over).
    #[arg(
        long,
        env = "HOLDFAST_BANK_RUN_INTERVAL_SECS",
        default_value_t = 300,
        global = true
    )]
    pub bank_run_interval_secs: u64,
}

pub const DEFAULT_SQLITE_URL: &str = "sqlite://holdfast.db?mode=rwc";

pub const MIN_SECRET_CHARS: usize = 32;

impl Config {
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| DEFAULT_SQLITE_URL.to_owned())
    }

    pub fn pool_size(&self) -> PoolSize {
        let default = PoolSize::default();
        match self.db_pool {
            Some(size) => PoolSize {
                sqlite: size.max(1),
                postgres: size.max(1),
            },
            None => default,
        }
    }

    pub fn bank_gateway(&self) -> crate::bank_gateways::BankGatewayKind {
        use crate::bank_gateways::BankGatewayKind;
        match &self.bank_gateway {
            Some(kind) => kind.clone(),
            None if self.demo || !self.uses_postgres() => BankGatewayKind::Simulator,
            None => BankGatewayKind::Off,
        }
    }

    pub fn uses_postgres(&self) -> bool {
        let url = self.database_url();
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }
}
