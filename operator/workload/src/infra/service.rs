//! `commlab serve catalog|orders` as a local process on a free port, ready
//! when its `/readyz` is. Tests pass `env!("CARGO_BIN_EXE_commlab")` as the
//! binary, the CLI `std::env::current_exe()`.

use std::{
    ffi::OsString,
    fmt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::{
    error::{Error, Result},
    infra::{
        free_port,
        process::{Launch, ManagedProcess},
    },
    services::{catalog::CatalogConfig, orders::OrdersConfig},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    Catalog,
    Orders,
}

impl ServiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Catalog => "catalog",
            ServiceKind::Orders => "orders",
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to run: `BINARY serve KIND --listen 127.0.0.1:PORT ARGS...`.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    pub binary: PathBuf,
    pub kind: ServiceKind,
    /// Used in logs and log file names, e.g. `orders-1`.
    pub name: String,
    /// `None` picks a free port.
    pub port: Option<u16>,
    /// Flags after `--listen`.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Where the log file goes; `None` is a temporary directory removed with the process.
    pub log_dir: Option<PathBuf>,
    pub ready_timeout: Duration,
}

impl ServiceSpec {
    pub fn new(binary: impl Into<PathBuf>, kind: ServiceKind) -> Self {
        ServiceSpec {
            binary: binary.into(),
            kind,
            name: kind.as_str().into(),
            port: None,
            args: Vec::new(),
            env: Vec::new(),
            log_dir: None,
            ready_timeout: Duration::from_secs(30),
        }
    }

    /// catalog with `config`'s flags; its port is used unless it is 0.
    pub fn catalog(binary: impl Into<PathBuf>, config: &CatalogConfig) -> Self {
        let mut args = vec![
            flag("pattern", config.pattern),
            flag("database-url", &config.database_url),
            flag("products", config.products),
            flag("upstream-timeout", millis(config.upstream_timeout)),
        ];
        args.extend(
            config
                .broker_url
                .as_ref()
                .map(|url| flag("broker-url", url)),
        );
        ServiceSpec {
            port: (config.listen.port() != 0).then_some(config.listen.port()),
            args,
            ..ServiceSpec::new(binary, ServiceKind::Catalog)
        }
    }

    /// orders with `config`'s flags; its port is used unless it is 0.
    pub fn orders(binary: impl Into<PathBuf>, config: &OrdersConfig) -> Self {
        let mut args = vec![
            flag("pattern", config.pattern),
            flag("upstream-timeout", millis(config.upstream_timeout)),
            flag("poll-interval", millis(config.poll_interval)),
            flag("poll-deadline", millis(config.poll_deadline)),
            flag("replica-id", &config.replica_id),
        ];
        args.extend(
            config
                .catalog_url
                .as_ref()
                .map(|url| flag("catalog-url", url)),
        );
        args.extend(
            config
                .database_url
                .as_ref()
                .map(|url| flag("database-url", url)),
        );
        args.extend(
            config
                .broker_url
                .as_ref()
                .map(|url| flag("broker-url", url)),
        );
        args.extend(
            config
                .advertise_url
                .as_ref()
                .map(|url| flag("advertise-url", url)),
        );
        ServiceSpec {
            name: format!("orders-{}", config.replica_id),
            port: (config.listen.port() != 0).then_some(config.listen.port()),
            args,
            ..ServiceSpec::new(binary, ServiceKind::Orders)
        }
    }
}

fn flag(name: &str, value: impl fmt::Display) -> String {
    format!("--{name}={value}")
}

fn millis(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// A running catalog or orders process.
pub struct ServiceProcess {
    name: String,
    port: u16,
    ready_timeout: Duration,
    process: ManagedProcess,
    client: reqwest::Client,
    _log_dir: Option<TempDir>,
}

impl ServiceProcess {
    /// Starts the service and waits until `/readyz` answers `200`.
    pub async fn launch(spec: ServiceSpec) -> Result<Self> {
        let port = match spec.port {
            Some(port) => port,
            None => free_port()?,
        };
        let (log_dir, temporary) = match &spec.log_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
                (dir.clone(), None)
            }
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("commlab-service-")
                    .tempdir()
                    .map_err(|e| Error::io("creating a temporary directory", e))?;
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        let mut launch = Launch::new(&spec.binary)
            .args(["serve", spec.kind.as_str()])
            .arg(format!("--listen=127.0.0.1:{port}"))
            .args(spec.args.iter().map(OsString::from));
        for (key, value) in &spec.env {
            launch = launch.env(key, value);
        }
        let log_path = log_dir.join(format!("{}.log", spec.name));
        let process = ManagedProcess::new(&spec.name, launch, log_path, Signal::SIGTERM);
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(1))
            .build()
            .map_err(|e| Error::Config(format!("building the HTTP client: {e}")))?;
        let mut service = ServiceProcess {
            name: spec.name,
            port,
            ready_timeout: spec.ready_timeout,
            process,
            client,
            _log_dir: temporary,
        };
        service.start().await?;
        Ok(service)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Starts the process (again, same port and flags) and waits until it is ready.
    pub async fn start(&mut self) -> Result<()> {
        self.spawn()?;
        self.wait_ready().await
    }

    /// Starts the process without waiting, as a Deployment restarts a pod.
    pub fn spawn(&mut self) -> Result<()> {
        self.process.spawn()
    }

    /// Waits until `/readyz` answers `200`; fails if the process ends first.
    pub async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.ready_timeout;
        let readyz = format!("{}/readyz", self.url());
        loop {
            if let Some(status) = self.process.exit_status() {
                return Err(Error::process(
                    &self.name,
                    format!(
                        "exited ({status}) before it was ready:\n{}",
                        self.log_tail(30)
                    ),
                ));
            }
            if let Ok(response) = self.client.get(&readyz).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::process(
                    &self.name,
                    format!(
                        "not ready after {:?}:\n{}",
                        self.ready_timeout,
                        self.log_tail(30)
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGTERM and wait (the service drains in-flight requests); SIGKILL after 10 s.
    pub async fn stop(&mut self) -> Result<()> {
        self.process.stop().await
    }

    /// SIGKILL, as a pod kill.
    pub async fn kill(&mut self) -> Result<()> {
        self.process.kill().await
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }
}
