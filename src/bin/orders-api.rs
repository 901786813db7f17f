//! `orders-api`: the HTTP API (`serve`, the default), `migrate`, `token`, `openapi`
//! and `probe` (a health check for images without a shell or curl).

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use orders::config::{JwtSettings, Process, Settings};
use orders::http::Application;
use orders::http::auth::{JwtKeys, Role};
use orders::{db, telemetry};

#[derive(Parser)]
#[command(name = "orders-api", version, about = "Order orchestration API over Temporal")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply the database migrations, then exit.
    Migrate,
    /// Write the OpenAPI document (default openapi/openapi.json; `-` for stdout).
    Openapi {
        #[arg(long, default_value = "openapi/openapi.json")]
        out: String,
    },
    /// Print a signed JWT for trying the API (uses ORDERS_JWT_SECRET).
    Token {
        #[arg(long)]
        sub: String,
        /// customer, admin or carrier
        #[arg(long)]
        role: String,
        /// e.g. 1h, 30m, 7d
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Exit 0 when a URL answers 2xx within 3 s, else 1: a container health check
    /// (`orders-api probe http://127.0.0.1:8080/readyz`) for images without curl.
    Probe { url: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().after_long_help(orders::config::variables_help()).get_matches();
    match Cli::from_arg_matches(&matches)?.command.unwrap_or(Command::Serve) {
        Command::Probe { url } => {
            let client = orders::tls::client().timeout(Duration::from_secs(3)).build()?;
            let status = client.get(&url).send().await.with_context(|| format!("GET {url}"))?.status();
            if !status.is_success() {
                bail!("GET {url}: {status}");
            }
        }
        Command::Token { sub, role, ttl } => {
            // Needs only the JWT settings, so it works without a database configured.
            let keys = JwtKeys::from_settings(&JwtSettings::from_env()?)?;
            let Some(role) = Role::parse(&role) else { bail!("--role must be customer, admin or carrier") };
            let ttl: Duration = humantime::parse_duration(&ttl).context("--ttl must be a duration like 1h")?;
            let token = keys
                .issue(&sub, role, ttl)
                .context("signing needs ORDERS_JWT_SECRET or ORDERS_JWT_PRIVATE_KEY_FILE")?;
            println!("{token}");
        }
        Command::Openapi { out } => {
            let doc = orders::http::openapi::document()?;
            if out == "-" {
                println!("{doc}");
            } else {
                std::fs::write(&out, doc + "\n").with_context(|| format!("writing {out}"))?;
            }
        }
        Command::Migrate => {
            let (database_url, log_format) = Settings::for_migrations()?;
            let _telemetry = telemetry::init(log_format, "orders-api");
            db::migrate(&db::pool_for(&database_url, 2)?).await?;
            tracing::info!("migrations applied");
        }
        Command::Serve => {
            let settings = Settings::from_env_for(Process::Api)?;
            let _telemetry = telemetry::init(settings.log_format, "orders-api");
            let app = Application::build(settings).await?;
            tracing::info!(port = app.port(), "orders-api listening");
            app.run_until_stopped(orders::shutdown_signal()).await?;
            tracing::info!("orders-api stopped");
        }
    }
    Ok(())
}
