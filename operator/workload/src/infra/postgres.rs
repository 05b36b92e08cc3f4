//! A throw-away PostgreSQL server: `initdb` into a temporary directory, then
//! `postgres` on a free loopback port, trusting local connections.
//!
//! `initdb` and `postgres` refuse to run as root, so as root both run as the
//! `postgres` user (created by Debian's `postgresql` package) and the
//! directory is handed to it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use async_trait::async_trait;
use nix::{sys::signal::Signal, unistd::User};
use tempfile::TempDir;
use tokio_postgres::NoTls;

use crate::{
    error::{Error, Result},
    infra::{
        Restartable, free_port,
        process::{Launch, ManagedProcess},
    },
};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The superuser `initdb` creates; connections are trusted, no password.
pub const SUPERUSER: &str = "postgres";

pub struct PostgresServer {
    port: u16,
    data_dir: PathBuf,
    process: ManagedProcess,
    // Dropped last: the process stops before its data goes.
    _dir: TempDir,
}

impl PostgresServer {
    /// Creates a cluster in a temporary directory and starts it; returns once it accepts connections.
    pub async fn launch() -> Result<Self> {
        let bin_dir = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("commlab-postgres-")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary directory", e))?;
        let user = server_user()?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| Error::io("handing the data directory to the postgres user", e))?;
        }
        let data_dir = dir.path().join("data");
        let initdb = Launch::new(bin_dir.join("initdb"))
            .args(["-D".as_ref(), data_dir.as_os_str()])
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .current_dir(dir.path())
            .user(user);
        let output = tokio::task::spawn_blocking(move || initdb.command().output())
            .await
            .map_err(|e| Error::process("initdb", e.to_string()))?
            .map_err(|e| Error::io("running initdb", e))?;
        if !output.status.success() {
            return Err(Error::process(
                "initdb",
                format!(
                    "{}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            ));
        }

        let port = free_port()?;
        let postgres = Launch::new(bin_dir.join("postgres"))
            .args([
                "-D".as_ref(),
                data_dir.as_os_str(),
                "-k".as_ref(),
                dir.path().as_os_str(),
            ])
            .args(["-p", &port.to_string()])
            // Loopback only. The data is thrown away, so fsync is not needed:
            // a killed server (the Kill fault) still loses nothing, only a
            // machine crash could.
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .current_dir(dir.path())
            .user(user);
        let process = ManagedProcess::new(
            "postgres",
            postgres,
            dir.path().join("postgres.log"),
            Signal::SIGINT,
        );
        let mut server = PostgresServer {
            port,
            data_dir,
            process,
            _dir: dir,
        };
        server.start().await?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// `postgres://postgres@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates `name` (letters, digits and `_`) unless it exists; returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Error::Config(format!(
                "`{name}` is not a plain database name"
            )));
        }
        let client = self.connect().await?;
        match client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
        {
            Ok(()) => {}
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => {
                return Err(Error::process(
                    "postgres",
                    format!("creating database {name}: {e}"),
                ));
            }
        }
        Ok(self.url(name))
    }

    async fn connect(&self) -> Result<tokio_postgres::Client> {
        connect(&self.url("postgres")).await
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let connect = tokio_postgres::connect(url, NoTls);
    let (client, connection) = tokio::time::timeout(Duration::from_secs(2), connect)
        .await
        .map_err(|_| Error::process("postgres", "connecting timed out"))?
        .map_err(|e| Error::process("postgres", format!("connecting: {e}")))?;
    tokio::spawn(connection);
    Ok(client)
}

/// The newest `/usr/lib/postgresql/*/bin` (Debian's layout), or the directory
/// of `initdb` on `PATH` elsewhere.
fn bin_dir() -> Result<PathBuf> {
    let debian = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(debian)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin);
    if let Some(bin) = newest {
        return Ok(bin);
    }
    let initdb = super::find_program("initdb", &[], "postgresql")?;
    Ok(initdb.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// `Some((uid, gid))` of the `postgres` user when running as root.
fn server_user() -> Result<Option<(u32, u32)>> {
    if !nix::unistd::Uid::effective().is_root() {
        return Ok(None);
    }
    let user = User::from_name(SUPERUSER)
        .map_err(|e| Error::process("postgres", format!("looking up the postgres user: {e}")))?
        .ok_or(Error::MissingBinary {
            binary: "the postgres user".into(),
            package: "postgresql",
        })?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

#[async_trait]
impl Restartable for PostgresServer {
    fn binary(&self) -> &'static str {
        "postgres"
    }

    fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// Starts the server again on the same port and data; returns once it accepts connections.
    async fn start(&mut self) -> Result<()> {
        self.process.spawn()?;
        let url = self.url("postgres");
        self.process
            .wait_ready(READY_TIMEOUT, || async { connect(&url).await.is_ok() })
            .await
    }
}
