//! `play-runners`: plays the operator's runner Jobs of one namespace with
//! local processes (see `commlab_e2e::player`) until SIGTERM or Ctrl-C.
//! Exits 1 when any play failed. Used by `e2e/run.sh local`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use commlab_e2e::player::{PlayerConfig, RunnerPlayer};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    name = "play-runners",
    about = "Plays the commlab operator's runner Jobs with local processes (kwok runs no containers)"
)]
struct Args {
    /// The namespace whose runner Jobs are played.
    #[arg(long)]
    namespace: String,
    /// The `commlab` binary (the runner and the services).
    #[arg(long, env = "COMMLAB_BIN")]
    commlab: PathBuf,
    /// An admin kubeconfig of the cluster.
    #[arg(long, env = "COMMLAB_KUBECONFIG")]
    kubeconfig: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.commlab.is_file(),
        "--commlab {} is not a file",
        args.commlab.display()
    );
    let client = commlab_e2e::client_from(&args.kubeconfig).await?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let player = RunnerPlayer::start(
        client,
        PlayerConfig {
            namespace: args.namespace.clone(),
            binary: args.commlab,
            kubeconfig: args.kubeconfig,
        },
    );
    eprintln!(
        "player: playing the runner Jobs of namespace {}; stop with SIGTERM or Ctrl-C",
        args.namespace
    );
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let plays = player.stop().await?;
    eprintln!(
        "player: stopped after {} runner Jobs, none failed",
        plays.len()
    );
    Ok(())
}
