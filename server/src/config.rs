//! Configuration from flags and environment variables (flags win).

use clap::{Args, Parser, Subcommand, ValueEnum};
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
    /// Signs tokens and phone codes; at least 32 characters. Required with PostgreSQL.
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
    /// How long a shopper has to approve an order on the phone.
    #[arg(
        long,
        env = "HOLDFAST_ORDER_CONFIRMATION_SECS",
        default_value_t = 600,
        global = true
    )]
    pub order_confirmation_secs: i64,
    /// How long a settlement request waits for the shopper before it settles by itself
    /// (default 72 hours; shorten it for a demo).
    #[arg(long, env = "HOLDFAST_AUTO_SETTLE_SECS", default_value_t = 72 * 3600, global = true)]
    pub auto_settle_secs: i64,
    #[arg(long, env = "HOLDFAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

pub const DEFAULT_SQLITE_URL: &str = "sqlite://holdfast.db?mode=rwc";

/// Used only for SQLite development databases, and said so in the log at start.
pub const DEVELOPMENT_JWT_SECRET: &str = "holdfast-development-secret-not-for-production-use";

pub const MIN_SECRET_CHARS: usize = 32;

impl Config {
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| DEFAULT_SQLITE_URL.to_owned())
    }

    pub fn uses_postgres(&self) -> bool {
        let url = self.database_url();
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }
}
