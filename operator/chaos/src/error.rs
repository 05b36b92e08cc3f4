//! The one error type of this crate.

use std::{error::Error as StdError, net::SocketAddr};

use commlab_api::{FaultKind, Target};

/// A boxed error from a process controller implemented outside this crate
/// (e.g. a PostgreSQL handle in the workload crate).
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong while injecting, recovering or cleaning up a
/// fault. Use [`ChaosError::category`] for metric labels and event reasons.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The backend has no way to apply this kind of fault to this target,
    /// e.g. a `Delay` on a target without a fault proxy in front of it.
    #[error("cannot inject {fault} on `{target}`: no {missing} is registered for `{target}`")]
    Unsupported {
        fault: FaultKind,
        target: Target,
        missing: &'static str,
    },

    /// The fault itself is incomplete or inconsistent, e.g. a `Delay` without
    /// a latency. The API server rejects most of these; this catches the rest.
    #[error("fault `{name}`: {reason}")]
    InvalidFault { name: String, reason: String },

    /// Stopping, killing or starting a local process failed.
    #[error("could not {action} process `{process}`: {source}")]
    Process {
        process: String,
        /// `stop`, `kill` or `start`.
        action: &'static str,
        #[source]
        source: BoxError,
    },

    /// The fault proxy could not listen on its address.
    #[error("fault proxy on {addr}: {source}")]
    Proxy {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// `recover` was given a fault that another backend injected.
    #[error("fault `{name}` was not injected by the {backend} backend")]
    ForeignFault { name: String, backend: &'static str },
}

impl ChaosError {
    /// A short, bounded label for metrics and Kubernetes event reasons: never
    /// an instance name or a Debug string.
    pub fn category(&self) -> &'static str {
        match self {
            ChaosError::Unsupported { .. } => "unsupported",
            ChaosError::InvalidFault { .. } => "invalid_fault",
            ChaosError::Process { .. } => "process",
            ChaosError::Proxy { .. } => "proxy",
            ChaosError::ForeignFault { .. } => "foreign_fault",
        }
    }

    /// A process controller failed to `action` (`stop`, `kill` or `start`)
    /// the process called `process`. For implementations of
    /// [`LocalProcess`](crate::LocalProcess) outside this crate.
    pub fn process(
        process: impl Into<String>,
        action: &'static str,
        source: impl Into<BoxError>,
    ) -> Self {
        ChaosError::Process {
            process: process.into(),
            action,
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_fault_and_target() {
        let err = ChaosError::Unsupported {
            fault: FaultKind::Delay,
            target: Target::Catalog,
            missing: "fault proxy",
        };
        assert_eq!(
            err.to_string(),
            "cannot inject Delay on `catalog`: no fault proxy is registered for `catalog`"
        );
        assert_eq!(err.category(), "unsupported");

        let err = ChaosError::process("postgres", "stop", "pg_ctl exited with status 1");
        assert_eq!(
            err.to_string(),
            "could not stop process `postgres`: pg_ctl exited with status 1"
        );
        assert_eq!(err.category(), "process");
    }
}
