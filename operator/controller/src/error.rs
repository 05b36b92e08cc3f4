use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("could not serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("object has no {0}")]
    MissingField(&'static str),
    /// Adding or removing the finalizer failed.
    #[error(
        "could not {action} finalizer {}: {source}",
        crate::finalizer::FINALIZER
    )]
    Finalizer {
        /// `add` or `remove`.
        action: &'static str,
        source: kube::Error,
    },
    /// Deleting the chaos experiments of a deleted CommunicationPattern
    /// failed; the finalizer stays and the cleanup is retried after `retry_in`.
    #[error("could not delete the chaos experiments: {source}")]
    ChaosCleanup {
        source: commlab_chaos::ChaosError,
        retry_in: std::time::Duration,
    },
}

impl Error {
    /// A bounded label for metrics and Event reasons: never an instance name.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(error) => kube_category(error),
            Error::Serialize { .. } => "serialize",
            Error::MissingField(_) => "malformed",
            Error::Finalizer {
                source: kube::Error::Api(status),
                ..
            } if status.code == 403 => "forbidden",
            Error::Finalizer { .. } => "finalizer",
            Error::ChaosCleanup { .. } => "chaos_cleanup",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The category of a failed API call.
fn kube_category(error: &kube::Error) -> &'static str {
    match error {
        kube::Error::Api(status) if status.code == 409 => "conflict",
        kube::Error::Api(status) if status.code == 403 => "forbidden",
        kube::Error::Api(_) => "api",
        _ => "transport",
    }
}

/// The category of a failed watch, e.g. `forbidden` when the operator's
/// RBAC lacks `list` or `watch` on a kind it caches.
pub fn watch_category(error: &kube::runtime::watcher::Error) -> &'static str {
    use kube::runtime::watcher::Error as Watch;
    match error {
        Watch::InitialListFailed(e) | Watch::WatchStartFailed(e) | Watch::WatchFailed(e) => {
            kube_category(e)
        }
        Watch::WatchError(status) if status.code == 403 => "forbidden",
        Watch::WatchError(_) => "api",
        Watch::NoResourceVersion => "malformed",
    }
}
