//! The runner player: plays the operator's runner Jobs for real on this
//! machine, because kwok runs no containers.
//!
//! It watches the runner Jobs of one namespace (the operator labels them
//! `app.kubernetes.io/component=runner`; kwok keeps their pods Running when
//! the operator adds `commlab.dev/kwok-keep-running=true`). For each new
//! one, one at a time, it
//! 1. reads the owning CommunicationPattern and skips the Job when it is of
//!    an older generation or its report is already written;
//! 2. starts that pattern's services as local processes on loopback
//!    ([`LocalStack`]: PostgreSQL, NATS for the broker patterns, catalog,
//!    orders);
//! 3. takes a token of the Job's ServiceAccount and runs the Job's own
//!    command (`commlab experiment --in-cluster ...`, [`RunnerJob`]) with it,
//!    pointed at the local services, within the Job's deadline;
//! 4. stops the services.
//!
//! The runner writes the report ConfigMap as it would in a pod, and the
//! operator completes the pattern from it. Each play is recorded with its
//! outcome ([`Play`]); a failed play is printed when it happens and returned
//! by [`RunnerPlayer::failures`] and [`RunnerPlayer::stop`].

use std::{
    collections::HashSet,
    fmt,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use commlab_api::CommunicationPattern;
use commlab_workload::{
    engine::cluster::{GENERATION_LABEL, TargetOverrides, report_name},
    infra::{LocalStack, NatsServer, TopologyConfig},
};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::{batch::v1::Job, core::v1::ConfigMap};
use kube::{
    Api, Client, ResourceExt as _,
    runtime::{WatchStreamExt as _, watcher},
};
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    runner::{RunnerJob, RunnerProcess},
    token::{service_account_token, token_kubeconfig},
};

/// Selects the operator's runner Jobs (`operator/controller/src/labels.rs`,
/// component `runner` of `experiment.rs`).
pub const RUNNER_JOB_SELECTOR: &str =
    "app.kubernetes.io/component=runner,app.kubernetes.io/managed-by=commlab-operator";
/// Longest the local services may take to start (PostgreSQL's initdb is
/// most of it).
const STACK_START_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest stopping the local services may take.
const STACK_STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a runner may run when its Job has no deadline.
const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(900);
/// Between SIGTERM and SIGKILL when the player is stopped mid-run: the
/// runner deletes its chaos objects in that time.
const TERMINATE_GRACE: Duration = Duration::from_secs(25);
/// Bounds each request of the player's own (admin) client.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the runner's RBAC may lag behind its Job, and how often it is
/// checked meanwhile.
const ACCESS_TIMEOUT: Duration = Duration::from_secs(30);
const ACCESS_POLL: Duration = Duration::from_millis(250);
/// Lines of a failed runner's log kept in its [`Play`].
const LOG_TAIL_LINES: usize = 20;

/// What the player needs besides a client.
#[derive(Clone, Debug)]
pub struct PlayerConfig {
    /// The namespace whose runner Jobs are played.
    pub namespace: String,
    /// The `commlab` binary: the runner and the services.
    pub binary: PathBuf,
    /// The admin kubeconfig the client came from: the runner's kubeconfig
    /// points at the same API server, with the runner's token instead.
    pub kubeconfig: PathBuf,
}

/// One runner Job the player dealt with.
#[derive(Clone, Debug)]
pub struct Play {
    pub job: String,
    /// The CommunicationPattern.
    pub pattern: String,
    pub took: Duration,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The runner ran and exited successfully.
    Played,
    /// Not played, and why (an older generation, a report already written).
    Skipped(String),
    /// The play failed: what went wrong, with the runner's last lines.
    Failed(String),
}

impl fmt::Display for Play {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let took = self.took.as_secs_f64();
        match &self.outcome {
            Outcome::Played => write!(f, "played {} ({}) in {took:.1}s", self.job, self.pattern),
            Outcome::Skipped(why) => write!(f, "skipped {} ({}): {why}", self.job, self.pattern),
            Outcome::Failed(why) => write!(
                f,
                "FAILED {} ({}) after {took:.1}s: {why}",
                self.job, self.pattern
            ),
        }
    }
}

/// The player, running in a task until [`RunnerPlayer::stop`].
pub struct RunnerPlayer {
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
    plays: Arc<Mutex<Vec<Play>>>,
}

impl RunnerPlayer {
    /// Starts watching `config.namespace` for runner Jobs.
    pub fn start(client: Client, config: PlayerConfig) -> Self {
        let (stop, stopped) = watch::channel(false);
        let plays = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(watch_and_play(client, config, plays.clone(), stopped));
        Self { stop, task, plays }
    }

    /// Every Job dealt with so far, in order.
    pub fn plays(&self) -> Vec<Play> {
        self.plays.lock().unwrap().clone()
    }

    /// An error naming every failed play so far, or the player's own
    /// failure if it has ended; `Ok` while all is well.
    pub fn failures(&self) -> anyhow::Result<()> {
        if self.task.is_finished() {
            bail!(
                "the runner player has stopped on its own; plays: {:#?}",
                self.plays()
            );
        }
        failed_plays(&self.plays())
    }

    /// Stops the player: a runner still running gets SIGTERM (and cleans
    /// up its chaos objects) and its services are stopped. Returns every
    /// play, or an error when the player failed or any play did.
    pub async fn stop(self) -> anyhow::Result<Vec<Play>> {
        let _ = self.stop.send(true);
        // A play in progress takes at most the grace plus stopping its services.
        let bound = TERMINATE_GRACE + STACK_STOP_TIMEOUT + REQUEST_TIMEOUT;
        match tokio::time::timeout(bound, self.task).await {
            Ok(joined) => joined.context("the runner player panicked")??,
            Err(_) => bail!("the runner player did not stop within {bound:?}"),
        }
        let plays = self.plays.lock().unwrap().clone();
        failed_plays(&plays)?;
        Ok(plays)
    }
}

fn failed_plays(plays: &[Play]) -> anyhow::Result<()> {
    let failed: Vec<String> = plays
        .iter()
        .filter(|p| matches!(p.outcome, Outcome::Failed(_)))
        .map(Play::to_string)
        .collect();
    ensure!(failed.is_empty(), "{}", failed.join("\n"));
    Ok(())
}

async fn watch_and_play(
    client: Client,
    config: PlayerConfig,
    plays: Arc<Mutex<Vec<Play>>>,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), &config.namespace);
    let watch_config = watcher::Config::default().labels(RUNNER_JOB_SELECTOR);
    // The watcher re-lists and retries with backoff after an error: each
    // error is printed, and the watch goes on.
    let mut events = watcher(jobs, watch_config)
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut seen = HashSet::new();
    loop {
        let next = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return Ok(()),
            next = events.try_next() => next,
        };
        let job = match next {
            Ok(Some(job)) => job,
            Ok(None) => bail!("the watch of runner Jobs in {} ended", config.namespace),
            Err(error) => {
                eprintln!(
                    "player: watching runner Jobs in {}: {error}",
                    config.namespace
                );
                continue;
            }
        };
        let Some(uid) = job.uid() else { continue };
        if finished(&job) || job.metadata.deletion_timestamp.is_some() || !seen.insert(uid) {
            continue;
        }
        let started = Instant::now();
        let (pattern, outcome) = match RunnerJob::from_job(&job) {
            Ok(runner) => {
                let outcome = play(&client, &config, &runner, &mut stopped).await;
                (runner.pattern, outcome)
            }
            Err(error) => (String::new(), Outcome::Failed(format!("{error:#}"))),
        };
        let record = Play {
            job: job.name_any(),
            pattern,
            took: started.elapsed(),
            outcome,
        };
        eprintln!("player: {record}");
        plays.lock().unwrap().push(record);
    }
}

/// Whether Kubernetes has ended the Job (completed, failed, past its deadline).
fn finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True")
        })
}

async fn play(
    client: &Client,
    config: &PlayerConfig,
    runner: &RunnerJob,
    stopped: &mut watch::Receiver<bool>,
) -> Outcome {
    let read = bounded(
        "reading the CommunicationPattern",
        read_pattern(client, runner),
    )
    .await;
    let cp = match read.and_then(|read| read) {
        Ok(Ok(cp)) => cp,
        Ok(Err(skip)) => return Outcome::Skipped(skip),
        Err(error) => return Outcome::Failed(format!("{error:#}")),
    };
    let started = tokio::select! {
        started = start_services(config, &cp) => started,
        _ = stopped.wait_for(|stop| *stop) => {
            return Outcome::Failed("the player was stopped while the services started".into());
        }
    };
    let stack = match started {
        Ok(stack) => stack,
        Err(error) => return Outcome::Failed(format!("{error:#}")),
    };
    let outcome = run_runner(client, config, runner, &stack, stopped).await;
    if let Err(error) = stop_services(stack).await {
        eprintln!(
            "player: stopping the services of {}: {error:#}",
            runner.pattern
        );
    }
    match outcome {
        Ok(()) => Outcome::Played,
        Err(error) => Outcome::Failed(format!("{error:#}")),
    }
}

/// The runner's CommunicationPattern, or why its Job is not to be played.
async fn read_pattern(
    client: &Client,
    runner: &RunnerJob,
) -> anyhow::Result<Result<CommunicationPattern, String>> {
    let patterns: Api<CommunicationPattern> = Api::namespaced(client.clone(), &runner.namespace);
    let Some(cp) = patterns.get_opt(&runner.pattern).await? else {
        return Ok(Err(format!(
            "CommunicationPattern {} is gone",
            runner.pattern
        )));
    };
    if cp.uid().as_deref() != Some(runner.owner_uid.as_str()) {
        return Ok(Err(format!(
            "the Job is for an earlier {} (uid {})",
            runner.pattern, runner.owner_uid
        )));
    }
    let current = cp.metadata.generation.unwrap_or_default().to_string();
    if current != runner.generation {
        return Ok(Err(format!(
            "the Job is for generation {}, {} is at generation {current}",
            runner.generation, runner.pattern
        )));
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &runner.namespace);
    let report = config_maps.get_opt(&report_name(&runner.pattern)).await?;
    let reported = report.is_some_and(|cm| {
        cm.labels().get(GENERATION_LABEL).map(String::as_str) == Some(runner.generation.as_str())
    });
    if reported {
        return Ok(Err(format!(
            "generation {} already has its report",
            runner.generation
        )));
    }
    Ok(Ok(cp))
}

/// The pattern's services on loopback, as its spec deploys them.
async fn start_services(
    config: &PlayerConfig,
    cp: &CommunicationPattern,
) -> anyhow::Result<LocalStack> {
    let spec = &cp.spec;
    let mut topology = TopologyConfig::new(spec.pattern, &config.binary);
    topology.products = i64::from(spec.workload.products);
    topology.orders_replicas = usize::try_from(spec.components.replicas.orders.max(1))?;
    let started = tokio::time::timeout(STACK_START_TIMEOUT, LocalStack::launch(topology))
        .await
        .with_context(|| {
            format!(
                "the services of {} did not start within {STACK_START_TIMEOUT:?}",
                spec.pattern
            )
        })?;
    started.with_context(|| format!("starting the services of {} locally", spec.pattern))
}

async fn stop_services(stack: LocalStack) -> anyhow::Result<()> {
    // Dropping a stack stops its processes, blocking the thread while they
    // shut down: not on the runtime's threads.
    tokio::time::timeout(
        STACK_STOP_TIMEOUT,
        tokio::task::spawn_blocking(move || drop(stack)),
    )
    .await
    .with_context(|| format!("the services did not stop within {STACK_STOP_TIMEOUT:?}"))?
    .context("stopping the services panicked")
}

/// The loopback URLs of the stack's services: the runner's targets.
pub fn local_targets(stack: &LocalStack) -> TargetOverrides {
    TargetOverrides {
        orders: Some(stack.topology.orders_url()),
        catalog: Some(stack.topology.catalog_url()),
        broker: stack.nats.as_ref().map(NatsServer::url),
    }
}

/// Runs the runner with the ServiceAccount's token against `stack`, until
/// it exits, its Job's deadline passes, or the player is stopped.
async fn run_runner(
    client: &Client,
    config: &PlayerConfig,
    runner: &RunnerJob,
    stack: &LocalStack,
    stopped: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let targets = local_targets(stack);
    ensure_loopback(&targets)?;
    let mut runner = runner.clone();
    bounded(
        "reading the runner's Secrets",
        runner.resolve_secrets(client),
    )
    .await??;
    let kubeconfig = runner_kubeconfig(client, config, &runner).await?;
    let command = runner.command(&config.binary, &targets, kubeconfig.path());
    let mut process = RunnerProcess::start(command, &runner.pattern)?;
    let timeout = runner.deadline.unwrap_or(DEFAULT_RUN_TIMEOUT);
    enum End {
        Exited(std::io::Result<std::process::ExitStatus>),
        Deadline,
        Stopped,
    }
    let end = tokio::select! {
        status = process.exited() => End::Exited(status),
        _ = tokio::time::sleep(timeout) => End::Deadline,
        _ = stopped.wait_for(|stop| *stop) => End::Stopped,
    };
    let status = match end {
        End::Exited(status) => status.context("waiting for the runner")?,
        // As Kubernetes would stop the pod: SIGTERM, so that the runner
        // deletes its chaos objects.
        End::Deadline => {
            let (status, _) = process.terminate(TERMINATE_GRACE).await?;
            bail!(
                "the runner ran past its Job's deadline ({timeout:?}) and was stopped ({status})"
            );
        }
        End::Stopped => {
            let (status, _) = process.terminate(TERMINATE_GRACE).await?;
            bail!("the player was stopped while the runner ran; stopped it ({status})");
        }
    };
    let log = process.finish().await;
    if !status.success() {
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        bail!("the runner exited with {status}; its last lines:\n{tail}");
    }
    Ok(())
}

/// A kubeconfig with a token of the runner's ServiceAccount, once that
/// token may read the runner's CommunicationPattern (the first thing the
/// runner does). The ServiceAccount, Role and RoleBinding may come after the
/// Job: a pod, unlike the player, takes seconds to start. A wait is printed,
/// since it shows that the operator created the Job before its RBAC.
async fn runner_kubeconfig(
    client: &Client,
    config: &PlayerConfig,
    runner: &RunnerJob,
) -> anyhow::Result<tempfile::NamedTempFile> {
    let (ns, account) = (&runner.namespace, &runner.service_account);
    let started = Instant::now();
    let mut waited_for = None;
    loop {
        let token = bounded(
            "requesting the runner's token",
            service_account_token(client, ns, account),
        )
        .await?;
        let denial = match token {
            Ok(token) => {
                let kubeconfig = token_kubeconfig(&config.kubeconfig, ns, &token)?;
                let runner_client = crate::client_from(kubeconfig.path()).await?;
                let patterns: Api<CommunicationPattern> = Api::namespaced(runner_client, ns);
                match bounded(
                    "reading the pattern as the runner",
                    patterns.get(&runner.pattern),
                )
                .await?
                {
                    Ok(_) => {
                        if let Some(what) = waited_for {
                            eprintln!(
                                "player: waited {:.1}s for {what} of {} (it came after its Job)",
                                started.elapsed().as_secs_f64(),
                                runner.job
                            );
                        }
                        return Ok(kubeconfig);
                    }
                    Err(kube::Error::Api(status)) if status.code == 403 => {
                        ("the runner's RBAC", status.message)
                    }
                    Err(error) => {
                        return Err(error).context("reading the pattern with the runner's token");
                    }
                }
            }
            Err(error) => match error.downcast_ref::<kube::Error>() {
                Some(kube::Error::Api(status)) if status.code == 404 => {
                    ("the runner's ServiceAccount", status.message.clone())
                }
                _ => return Err(error),
            },
        };
        waited_for = Some(denial.0);
        if started.elapsed() > ACCESS_TIMEOUT {
            bail!(
                "{} is still missing after {ACCESS_TIMEOUT:?}: {}",
                denial.0,
                denial.1
            );
        }
        tokio::time::sleep(ACCESS_POLL).await;
    }
}

/// The player only ever points a runner at processes of this machine.
fn ensure_loopback(targets: &TargetOverrides) -> anyhow::Result<()> {
    for url in [&targets.orders, &targets.catalog, &targets.broker]
        .into_iter()
        .flatten()
    {
        let host = url
            .split_once("://")
            .map(|(_, rest)| rest)
            .and_then(|rest| rest.split([':', '/']).next())
            .unwrap_or_default();
        ensure!(
            matches!(host, "127.0.0.1" | "localhost" | "[::1]"),
            "{url} is not a loopback address"
        );
    }
    Ok(())
}

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(REQUEST_TIMEOUT, future)
        .await
        .with_context(|| format!("{what} took longer than {REQUEST_TIMEOUT:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        let local = TargetOverrides {
            orders: Some("http://127.0.0.1:8080".into()),
            catalog: Some("http://localhost:8081/".into()),
            broker: Some("nats://127.0.0.1:4222".into()),
        };
        ensure_loopback(&local).unwrap();
        let remote = TargetOverrides {
            orders: Some("http://shop-orders.lab.svc".into()),
            ..local
        };
        let error = ensure_loopback(&remote).unwrap_err();
        assert!(error.to_string().contains("shop-orders.lab.svc"), "{error}");
    }

    #[test]
    fn a_failed_play_makes_the_players_result_an_error_naming_it() {
        let play = |job: &str, outcome| Play {
            job: job.into(),
            pattern: "shop".into(),
            took: Duration::from_secs(3),
            outcome,
        };
        let fine = [
            play("shop-experiment-1", Outcome::Played),
            play("shop-experiment-2", Outcome::Skipped("older".into())),
        ];
        failed_plays(&fine).unwrap();
        let failed = [
            fine[0].clone(),
            play("shop-experiment-3", Outcome::Failed("exit 1".into())),
        ];
        let error = failed_plays(&failed).unwrap_err().to_string();
        assert!(
            error.contains("shop-experiment-3") && error.contains("exit 1"),
            "{error}"
        );
        assert!(!error.contains("shop-experiment-1"), "{error}");
    }
}
