//! `commlab experiment --in-cluster`: the operator's runner Job. Runs the
//! experiment of one CommunicationPattern with the engine of `commlab
//! compare` on a [`ClusterPlatform`] and writes the report into ConfigMap
//! `<name>-report` (see [`crate::engine::cluster`]).
//!
//! - It stops, with a message saying why, when its CommunicationPattern is
//!   gone (or the runner lost access to it: its ServiceAccount and Role are
//!   deleted with it), was created again (another uid than
//!   `COMMLAB_OWNER_UID`) or is at another generation than
//!   `COMMLAB_GENERATION`: at the start, while the experiment runs (read
//!   every [`WATCH_EVERY`]), when the experiment fails, and before it
//!   writes the report.
//! - Faults go through the backend of `--chaos-backend`
//!   (`COMMLAB_CHAOS_BACKEND`): Chaos Mesh's objects through the Kubernetes
//!   API (`chaosMesh`, the default), or through the Chaos Mesh dashboard
//!   (`dashboard`, at `--chaos-dashboard-url` with the bearer token from
//!   `COMMLAB_CHAOS_DASHBOARD_TOKEN`), see [`ClusterBackendArgs`]. Each
//!   fault is confirmed from Chaos Mesh's own status within
//!   `--chaos-confirm-timeout` (`COMMLAB_CHAOS_CONFIRM_TIMEOUT`); one that is
//!   not is reported as not applied, with Chaos Mesh's reason.
//! - Every way out deletes the chaos objects of the experiment: success,
//!   an error of the engine, SIGTERM (a deleted Job, `activeDeadlineSeconds`)
//!   and Ctrl-C. They are owned by the CommunicationPattern as well, and the
//!   operator's finalizer deletes what is left when it is deleted.
//! - Errors exit non-zero ([`RunnerError::exit_code`]); logs go to stderr
//!   (`COMMLAB_LOG_FORMAT=json` for JSON lines).

use std::{sync::Arc, time::Duration};

use commlab_api::Duration as SpecDuration;
use commlab_chaos::{ChaosScope, ClusterBackendArgs};
use kube::{Resource, ResourceExt};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::engine::{
    ClusterPlatform, EngineError, Experiment, Logged,
    cluster::{
        self, PatternHandle, ReportWriter, RunnerError, TargetOverrides, check_runner,
        service_targets,
    },
    run_comparison,
};

/// How often the runner reads its CommunicationPattern while it runs.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);
/// How long deleting the chaos objects may take after a signal (a pod gets
/// 30 s between SIGTERM and SIGKILL by default).
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Bounds every request of the chaos backend.
const CHAOS_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `commlab experiment`: the experiment of one CommunicationPattern, as the
/// operator's runner Job.
#[derive(Clone, Debug, clap::Args)]
pub struct ExperimentArgs {
    /// Run against a CommunicationPattern in a cluster, with the pod's
    /// ServiceAccount (or KUBECONFIG when set). Required: on this machine,
    /// run a manifest with `commlab run FILE`.
    #[arg(long)]
    pub in_cluster: bool,
    /// The CommunicationPattern's namespace.
    #[arg(long)]
    pub namespace: String,
    /// The CommunicationPattern's name.
    #[arg(long)]
    pub name: String,
    /// The generation this runner measures (the operator sets it); a runner
    /// of another generation stops. Default: the current one.
    #[arg(long, env = "COMMLAB_GENERATION")]
    pub generation: Option<i64>,
    /// The CommunicationPattern's uid (the operator sets it); a runner of an
    /// object deleted and created again stops.
    #[arg(long, env = "COMMLAB_OWNER_UID")]
    pub owner_uid: Option<String>,
    /// orders' URL instead of its Service `http://<name>-orders.<namespace>.svc`.
    #[arg(long)]
    pub orders_url: Option<String>,
    /// catalog's URL instead of its Service `http://<name>-catalog.<namespace>.svc`.
    #[arg(long)]
    pub catalog_url: Option<String>,
    /// The broker's URL instead of `nats://<name>-broker.<namespace>.svc:4222`.
    #[arg(long)]
    pub broker_url: Option<String>,
    /// How long orders and catalog may take to answer `/readyz`.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub ready_timeout: SpecDuration,
    #[command(flatten)]
    pub chaos: ClusterBackendArgs,
}

fn parse_duration(text: &str) -> Result<SpecDuration, String> {
    text.parse()
        .map_err(|error: commlab_api::DurationError| error.to_string())
}

/// Runs `commlab experiment`.
pub async fn experiment(args: ExperimentArgs) -> Result<(), RunnerError> {
    if !args.in_cluster {
        return Err(RunnerError::Invalid(
            "commlab experiment runs the experiment of a CommunicationPattern in a cluster: \
             pass --in-cluster (on this machine, run a manifest with `commlab run FILE`)"
                .into(),
        ));
    }
    // Before anything is injected: from here on SIGTERM is ours to handle.
    let mut terminated = Terminated::listen()?;

    let client = cluster::client().await?;
    let pattern = PatternHandle::new(client.clone(), &args.namespace, &args.name);
    let cp = pattern.read().await?;
    let generation = args
        .generation
        .unwrap_or_else(|| cp.metadata.generation.unwrap_or_default());
    let owner_uid = args.owner_uid.as_deref().filter(|uid| !uid.is_empty());
    check_runner(&cp, generation, owner_uid).map_err(RunnerError::Stale)?;
    let uid = cp.uid().ok_or_else(|| {
        RunnerError::Invalid(format!("CommunicationPattern {} has no uid", args.name))
    })?;
    let owner = cp
        .controller_owner_ref(&())
        .expect("an object with a uid has an owner reference");

    let experiment = Experiment::from_spec(&cp.spec);
    experiment.validate()?;
    let overrides = TargetOverrides {
        orders: args.orders_url.clone(),
        catalog: args.catalog_url.clone(),
        broker: args.broker_url.clone(),
    };
    let targets = service_targets(&args.namespace, &args.name, cp.spec.pattern, &overrides);
    let backend = args
        .chaos
        .build(
            client.clone(),
            ChaosScope::new(&args.namespace, &args.name).with_owner(owner.clone()),
            CHAOS_REQUEST_TIMEOUT,
        )
        .map_err(|error| RunnerError::Invalid(error.to_string()))?;
    info!(
        chaos = backend.name(),
        namespace = %args.namespace,
        name = %args.name,
        generation,
        pattern = %cp.spec.pattern,
        orders = ?targets.orders,
        catalog = ?targets.catalog,
        broker = ?targets.broker,
        faults = experiment.chaos.len(),
        "running the experiment"
    );
    let mut platform = ClusterPlatform::new(targets, backend.clone())
        .with_ready_timeout(args.ready_timeout.as_std());

    let run = async {
        let outcome = run_comparison(
            &mut platform,
            std::slice::from_ref(&experiment),
            Arc::new(Logged),
        )
        .await;
        if let Some((_, error)) = outcome.failures.into_iter().next() {
            // A pattern deleted or changed meanwhile explains the failure best.
            return Err(match pattern.why_stop(generation, &uid).await {
                Some(stop) => {
                    warn!(%error, "the experiment failed");
                    stop
                }
                None => RunnerError::Engine(error),
            });
        }
        let report = outcome.report.ok_or_else(|| {
            RunnerError::Engine(EngineError::Internal(
                "the experiment made no report".into(),
            ))
        })?;
        // No report for a pattern deleted or changed meanwhile.
        if let Some(stop) = pattern.why_stop(generation, &uid).await {
            return Err(stop);
        }
        ReportWriter::new(client.clone(), &args.namespace, &args.name)
            .write(&report, generation, &owner)
            .await
    };
    let stopped = tokio::select! {
        written = run => return written.map(drop),
        changed = pattern.changed(generation, &uid, WATCH_EVERY) => changed,
        signal = terminated.recv() => RunnerError::Interrupted { signal },
    };
    // The experiment's future is dropped: delete what it injected.
    warn!(reason = %stopped, "stopping the experiment; deleting its chaos objects");
    let cleaned = tokio::time::timeout(CLEANUP_TIMEOUT, backend.cleanup()).await;
    match (stopped, cleaned) {
        (stopped, Ok(Ok(()))) => Err(stopped),
        (RunnerError::Interrupted { signal }, Ok(Err(source))) => {
            Err(RunnerError::InterruptedDirty {
                signal,
                source: Box::new(source),
            })
        }
        (stopped, Ok(Err(error))) => {
            warn!(%error, "deleting the chaos objects failed; Kubernetes deletes them with the CommunicationPattern");
            Err(stopped)
        }
        (stopped, Err(_)) => {
            warn!(after = ?CLEANUP_TIMEOUT, "deleting the chaos objects timed out");
            Err(stopped)
        }
    }
}

/// SIGTERM and SIGINT, listened to from the start so that neither kills the
/// process with chaos objects in force.
struct Terminated {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Terminated {
    fn listen() -> Result<Self, RunnerError> {
        let listen = |kind: SignalKind| {
            signal(kind).map_err(|error| {
                RunnerError::Invalid(format!("could not listen for signals: {error}"))
            })
        };
        Ok(Self {
            term: listen(SignalKind::terminate())?,
            interrupt: listen(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        experiment: ExperimentArgs,
    }

    #[test]
    fn the_operators_arguments_parse() {
        let args = Cli::try_parse_from([
            "experiment",
            "--in-cluster",
            "--namespace",
            "lab",
            "--name",
            "shop",
            "--generation",
            "3",
            "--orders-url",
            "http://127.0.0.1:1",
        ])
        .unwrap()
        .experiment;
        assert!(args.in_cluster);
        assert_eq!(args.generation, Some(3));
        assert_eq!(args.orders_url.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(args.catalog_url, None);
        assert_eq!(args.ready_timeout.as_std(), Duration::from_secs(120));
        assert!(!args.chaos.is_dashboard(), "Chaos Mesh's CRDs by default");
    }

    #[test]
    fn the_dashboard_backend_is_chosen_with_its_url() {
        let args = Cli::try_parse_from([
            "experiment",
            "--in-cluster",
            "--namespace",
            "lab",
            "--name",
            "shop",
            "--chaos-backend",
            "dashboard",
            "--chaos-dashboard-url",
            "http://chaos-dashboard.chaos-mesh.svc:2333",
        ])
        .unwrap()
        .experiment;
        assert!(args.chaos.is_dashboard());
        assert_eq!(
            args.chaos.dashboard_url.as_deref(),
            Some("http://chaos-dashboard.chaos-mesh.svc:2333")
        );
        // The token has no flag: a command line is visible to everyone.
        let error = Cli::try_parse_from([
            "experiment",
            "--namespace",
            "lab",
            "--name",
            "shop",
            "--chaos-dashboard-token",
            "s3cret",
        ])
        .err()
        .expect("no such flag");
        assert_eq!(error.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[tokio::test]
    async fn without_in_cluster_nothing_runs() {
        let args = Cli::try_parse_from(["experiment", "--namespace", "lab", "--name", "shop"])
            .unwrap()
            .experiment;
        let error = experiment(args).await.unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("--in-cluster"), "{error}");
    }
}
