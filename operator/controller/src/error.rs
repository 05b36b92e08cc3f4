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
}

impl Error {
    /// A bounded label for metrics and Event reasons: never an instance name.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(status)) if status.code == 403 => "forbidden",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::Serialize { .. } => "serialize",
            Error::MissingField(_) => "malformed",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
