//! The commlab operator as a library: `main.rs` parses arguments and calls
//! [`run`]; everything else lives here, with tests.

pub mod apply;
pub mod children;
pub mod comparison;
pub mod config;
pub mod context;
pub mod error;
pub mod experiment;
pub mod http;
pub mod labels;
pub mod metrics;
pub mod reconcile;
pub mod status;
pub mod validate;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use commlab_api::{CommunicationPattern, PatternComparison};
use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    batch::v1::Job,
    core::v1::{ConfigMap, Secret, Service},
};
use kube::{
    Api, Client,
    core::DeserializeGuard,
    runtime::{
        Controller, controller,
        events::{Recorder, Reporter},
        watcher,
    },
};
use tracing::{info, warn};

pub use config::OperatorConfig;
pub use error::Error;

/// Name under which the operator records Events, `<kind>.commlab.dev`.
pub const CONTROLLER_NAME: &str = "communicationpattern.commlab.dev";

pub struct RunOptions {
    pub config: OperatorConfig,
    /// Address of the `/metrics`, `/healthz`, `/readyz` server.
    pub listen: SocketAddr,
    /// Most reconciles at once.
    pub concurrency: u16,
    /// Only watch this namespace; all namespaces when absent.
    pub namespace: Option<String>,
}

/// Runs the controller and its HTTP server until SIGTERM or Ctrl-C.
pub async fn run(client: Client, options: RunOptions) -> std::io::Result<()> {
    let metrics = Arc::new(metrics::Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let probe = http::Probe {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    info!(addr = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    let server = tokio::spawn(async move { axum::serve(listener, http::router(probe)).await });

    let reporter = Reporter {
        controller: CONTROLLER_NAME.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(context::Context {
        client: client.clone(),
        config: options.config,
        recorder: Recorder::new(client.clone(), reporter),
        metrics,
        backoff: context::Backoff::default(),
    });
    let ns = options.namespace.as_deref();
    let patterns: Api<DeserializeGuard<CommunicationPattern>> = scoped(&client, ns);
    // Children are watched by label only, so the operator's caches hold its
    // own objects and not every Secret of the cluster.
    let owned =
        watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
    // The report ConfigMap is the runner's (`commlab-runner`, never pruned
    // by the operator); watched too, so a report is summarised when written.
    let config_maps = watcher::Config::default().labels(&format!(
        "{} in ({},{})",
        labels::MANAGED_BY,
        labels::MANAGER,
        commlab_workload::engine::cluster::RUNNER_MANAGER
    ));
    let patterns_controller = Controller::new(patterns, watcher::Config::default().any_semantic())
        // A rollout changes a Deployment's status several times a second; the
        // debounce turns such a burst into one reconcile, which keeps the
        // queue short when many objects deploy at once.
        .with_config(
            controller::Config::default()
                .concurrency(options.concurrency)
                .debounce(std::time::Duration::from_secs(1)),
        )
        .owns(scoped::<Deployment>(&client, ns), owned.clone())
        .owns(scoped::<StatefulSet>(&client, ns), owned.clone())
        .owns(scoped::<Service>(&client, ns), owned.clone())
        .owns(scoped::<Secret>(&client, ns), owned.clone())
        .owns(scoped::<ConfigMap>(&client, ns), config_maps)
        .owns(scoped::<Job>(&client, ns), owned.clone())
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
        .for_each(log_result);
    let comparisons: Api<DeserializeGuard<PatternComparison>> = scoped(&client, ns);
    let comparisons_controller =
        Controller::new(comparisons, watcher::Config::default().any_semantic())
            .with_config(controller::Config::default().concurrency(options.concurrency))
            .owns(scoped::<CommunicationPattern>(&client, ns), owned)
            .shutdown_on_signal()
            .run(comparison::reconcile, comparison::error_policy, ctx)
            .for_each(log_result);
    ready.store(true, Ordering::Relaxed);
    futures::join!(patterns_controller, comparisons_controller);
    info!("controller stopped; shutting down");
    server.abort();
    Ok(())
}

/// An API over one namespace, or over all of them.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn log_result<T: std::fmt::Debug, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(error) = result {
        warn!(%error, "reconcile stream error");
    }
}
