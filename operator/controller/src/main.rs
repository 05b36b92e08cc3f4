use std::net::SocketAddr;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use commlab_controller::{OperatorConfig, RunOptions};

#[derive(Parser)]
#[command(
    name = "commlab-operator",
    version,
    about = "The commlab Kubernetes operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    config: OperatorConfig,
    /// Address of the /metrics, /healthz and /readyz server.
    #[arg(long, env = "COMMLAB_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Most reconciles at once.
    #[arg(long, env = "COMMLAB_CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
    /// Watch one namespace only.
    #[arg(long, env = "COMMLAB_NAMESPACE")]
    namespace: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Run(args) => {
            let RunArgs {
                config,
                listen,
                concurrency,
                namespace,
            } = *args;
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API server")?;
            commlab_controller::run(
                client,
                RunOptions {
                    config,
                    listen,
                    concurrency,
                    namespace,
                },
            )
            .await?;
        }
        Command::Crd => print!("{}", commlab_api::crds_yaml()?),
    }
    Ok(())
}
