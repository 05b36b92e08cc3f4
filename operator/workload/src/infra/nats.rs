//! A throw-away NATS server with JetStream, storing streams in a temporary
//! directory so they survive a stop or kill and start again.

use std::{path::Path, time::Duration};

use async_trait::async_trait;
use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::{
    error::{Error, Result},
    infra::{
        Restartable, find_program, free_port,
        process::{Launch, ManagedProcess},
    },
};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub struct NatsServer {
    port: u16,
    process: ManagedProcess,
    _dir: TempDir,
}

impl NatsServer {
    /// Starts `nats-server -js` on a free port; returns once JetStream answers.
    pub async fn launch() -> Result<Self> {
        let binary = find_program(
            "nats-server",
            &[
                Path::new("/usr/sbin"),
                Path::new("/usr/local/sbin"),
                Path::new("/usr/local/bin"),
            ],
            "nats-server",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("commlab-nats-")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary directory", e))?;
        let port = free_port()?;
        let launch = Launch::new(binary)
            .args(["-js", "-sd"])
            .arg(dir.path().join("jetstream"))
            .args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        let process = ManagedProcess::new(
            "nats-server",
            launch,
            dir.path().join("nats.log"),
            Signal::SIGTERM,
        );
        let mut server = NatsServer {
            port,
            process,
            _dir: dir,
        };
        server.start().await?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }
}

#[async_trait]
impl Restartable for NatsServer {
    fn binary(&self) -> &'static str {
        "nats-server"
    }

    fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// Starts the server again on the same port and store; returns once JetStream answers.
    async fn start(&mut self) -> Result<()> {
        self.process.spawn()?;
        let url = self.url();
        self.process
            .wait_ready(READY_TIMEOUT, || jetstream_answers(url.clone()))
            .await
    }
}

async fn jetstream_answers(url: String) -> bool {
    // A raw account info request: the typed one expects fields that
    // Debian's nats-server 2.9 does not send.
    let check = async {
        let client = async_nats::connect(url).await.ok()?;
        let reply = client.request("$JS.API.INFO", "".into()).await.ok()?;
        let info: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
        info.get("error").is_none().then_some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), check).await,
        Ok(Some(_))
    )
}
