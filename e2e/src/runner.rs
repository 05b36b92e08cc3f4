//! The operator's runner Job, played by a local process: what the Job would
//! run ([`RunnerJob`], read from the Job itself) and the `commlab experiment`
//! process that plays it ([`RunnerProcess`]).
//!
//! kwok runs no containers, so the command of the Job's container is run on
//! this machine instead, with the Job's arguments and environment, with a
//! kubeconfig holding only the runner ServiceAccount's token, and with the
//! services' URLs pointed at local processes (`--orders-url`,
//! `--catalog-url`, `--broker-url`).

use std::{
    collections::BTreeMap,
    path::Path,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use commlab_workload::engine::cluster::TargetOverrides;
use k8s_openapi::api::{batch::v1::Job, core::v1::Secret};
use kube::{Api, Client, ResourceExt as _};
use nix::{sys::signal::Signal, unistd::Pid};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
    task::JoinHandle,
};

/// The subcommand the runner Job's container runs (`commlab experiment`).
const SUBCOMMAND: &str = "experiment";
/// How long the echo of a runner's stderr may lag behind its exit.
const ECHO_DRAIN: Duration = Duration::from_secs(5);

/// One runner Job as the operator created it: the experiment of generation
/// `generation` of CommunicationPattern `namespace/pattern`.
#[derive(Clone, Debug, PartialEq)]
pub struct RunnerJob {
    pub job: String,
    pub namespace: String,
    /// The CommunicationPattern's name (`--name`).
    pub pattern: String,
    /// `COMMLAB_GENERATION`.
    pub generation: String,
    /// `COMMLAB_OWNER_UID`.
    pub owner_uid: String,
    /// The pod's ServiceAccount, whose token the runner gets.
    pub service_account: String,
    /// The container's environment given as values (`COMMLAB_GENERATION`
    /// and `COMMLAB_OWNER_UID` among them; those two are set from the
    /// fields above).
    pub env: BTreeMap<String, String>,
    /// The container's environment taken from Secrets (the chaos
    /// dashboard's token), resolved by [`RunnerJob::resolve_secrets`].
    pub secret_env: Vec<SecretEnv>,
    /// The container's arguments, `experiment --in-cluster ...`.
    pub args: Vec<String>,
    /// `activeDeadlineSeconds`: how long Kubernetes would let it run.
    pub deadline: Option<Duration>,
}

impl RunnerJob {
    /// Reads the runner Job: an error when it is not one (another command,
    /// no ServiceAccount, no generation).
    pub fn from_job(job: &Job) -> anyhow::Result<Self> {
        let name = job.name_any();
        let spec = job
            .spec
            .as_ref()
            .with_context(|| format!("Job {name} has no spec"))?;
        let pod = spec
            .template
            .spec
            .as_ref()
            .with_context(|| format!("Job {name} has no pod spec"))?;
        let [container] = &pod.containers[..] else {
            bail!(
                "Job {name} has {} containers, a runner has one",
                pod.containers.len()
            );
        };
        let args = container.args.clone().unwrap_or_default();
        ensure!(
            args.first().map(String::as_str) == Some(SUBCOMMAND),
            "Job {name} runs {:?} {args:?}, not `commlab {SUBCOMMAND}`",
            container.command
        );
        let arg = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned()
                .with_context(|| format!("Job {name} runs without {flag}: {args:?}"))
        };
        let mut env = BTreeMap::new();
        let mut secret_env = Vec::new();
        for var in container.env.iter().flatten() {
            let secret = var
                .value_from
                .as_ref()
                .and_then(|f| f.secret_key_ref.as_ref());
            match (&var.value, secret) {
                (Some(value), _) => {
                    env.insert(var.name.clone(), value.clone());
                }
                (None, Some(secret)) => secret_env.push(SecretEnv {
                    name: var.name.clone(),
                    secret: secret.name.clone(),
                    key: secret.key.clone(),
                }),
                (None, None) if var.value_from.is_none() => {
                    env.insert(var.name.clone(), String::new());
                }
                (None, None) => bail!(
                    "Job {name} takes {} from {:?}: only values and Secrets can be played",
                    var.name,
                    var.value_from
                ),
            }
        }
        let env_var = |key: &str| {
            env.get(key)
                .cloned()
                .with_context(|| format!("Job {name} sets no {key}"))
        };
        Ok(Self {
            job: name.clone(),
            namespace: arg("--namespace")?,
            pattern: arg("--name")?,
            generation: env_var("COMMLAB_GENERATION")?,
            owner_uid: env_var("COMMLAB_OWNER_UID")?,
            service_account: pod
                .service_account_name
                .clone()
                .with_context(|| format!("Job {name} names no ServiceAccount"))?,
            env,
            secret_env,
            args,
            deadline: spec
                .active_deadline_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
        })
    }

    /// Reads the Secrets the environment refers to, as the kubelet would,
    /// and moves their values into [`RunnerJob::env`].
    pub async fn resolve_secrets(&mut self, client: &Client) -> anyhow::Result<()> {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &self.namespace);
        for var in std::mem::take(&mut self.secret_env) {
            let secret = secrets
                .get(&var.secret)
                .await
                .with_context(|| format!("reading Secret {} for {}", var.secret, var.name))?;
            let value = secret
                .data
                .as_ref()
                .and_then(|data| data.get(&var.key))
                .with_context(|| format!("Secret {} has no key {}", var.secret, var.key))?;
            let value = String::from_utf8(value.0.clone())
                .with_context(|| format!("{} in Secret {} is not UTF-8", var.key, var.secret))?;
            self.env.insert(var.name, value);
        }
        Ok(())
    }

    /// The Job's command as `binary` (the `commlab` CLI), with the Job's
    /// arguments and environment, the targets' URLs and `kubeconfig` as its
    /// only credentials. stderr is piped (see [`RunnerProcess`]).
    pub fn command(&self, binary: &Path, targets: &TargetOverrides, kubeconfig: &Path) -> Command {
        let mut command = Command::new(binary);
        command.args(&self.args);
        let urls = [
            ("--orders-url", &targets.orders),
            ("--catalog-url", &targets.catalog),
            ("--broker-url", &targets.broker),
        ];
        for (flag, url) in urls {
            if let Some(url) = url {
                command.args([flag, url]);
            }
        }
        command
            .envs(&self.env)
            .env("KUBECONFIG", kubeconfig)
            .env("COMMLAB_GENERATION", &self.generation)
            .env("COMMLAB_OWNER_UID", &self.owner_uid)
            .env("RUST_LOG", "info,kube=warn")
            .env("NO_COLOR", "1")
            // Plain lines: they are echoed with a prefix and searched.
            .env_remove("COMMLAB_LOG_FORMAT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }
}

/// An environment variable of the runner taken from a Secret's key.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretEnv {
    pub name: String,
    pub secret: String,
    pub key: String,
}

/// A stderr line of a runner and when it was read.
type Line = (Instant, String);

/// `commlab experiment` running as a process; its stderr is echoed to ours,
/// each line prefixed, and kept.
pub struct RunnerProcess {
    child: Child,
    lines: Arc<Mutex<Vec<Line>>>,
    echo: JoinHandle<()>,
}

impl RunnerProcess {
    /// Starts `command` (from [`RunnerJob::command`]); `prefix` marks its lines.
    pub fn start(mut command: Command, prefix: &str) -> anyhow::Result<Self> {
        let mut child = command.spawn().context("starting commlab experiment")?;
        let stderr = child
            .stderr
            .take()
            .context("the runner's stderr is not piped")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (kept, prefix) = (lines.clone(), prefix.to_owned());
        let echo = tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                eprintln!("runner {prefix}| {line}");
                kept.lock().unwrap().push((Instant::now(), line));
            }
        });
        Ok(Self { child, lines, echo })
    }

    pub fn pid(&self) -> anyhow::Result<Pid> {
        let pid = self.child.id().context("the runner has exited")?;
        Ok(Pid::from_raw(i32::try_from(pid)?))
    }

    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        nix::sys::signal::kill(self.pid()?, signal)?;
        Ok(())
    }

    /// When the runner first logged a line containing `text`, if it has.
    pub fn logged(&self, text: &str) -> Option<Instant> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find(|(_, line)| line.contains(text))
            .map(|(at, _)| *at)
    }

    /// Resolves when the runner exits (cancel-safe: it can be raced against
    /// a deadline and the runner still be stopped afterwards).
    pub async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Waits up to `timeout` for the runner to exit; its status and
    /// everything it logged. On timeout the runner is killed.
    pub async fn wait(mut self, timeout: Duration) -> anyhow::Result<(ExitStatus, String)> {
        let Ok(status) = tokio::time::timeout(timeout, self.exited()).await else {
            let _ = self.child.kill().await;
            bail!(
                "the runner was still running after {timeout:?}; killed it. Its log:\n{}",
                self.finish().await
            );
        };
        Ok((status?, self.finish().await))
    }

    /// SIGTERM (what Kubernetes sends a pod it stops), then SIGKILL if the
    /// runner has not ended within `grace`; its status and log.
    pub async fn terminate(mut self, grace: Duration) -> anyhow::Result<(ExitStatus, String)> {
        if self.child.try_wait()?.is_none() {
            self.signal(Signal::SIGTERM)?;
        }
        let status = match tokio::time::timeout(grace, self.exited()).await {
            Ok(status) => status?,
            Err(_) => {
                self.child.kill().await?;
                self.exited().await?
            }
        };
        Ok((status, self.finish().await))
    }

    /// Everything the runner logged, once it has exited (the echo ends
    /// when the pipe closes, which it does with the process).
    pub async fn finish(mut self) -> String {
        let _ = tokio::time::timeout(ECHO_DRAIN, &mut self.echo).await;
        let lines = self.lines.lock().unwrap();
        let text: Vec<&str> = lines.iter().map(|(_, line)| line.as_str()).collect();
        text.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(args: &[&str], env: serde_json::Value) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "shop-experiment-3" },
            "spec": {
                "activeDeadlineSeconds": 400,
                "template": { "spec": {
                    "serviceAccountName": "shop-runner",
                    "containers": [{ "name": "runner", "command": ["commlab"], "args": args, "env": env }],
                } },
            },
        }))
        .unwrap()
    }

    const ARGS: [&str; 6] = [
        "experiment",
        "--in-cluster",
        "--namespace",
        "lab",
        "--name",
        "shop",
    ];

    #[test]
    fn a_runner_job_is_read_from_its_container() {
        let env = serde_json::json!([
            { "name": "COMMLAB_GENERATION", "value": "3" },
            { "name": "COMMLAB_OWNER_UID", "value": "uid-1" },
            { "name": "COMMLAB_CHAOS_BACKEND", "value": "dashboard" },
            { "name": "COMMLAB_CHAOS_DASHBOARD_TOKEN", "valueFrom": { "secretKeyRef": { "name": "shop-dashboard-token", "key": "token" } } },
        ]);
        let runner = RunnerJob::from_job(&job(&ARGS, env)).unwrap();
        assert_eq!(
            runner,
            RunnerJob {
                job: "shop-experiment-3".into(),
                namespace: "lab".into(),
                pattern: "shop".into(),
                generation: "3".into(),
                owner_uid: "uid-1".into(),
                service_account: "shop-runner".into(),
                env: BTreeMap::from([
                    ("COMMLAB_GENERATION".into(), "3".into()),
                    ("COMMLAB_OWNER_UID".into(), "uid-1".into()),
                    ("COMMLAB_CHAOS_BACKEND".into(), "dashboard".into()),
                ]),
                secret_env: vec![SecretEnv {
                    name: "COMMLAB_CHAOS_DASHBOARD_TOKEN".into(),
                    secret: "shop-dashboard-token".into(),
                    key: "token".into(),
                }],
                args: ARGS.map(String::from).to_vec(),
                deadline: Some(Duration::from_secs(400)),
            }
        );
    }

    #[test]
    fn a_job_that_is_not_a_runner_is_refused_with_the_reason() {
        let env = serde_json::json!([{ "name": "COMMLAB_GENERATION", "value": "3" }]);
        let error = RunnerJob::from_job(&job(&ARGS, env)).unwrap_err();
        assert!(error.to_string().contains("COMMLAB_OWNER_UID"), "{error}");
        let error = RunnerJob::from_job(&job(&["serve"], serde_json::json!([]))).unwrap_err();
        assert!(
            error.to_string().contains("not `commlab experiment`"),
            "{error}"
        );
        let from_the_pod = serde_json::json!([
            { "name": "COMMLAB_GENERATION", "value": "3" },
            { "name": "COMMLAB_OWNER_UID", "value": "uid-1" },
            { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
        ]);
        let error = RunnerJob::from_job(&job(&ARGS, from_the_pod)).unwrap_err();
        assert!(error.to_string().contains("POD_NAME"), "{error}");
    }

    #[test]
    fn the_command_adds_the_local_targets_to_the_jobs_arguments() {
        let env = serde_json::json!([
            { "name": "COMMLAB_GENERATION", "value": "3" },
            { "name": "COMMLAB_OWNER_UID", "value": "uid-1" },
        ]);
        let runner = RunnerJob::from_job(&job(&ARGS, env)).unwrap();
        let targets = TargetOverrides {
            orders: Some("http://127.0.0.1:1".into()),
            catalog: Some("http://127.0.0.1:2".into()),
            broker: None,
        };
        let command = runner.command(Path::new("/bin/commlab"), &targets, Path::new("/k"));
        let std = command.as_std();
        let args: Vec<_> = std.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                &ARGS[..],
                &[
                    "--orders-url",
                    "http://127.0.0.1:1",
                    "--catalog-url",
                    "http://127.0.0.1:2"
                ]
            ]
            .concat()
        );
        let env: BTreeMap<_, _> = std
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?, v?.to_str()?)))
            .collect();
        assert_eq!(env["COMMLAB_GENERATION"], "3");
        assert_eq!(env["COMMLAB_OWNER_UID"], "uid-1");
        assert_eq!(env["KUBECONFIG"], "/k");
    }
}
