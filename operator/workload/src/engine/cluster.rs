//! The cluster platform: the experiment of one CommunicationPattern, run by
//! the operator's runner Job (`commlab experiment --in-cluster`) against the
//! components the operator deployed.
//!
//! # What the runner does
//!
//! ```text
//!   read the CommunicationPattern ─▶ check generation and uid ─▶ ClusterPlatform::deploy
//!   (kube, its own ServiceAccount)   (a stale runner stops)      (/readyz of orders and catalog,
//!                                                                 leftover chaos removed)
//!        ─▶ run_experiment (the same engine as `commlab compare`, faults as Chaos Mesh objects)
//!        ─▶ ConfigMap `<name>-report` (server-side apply, owned by the CommunicationPattern)
//! ```
//!
//! - Targets are the operator's Services ([`service_targets`]):
//!   `http://<name>-orders.<ns>.svc` and `http://<name>-catalog.<ns>.svc`
//!   (port 80), `nats://<name>-broker.<ns>.svc:4222` for the patterns with a
//!   broker. Each can be overridden ([`TargetOverrides`]), which is how the
//!   tests point a runner at loopback processes.
//! - Faults go through the cluster backend the operator chose
//!   ([`ClusterBackendArgs`](commlab_chaos::ClusterBackendArgs)): Chaos
//!   Mesh's objects through the Kubernetes API, or the same objects through
//!   the Chaos Mesh dashboard's API. Either way they are scoped to the
//!   namespace and the CommunicationPattern and owned by it, and the
//!   operator's finalizer deletes whatever is left when it is deleted.
//! - The report is one [`Report`] with one pattern, written by
//!   [`ReportWriter`] into ConfigMap `<name>-report`, key [`REPORT_KEY`],
//!   labelled with the generation it measured ([`GENERATION_LABEL`]): the
//!   operator only trusts a report of the current generation.
//!
//! # RBAC
//!
//! The runner's Role (operator/controller/src/experiment.rs) allows exactly
//! this: `get` on its CommunicationPattern; `create`, `get`, `list`,
//! `delete` on `podchaos` and `networkchaos` (not with the dashboard
//! backend, whose token carries those rights); `create` on ConfigMaps and
//! `get`/`patch`/`update` on `<name>-report`. A server-side apply that
//! creates the ConfigMap is authorized as `patch` of that name and then as
//! `create`. The owner references carry no `blockOwnerDeletion`, which would
//! need `update` on `communicationpatterns/finalizers`.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use commlab_api::{CommunicationPattern, Pattern};
use commlab_chaos::{ChaosError, FaultBackend};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    config::KubeConfigOptions,
};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::{Deployment, EngineError, Experiment, Platform, Targets};
use crate::report::{MAX_REPORT_BYTES, Report, ReportError};

/// Key of the report in the report ConfigMap (the operator reads it).
pub const REPORT_KEY: &str = "report.json";
/// Label on the report ConfigMap: the generation the experiment measured.
pub const GENERATION_LABEL: &str = "commlab.dev/generation";
/// `app.kubernetes.io/managed-by` of what the runner writes. Not the
/// operator's `commlab-operator`: the operator prunes its own children, and
/// the report is the runner's.
pub const RUNNER_MANAGER: &str = "commlab-runner";
/// `app.kubernetes.io/component` of the report ConfigMap.
pub const REPORT_COMPONENT: &str = "report";
/// How long the components may take to answer `/readyz` by default.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Port of the orders and catalog Services (operator/controller/src/children).
pub const SERVICE_PORT: u16 = 80;
/// Port of the broker's Service.
pub const BROKER_PORT: u16 = 4222;

/// Bounds every request the runner makes to the Kubernetes API.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a runner stopped without a report.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// No Kubernetes configuration: neither a pod nor `KUBECONFIG`.
    #[error("{0}")]
    Config(String),
    #[error("could not {action}: {source}")]
    Kubernetes {
        action: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("timed out after {after:?} trying to {action}")]
    Timeout { action: String, after: Duration },
    #[error("CommunicationPattern {namespace}/{name} does not exist (it was deleted); stopping")]
    Deleted { namespace: String, name: String },
    /// Deleting a CommunicationPattern deletes its runner's ServiceAccount,
    /// Role and RoleBinding with it: the runner then cannot read it any more.
    #[error(
        "lost access to CommunicationPattern {namespace}/{name} ({source}): deleting it deletes \
         the runner's ServiceAccount and Role too, so it was most likely deleted; stopping"
    )]
    AccessLost {
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// The runner was started for another generation or another object.
    #[error("{0}")]
    Stale(Stale),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("could not write the report: {0}")]
    Report(#[from] ReportError),
    #[error("interrupted by {signal}: the chaos objects were cleaned up")]
    Interrupted { signal: &'static str },
    #[error("interrupted by {signal}, and cleaning the chaos objects up failed: {source}")]
    InterruptedDirty {
        signal: &'static str,
        #[source]
        source: Box<ChaosError>,
    },
    /// The input is wrong: nothing was started.
    #[error("{0}")]
    Invalid(String),
}

impl RunnerError {
    /// A short, bounded label for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            RunnerError::Config(_) => "config",
            RunnerError::Kubernetes { .. } => "kubernetes",
            RunnerError::Timeout { .. } => "timeout",
            RunnerError::Deleted { .. } | RunnerError::AccessLost { .. } => "deleted",
            RunnerError::Stale(_) => "stale",
            RunnerError::Engine(error) => error.category(),
            RunnerError::Report(error) => error.category(),
            RunnerError::Interrupted { .. } | RunnerError::InterruptedDirty { .. } => "interrupted",
            RunnerError::Invalid(_) => "invalid",
        }
    }

    /// 2 for invalid input, 128 + the signal's number when interrupted
    /// (130 SIGINT, 143 SIGTERM), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunnerError::Invalid(_) | RunnerError::Engine(EngineError::Invalid(_)) => 2,
            RunnerError::Interrupted { signal } | RunnerError::InterruptedDirty { signal, .. } => {
                if *signal == "SIGINT" {
                    130
                } else {
                    143
                }
            }
            _ => 1,
        }
    }

    fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        RunnerError::Kubernetes {
            action: action.into(),
            source: Box::new(source),
        }
    }
}

/// Why this runner is not the one the CommunicationPattern wants now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    #[error(
        "this runner was started for generation {runner} of {name}, but it is at generation {current} now: \
         the runner Job of generation {current} measures the current spec; stopping"
    )]
    Generation {
        name: String,
        runner: i64,
        current: i64,
    },
    #[error(
        "this runner was started for {name} with uid {runner}, but {name} now has uid {current} \
         (it was deleted and created again); stopping"
    )]
    Recreated {
        name: String,
        runner: String,
        current: String,
    },
    /// Deletion has started: the operator's finalizer keeps the object
    /// while it deletes the experiment's chaos, and anything injected now
    /// could outlive it.
    #[error(
        "CommunicationPattern {name} is being deleted (it was deleted; the operator removes its \
         chaos experiments before it goes); stopping"
    )]
    Deleting { name: String },
}

/// A Kubernetes client: from `KUBECONFIG` when it is set, otherwise from the
/// pod's ServiceAccount (in-cluster configuration).
pub async fn client() -> Result<Client, RunnerError> {
    let config = if std::env::var_os("KUBECONFIG").is_some() {
        kube::Config::from_kubeconfig(&KubeConfigOptions::default())
            .await
            .map_err(|error| {
                RunnerError::Config(format!(
                    "could not read the kubeconfig in KUBECONFIG: {error}"
                ))
            })?
    } else {
        kube::Config::incluster().map_err(|error| {
            RunnerError::Config(format!(
                "not running in a pod ({error}) and KUBECONFIG is not set: \
                 `commlab experiment --in-cluster` needs one or the other"
            ))
        })?
    };
    Client::try_from(config).map_err(|error| {
        RunnerError::Config(format!("could not build a Kubernetes client: {error}"))
    })
}

/// Runs one request to the API server within [`REQUEST_TIMEOUT`].
async fn bounded<T>(
    action: impl Fn() -> String,
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, RunnerError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(result) => result.map_err(|error| RunnerError::kube(action(), error)),
        Err(_) => Err(RunnerError::Timeout {
            action: action(),
            after: REQUEST_TIMEOUT,
        }),
    }
}

/// The CommunicationPattern a runner works for.
#[derive(Clone)]
pub struct PatternHandle {
    api: Api<CommunicationPattern>,
    namespace: String,
    name: String,
}

impl PatternHandle {
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// Reads it; [`RunnerError::Deleted`] when it does not exist.
    pub async fn read(&self) -> Result<CommunicationPattern, RunnerError> {
        let found = bounded(
            || format!("read CommunicationPattern {}/{}", self.namespace, self.name),
            self.api.get_opt(&self.name),
        )
        .await?;
        found.ok_or_else(|| RunnerError::Deleted {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        })
    }

    /// Why a runner for `generation` of the object `uid` should stop now:
    /// the CommunicationPattern is gone ([`RunnerError::Deleted`], or
    /// [`RunnerError::AccessLost`] when the runner's own RBAC went with it),
    /// was created again or is at another generation ([`RunnerError::Stale`]).
    /// `None` while the runner is current, and when the API server cannot
    /// be asked (a transient error, logged): only what it says about the
    /// object stops the runner.
    pub async fn why_stop(&self, generation: i64, uid: &str) -> Option<RunnerError> {
        match self.read().await {
            Ok(cp) => check_runner(&cp, generation, Some(uid))
                .err()
                .map(RunnerError::Stale),
            Err(deleted @ RunnerError::Deleted { .. }) => Some(deleted),
            Err(RunnerError::Kubernetes { source, .. }) if access_denied(&source) => {
                Some(RunnerError::AccessLost {
                    namespace: self.namespace.clone(),
                    name: self.name.clone(),
                    source,
                })
            }
            Err(error) => {
                warn!(%error, "could not check the CommunicationPattern");
                None
            }
        }
    }

    /// Returns once the runner should stop ([`PatternHandle::why_stop`]),
    /// asking every `every`.
    pub async fn changed(&self, generation: i64, uid: &str, every: Duration) -> RunnerError {
        loop {
            tokio::time::sleep(every).await;
            if let Some(stop) = self.why_stop(generation, uid).await {
                return stop;
            }
        }
    }
}

/// 401 or 403: this ServiceAccount may no longer read what it could.
fn access_denied(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 401 || status.code == 403)
}

/// Whether a runner started for `generation` (and, when given, for the
/// object with uid `owner_uid`) still works for `cp`.
pub fn check_runner(
    cp: &CommunicationPattern,
    generation: i64,
    owner_uid: Option<&str>,
) -> Result<(), Stale> {
    let name = cp.name_any();
    if cp.metadata.deletion_timestamp.is_some() {
        return Err(Stale::Deleting { name });
    }
    if let (Some(runner), Some(current)) = (owner_uid.filter(|uid| !uid.is_empty()), cp.uid())
        && runner != current
    {
        return Err(Stale::Recreated {
            name,
            runner: runner.to_owned(),
            current,
        });
    }
    let current = cp.metadata.generation.unwrap_or_default();
    if current != generation {
        return Err(Stale::Generation {
            name,
            runner: generation,
            current,
        });
    }
    Ok(())
}

/// Where a component answers when not at its Service, e.g. a test's
/// loopback process (kwok runs no containers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetOverrides {
    pub orders: Option<String>,
    pub catalog: Option<String>,
    pub broker: Option<String>,
}

/// The operator's Services of CommunicationPattern `instance` in `namespace`
/// (the names of operator/controller/src/children), with `overrides`.
pub fn service_targets(
    namespace: &str,
    instance: &str,
    pattern: Pattern,
    overrides: &TargetOverrides,
) -> Targets {
    let service = |component: &str| format!("{instance}-{component}.{namespace}.svc");
    let http = |component: &str| match SERVICE_PORT {
        80 => format!("http://{}", service(component)),
        port => format!("http://{}:{port}", service(component)),
    };
    Targets {
        orders: vec![overrides.orders.clone().unwrap_or_else(|| http("orders"))],
        catalog: vec![overrides.catalog.clone().unwrap_or_else(|| http("catalog"))],
        broker: pattern.needs_broker().then(|| {
            overrides
                .broker
                .clone()
                .unwrap_or_else(|| format!("nats://{}:{BROKER_PORT}", service("broker")))
        }),
    }
}

/// The components of one CommunicationPattern, deployed by the operator;
/// faults through a cluster backend (Chaos Mesh or its dashboard).
pub struct ClusterPlatform {
    targets: Targets,
    backend: Arc<dyn FaultBackend>,
    ready_timeout: Duration,
}

impl ClusterPlatform {
    /// The pattern at `targets`, its faults through `backend` (scoped to the
    /// CommunicationPattern, owned by it).
    pub fn new(targets: Targets, backend: Arc<dyn FaultBackend>) -> Self {
        Self {
            targets,
            backend,
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }

    /// How long `deploy` waits for `/readyz` of orders and catalog.
    pub fn with_ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    pub fn targets(&self) -> &Targets {
        &self.targets
    }
}

fn cleanup_failed(source: ChaosError) -> EngineError {
    EngineError::Fault {
        fault: "cleanup".into(),
        action: "undo",
        source: Box::new(source),
    }
}

#[async_trait]
impl Platform for ClusterPlatform {
    fn name(&self) -> &'static str {
        "cluster"
    }

    /// The operator deployed the components: waits until orders and catalog
    /// answer `/readyz`, then removes the chaos objects an interrupted
    /// earlier run of this CommunicationPattern may have left.
    async fn deploy(
        &mut self,
        _experiment: &Experiment,
    ) -> Result<Box<dyn Deployment>, EngineError> {
        let urls: Vec<String> = self
            .targets
            .orders
            .iter()
            .chain(&self.targets.catalog)
            .cloned()
            .collect();
        super::run::wait_ready(&urls, self.ready_timeout).await?;
        self.backend.cleanup().await.map_err(cleanup_failed)?;
        Ok(Box::new(ClusterDeployment {
            targets: self.targets.clone(),
            backend: self.backend.clone(),
        }))
    }
}

struct ClusterDeployment {
    targets: Targets,
    backend: Arc<dyn FaultBackend>,
}

#[async_trait]
impl Deployment for ClusterDeployment {
    fn targets(&self) -> &Targets {
        &self.targets
    }

    fn fault_backend(&self) -> Arc<dyn FaultBackend> {
        self.backend.clone()
    }

    /// Deletes every chaos object of the experiment; the components stay
    /// (they are the operator's).
    async fn teardown(self: Box<Self>) -> Result<(), EngineError> {
        self.backend.cleanup().await.map_err(cleanup_failed)
    }
}

/// The report as the ConfigMap's JSON: compact and within
/// [`MAX_REPORT_BYTES`]; when too long, without the per-second timelines
/// (the summary the operator reads is kept), and refused only when even that
/// is too long.
pub fn report_json(report: &Report) -> Result<String, ReportError> {
    match report.to_json_within(MAX_REPORT_BYTES) {
        Err(ReportError::TooLarge { size, .. }) => {
            warn!(
                size,
                limit = MAX_REPORT_BYTES,
                "the report is too long for a ConfigMap: leaving the per-second timeline out"
            );
            let mut shorter = report.clone();
            for pattern in &mut shorter.patterns {
                pattern.timeline.clear();
            }
            shorter.to_json_within(MAX_REPORT_BYTES)
        }
        other => other,
    }
}

/// The report ConfigMap as a server-side apply body: `<instance>-report`,
/// key [`REPORT_KEY`], the runner's labels and the generation, owned by the
/// CommunicationPattern (`owner`).
pub fn report_config_map(
    namespace: &str,
    instance: &str,
    generation: i64,
    owner: &OwnerReference,
    report_json: &str,
) -> Value {
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name", "commlab".to_owned()),
        ("app.kubernetes.io/instance", instance.to_owned()),
        ("app.kubernetes.io/component", REPORT_COMPONENT.to_owned()),
        ("app.kubernetes.io/managed-by", RUNNER_MANAGER.to_owned()),
        (GENERATION_LABEL, generation.to_string()),
    ]);
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": report_name(instance),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner],
        },
        "data": { REPORT_KEY: report_json },
    })
}

/// `<instance>-report`.
pub fn report_name(instance: &str) -> String {
    format!("{instance}-report")
}

/// Writes the report ConfigMap of one CommunicationPattern.
pub struct ReportWriter {
    client: Client,
    namespace: String,
    instance: String,
}

impl ReportWriter {
    pub fn new(client: Client, namespace: &str, instance: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
            instance: instance.to_owned(),
        }
    }

    /// Server-side applies the report ConfigMap (field manager
    /// [`RUNNER_MANAGER`]): creates it, or replaces the report of an earlier
    /// generation.
    pub async fn write(
        &self,
        report: &Report,
        generation: i64,
        owner: &OwnerReference,
    ) -> Result<String, RunnerError> {
        let json = report_json(report)?;
        let name = report_name(&self.instance);
        let body = report_config_map(&self.namespace, &self.instance, generation, owner, &json);
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(self.client.clone(), &self.namespace);
        bounded(
            || format!("write ConfigMap {}/{name}", self.namespace),
            api.patch(
                &name,
                &PatchParams::apply(RUNNER_MANAGER).force(),
                &Patch::Apply(&body),
            ),
        )
        .await?;
        info!(
            config_map = %name,
            bytes = json.len(),
            generation,
            "report written"
        );
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use commlab_api::CommunicationPatternSpec;
    use kube::Resource;

    use super::*;

    fn cp(generation: i64, uid: &str) -> CommunicationPattern {
        let spec: CommunicationPatternSpec =
            serde_json::from_value(json!({ "pattern": "DirectApiCall" })).unwrap();
        let mut cp = CommunicationPattern::new("shop", spec);
        cp.meta_mut().namespace = Some("lab".into());
        cp.meta_mut().uid = Some(uid.into());
        cp.meta_mut().generation = Some(generation);
        cp
    }

    #[test]
    fn targets_are_the_operators_services_unless_overridden() {
        let targets = service_targets(
            "lab",
            "shop",
            Pattern::CacheWithUpdateEvents,
            &TargetOverrides::default(),
        );
        assert_eq!(targets.orders, ["http://shop-orders.lab.svc"]);
        assert_eq!(targets.catalog, ["http://shop-catalog.lab.svc"]);
        assert_eq!(
            targets.broker.as_deref(),
            Some("nats://shop-broker.lab.svc:4222")
        );

        let overrides = TargetOverrides {
            orders: Some("http://127.0.0.1:8081".into()),
            catalog: Some("http://127.0.0.1:8082".into()),
            broker: Some("nats://127.0.0.1:4333".into()),
        };
        let direct = service_targets("lab", "shop", Pattern::DirectApiCall, &overrides);
        assert_eq!(direct.orders, ["http://127.0.0.1:8081"]);
        assert_eq!(direct.catalog, ["http://127.0.0.1:8082"]);
        assert_eq!(direct.broker, None, "DirectApiCall has no broker");
    }

    #[test]
    fn a_runner_of_another_generation_or_object_is_stale() {
        assert_eq!(check_runner(&cp(3, "u1"), 3, Some("u1")), Ok(()));
        assert_eq!(check_runner(&cp(3, "u1"), 3, None), Ok(()));
        assert_eq!(check_runner(&cp(3, "u1"), 3, Some("")), Ok(()));
        let stale = check_runner(&cp(4, "u1"), 3, Some("u1")).unwrap_err();
        assert_eq!(
            stale,
            Stale::Generation {
                name: "shop".into(),
                runner: 3,
                current: 4
            }
        );
        assert!(
            stale.to_string().starts_with(
                "this runner was started for generation 3 of shop, but it is at generation 4"
            ),
            "{stale}"
        );
        let recreated = check_runner(&cp(1, "u2"), 1, Some("u1")).unwrap_err();
        assert!(matches!(recreated, Stale::Recreated { .. }));
        assert!(recreated.to_string().contains("deleted and created again"));
        let mut deleting = cp(3, "u1");
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_eq!(
            check_runner(&deleting, 3, Some("u1")),
            Err(Stale::Deleting {
                name: "shop".into()
            })
        );
    }

    #[test]
    fn the_report_config_map_is_the_runners_labelled_with_its_generation() {
        let cp = cp(7, "uid-7");
        let owner = cp.controller_owner_ref(&()).unwrap();
        let body = report_config_map("lab", "shop", 7, &owner, r#"{"schema":"x"}"#);
        assert_eq!(
            body,
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "shop-report",
                    "namespace": "lab",
                    "labels": {
                        "app.kubernetes.io/name": "commlab",
                        "app.kubernetes.io/instance": "shop",
                        "app.kubernetes.io/component": "report",
                        "app.kubernetes.io/managed-by": "commlab-runner",
                        "commlab.dev/generation": "7",
                    },
                    "ownerReferences": [{
                        "apiVersion": "commlab.dev/v1alpha1",
                        "kind": "CommunicationPattern",
                        "name": "shop",
                        "uid": "uid-7",
                        "controller": true,
                    }],
                },
                "data": { "report.json": r#"{"schema":"x"}"# },
            })
        );
    }

    #[test]
    fn a_report_too_long_for_a_config_map_loses_its_timeline_first() {
        let mut report = crate::report::fixtures::comparison();
        let short = report_json(&report).unwrap();
        assert_eq!(Report::from_json(&short).unwrap(), report, "kept whole");

        // About 100 bytes a row: 12 000 rows of six patterns is over 1 MB.
        for pattern in &mut report.patterns {
            pattern.timeline = crate::report::fixtures::timeline(12_000);
        }
        assert!(report.to_json().len() > MAX_REPORT_BYTES);
        let shortened = Report::from_json(&report_json(&report).unwrap()).unwrap();
        assert!(shortened.patterns.iter().all(|p| p.timeline.is_empty()));
        assert_eq!(shortened.patterns[0].baseline, report.patterns[0].baseline);
    }

    #[test]
    fn exit_codes_tell_signals_and_invalid_input_apart() {
        assert_eq!(
            RunnerError::Interrupted { signal: "SIGTERM" }.exit_code(),
            143
        );
        assert_eq!(
            RunnerError::Interrupted { signal: "SIGINT" }.exit_code(),
            130
        );
        assert_eq!(RunnerError::Invalid("x".into()).exit_code(), 2);
        assert_eq!(
            RunnerError::Stale(Stale::Generation {
                name: "shop".into(),
                runner: 1,
                current: 2
            })
            .exit_code(),
            1
        );
    }
}
