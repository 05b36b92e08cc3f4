//! `commlab`: runs the reference scenario's services, and compares the six
//! patterns locally. Arguments and telemetry here; everything else is in the
//! library (`commlab_workload::cli`, `commlab_workload::services`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use commlab_workload::{
    cli::{self, CompareArgs, ExperimentArgs, LogWriter, RunArgs},
    services::{
        catalog::{self, CatalogConfig},
        http::shutdown_signal,
        orders::{self, OrdersConfig},
    },
};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "commlab",
    version,
    about = "Measure how services communicate: six patterns, one scenario",
    after_help = "Start with `commlab compare --quick` (about 90 s), then `commlab compare` \
                  (about 5 minutes); open out/report.html."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compare the patterns on this machine: each one deployed as local
    /// processes, loaded, faulted and measured; prints the table and the
    /// article's claims, writes OUT/report.{json,html,txt}.
    Compare(CompareArgs),
    /// Run one CommunicationPattern manifest on this machine, the same YAML
    /// you would apply to a cluster.
    Run(RunArgs),
    /// Run one service of the reference scenario (orders or catalog).
    #[command(subcommand)]
    Serve(Service),
    /// Run the experiment of a CommunicationPattern in a cluster and write
    /// its report into ConfigMap <name>-report: what the operator's runner
    /// Job does (`--in-cluster`).
    Experiment(ExperimentArgs),
}

#[derive(Debug, Subcommand)]
enum Service {
    /// The product catalog: owns prices, the source of truth.
    Catalog(CatalogConfig),
    /// The web shop's orders: checks out orders at catalog's prices.
    Orders(OrdersConfig),
}

#[tokio::main]
async fn main() -> ExitCode {
    let command = Cli::parse().command;
    match command {
        Command::Serve(service) => {
            init_tracing("info");
            let served = match service {
                Service::Catalog(config) => catalog::serve(config, shutdown_signal()).await,
                Service::Orders(config) => orders::serve(config, shutdown_signal()).await,
            };
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("commlab serve: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Compare(args) => {
            init_tracing("warn");
            finish(cli::compare(args).await)
        }
        Command::Run(args) => {
            init_tracing("warn");
            finish(cli::run(args).await)
        }
        Command::Experiment(args) => {
            init_tracing("info");
            match cli::experiment(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("commlab experiment: {error}");
                    ExitCode::from(error.exit_code())
                }
            }
        }
    }
}

fn finish(result: Result<(), cli::CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("commlab: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Logs to stderr, above any progress bars; `RUST_LOG` filters (default
/// `default`), `COMMLAB_LOG_FORMAT=json` for JSON lines.
fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter);
    if std::env::var("COMMLAB_LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
