//! The experiment runner, `commlab experiment --in-cluster`, with the real
//! operator against the real control plane.
//!
//! kwok runs no containers, so each test plays the runner Job's part for
//! real: the operator deploys the pattern and creates the runner Job (whose
//! pod kwok keeps Running, `COMMLAB_RUNNER_POD_LABELS`), then the test
//! starts PostgreSQL, catalog and orders as local processes, takes a token
//! of the runner's ServiceAccount (TokenRequest) and runs the real
//! `commlab` binary with a kubeconfig holding only that token, pointed at
//! the local services (`--orders-url`, `--catalog-url`). So the runner works
//! with exactly the RBAC the operator gave it.
//!
//! No Chaos Mesh controller runs (the CRDs are the minimal fixture of
//! `e2e/fixtures/chaos-mesh-crds.yaml`): faults are not applied, the
//! runner finds so from their (absent) status and reports them as not
//! applied, and the tests check the chaos objects themselves: kind,
//! action, selector, duration, owner, when they appear and when they are
//! deleted.
//!
//! The tests run one at a time: the load and the timing of the chaos plan
//! are measured on this machine, which also runs the control plane.
//!
//! Needs a running cluster, its kubectl (`COMMLAB_KUBECONFIG`,
//! `COMMLAB_KUBECTL`; `scripts/test.sh` sets both), and PostgreSQL's server
//! binaries. The `commlab` binary is built by the test when `COMMLAB_BIN`
//! does not name one (see `support::commlab_binary`).

#[allow(dead_code)] // each test binary uses part of the helpers
mod support;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use commlab_api::{CommunicationPattern, Pattern, Phase, results::Verdict};
use commlab_chaos::chaos_mesh::ChaosKind;
use commlab_e2e::{
    player::local_targets,
    poll_until,
    runner::{RunnerJob, RunnerProcess},
    with_temp_namespace,
};
use commlab_workload::{
    infra::{LocalStack, TopologyConfig},
    report::Report,
};
use k8s_openapi::api::{batch::v1::Job, core::v1::ConfigMap};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, DynamicObject, ListParams},
};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::{process::Command, task::JoinHandle};

use support::{Operator, install_chaos_mesh_crds, install_crds};

const WARMUP_S: f64 = 2.0;
const DURATION_S: f64 = 12.0;
/// The chaos plan: (fault name, at, duration), seconds into the measured run.
const CATALOG_DOWN: (&str, f64, f64) = ("catalog-down", 3.0, 3.0);
const SLOW_CATALOG: (&str, f64, f64) = ("slow-catalog", 7.0, 3.0);
/// How far a chaos object may appear or go from its planned time.
const TOLERANCE_S: f64 = 1.5;
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// The run, the report and the operator's summary, with room to spare.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);
/// Kubernetes' garbage collector notices a deleted owner within seconds, but
/// may take up to its discovery resync (30 s) for CRDs installed just now.
const GC_TIMEOUT: Duration = Duration::from_secs(90);
/// How often the chaos objects are listed while a runner runs.
const CHAOS_POLL: Duration = Duration::from_millis(100);

/// One test at a time (see the module documentation). A tokio mutex works
/// across the tests' runtimes; a failing test releases it as it unwinds.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A DirectApiCall at 50 checkouts/s: 2 s warm-up, 12 s measured, catalog
/// down at 3 s for 3 s, catalog 100 ms slower at 7 s for 3 s.
fn manifest(name: &str) -> Value {
    let (down, down_at, down_for) = CATALOG_DOWN;
    let (slow, slow_at, slow_for) = SLOW_CATALOG;
    json!({
        "apiVersion": "commlab.dev/v1alpha1",
        "kind": "CommunicationPattern",
        "metadata": { "name": name },
        "spec": {
            "pattern": "DirectApiCall",
            "workload": { "rate": 50, "warmup": format!("{WARMUP_S}s"), "duration": format!("{DURATION_S}s") },
            "chaos": [
                { "name": down, "fault": "Outage", "target": "catalog", "at": format!("{down_at}s"), "duration": format!("{down_for}s") },
                { "name": slow, "fault": "Delay", "target": "catalog", "at": format!("{slow_at}s"), "duration": format!("{slow_for}s"), "latency": "100ms" },
            ],
            "slo": { "p99": "1s" },
        }
    })
}

/// A pattern the operator deployed, whose runner Job waits (kwok keeps its
/// pod Running), with the runner's part ready to be played on this machine.
struct Lab {
    client: Client,
    ns: String,
    name: String,
    uid: String,
    binary: PathBuf,
    /// What the operator's runner Job runs.
    job: RunnerJob,
    stack: LocalStack,
    /// Holds only the runner ServiceAccount's token.
    kubeconfig: tempfile::NamedTempFile,
    _operator: Operator,
}

impl Lab {
    async fn set_up(client: &Client, ns: &str, name: &str) -> anyhow::Result<Self> {
        install_crds(client).await?;
        install_chaos_mesh_crds(client).await?;
        let keep_running = format!("{}=true", commlab_e2e::KEEP_RUNNING_LABEL);
        let operator =
            Operator::start_admin_with_env(ns, &[("COMMLAB_RUNNER_POD_LABELS", &keep_running)])
                .await?;
        support::apply_manifest(client, ns, &manifest(name)).await?;
        // Meanwhile: the binary, and the services the runner loads.
        let binary = support::commlab_binary().await?;
        let stack = LocalStack::launch(TopologyConfig::new(Pattern::DirectApiCall, &binary))
            .await
            .context("starting PostgreSQL, catalog and orders")?;

        let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
        let job_name = format!("{name}-experiment-1");
        let job = poll_until(READY_TIMEOUT, "the operator's runner Job", || async {
            Ok(jobs.get_opt(&job_name).await?)
        })
        .await?;
        let patterns: Api<CommunicationPattern> = Api::namespaced(client.clone(), ns);
        let uid = patterns.get(name).await?.uid().context("uid")?;
        let labels = job
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref()?.labels.clone());
        ensure!(
            labels.is_some_and(|l| {
                l.get(commlab_e2e::KEEP_RUNNING_LABEL).map(String::as_str) == Some("true")
            }),
            "the runner pod carries the labels of COMMLAB_RUNNER_POD_LABELS"
        );
        let runner_job = RunnerJob::from_job(&job)?;
        ensure!(
            runner_job.generation == "1" && runner_job.owner_uid == uid,
            "runner env {runner_job:?}"
        );
        ensure!(
            runner_job.args
                == [
                    "experiment",
                    "--in-cluster",
                    "--namespace",
                    ns,
                    "--name",
                    name
                ],
            "runner args {:?}",
            runner_job.args
        );
        ensure!(runner_job.service_account == format!("{name}-runner"));

        let token =
            commlab_e2e::service_account_token(client, ns, &runner_job.service_account).await?;
        let kubeconfig =
            commlab_e2e::token_kubeconfig(&commlab_e2e::kubeconfig_path()?, ns, &token)?;
        Ok(Self {
            client: client.clone(),
            ns: ns.to_owned(),
            name: name.to_owned(),
            uid,
            binary,
            job: runner_job,
            stack,
            kubeconfig,
            _operator: operator,
        })
    }

    /// The command the runner Job runs, as generation `generation`, with the
    /// runner's token and the local services as targets.
    fn runner_command(&self, generation: &str) -> Command {
        let job = RunnerJob {
            generation: generation.to_owned(),
            ..self.job.clone()
        };
        job.command(
            &self.binary,
            &local_targets(&self.stack),
            self.kubeconfig.path(),
        )
    }

    fn start_runner(&self) -> anyhow::Result<RunnerProcess> {
        RunnerProcess::start(self.runner_command("1"), &self.name)
    }

    fn patterns(&self) -> Api<CommunicationPattern> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn report_name(&self) -> String {
        format!("{}-report", self.name)
    }

    fn object_name(&self, fault: &str) -> String {
        commlab_chaos::chaos_mesh::object_name(&self.name, fault)
    }
}

/// Every chaos object in `ns`, by name (with its kind).
async fn chaos_objects(
    client: &Client,
    ns: &str,
) -> anyhow::Result<BTreeMap<String, (ChaosKind, DynamicObject)>> {
    let mut out = BTreeMap::new();
    for kind in ChaosKind::ALL {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), ns, &kind.api_resource());
        for object in api.list(&ListParams::default()).await? {
            out.insert(object.name_any(), (kind, object));
        }
    }
    Ok(out)
}

/// When the runner logged that the load started (its `Running` event).
async fn load_started(runner: &RunnerProcess, timeout: Duration) -> anyhow::Result<Instant> {
    poll_until(timeout, "the runner to start the load", || async {
        Ok(runner.logged("Running {"))
    })
    .await
}

/// One chaos object as the watch saw it.
#[derive(Clone, Debug)]
struct Seen {
    kind: ChaosKind,
    object: Value,
    first_seen: Instant,
    gone_at: Option<Instant>,
}

/// Lists the chaos objects of a namespace every [`CHAOS_POLL`] and records
/// when each appears and disappears.
struct ChaosWatch {
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<BTreeMap<String, Seen>>>,
}

impl ChaosWatch {
    fn start(client: &Client, ns: &str) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (client, ns) = (client.clone(), ns.to_owned());
        let task = tokio::spawn(async move {
            let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
            // Bounded: no test runs a runner for five minutes.
            let deadline = Instant::now() + Duration::from_secs(300);
            while !*stopped.borrow() && Instant::now() < deadline {
                let now = chaos_objects(&client, &ns).await?;
                let at = Instant::now();
                for (name, (kind, object)) in &now {
                    seen.entry(name.clone()).or_insert_with(|| Seen {
                        kind: *kind,
                        object: serde_json::to_value(object).unwrap_or_default(),
                        first_seen: at,
                        gone_at: None,
                    });
                }
                for (name, record) in &mut seen {
                    if record.gone_at.is_none() && !now.contains_key(name) {
                        record.gone_at = Some(at);
                    }
                }
                let _ = tokio::time::timeout(CHAOS_POLL, stopped.changed()).await;
            }
            Ok(seen)
        });
        Self { stop, task }
    }

    async fn finish(self) -> anyhow::Result<BTreeMap<String, Seen>> {
        let _ = self.stop.send(true);
        self.task.await?
    }
}

/// Seconds from `origin` to `at`, negative when `at` is earlier.
fn seconds_after(at: Instant, origin: Instant) -> f64 {
    match at.checked_duration_since(origin) {
        Some(after) => after.as_secs_f64(),
        None => -origin.duration_since(at).as_secs_f64(),
    }
}

/// Checks one chaos object: appeared at `warm-up + at` and was deleted at
/// `warm-up + at + duration` after the load started, within the tolerance.
fn check_timing(
    seen: &Seen,
    name: &str,
    (_, at, duration): (&str, f64, f64),
    load_started: Instant,
) -> anyhow::Result<()> {
    let appeared = seconds_after(seen.first_seen, load_started);
    let planned = WARMUP_S + at;
    ensure!(
        (appeared - planned).abs() <= TOLERANCE_S,
        "{name} appeared {appeared:.2}s after the load started, planned {planned}s ± {TOLERANCE_S}s"
    );
    let gone_at = seen
        .gone_at
        .with_context(|| format!("{name} was never deleted"))?;
    let gone = seconds_after(gone_at, load_started);
    let planned_end = planned + duration;
    eprintln!(
        "{name}: existed {appeared:.2}s – {gone:.2}s after the load started (planned {planned}s – {planned_end}s)"
    );
    ensure!(
        (gone - planned_end).abs() <= TOLERANCE_S,
        "{name} was deleted {gone:.2}s after the load started, planned {planned_end}s ± {TOLERANCE_S}s"
    );
    Ok(())
}

/// The selector of one component's pods of pattern `name`.
fn selector(ns: &str, name: &str, component: &str) -> Value {
    json!({
        "namespaces": [ns],
        "labelSelectors": {
            "app.kubernetes.io/name": "commlab",
            "app.kubernetes.io/instance": name,
            "app.kubernetes.io/component": component,
        }
    })
}

fn owned_by_the_pattern(lab: &Lab, object: &Value) -> anyhow::Result<()> {
    let owners = &object["metadata"]["ownerReferences"];
    ensure!(
        owners
            == &json!([{
                "apiVersion": "commlab.dev/v1alpha1",
                "kind": "CommunicationPattern",
                "name": lab.name,
                "uid": lab.uid,
                "controller": true,
            }]),
        "owner references {owners}"
    );
    Ok(())
}

#[tokio::test]
async fn the_runner_injects_the_chaos_plan_on_time_and_its_report_completes_the_pattern()
-> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    with_temp_namespace(|client, ns| async move {
        let lab = Lab::set_up(&client, &ns, "direct").await?;

        // A runner of another generation stops before it does anything.
        let output =
            tokio::time::timeout(Duration::from_secs(30), lab.runner_command("2").output())
                .await
                .context("a stale runner kept running")??;
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(
            output.status.code() == Some(1)
                && stderr.contains("started for generation 2 of direct, but it is at generation 1"),
            "a stale runner: {:?}\n{stderr}",
            output.status
        );
        ensure!(
            lab.config_maps()
                .get_opt(&lab.report_name())
                .await?
                .is_none()
                && chaos_objects(&client, &ns).await?.is_empty(),
            "a stale runner wrote nothing"
        );

        // The runner of generation 1, watched.
        let watch = ChaosWatch::start(&client, &ns);
        let runner = lab.start_runner()?;
        let load_started = load_started(&runner, Duration::from_secs(60)).await?;
        let (status, log) = runner.wait(RUN_TIMEOUT).await?;
        let seen = watch.finish().await?;
        ensure!(status.success(), "the runner failed: {status:?}");
        ensure!(log.contains("report written"), "runner log:\n{log}");

        // The chaos objects: the plan, on time, and all deleted.
        let down = lab.object_name(CATALOG_DOWN.0);
        let slow = lab.object_name(SLOW_CATALOG.0);
        ensure!(
            seen.keys().cloned().collect::<Vec<_>>() == [down.clone(), slow.clone()],
            "chaos objects seen: {:?}",
            seen.keys()
        );
        let outage = &seen[&down];
        ensure!(
            outage.kind == ChaosKind::PodChaos,
            "{down} is a {}",
            outage.kind
        );
        let spec = &outage.object["spec"];
        ensure!(
            spec["action"] == "pod-failure"
                && spec["mode"] == "all"
                && spec["duration"] == "3s"
                && spec["selector"] == selector(&ns, &lab.name, "catalog"),
            "{down}: {spec:#}"
        );
        let labels = &outage.object["metadata"]["labels"];
        ensure!(
            labels["commlab.dev/fault"] == CATALOG_DOWN.0
                && labels["app.kubernetes.io/instance"] == lab.name.as_str(),
            "{down} labels {labels}"
        );
        owned_by_the_pattern(&lab, &outage.object)?;
        check_timing(outage, &down, CATALOG_DOWN, load_started)?;

        let delay = &seen[&slow];
        ensure!(
            delay.kind == ChaosKind::NetworkChaos,
            "{slow} is a {}",
            delay.kind
        );
        let spec = &delay.object["spec"];
        ensure!(
            spec["action"] == "delay"
                && spec["mode"] == "all"
                && spec["duration"] == "3s"
                && spec["delay"]["latency"] == "100ms"
                && spec["direction"] == "to"
                && spec["selector"] == selector(&ns, &lab.name, "catalog")
                && spec["target"]["selector"] == selector(&ns, &lab.name, "orders"),
            "{slow}: {spec:#}"
        );
        owned_by_the_pattern(&lab, &delay.object)?;
        check_timing(delay, &slow, SLOW_CATALOG, load_started)?;
        ensure!(
            chaos_objects(&client, &ns).await?.is_empty(),
            "chaos objects are left after the run"
        );

        // The report ConfigMap: the runner's, of generation 1, owned by the pattern.
        let report_cm = lab.config_maps().get(&lab.report_name()).await?;
        let labels = report_cm.labels();
        let expected_labels = BTreeMap::from(
            [
                ("app.kubernetes.io/name", "commlab"),
                ("app.kubernetes.io/instance", "direct"),
                ("app.kubernetes.io/component", "report"),
                ("app.kubernetes.io/managed-by", "commlab-runner"),
                ("commlab.dev/generation", "1"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        ensure!(labels == &expected_labels, "report labels {labels:?}");
        owned_by_the_pattern(&lab, &serde_json::to_value(&report_cm)?)?;
        let text = report_cm
            .data
            .as_ref()
            .and_then(|d| d.get("report.json"))
            .context("report.json in the report ConfigMap")?;
        let report = Report::from_json(text)?;
        ensure!(
            report.patterns.len() == 1,
            "{} patterns",
            report.patterns.len()
        );
        let pattern = &report.patterns[0];
        ensure!(pattern.pattern == Pattern::DirectApiCall);
        // Nothing acted on the chaos objects, and the runner says so
        // rather than measuring windows in which no fault was in force.
        ensure!(pattern.faults.is_empty(), "measured {:?}", pattern.faults);
        let not_applied: Vec<_> = pattern
            .faults_not_applied
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        ensure!(
            not_applied == [CATALOG_DOWN.0, SLOW_CATALOG.0],
            "not applied {not_applied:?}"
        );
        ensure!(
            pattern.faults_not_applied.iter().all(|f| f.reason
                == "not confirmed in force within 3s: Chaos Mesh has written no status for it \
                    (is its controller running?)"),
            "reasons {:?}",
            pattern.faults_not_applied
        );
        ensure!(
            pattern.baseline.achieved_rps > 25.0 && pattern.baseline.success_ratio > 0.9,
            "baseline {:?}",
            pattern.baseline
        );

        // The operator summarises it: Completed, results, printer columns.
        let cp = poll_until(
            RUN_TIMEOUT,
            "the pattern to be Completed with results",
            || async {
                let cp = lab.patterns().get(&lab.name).await?;
                let status = cp.status.as_ref();
                let done = status.and_then(|s| s.phase) == Some(Phase::Completed)
                    && status.is_some_and(|s| s.results.is_some());
                Ok(done.then_some(cp))
            },
        )
        .await?;
        let status = cp.status.context("status")?;
        let results = status.results.context("results")?;
        ensure!(
            status.report.as_ref().map(|r| r.config_map.as_str()) == Some("direct-report"),
            "status.report {:?}",
            status.report
        );
        ensure!(
            status
                .conditions
                .iter()
                .any(|c| c.type_ == "ExperimentComplete" && c.status == "True"),
            "conditions {:?}",
            status.conditions
        );
        ensure!(
            results.faults.is_empty() && results.faults_not_applied == pattern.faults_not_applied,
            "results.faults {:?}, not applied {:?}",
            results.faults,
            results.faults_not_applied
        );
        let complete = status
            .conditions
            .iter()
            .find(|c| c.type_ == "ExperimentComplete")
            .context("ExperimentComplete")?;
        ensure!(
            complete
                .message
                .contains("not applied, so not judged: catalog-down ("),
            "{}",
            complete.message
        );
        let verdict = format!("{:?}", results.verdict);
        ensure!(matches!(results.verdict, Verdict::Pass | Verdict::Fail));

        let table = support::kubectl(&["get", "cpat", &lab.name, "--namespace", &ns]).await?;
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|line| line.split_whitespace().collect())
            .collect();
        ensure!(
            rows.len() == 2
                && rows[0]
                    == [
                        "NAME",
                        "PATTERN",
                        "PHASE",
                        "P99",
                        "AVAILABILITY",
                        "STALENESS",
                        "VERDICT",
                        "AGE"
                    ],
            "kubectl get cpat:\n{table}"
        );
        let display = &results.display;
        ensure!(
            rows[1][..7]
                == [
                    "direct",
                    "DirectApiCall",
                    "Completed",
                    display.p99.as_str(),
                    display.availability.as_str(),
                    display.staleness.as_str(),
                    verdict.as_str(),
                ]
                && !display.p99.is_empty()
                && display.availability == "-",
            "kubectl get cpat:\n{table}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn deleting_a_pattern_mid_experiment_leaves_no_chaos_objects() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    with_temp_namespace(|client, ns| async move {
        let lab = Lab::set_up(&client, &ns, "doomed").await?;
        let runner = lab.start_runner()?;
        let down = lab.object_name(CATALOG_DOWN.0);
        let first = poll_until(
            Duration::from_secs(60),
            "the first chaos object",
            || async { Ok(chaos_objects(&client, &ns).await?.remove(&down)) },
        )
        .await?;
        owned_by_the_pattern(&lab, &serde_json::to_value(&first.1)?)?;

        // The runner is frozen, so it cannot delete the object: the
        // operator's finalizer does before the pattern goes (Kubernetes'
        // garbage collector would after).
        runner.signal(Signal::SIGSTOP)?;
        lab.patterns()
            .delete(&lab.name, &DeleteParams::background())
            .await?;
        poll_until(
            GC_TIMEOUT,
            "the operator to delete the chaos objects",
            || async { Ok(chaos_objects(&client, &ns).await?.is_empty().then_some(())) },
        )
        .await?;

        // Woken up, the runner notices its pattern is gone (its own
        // ServiceAccount and Role went with it), or still being deleted,
        // and stops.
        runner.signal(Signal::SIGCONT)?;
        let (status, log) = runner.wait(Duration::from_secs(60)).await?;
        let last = log.lines().last().unwrap_or_default();
        ensure!(
            status.code() == Some(1)
                && (last.contains("so it was most likely deleted; stopping")
                    || last.contains("does not exist (it was deleted)")
                    || last.contains("is being deleted (it was deleted;")),
            "the runner of a deleted pattern: {status:?}\n{log}"
        );
        // Whatever it injected after waking up is gone too, by it or by the collector.
        poll_until(GC_TIMEOUT, "no chaos objects", || async {
            Ok(chaos_objects(&client, &ns).await?.is_empty().then_some(()))
        })
        .await?;
        ensure!(
            lab.config_maps()
                .get_opt(&lab.report_name())
                .await?
                .is_none(),
            "no report for a deleted pattern"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_runner_stopped_by_sigterm_deletes_its_chaos_objects() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    with_temp_namespace(|client, ns| async move {
        let lab = Lab::set_up(&client, &ns, "stopped").await?;
        let runner = lab.start_runner()?;
        let down = lab.object_name(CATALOG_DOWN.0);
        poll_until(
            Duration::from_secs(60),
            "the first chaos object",
            || async { Ok(chaos_objects(&client, &ns).await?.remove(&down)) },
        )
        .await?;

        // What a deleted Job or its deadline does to the pod.
        runner.signal(Signal::SIGTERM)?;
        let (status, log) = runner.wait(Duration::from_secs(25)).await?;
        ensure!(
            status.code() == Some(143) && log.contains("interrupted by SIGTERM"),
            "the runner after SIGTERM: {status:?}\n{log}"
        );
        // The pattern still exists: the runner itself deleted its objects.
        ensure!(lab.patterns().get_opt(&lab.name).await?.is_some());
        let left = chaos_objects(&client, &ns).await?;
        ensure!(left.is_empty(), "left after SIGTERM: {:?}", left.keys());
        ensure!(
            lab.config_maps()
                .get_opt(&lab.report_name())
                .await?
                .is_none(),
            "no report from an interrupted runner"
        );
        Ok(())
    })
    .await
}

#[test]
fn the_runner_and_the_operator_agree_on_the_report() {
    use commlab_controller::experiment;
    use commlab_workload::engine::cluster;
    assert_eq!(experiment::REPORT_KEY, cluster::REPORT_KEY);
    assert_eq!(experiment::GENERATION_LABEL, cluster::GENERATION_LABEL);
    assert_ne!(
        cluster::RUNNER_MANAGER,
        commlab_controller::labels::MANAGER,
        "the operator must not prune the runner's report"
    );
}

#[test]
fn the_player_selects_the_operators_runner_jobs() {
    use commlab_controller::{experiment::RUNNER, labels};
    let runner_labels = labels::child("shop", RUNNER);
    for pair in commlab_e2e::player::RUNNER_JOB_SELECTOR.split(',') {
        let (key, value) = pair.split_once('=').unwrap();
        assert_eq!(
            runner_labels.get(key).map(String::as_str),
            Some(value),
            "{key}"
        );
    }
}
