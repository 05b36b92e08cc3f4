//! What both services' HTTP servers share: health endpoints, readiness, the
//! graceful shutdown, and one HTTP client setup.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, http::StatusCode, routing::get};
use tokio::net::TcpListener;

use crate::error::{Error, Result};

/// Whether a service finished its start-up. Cloned into every task that takes
/// part in it; set once, never cleared (see the readiness rule in the protocol).
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set_ready(&self) {
        if !self.0.swap(true, Ordering::SeqCst) {
            tracing::info!("ready");
        }
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn status_of(ready: bool) -> StatusCode {
    if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// `/healthz` answers as long as the process serves HTTP.
pub fn healthz() -> Router {
    Router::new().route("/healthz", get(|| async { StatusCode::OK }))
}

/// Binds `listen`, serves `router` until `shutdown` completes, then lets the
/// requests in flight finish (axum's graceful shutdown).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let address = listener
        .local_addr()
        .map_err(|e| Error::io("reading the listen address", e))?;
    tracing::info!(%address, "listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::io("serving HTTP", e))
}

pub async fn bind(address: std::net::SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(|e| Error::io(format!("binding {address}"), e))
}

/// Completes on Ctrl-C or SIGTERM (what Kubernetes and the local runner send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// The HTTP client a service uses to call the other: every request bounded
/// by `timeout`, and never through a proxy (everything is on loopback or in
/// the cluster).
pub fn client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .map_err(|e| Error::Config(format!("building the HTTP client: {e}")))
}
