//! The commlab operator as a library: `main.rs` parses arguments and calls
//! [`run`]; everything else lives here, with tests.

pub mod apply;
pub mod cache;
pub mod children;
pub mod comparison;
pub mod config;
pub mod context;
pub mod error;
pub mod experiment;
pub mod finalizer;
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
    core::v1::{ConfigMap, Secret, Service, ServiceAccount},
    rbac::v1::{Role, RoleBinding},
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
    let ns = options.namespace.as_deref();
    // Children are watched by label only, so the operator's caches hold its
    // own objects and not every Secret of the cluster.
    let owned =
        watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
    // The report ConfigMap is the runner's (`commlab-runner`, never pruned
    // by the operator); watched too, so a report is summarised when written.
    let config_maps_and_reports = watcher::Config::default().labels(&format!(
        "{} in ({},{})",
        labels::MANAGED_BY,
        labels::MANAGER,
        commlab_workload::engine::cluster::RUNNER_MANAGER
    ));
    let (secrets, secrets_changed) =
        cache::objects::<Secret>(scoped(&client, ns), owned.clone(), cache::whole);
    let (jobs, jobs_changed) = cache::objects::<Job>(
        scoped(&client, ns),
        owned.clone(),
        cache::without_pod_template,
    );
    let (config_maps, config_maps_changed) =
        cache::objects::<ConfigMap>(scoped(&client, ns), config_maps_and_reports, cache::whole);
    let (deployments, deployments_changed) = cache::objects::<Deployment>(
        scoped(&client, ns),
        owned.clone(),
        cache::without_pod_template,
    );
    let (stateful_sets, stateful_sets_changed) = cache::objects::<StatefulSet>(
        scoped(&client, ns),
        owned.clone(),
        cache::without_pod_template,
    );
    let (services, services_changed) =
        cache::objects::<Service>(scoped(&client, ns), owned.clone(), cache::whole);
    let (service_accounts, service_accounts_changed) =
        cache::objects::<ServiceAccount>(scoped(&client, ns), owned.clone(), cache::whole);
    let (roles, roles_changed) =
        cache::objects::<Role>(scoped(&client, ns), owned.clone(), cache::whole);
    let (role_bindings, role_bindings_changed) =
        cache::objects::<RoleBinding>(scoped(&client, ns), owned.clone(), cache::whole);
    let ctx = Arc::new(context::Context {
        client: client.clone(),
        config: options.config,
        recorder: Recorder::new(client.clone(), reporter),
        metrics,
        backoff: context::Backoff::default(),
        last_applied: apply::LastApplied::default(),
        cache: cache::Cache {
            secrets,
            jobs,
            config_maps,
            deployments,
            stateful_sets,
            services,
            service_accounts,
            roles,
            role_bindings,
        },
    });
    let (patterns, patterns_changed) = cache::spec_or_lifecycle_changes::<
        DeserializeGuard<CommunicationPattern>,
    >(scoped(&client, ns));
    let patterns_controller = Controller::for_stream(patterns_changed, patterns)
        // A rollout changes a Deployment's status several times a second; the
        // debounce turns such a burst into one reconcile, which keeps the
        // queue short when many objects deploy at once.
        .with_config(
            controller::Config::default()
                .concurrency(options.concurrency)
                .debounce(std::time::Duration::from_secs(1)),
        )
        // Every child's watch fills the cache and triggers its owner.
        .owns_stream(deployments_changed)
        .owns_stream(stateful_sets_changed)
        .owns_stream(services_changed)
        .owns_stream(secrets_changed)
        .owns_stream(config_maps_changed)
        .owns_stream(jobs_changed)
        .owns_stream(service_accounts_changed)
        .owns_stream(roles_changed)
        .owns_stream(role_bindings_changed)
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
        .for_each(|result| {
            if let Err(controller::Error::QueueError(error)) = &result {
                ctx.metrics.watch_failed(error::watch_category(error));
            }
            log_result(result)
        });
    let comparisons: Api<DeserializeGuard<PatternComparison>> = scoped(&client, ns);
    let comparisons_controller =
        Controller::new(comparisons, watcher::Config::default().any_semantic())
            .with_config(controller::Config::default().concurrency(options.concurrency))
            .owns(scoped::<CommunicationPattern>(&client, ns), owned)
            .shutdown_on_signal()
            .run(comparison::reconcile, comparison::error_policy, ctx.clone())
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
