//! `commlab`: runs the reference scenario's services, and (later) local
//! experiments and comparisons. Arguments and telemetry here; everything
//! else is in the library.

use clap::{Parser, Subcommand};
use commlab_workload::services::{
    catalog::{self, CatalogConfig},
    http::shutdown_signal,
    orders::{self, OrdersConfig},
};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "commlab",
    version,
    about = "Measure how services communicate: six patterns, one scenario"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one service of the reference scenario (orders or catalog).
    #[command(subcommand)]
    Serve(Service),
}

#[derive(Debug, Subcommand)]
enum Service {
    /// The product catalog: owns prices, the source of truth.
    Catalog(CatalogConfig),
    /// The web shop's orders: checks out orders at catalog's prices.
    Orders(OrdersConfig),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    match Cli::parse().command {
        Command::Serve(Service::Catalog(config)) => {
            catalog::serve(config, shutdown_signal()).await?
        }
        Command::Serve(Service::Orders(config)) => orders::serve(config, shutdown_signal()).await?,
    }
    Ok(())
}

/// Logs to stderr; `RUST_LOG` filters (default `info`), `COMMLAB_LOG_FORMAT=json` for JSON lines.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("COMMLAB_LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
