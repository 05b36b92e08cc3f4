//! The one error type of the workload library. Each variant says which
//! dependency failed and how, so that orders can answer its own clients with
//! the status the protocol promises (`503` when a dependency is down, `504`
//! when it is too slow) and so that metrics and logs can use a bounded
//! [`Error::category`].

use std::{fmt, time::Duration};

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};

use crate::services::protocol::{ErrorBody, ProductId};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Something a service needs on its request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dependency {
    Orders,
    Catalog,
    Database,
    Broker,
}

impl Dependency {
    pub fn as_str(self) -> &'static str {
        match self {
            Dependency::Orders => "orders",
            Dependency::Catalog => "catalog",
            Dependency::Database => "database",
            Dependency::Broker => "broker",
        }
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A dependency refused, failed or is not connected.
    #[error("{dependency} is unavailable: {reason}")]
    Unavailable {
        dependency: Dependency,
        reason: String,
    },

    /// A dependency did not answer in time.
    #[error("{dependency} did not answer within {timeout:?}")]
    Timeout {
        dependency: Dependency,
        timeout: Duration,
    },

    /// The service is still starting (see its `/readyz`).
    #[error("not ready yet: {0}")]
    NotReady(&'static str),

    #[error("product {0} does not exist")]
    UnknownProduct(ProductId),

    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The service was started with flags that do not fit its pattern.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A server or tool this machine needs is not installed.
    #[error(
        "`{binary}` was not found: install the Debian package `{package}` (apt-get install {package})"
    )]
    MissingBinary {
        binary: String,
        package: &'static str,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A local process did not start, or did not become ready in time.
    #[error("{process}: {detail}")]
    Process { process: String, detail: String },
}

impl Error {
    pub fn unavailable(dependency: Dependency, reason: impl fmt::Display) -> Self {
        Error::Unavailable {
            dependency,
            reason: reason.to_string(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn process(process: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Process {
            process: process.into(),
            detail: detail.into(),
        }
    }

    /// A short, bounded label for metrics and log fields: never the message itself.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Unavailable {
                dependency: Dependency::Orders,
                ..
            } => "orders-unavailable",
            Error::Unavailable {
                dependency: Dependency::Catalog,
                ..
            } => "catalog-unavailable",
            Error::Unavailable {
                dependency: Dependency::Database,
                ..
            } => "database-unavailable",
            Error::Unavailable {
                dependency: Dependency::Broker,
                ..
            } => "broker-unavailable",
            Error::Timeout {
                dependency: Dependency::Orders,
                ..
            } => "orders-timeout",
            Error::Timeout {
                dependency: Dependency::Catalog,
                ..
            } => "catalog-timeout",
            Error::Timeout {
                dependency: Dependency::Database,
                ..
            } => "database-timeout",
            Error::Timeout {
                dependency: Dependency::Broker,
                ..
            } => "broker-timeout",
            Error::NotReady(_) => "not-ready",
            Error::UnknownProduct(_) => "unknown-product",
            Error::InvalidRequest(_) => "invalid-request",
            Error::Config(_) => "config",
            Error::MissingBinary { .. } => "missing-binary",
            Error::Io { .. } => "io",
            Error::Process { .. } => "process",
        }
    }

    /// The HTTP status a service answers with, as docs/protocol.md says:
    /// a dependency that is down is `503`, one that is too slow is `504`.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Unavailable { .. } | Error::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::UnknownProduct(_) => StatusCode::NOT_FOUND,
            Error::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Error::Config(_)
            | Error::MissingBinary { .. }
            | Error::Io { .. }
            | Error::Process { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        (
            self.status(),
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response()
    }
}

/// Runs `future` for at most `timeout`; running out is [`Error::Timeout`] of `dependency`.
pub async fn within<T>(
    dependency: Dependency,
    timeout: Duration,
    future: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(timeout, future)
        .await
        .map_err(|_| Error::Timeout {
            dependency,
            timeout,
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_failures_map_to_the_protocol_statuses() {
        let down = Error::unavailable(Dependency::Catalog, "connection refused");
        let slow = Error::Timeout {
            dependency: Dependency::Broker,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(Error::UnknownProduct(7).status(), StatusCode::NOT_FOUND);
        assert_eq!(down.category(), "catalog-unavailable");
        assert_eq!(slow.category(), "broker-timeout");
    }

    #[test]
    fn a_missing_binary_names_the_debian_package() {
        let error = Error::MissingBinary {
            binary: "nats-server".into(),
            package: "nats-server",
        };
        assert!(
            error.to_string().contains("apt-get install nats-server"),
            "{error}"
        );
    }
}
