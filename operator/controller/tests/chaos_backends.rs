//! The operator's chaos backend end to end, with the real operator, the real
//! control plane and the real `commlab experiment` runner:
//!
//! - with the Chaos Mesh dashboard selected, each pattern's runner Job gets
//!   the dashboard's URL and a copy of its token (a child Secret, by
//!   `secretKeyRef`) and no rights on Chaos Mesh's objects, and the runner
//!   run with exactly that injects through the dashboard with the token;
//! - the finalizer: deleting a CommunicationPattern whose runner was killed
//!   (SIGKILL, so it cleaned nothing up) deletes its chaos experiments
//!   before the pattern goes, through Chaos Mesh's objects or through the
//!   dashboard, and while the dashboard fails the pattern stays, with an
//!   Event saying why, until the dashboard is back.
//!
//! No Chaos Mesh dashboard runs here (it needs Chaos Mesh acting on real
//! pods), so "the dashboard" is the **stand-in** of
//! `commlab_e2e::dashboard_stand_in`, which answers as Chaos Mesh publishes
//! its API; the names of the tests that use it say so. No Chaos Mesh
//! controller runs either: the CRDs are the minimal fixture, so chaos
//! objects are stored, never acted on.
//!
//! kwok runs no containers, so each test plays the runner Job's part as in
//! tests/runner.rs: `commlab experiment` as a local process with the Job's
//! arguments and the environment the Job declares (a `secretKeyRef` read
//! from its Secret, as the kubelet would), a kubeconfig holding only the
//! runner ServiceAccount's token, and PostgreSQL, catalog and orders as
//! local processes. The tests run one at a time.
//!
//! Needs a running cluster (`COMMLAB_KUBECONFIG`) and PostgreSQL's server
//! binaries; the `commlab` binary is `COMMLAB_BIN` or built by the test.

#[allow(dead_code)] // each test binary uses part of the helpers
mod support;

use std::{
    collections::BTreeMap, future::Future, os::unix::process::ExitStatusExt as _, time::Duration,
};

use anyhow::{Context as _, ensure};
use axum::http::Method;
use commlab_api::{CommunicationPattern, Pattern, Phase};
use commlab_chaos::{
    ChaosScope,
    chaos_mesh::{ChaosKind, chaos_object, object_name},
};
use commlab_controller::finalizer::{CLEANUP_FAILED, FINALIZER};
use commlab_e2e::{
    dashboard_stand_in::{Override, Shared, StandIn, serve},
    player::local_targets,
    poll_until,
    runner::{RunnerJob, RunnerProcess},
    with_temp_namespace,
};
use commlab_workload::infra::{LocalStack, TopologyConfig};
use k8s_openapi::api::{batch::v1::Job, core::v1::Secret, events::v1::Event, rbac::v1::Role};
use kube::runtime::wait::conditions;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use support::{Operator, install_chaos_mesh_crds, install_crds};

/// The dashboard's bearer token, as the operator's Secret would hold it.
const TOKEN: &str = "token-for-the-chaos-dashboard";
/// The fault every test's plan has.
const FAULT: &str = "catalog-down";
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// A short run, its report, and the operator's summary.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);
/// The runner starting its services and injecting the first fault.
const INJECT_TIMEOUT: Duration = Duration::from_secs(60);
/// A deletion: the cleanup, and retries with backoff after a failure.
const DELETE_TIMEOUT: Duration = Duration::from_secs(90);
/// A finalizer the test holds, so a deleted pattern stays readable.
const TEST_HOLD: &str = "commlab.dev/test-hold";

/// One test at a time: each runs a load on this machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A DirectApiCall whose catalog goes down at 1 s for `down_for`; the run
/// lasts `run_for`.
fn manifest(name: &str, down_for: &str, run_for: &str) -> Value {
    json!({
        "apiVersion": "commlab.dev/v1alpha1",
        "kind": "CommunicationPattern",
        "metadata": { "name": name },
        "spec": {
            "pattern": "DirectApiCall",
            "workload": { "rate": 20, "warmup": "1s", "duration": run_for },
            "chaos": [
                { "name": FAULT, "fault": "Outage", "target": "catalog", "at": "1s", "duration": down_for },
            ],
        }
    })
}

/// The operator's environment: runner pods kwok keeps running, and the
/// dashboard backend at `dashboard` when given.
fn operator_env(dashboard: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env = vec![(
        "COMMLAB_RUNNER_POD_LABELS",
        format!("{}=true", commlab_e2e::KEEP_RUNNING_LABEL),
    )];
    if let Some(url) = dashboard {
        env.extend([
            ("COMMLAB_CHAOS_BACKEND", "dashboard".to_owned()),
            ("COMMLAB_CHAOS_DASHBOARD_URL", url.to_owned()),
            ("COMMLAB_CHAOS_DASHBOARD_TOKEN", TOKEN.to_owned()),
        ]);
    }
    env
}

async fn start_operator(ns: &str, dashboard: Option<&str>) -> anyhow::Result<Operator> {
    let env = operator_env(dashboard);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Operator::start_admin_with_env(ns, &env).await
}

/// A pattern deployed by the operator, with its runner's part played here.
struct Lab {
    client: Client,
    ns: String,
    name: String,
    stack: LocalStack,
    /// The runner Job of generation 1, as the operator created it.
    job: Job,
}

impl Lab {
    /// Creates the pattern, starts its services locally and waits for the
    /// operator's runner Job.
    async fn set_up(client: &Client, ns: &str, manifest: &Value) -> anyhow::Result<Self> {
        let name = support::apply_manifest(client, ns, manifest).await?;
        let binary = support::commlab_binary().await?;
        let stack = LocalStack::launch(TopologyConfig::new(Pattern::DirectApiCall, &binary))
            .await
            .context("starting PostgreSQL, catalog and orders")?;
        let job = commlab_e2e::wait_for(
            &Api::<Job>::namespaced(client.clone(), ns),
            &format!("{name}-experiment-1"),
            READY_TIMEOUT,
            "the operator's runner Job of generation 1",
            conditions::is_created(),
        )
        .await?;
        Ok(Self {
            client: client.clone(),
            ns: ns.to_owned(),
            name,
            stack,
            job,
        })
    }

    fn patterns(&self) -> Api<CommunicationPattern> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The runner container's environment, by name.
    fn declared_env(&self) -> anyhow::Result<BTreeMap<String, k8s_openapi::api::core::v1::EnvVar>> {
        let pod = self
            .job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .context("the Job has no pod spec")?;
        Ok(pod.containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.clone()))
            .collect())
    }

    /// The environment the kubelet would give the runner: plain values, and
    /// each `secretKeyRef` read from its Secret in the pattern's namespace.
    async fn resolved_env(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.ns);
        let mut env = BTreeMap::new();
        for (name, var) in self.declared_env()? {
            let value = match (&var.value, &var.value_from) {
                (Some(value), _) => value.clone(),
                (None, Some(from)) => {
                    let reference = from
                        .secret_key_ref
                        .as_ref()
                        .with_context(|| format!("{name}: only secretKeyRef is resolved here"))?;
                    let secret = secrets.get(&reference.name).await.with_context(|| {
                        format!("{name}: the Secret {} it references", reference.name)
                    })?;
                    let bytes = secret
                        .data
                        .and_then(|mut data| data.remove(&reference.key))
                        .with_context(|| {
                            format!("{name}: Secret {} has no {}", reference.name, reference.key)
                        })?;
                    String::from_utf8(bytes.0)?
                }
                (None, None) => String::new(),
            };
            env.insert(name, value);
        }
        Ok(env)
    }

    /// Starts the runner Job's command here, as the runner ServiceAccount,
    /// with the environment the Job declares, against the local services.
    async fn start_runner(&self) -> anyhow::Result<(RunnerProcess, tempfile::NamedTempFile)> {
        let runner = RunnerJob::from_job(&self.job)?;
        let token =
            commlab_e2e::service_account_token(&self.client, &self.ns, &runner.service_account)
                .await?;
        let kubeconfig =
            commlab_e2e::token_kubeconfig(&commlab_e2e::kubeconfig_path()?, &self.ns, &token)?;
        let mut command = runner.command(
            &support::commlab_binary().await?,
            &local_targets(&self.stack),
            kubeconfig.path(),
        );
        command.envs(self.resolved_env().await?);
        Ok((RunnerProcess::start(command, &self.name)?, kubeconfig))
    }

    /// Plays the runner until `injected` says its first fault is in force,
    /// then kills it outright (SIGKILL, as a lost node or an OOM kill
    /// would), so it cleans nothing up.
    async fn kill_runner_once<F, Fut>(&self, injected: F) -> anyhow::Result<()>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = anyhow::Result<bool>>,
    {
        let (runner, _kubeconfig) = self.start_runner().await?;
        poll_until(INJECT_TIMEOUT, "the runner's first fault", || async {
            Ok(injected().await?.then_some(()))
        })
        .await?;
        runner.signal(Signal::SIGKILL)?;
        let (status, _) = runner.wait(Duration::from_secs(10)).await?;
        ensure!(
            status.signal() == Some(9),
            "the runner ended with {status:?}"
        );
        Ok(())
    }

    async fn carries_the_finalizer(&self) -> anyhow::Result<()> {
        let name = &self.name;
        poll_until(READY_TIMEOUT, "the operator's finalizer", || async {
            let cp = self.patterns().get(name).await?;
            Ok(cp.finalizers().iter().any(|f| f == FINALIZER).then_some(()))
        })
        .await
    }

    async fn delete(&self) -> anyhow::Result<()> {
        self.patterns()
            .delete(&self.name, &DeleteParams::background())
            .await?;
        Ok(())
    }

    async fn wait_gone(&self) -> anyhow::Result<()> {
        poll_until(DELETE_TIMEOUT, "the pattern to be gone", || async {
            Ok(self
                .patterns()
                .get_opt(&self.name)
                .await?
                .is_none()
                .then_some(()))
        })
        .await
    }

    /// The Warning Events `reason` recorded about the pattern.
    async fn events(&self, reason: &str) -> anyhow::Result<Vec<Event>> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        Ok(events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                        == Some(self.name.as_str())
            })
            .collect())
    }
}

/// Names of the chaos objects in `ns`.
async fn chaos_objects(client: &Client, ns: &str) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for kind in ChaosKind::ALL {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), ns, &kind.api_resource());
        names.extend(
            api.list(&ListParams::default())
                .await?
                .into_iter()
                .map(|o| o.name_any()),
        );
    }
    Ok(names)
}

/// The stand-in dashboard, with security mode on: [`TOKEN`] may manage
/// chaos in `ns`.
async fn dashboard_stand_in(ns: &str) -> (Shared, String) {
    let stand_in = StandIn::secured(TOKEN, ns);
    let url = serve(stand_in.clone()).await;
    (stand_in, url)
}

/// Names of the experiments the stand-in's "cluster" holds.
fn held_by(stand_in: &StandIn) -> Vec<String> {
    stand_in.in_cluster().into_iter().map(|e| e.name).collect()
}

#[tokio::test]
async fn with_the_dashboard_stand_in_the_runner_gets_its_url_and_a_token_copy_and_injects_with_the_bearer_token()
-> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    with_temp_namespace(|client, ns| async move {
        install_crds(&client).await?;
        let (stand_in, url) = dashboard_stand_in(&ns).await;
        let _operator = start_operator(&ns, Some(&url)).await?;
        let lab = Lab::set_up(&client, &ns, &manifest("dash", "2s", "5s")).await?;
        let cp = lab.patterns().get("dash").await?;
        let uid = cp.uid().context("uid")?;

        // The Job: the URL as a value, the token only by reference.
        let env = lab.declared_env()?;
        let value = |name: &str| env.get(name).and_then(|e| e.value.clone());
        ensure!(
            value("COMMLAB_CHAOS_BACKEND").as_deref() == Some("dashboard"),
            "{env:?}"
        );
        ensure!(
            value("COMMLAB_CHAOS_DASHBOARD_URL") == Some(url.clone()),
            "{env:?}"
        );
        let token = env
            .get("COMMLAB_CHAOS_DASHBOARD_TOKEN")
            .context("the token's env")?;
        let reference = token
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.clone())
            .context("the token by secretKeyRef")?;
        ensure!(
            token.value.is_none()
                && reference.name == "dash-chaos-dashboard"
                && reference.key == "token",
            "{token:?}"
        );

        // The child Secret: the token, labelled and owned like every child.
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let secret = secrets.get("dash-chaos-dashboard").await?;
        ensure!(
            secret
                .data
                .as_ref()
                .and_then(|d| d.get("token"))
                .map(|b| b.0.as_slice())
                == Some(TOKEN.as_bytes()),
            "the Secret holds the operator's token"
        );
        let labels = secret.labels();
        ensure!(
            labels.get("app.kubernetes.io/instance").map(String::as_str) == Some("dash")
                && labels
                    .get("app.kubernetes.io/managed-by")
                    .map(String::as_str)
                    == Some("commlab-operator"),
            "labels {labels:?}"
        );
        ensure!(
            secret
                .owner_references()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true)),
            "owned by the pattern: {:?}",
            secret.owner_references()
        );

        // Least privilege: the token carries the chaos rights, the Role none.
        let roles: Api<Role> = Api::namespaced(client.clone(), &ns);
        let role = roles.get("dash-runner").await?;
        ensure!(
            !serde_json::to_string(&role.rules)?.contains("chaos-mesh.org"),
            "the runner's Role: {:?}",
            role.rules
        );

        // The runner, with exactly that, injects through the dashboard.
        let (runner, _kubeconfig) = lab.start_runner().await?;
        let (status, log) = runner.wait(RUN_TIMEOUT).await?;
        ensure!(status.success(), "the runner failed: {status:?}\n{log}");
        let seen = stand_in.seen();
        let experiment = object_name("dash", FAULT);
        let posted = seen
            .iter()
            .find(|s| s.method == Method::POST)
            .context("the runner posted no experiment")?;
        ensure!(
            posted.body.as_ref().map(|b| b["metadata"]["name"].clone()) == Some(json!(experiment)),
            "posted {posted:?}"
        );
        let bearer = format!("Bearer {TOKEN}");
        ensure!(
            seen.iter()
                .all(|s| s.authorization.as_deref() == Some(bearer.as_str())),
            "every request carries the token: {seen:#?}"
        );
        ensure!(
            seen.iter().any(|s| s.method == Method::DELETE),
            "the fault was recovered: {seen:#?}"
        );
        ensure!(
            held_by(&stand_in).is_empty(),
            "left: {:?}",
            held_by(&stand_in)
        );

        let cp = support::wait_experiment_settled(&client, &ns, "dash", RUN_TIMEOUT).await?;
        ensure!(
            cp.status.as_ref().and_then(|s| s.phase) == Some(Phase::Completed),
            "status {:?}",
            cp.status
        );
        ensure!(cp.finalizers().iter().any(|f| f == FINALIZER));
        // Deleted while the operator runs, so nothing waits on its finalizer.
        lab.delete().await?;
        lab.wait_gone().await
    })
    .await
}

#[tokio::test]
async fn deleting_a_pattern_deletes_the_chaos_objects_its_killed_runner_left_before_it_goes()
-> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    with_temp_namespace(|client, ns| async move {
        install_crds(&client).await?;
        install_chaos_mesh_crds(&client).await?;
        let _operator = start_operator(&ns, None).await?;
        let lab = Lab::set_up(&client, &ns, &manifest("killed", "60s", "90s")).await?;
        lab.carries_the_finalizer().await?;
        let experiment = object_name("killed", FAULT);
        lab.kill_runner_once(|| async {
            Ok(chaos_objects(&client, &ns).await?.contains(&experiment))
        })
        .await?;

        // Held by the test too, the pattern stays readable after the
        // operator lets it go. Kubernetes' garbage collector deletes owned
        // objects only once the owner is gone, so chaos objects gone while
        // the pattern is still here were deleted by the operator.
        lab.patterns()
            .patch(
                "killed",
                &PatchParams::default(),
                &Patch::<()>::Json(serde_json::from_value(json!([
                    { "op": "add", "path": "/metadata/finalizers/-", "value": TEST_HOLD }
                ]))?),
            )
            .await?;
        lab.delete().await?;
        poll_until(
            DELETE_TIMEOUT,
            "the operator to delete the chaos objects and let the pattern go",
            || async {
                let cp = lab.patterns().get("killed").await?;
                let let_go = cp.finalizers() == [TEST_HOLD];
                let none_left = chaos_objects(&client, &ns).await?.is_empty();
                Ok((let_go && none_left).then_some(()))
            },
        )
        .await?;
        lab.patterns()
            .patch(
                "killed",
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
            )
            .await?;
        lab.wait_gone().await
    })
    .await
}

#[tokio::test]
async fn deleting_a_pattern_deletes_its_experiments_on_the_dashboard_stand_in_and_waits_while_it_fails()
-> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    with_temp_namespace(|client, ns| async move {
        install_crds(&client).await?;
        let (stand_in, url) = dashboard_stand_in(&ns).await;
        let _operator = start_operator(&ns, Some(&url)).await?;
        let lab = Lab::set_up(&client, &ns, &manifest("flaky", "60s", "90s")).await?;
        lab.carries_the_finalizer().await?;
        let experiment = object_name("flaky", FAULT);
        lab.kill_runner_once(|| async { Ok(held_by(&stand_in).contains(&experiment)) })
            .await?;

        // The dashboard fails: the pattern stays, and says why.
        stand_in.answer(Some(Override::server_error(
            "etcdserver: request timed out",
        )));
        lab.delete().await?;
        let events = poll_until(DELETE_TIMEOUT, "a ChaosCleanupFailed Event", || async {
            let events = lab.events(CLEANUP_FAILED).await?;
            Ok((!events.is_empty()).then_some(events))
        })
        .await?;
        let note = events[0].note.clone().unwrap_or_default();
        ensure!(
            note.contains("dashboard unavailable")
                && note.contains("HTTP 500: etcdserver: request timed out")
                && note.contains(FINALIZER)
                && events[0].type_.as_deref() == Some("Warning"),
            "the Event: {:?}",
            events[0]
        );
        ensure!(!note.contains(TOKEN), "never the token in an Event: {note}");
        let cp = lab
            .patterns()
            .get_opt("flaky")
            .await?
            .context("the pattern went while its experiments could not be deleted")?;
        ensure!(
            cp.metadata.deletion_timestamp.is_some()
                && cp.finalizers().iter().any(|f| f == FINALIZER),
            "finalizers {:?}",
            cp.finalizers()
        );
        ensure!(
            held_by(&stand_in) == [experiment.clone()],
            "held {:?}",
            held_by(&stand_in)
        );

        // Back: the experiment is deleted with the token, then the pattern goes.
        stand_in.answer(None);
        lab.wait_gone().await?;
        ensure!(
            held_by(&stand_in).is_empty(),
            "left: {:?}",
            held_by(&stand_in)
        );
        let bearer = format!("Bearer {TOKEN}");
        let deleted = stand_in
            .seen()
            .into_iter()
            .filter(|s| s.method == Method::DELETE)
            .collect::<Vec<_>>();
        ensure!(
            !deleted.is_empty()
                && deleted
                    .iter()
                    .all(|s| s.authorization.as_deref() == Some(bearer.as_str())),
            "deletes {deleted:#?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn with_the_charts_rbac_the_finalizer_deletes_chaos_objects_no_owner_reference_would()
-> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    with_temp_namespace(|client, ns| async move {
        install_crds(&client).await?;
        install_chaos_mesh_crds(&client).await?;
        let token = support::install_chart_rbac(&client, &ns, None).await?;
        let _operator = Operator::start_with_token(&ns, &token).await?;
        let spec = manifest("chart-rbac", "60s", "90s");
        support::apply_manifest(&client, &ns, &spec).await?;
        let patterns: Api<CommunicationPattern> = Api::namespaced(client.clone(), &ns);
        poll_until(READY_TIMEOUT, "the operator's finalizer", || async {
            let cp = patterns.get("chart-rbac").await?;
            Ok(cp.finalizers().iter().any(|f| f == FINALIZER).then_some(()))
        })
        .await?;

        // A chaos object of the pattern without an owner reference, as the
        // dashboard may create one: nothing but the finalizer deletes it.
        let fault = serde_json::from_value(spec["spec"]["chaos"][0].clone())?;
        let object = chaos_object(&ChaosScope::new(&ns, "chart-rbac"), &fault)?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &object.kind.api_resource());
        api.create(
            &PostParams::default(),
            &serde_json::from_value(object.body)?,
        )
        .await?;

        patterns
            .delete("chart-rbac", &DeleteParams::background())
            .await?;
        poll_until(DELETE_TIMEOUT, "the pattern to be gone", || async {
            Ok(patterns
                .get_opt("chart-rbac")
                .await?
                .is_none()
                .then_some(()))
        })
        .await?;
        let left = chaos_objects(&client, &ns).await?;
        ensure!(left.is_empty(), "left: {left:?}");
        Ok(())
    })
    .await
}
