//! Throw-away local servers on free loopback ports, for tests and for
//! `commlab compare`: PostgreSQL, NATS with JetStream, and the services
//! themselves, each a handle that can be stopped, killed and started again
//! on the same port and data (what the local fault backends need).
//!
//! - [`PostgresServer::launch`], [`NatsServer::launch`]: the database and the broker.
//! - [`ServiceProcess::launch`]: `commlab serve catalog|orders`, ready when `/readyz` is.
//! - [`Topology::launch`]: catalog and orders of one pattern, given a database and broker.
//! - [`LocalStack::launch`]: all of it for one pattern.

pub mod nats;
pub mod postgres;
pub mod process;
pub mod service;
pub mod topology;

use std::{
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
};

pub use nats::NatsServer;
pub use postgres::PostgresServer;
pub use service::{ServiceKind, ServiceProcess, ServiceSpec};
pub use topology::{LocalStack, Topology, TopologyConfig};

use async_trait::async_trait;

use crate::error::{Error, Result};

/// A shared local server (PostgreSQL, NATS) that faults stop, kill and
/// start again on the same port and data. Only starting differs between
/// them: each has its own way to tell that it serves again.
#[async_trait]
pub trait Restartable: Send {
    /// The server's binary, for error messages.
    fn binary(&self) -> &'static str;
    fn process(&mut self) -> &mut process::ManagedProcess;
    /// Starts it again; returns once it serves.
    async fn start(&mut self) -> Result<()>;

    /// Stops it gracefully; the data is kept.
    async fn stop(&mut self) -> Result<()> {
        self.process().stop().await
    }

    /// SIGKILL, as a crash would; it recovers on the next start.
    async fn kill(&mut self) -> Result<()> {
        self.process().kill().await
    }

    fn is_running(&mut self) -> bool {
        self.process().is_running()
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::io("finding a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free port", e))
}

/// Finds `binary` on `PATH` or in `extra_dirs`; a miss names the Debian
/// package that provides it.
pub fn find_program(binary: &str, extra_dirs: &[&Path], package: &'static str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs.iter().map(|dir| dir.to_path_buf()))
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| Error::MissingBinary {
            binary: binary.into(),
            package,
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_its_debian_package() {
        let error = find_program("commlab-no-such-server", &[], "commlab-package").unwrap_err();
        assert!(matches!(
            error,
            Error::MissingBinary {
                package: "commlab-package",
                ..
            }
        ));
        assert!(
            error
                .to_string()
                .contains("apt-get install commlab-package"),
            "{error}"
        );
    }

    #[test]
    fn free_ports_are_on_loopback_and_bindable() {
        let port = free_port().unwrap();
        assert!(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok());
    }
}
