//! The one error type of this crate.

use std::{error::Error as StdError, net::SocketAddr, time::Duration};

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

    /// A cluster backend was configured in a way it cannot work with, e.g.
    /// an `https://` dashboard URL.
    #[error("invalid chaos backend configuration: {reason}")]
    InvalidConfig { reason: String },

    /// A request took longer than the backend allows; nothing is left
    /// waiting on it.
    #[error("{request} did not answer within {after:?}")]
    Timeout { request: String, after: Duration },

    /// The cluster does not serve Chaos Mesh's API for this kind.
    #[error(
        "the cluster does not serve {kind} ({api_version}): is Chaos Mesh installed, with its CRDs?"
    )]
    ChaosMeshNotInstalled {
        kind: &'static str,
        api_version: &'static str,
    },

    /// A chaos object with the name commlab wants to use exists and was not
    /// created by commlab for this experiment, so it is left alone.
    #[error(
        "{kind} `{namespace}/{name}` exists and is not managed by commlab for `{instance}`; \
         not replacing it"
    )]
    NameTaken {
        kind: &'static str,
        namespace: String,
        name: String,
        instance: String,
    },

    /// A Kubernetes API request about chaos objects failed.
    #[error("could not {action} {object}: {source}")]
    Kubernetes {
        /// `create`, `get`, `list` or `delete`.
        action: &'static str,
        /// e.g. `PodChaos team-a/shop-catalog-down`.
        object: String,
        #[source]
        source: kube::Error,
    },

    /// The Chaos Mesh dashboard did not accept the token (HTTP 401): none
    /// was given while the dashboard's security mode is on, it is invalid or
    /// expired, or its account may not do this in the namespace (the
    /// dashboard answers 401, `no_namespace_privilege`, for that too).
    #[error("Chaos Mesh dashboard did not accept the token for {request}: {message}")]
    Unauthorized { request: String, message: String },

    /// Something in front of the Chaos Mesh dashboard (or the dashboard)
    /// forbade the request (HTTP 403).
    #[error("Chaos Mesh dashboard (or a proxy in front of it) forbade {request}: {message}")]
    Forbidden { request: String, message: String },

    /// The Chaos Mesh dashboard could not be reached or failed (connection
    /// refused or reset, HTTP 5xx).
    #[error("Chaos Mesh dashboard unavailable for {request}: {reason}")]
    DashboardUnavailable { request: String, reason: String },

    /// The Chaos Mesh dashboard rejected the request (HTTP 4xx other than
    /// 401 and 403), e.g. 400 for a malformed experiment.
    #[error("Chaos Mesh dashboard rejected {request} ({status}): {message}")]
    DashboardRejected {
        request: String,
        status: u16,
        message: String,
    },

    /// The Chaos Mesh dashboard answered something commlab cannot read,
    /// e.g. a list without the experiment just created.
    #[error("unexpected answer from the Chaos Mesh dashboard to {request}: {reason}")]
    DashboardProtocol { request: String, reason: String },
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
            ChaosError::InvalidConfig { .. } => "invalid_config",
            ChaosError::Timeout { .. } => "timeout",
            ChaosError::ChaosMeshNotInstalled { .. } => "chaos_mesh_not_installed",
            ChaosError::NameTaken { .. } => "name_taken",
            ChaosError::Kubernetes { .. } => "kubernetes",
            ChaosError::Unauthorized { .. } => "unauthorized",
            ChaosError::Forbidden { .. } => "forbidden",
            ChaosError::DashboardUnavailable { .. } => "dashboard_unavailable",
            ChaosError::DashboardRejected { .. } => "dashboard_rejected",
            ChaosError::DashboardProtocol { .. } => "dashboard_protocol",
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
