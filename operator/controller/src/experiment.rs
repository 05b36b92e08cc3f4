//! The experiment step: once every component is ready, a Job runs the same
//! engine as `commlab compare` (`commlab experiment --in-cluster`) against
//! the in-cluster Services, with its own ServiceAccount and a Role limited
//! to what it needs. The runner writes its report into a ConfigMap owned by
//! the CommunicationPattern; the operator summarises it into status.
//!
//! Faults go through the operator's chaos backend (`chaos.backend` in the
//! Helm values). With the Chaos Mesh dashboard, the runner gets the
//! dashboard's URL and its bearer token instead of rights on Chaos Mesh's
//! objects: the token lives in a Secret of the operator's namespace, which
//! a Job in another namespace cannot reference, so each pattern gets its
//! own copy ([`dashboard_token_secret`]).

use std::collections::BTreeMap;

use commlab_api::{CommunicationPattern, results::ExperimentResults};
use commlab_chaos::{ClusterBackendArgs, cluster_backend};
use commlab_workload::report::{Report, experiment_results};
use k8s_openapi::{
    ByteString,
    api::{
        batch::v1::Job,
        core::v1::{ConfigMap, Secret, ServiceAccount},
        rbac::v1::{Role, RoleBinding},
    },
};
use kube::ResourceExt;

use crate::children::{MetaFn, Names, from_json};

pub const RUNNER: &str = "runner";
/// Key of the report in the report ConfigMap (the runner writes it).
pub const REPORT_KEY: &str = commlab_workload::engine::cluster::REPORT_KEY;
/// Label on the report ConfigMap: the generation the experiment ran for.
pub const GENERATION_LABEL: &str = commlab_workload::engine::cluster::GENERATION_LABEL;
/// Key of the token in the runner's copy of the dashboard token.
pub const DASHBOARD_TOKEN_KEY: &str = "token";
/// Time the runner gets beyond warm-up and the run itself: deploy checks,
/// a capacity probe and writing the report.
const DEADLINE_MARGIN_SECS: u64 = 300;

impl Names {
    pub fn runner(&self) -> String {
        format!("{}-{RUNNER}", self.instance)
    }

    pub fn report(&self) -> String {
        format!("{}-report", self.instance)
    }

    /// One Job per generation: a spec change runs a new experiment, an
    /// unchanged object never reruns.
    pub fn experiment_job(&self, generation: i64) -> String {
        format!("{}-experiment-{generation}", self.instance)
    }

    /// The runner's copy of the Chaos Mesh dashboard's token.
    pub fn dashboard_token(&self) -> String {
        format!("{}-chaos-dashboard", self.instance)
    }
}

/// The runner's objects for one generation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunnerObjects {
    pub service_accounts: Vec<ServiceAccount>,
    pub roles: Vec<Role>,
    pub role_bindings: Vec<RoleBinding>,
    pub jobs: Vec<Job>,
}

pub struct RunnerInputs<'a> {
    pub image: &'a str,
    /// Extra labels for the runner's pod (tests use kwok's keep-running label).
    pub pod_labels: &'a BTreeMap<String, String>,
    /// Which backend the runner injects faults with.
    pub chaos: &'a ClusterBackendArgs,
}

/// The runner's copy of the dashboard's token, a child like the others
/// (owned, labelled, pruned when the backend changes); `None` unless the
/// dashboard backend with a token is configured. It is built with the
/// other children rather than with the runner's objects, so it exists
/// before the runner Job that reads it.
pub fn dashboard_token_secret(
    names: &Names,
    chaos: &ClusterBackendArgs,
    meta: &MetaFn,
) -> Option<Secret> {
    let token = chaos
        .dashboard_token
        .as_ref()
        .filter(|_| chaos.is_dashboard())?;
    Some(Secret {
        metadata: meta(names.dashboard_token(), RUNNER),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            DASHBOARD_TOKEN_KEY.to_owned(),
            ByteString(token.expose().as_bytes().to_vec()),
        )])),
        ..Secret::default()
    })
}

/// How the runner reaches the dashboard, as container env: the URL as a
/// value, the token from the pattern's copy; and how long it waits for
/// Chaos Mesh to confirm a fault, when the operator was given that. Nothing
/// for Chaos Mesh's CRDs with the defaults, so that the Job of a default
/// install stays as it was (a Job's pod template cannot change once
/// created).
fn chaos_env(names: &Names, chaos: &ClusterBackendArgs) -> Vec<serde_json::Value> {
    let mut env: Vec<serde_json::Value> = chaos
        .confirm_timeout
        .iter()
        .map(|timeout| serde_json::json!({ "name": cluster_backend::CONFIRM_TIMEOUT_ENV, "value": timeout.as_str() }))
        .collect();
    if !chaos.is_dashboard() {
        return env;
    }
    env.extend([
        serde_json::json!({ "name": cluster_backend::BACKEND_ENV, "value": chaos.backend.as_str() }),
        serde_json::json!({ "name": cluster_backend::DASHBOARD_URL_ENV, "value": chaos.dashboard_url.clone().unwrap_or_default() }),
    ]);
    if chaos.dashboard_token.is_some() {
        env.push(serde_json::json!({
            "name": cluster_backend::TOKEN_ENV,
            "valueFrom": { "secretKeyRef": { "name": names.dashboard_token(), "key": DASHBOARD_TOKEN_KEY } },
        }));
    }
    env
}

pub fn runner_objects(
    cp: &CommunicationPattern,
    generation: i64,
    inputs: &RunnerInputs,
    meta: &MetaFn,
) -> RunnerObjects {
    let names = Names::of(cp);
    let ns = cp.namespace().unwrap_or_default();
    let runner = names.runner();

    let account = ServiceAccount {
        metadata: meta(runner.clone(), RUNNER),
        ..ServiceAccount::default()
    };

    // Only what the runner does: create and delete its chaos experiments
    // (through the dashboard, with the dashboard's token, it needs no
    // rights on them), write its own report, and read its own
    // CommunicationPattern.
    let chaos_rule = (!inputs.chaos.is_dashboard()).then(|| {
        serde_json::json!({ "apiGroups": ["chaos-mesh.org"], "resources": ["podchaos", "networkchaos"], "verbs": ["create", "get", "list", "delete"] })
    });
    let rules: Vec<serde_json::Value> = chaos_rule
        .into_iter()
        .chain([
            serde_json::json!({ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"] }),
            serde_json::json!({ "apiGroups": [""], "resources": ["configmaps"], "resourceNames": [names.report()], "verbs": ["get", "patch", "update"] }),
            serde_json::json!({ "apiGroups": ["commlab.dev"], "resources": ["communicationpatterns"], "resourceNames": [names.instance], "verbs": ["get"] }),
        ])
        .collect();
    let mut role: Role = from_json(serde_json::json!({ "rules": rules }));
    role.metadata = meta(runner.clone(), RUNNER);

    let mut binding: RoleBinding = from_json(serde_json::json!({
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": runner },
        "subjects": [{ "kind": "ServiceAccount", "name": runner, "namespace": ns }],
    }));
    binding.metadata = meta(runner.clone(), RUNNER);

    let workload = &cp.spec.workload;
    let deadline = workload.warmup.as_std().as_secs()
        + workload.duration.as_std().as_secs()
        + DEADLINE_MARGIN_SECS;
    let mut pod_labels = crate::labels::child(&names.instance, RUNNER);
    pod_labels.extend(inputs.pod_labels.clone());
    let mut env = vec![
        serde_json::json!({ "name": "COMMLAB_GENERATION", "value": generation.to_string() }),
        serde_json::json!({ "name": "COMMLAB_OWNER_UID", "value": cp.uid().unwrap_or_default() }),
    ];
    env.extend(chaos_env(&names, inputs.chaos));
    let mut job: Job = from_json(serde_json::json!({
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline,
            "template": {
                "metadata": { "labels": pod_labels },
                "spec": {
                    "serviceAccountName": runner,
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": RUNNER,
                        "image": inputs.image,
                        // The image's entrypoint is the operator; the runner is `commlab`.
                        "command": ["commlab"],
                        "args": ["experiment", "--in-cluster", "--namespace", ns, "--name", names.instance],
                        "env": env,
                        "resources": { "requests": { "cpu": "200m", "memory": "64Mi" } },
                        "securityContext": { "runAsNonRoot": true, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true },
                    }],
                }
            }
        }
    }));
    job.metadata = meta(names.experiment_job(generation), RUNNER);

    RunnerObjects {
        service_accounts: vec![account],
        roles: vec![role],
        role_bindings: vec![binding],
        jobs: vec![job],
    }
}

/// Where the experiment of the current generation stands.
#[derive(Clone, Debug, PartialEq)]
pub enum ExperimentState {
    /// No runner Job yet.
    NotStarted,
    Running,
    Completed(Box<ExperimentResults>),
    Failed {
        reason: &'static str,
        message: String,
    },
}

/// Judges the experiment from the runner Job and the report ConfigMap. Pure:
/// a malformed or oversized report is a `Failed` state, never a panic.
pub fn observe(
    cp: &CommunicationPattern,
    generation: i64,
    job: Option<&Job>,
    report: Option<&ConfigMap>,
) -> ExperimentState {
    let report_of_this_generation = report.filter(|cm| {
        cm.labels().get(GENERATION_LABEL).map(String::as_str)
            == Some(generation.to_string().as_str())
    });
    if let Some(cm) = report_of_this_generation {
        let Some(text) = cm.data.as_ref().and_then(|d| d.get(REPORT_KEY)) else {
            return failed(
                "ReportMalformed",
                format!("ConfigMap {} has no {REPORT_KEY}", cm.name_any()),
            );
        };
        return match Report::from_json(text) {
            Err(error) => failed(
                "ReportMalformed",
                format!("the runner's report cannot be used: {error}"),
            ),
            Ok(report) => match report
                .patterns
                .iter()
                .find(|p| p.pattern == cp.spec.pattern)
            {
                Some(pattern) => ExperimentState::Completed(Box::new(experiment_results(
                    pattern,
                    cp.spec.slo.as_ref(),
                ))),
                None => failed(
                    "ReportMalformed",
                    format!("the report has no results for {}", cp.spec.pattern),
                ),
            },
        };
    }
    let Some(job) = job else {
        return ExperimentState::NotStarted;
    };
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .cloned()
        .unwrap_or_default();
    let has = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if let Some(failure) = has("Failed") {
        return if failure.reason.as_deref() == Some("DeadlineExceeded") {
            failed(
                "DeadlineExceeded",
                format!("the runner Job {} ran past its deadline", job.name_any()),
            )
        } else {
            let why = failure.message.clone().unwrap_or_default();
            failed(
                "RunnerFailed",
                format!("the runner Job {} failed: {why}", job.name_any()),
            )
        };
    }
    if has("Complete").is_some() {
        return failed(
            "ReportMissing",
            format!(
                "the runner Job {} finished without writing its report",
                job.name_any()
            ),
        );
    }
    ExperimentState::Running
}

fn failed(reason: &'static str, message: String) -> ExperimentState {
    ExperimentState::Failed { reason, message }
}

#[cfg(test)]
mod tests {
    use commlab_api::{CommunicationPatternSpec, Pattern};
    use commlab_chaos::BearerToken;
    use k8s_openapi::api::core::v1::EnvVar;
    use kube::Resource;

    use super::*;

    fn cp() -> CommunicationPattern {
        let spec: CommunicationPatternSpec =
            serde_json::from_value(serde_json::json!({ "pattern": Pattern::DirectApiCall, "workload": { "warmup": "10s", "duration": "60s" } }))
                .unwrap();
        let mut cp = CommunicationPattern::new("shop", spec);
        cp.meta_mut().namespace = Some("lab".into());
        cp.meta_mut().uid = Some("uid-1".into());
        cp
    }

    fn job(condition: Option<(&str, &str)>) -> Job {
        let conditions = condition
            .map(|(type_, reason)| serde_json::json!([{ "type": type_, "status": "True", "reason": reason, "message": "boom" }]))
            .unwrap_or(serde_json::json!([]));
        serde_json::from_value(serde_json::json!({ "metadata": { "name": "shop-experiment-1" }, "status": { "conditions": conditions } })).unwrap()
    }

    fn report_cm(generation: &str, text: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "shop-report", "labels": { GENERATION_LABEL: generation } },
            "data": { REPORT_KEY: text },
        }))
        .unwrap()
    }

    #[test]
    fn the_runner_gets_its_own_account_a_narrow_role_and_a_deadline() {
        let cp = cp();
        let labels = BTreeMap::from([(
            "commlab.dev/kwok-keep-running".to_owned(),
            "true".to_owned(),
        )]);
        let objects = runner_objects(
            &cp,
            4,
            &RunnerInputs {
                image: "img",
                pod_labels: &labels,
                chaos: &ClusterBackendArgs::default(),
            },
            &crate::children::child_meta(&cp),
        );
        let job = &objects.jobs[0];
        assert_eq!(job.metadata.name.as_deref(), Some("shop-experiment-4"));
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(
            spec.active_deadline_seconds,
            Some(10 + 60 + DEADLINE_MARGIN_SECS as i64)
        );
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("shop-runner"));
        assert_eq!(
            spec.template
                .metadata
                .as_ref()
                .unwrap()
                .labels
                .as_ref()
                .unwrap()["commlab.dev/kwok-keep-running"],
            "true"
        );
        let rules = objects.roles[0].rules.as_ref().unwrap();
        assert!(
            rules.iter().all(|r| !r.verbs.contains(&"*".to_owned())),
            "no wildcard verbs"
        );
        let report_rule = rules
            .iter()
            .find(|r| {
                r.resource_names.is_some() && r.resources.as_ref().unwrap()[0] == "configmaps"
            })
            .unwrap();
        assert_eq!(
            report_rule.resource_names.as_ref().unwrap(),
            &["shop-report".to_owned()]
        );
    }

    /// The runner's objects, its container's env by name, and the token copy
    /// the children get, for a runner using `chaos`.
    fn with_backend(
        chaos: &ClusterBackendArgs,
    ) -> (RunnerObjects, BTreeMap<String, EnvVar>, Option<Secret>) {
        let cp = cp();
        let meta = crate::children::child_meta(&cp);
        let inputs = RunnerInputs {
            image: "img",
            pod_labels: &BTreeMap::new(),
            chaos,
        };
        let objects = runner_objects(&cp, 1, &inputs, &meta);
        let env = objects.jobs[0]
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .unwrap()
            .containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.clone()))
            .collect();
        let secret = dashboard_token_secret(&Names::of(&cp), chaos, &meta);
        (objects, env, secret)
    }

    fn may_touch_chaos_objects(objects: &RunnerObjects) -> bool {
        objects.roles[0].rules.iter().flatten().any(|rule| {
            rule.api_groups
                .iter()
                .flatten()
                .any(|g| g == "chaos-mesh.org")
        })
    }

    #[test]
    fn with_the_dashboard_the_runner_gets_its_url_and_token_and_no_chaos_rights() {
        let chaos = ClusterBackendArgs::dashboard(
            "http://chaos-dashboard.chaos-mesh.svc:2333",
            Some(BearerToken::new("s3cret")),
        );
        let (objects, env, secret) = with_backend(&chaos);
        assert_eq!(
            env["COMMLAB_CHAOS_BACKEND"].value.as_deref(),
            Some("dashboard")
        );
        assert_eq!(
            env["COMMLAB_CHAOS_DASHBOARD_URL"].value.as_deref(),
            Some("http://chaos-dashboard.chaos-mesh.svc:2333")
        );
        let token = &env["COMMLAB_CHAOS_DASHBOARD_TOKEN"];
        assert_eq!(token.value, None, "never inlined in the pod spec");
        let reference = token
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .unwrap();
        assert_eq!(
            (reference.name.as_str(), reference.key.as_str()),
            ("shop-chaos-dashboard", DASHBOARD_TOKEN_KEY)
        );
        assert!(
            !serde_json::to_string(&objects.jobs)
                .unwrap()
                .contains("s3cret"),
            "the token is only in the Secret"
        );
        assert!(!may_touch_chaos_objects(&objects), "least privilege");

        let secret = secret.expect("a copy of the token");
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("shop-chaos-dashboard")
        );
        assert_eq!(
            secret.data.as_ref().unwrap()[DASHBOARD_TOKEN_KEY].0,
            b"s3cret"
        );
        let labels = secret.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[crate::labels::COMPONENT], RUNNER);
        assert!(crate::children::is_owned_by(
            secret.metadata.owner_references.as_ref(),
            "uid-1"
        ));
    }

    #[test]
    fn a_dashboard_without_a_token_gets_no_secret_and_no_token_env() {
        let chaos = ClusterBackendArgs::dashboard("http://dashboard:2333", None);
        let (_, env, secret) = with_backend(&chaos);
        assert!(env.contains_key("COMMLAB_CHAOS_DASHBOARD_URL"));
        assert!(!env.contains_key("COMMLAB_CHAOS_DASHBOARD_TOKEN"));
        assert!(secret.is_none());
    }

    #[test]
    fn with_chaos_mesh_the_runner_may_manage_chaos_objects_and_gets_no_dashboard() {
        let mut chaos = ClusterBackendArgs::dashboard("http://x", Some(BearerToken::new("t")));
        chaos.backend = commlab_chaos::ClusterBackendKind::ChaosMesh;
        let (objects, env, secret) = with_backend(&chaos);
        assert!(may_touch_chaos_objects(&objects));
        assert!(
            env.keys().all(|name| !name.starts_with("COMMLAB_CHAOS")),
            "{env:?}"
        );
        assert!(
            secret.is_none(),
            "no token copy when the dashboard is not used"
        );
    }

    #[test]
    fn the_operator_s_confirm_timeout_reaches_the_runner() {
        let chaos = ClusterBackendArgs {
            confirm_timeout: Some("4s".parse().unwrap()),
            ..ClusterBackendArgs::default()
        };
        let (_, env, _) = with_backend(&chaos);
        assert_eq!(
            env["COMMLAB_CHAOS_CONFIRM_TIMEOUT"].value.as_deref(),
            Some("4s")
        );
        let (_, env, _) = with_backend(&ClusterBackendArgs::default());
        assert!(
            !env.contains_key("COMMLAB_CHAOS_CONFIRM_TIMEOUT"),
            "{env:?}"
        );
    }

    #[test]
    fn the_runner_runs_commlab_experiment_for_its_generation() {
        let cp = cp();
        let objects = runner_objects(
            &cp,
            2,
            &RunnerInputs {
                image: "img",
                pod_labels: &BTreeMap::new(),
                chaos: &ClusterBackendArgs::default(),
            },
            &crate::children::child_meta(&cp),
        );
        let pod = objects.jobs[0]
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .unwrap();
        let container = &pod.containers[0];
        // The image's entrypoint is `commlab-operator`.
        assert_eq!(
            container.command.as_deref(),
            Some(&["commlab".to_owned()][..])
        );
        let args = container.args.as_ref().unwrap();
        assert_eq!(
            args,
            &[
                "experiment",
                "--in-cluster",
                "--namespace",
                "lab",
                "--name",
                "shop"
            ]
        );
        let env: Vec<_> = container
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(
            env,
            [("COMMLAB_GENERATION", "2"), ("COMMLAB_OWNER_UID", "uid-1")]
        );
    }

    #[test]
    fn no_job_means_not_started_and_an_active_job_is_running() {
        assert_eq!(observe(&cp(), 1, None, None), ExperimentState::NotStarted);
        assert_eq!(
            observe(&cp(), 1, Some(&job(None)), None),
            ExperimentState::Running
        );
    }

    #[test]
    fn a_finished_job_without_a_report_fails_with_a_reason() {
        let reason = |state| match state {
            ExperimentState::Failed { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(observe(&cp(), 1, Some(&job(Some(("Complete", "")))), None)),
            "ReportMissing"
        );
        assert_eq!(
            reason(observe(
                &cp(),
                1,
                Some(&job(Some(("Failed", "DeadlineExceeded")))),
                None
            )),
            "DeadlineExceeded"
        );
        assert_eq!(
            reason(observe(
                &cp(),
                1,
                Some(&job(Some(("Failed", "BackoffLimitExceeded")))),
                None
            )),
            "RunnerFailed"
        );
    }

    #[test]
    fn a_malformed_or_oversized_report_fails_without_a_panic() {
        for text in [
            "{not json",
            r#"{"schema":"someone-else/v9"}"#,
            &"x".repeat(2_000_000),
        ] {
            match observe(&cp(), 1, Some(&job(None)), Some(&report_cm("1", text))) {
                ExperimentState::Failed {
                    reason: "ReportMalformed",
                    message,
                } => assert!(!message.is_empty()),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_report_of_an_older_generation_is_not_this_experiments() {
        assert_eq!(
            observe(
                &cp(),
                2,
                Some(&job(None)),
                Some(&report_cm("1", "{not json"))
            ),
            ExperimentState::Running
        );
    }
}
