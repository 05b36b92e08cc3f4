//! Helpers for the operator tests: CRDs, example manifests, the operator as
//! a process, and the chart's RBAC with a ServiceAccount token.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context as _, bail};
use commlab_api::{CommunicationPattern, CommunicationPatternStatus, Phase};
use commlab_e2e::poll_until;
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{ConfigMap, Secret, Service},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DynamicObject, Patch, PatchParams, PostParams},
    discovery::Discovery,
};
use serde_json::Value;
use tokio::process::{Child, Command};

const FIELD_MANAGER: &str = "commlab-tests";
/// Longest a helm command may run (install waits for nothing, so this is ample).
const HELM_TIMEOUT: Duration = Duration::from_secs(120);

/// The repository root (`operator/controller/../..`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Applies the CRDs as `crdgen` renders them and waits until they are Established.
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    commlab_e2e::crds::install_commlab_crds(client).await
}

pub fn example(file: &str) -> anyhow::Result<Value> {
    let path = repo_root().join("examples").join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Every example that is a CommunicationPattern.
pub fn pattern_examples() -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(repo_root().join("examples"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        let value = example(path.file_name().unwrap().to_str().unwrap())?;
        if value["kind"] == "CommunicationPattern" {
            out.push(value);
        }
    }
    Ok(out)
}

/// Creates a CommunicationPattern from a manifest and returns its name.
pub async fn apply_manifest(client: &Client, ns: &str, manifest: &Value) -> anyhow::Result<String> {
    let cp: CommunicationPattern = serde_json::from_value(manifest.clone())?;
    let api: Api<CommunicationPattern> = Api::namespaced(client.clone(), ns);
    Ok(api.create(&PostParams::default(), &cp).await?.name_any())
}

/// Waits until the operator has seen the latest generation and reports Ready.
pub async fn wait_ready(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<CommunicationPattern> {
    wait_current(client, ns, name, timeout, " to be Ready", |status| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
    .await
}

/// Waits until the experiment of the current generation has ended, well or not.
pub async fn wait_experiment_settled(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<CommunicationPattern> {
    wait_current(
        client,
        ns,
        name,
        timeout,
        "'s experiment to end",
        |status| matches!(status.phase, Some(Phase::Completed | Phase::Failed)),
    )
    .await
}

/// Polls the pattern until its status is of the latest generation (so it
/// cannot be a leftover of the previous spec) and `holds` is true of it.
async fn wait_current(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Duration,
    what: &str,
    holds: impl Fn(&CommunicationPatternStatus) -> bool,
) -> anyhow::Result<CommunicationPattern> {
    let api: Api<CommunicationPattern> = Api::namespaced(client.clone(), ns);
    poll_until(timeout, &format!("{name}{what}"), || async {
        let cp = api.get(name).await?;
        let settled = cp.status.as_ref().is_some_and(|status| {
            status.observed_generation == cp.metadata.generation && holds(status)
        });
        Ok(settled.then_some(cp))
    })
    .await
}

/// `kind/name → resourceVersion` of every child labelled as the instance's.
pub async fn owned_resource_versions(
    client: &Client,
    ns: &str,
    instance: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let selector = commlab_controller::labels::owned_by(instance);
    let mut out = BTreeMap::new();
    async fn collect<K>(
        client: &Client,
        ns: &str,
        selector: &str,
        out: &mut BTreeMap<String, String>,
    ) -> anyhow::Result<()>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        for o in api
            .list(&kube::api::ListParams::default().labels(selector))
            .await?
        {
            // Objects being deleted are already gone as far as the owner is concerned.
            if o.meta().deletion_timestamp.is_none() {
                out.insert(
                    format!("{}/{}", K::kind(&()), o.name_any()),
                    o.resource_version().unwrap_or_default(),
                );
            }
        }
        Ok(())
    }
    collect::<Deployment>(client, ns, &selector, &mut out).await?;
    collect::<StatefulSet>(client, ns, &selector, &mut out).await?;
    collect::<Service>(client, ns, &selector, &mut out).await?;
    collect::<Secret>(client, ns, &selector, &mut out).await?;
    collect::<ConfigMap>(client, ns, &selector, &mut out).await?;
    Ok(out)
}

/// The operator binary running as a process, stopped on drop.
pub struct Operator {
    _child: Child,
    metrics_url: String,
    _kubeconfig: Option<tempfile::NamedTempFile>,
}

impl Operator {
    /// With the admin kubeconfig.
    pub async fn start_admin(ns: &str) -> anyhow::Result<Self> {
        Self::start_admin_with_env(ns, &[]).await
    }

    /// With the admin kubeconfig and extra environment, e.g.
    /// `COMMLAB_RUNNER_POD_LABELS`.
    pub async fn start_admin_with_env(ns: &str, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start(ns, commlab_e2e::kubeconfig_path()?, None, env).await
    }

    /// With a ServiceAccount token, and nothing else, for its credentials.
    pub async fn start_with_token(ns: &str, token: &str) -> anyhow::Result<Self> {
        let file = commlab_e2e::token_kubeconfig(&commlab_e2e::kubeconfig_path()?, ns, token)?;
        Self::start(ns, file.path().to_owned(), Some(file), &[]).await
    }

    async fn start(
        ns: &str,
        kubeconfig: PathBuf,
        keep: Option<tempfile::NamedTempFile>,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_commlab-operator"))
            .args([
                "run",
                "--namespace",
                ns,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting commlab-operator")?;
        let operator = Self {
            _child: child,
            metrics_url: format!("http://127.0.0.1:{port}"),
            _kubeconfig: keep,
        };
        poll_until(
            Duration::from_secs(20),
            "the operator's /readyz",
            || async {
                Ok(reqwest::get(format!("{}/readyz", operator.metrics_url))
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ()))
            },
        )
        .await?;
        Ok(operator)
    }

    async fn metric(&self, line_start: &str) -> anyhow::Result<u64> {
        let text = reqwest::get(format!("{}/metrics", self.metrics_url))
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    pub async fn reconciles(&self) -> anyhow::Result<u64> {
        self.metric("commlab_operator_reconciles_total ").await
    }

    /// Reconciles that failed, in every category.
    pub async fn failures(&self) -> anyhow::Result<u64> {
        let text = reqwest::get(format!("{}/metrics", self.metrics_url))
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("commlab_operator_reconcile_failures_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum())
    }

    /// Watches of children that failed, e.g. `forbidden` without RBAC for a kind.
    pub async fn watch_failures(&self, category: &str) -> anyhow::Result<u64> {
        self.metric(&format!(
            "commlab_operator_watch_failures_total{{category=\"{category}\"}}"
        ))
        .await
    }
}

/// Installs the chart's ServiceAccount and RBAC scoped to `ns` (as `helm
/// template` renders them), optionally without the rule whose resources
/// include `drop_rule_for`, and returns a token for the ServiceAccount.
pub async fn install_chart_rbac(
    client: &Client,
    ns: &str,
    drop_rule_for: Option<&str>,
) -> anyhow::Result<String> {
    let text = helm_template(
        client,
        ns,
        &[
            "--set",
            &format!("watchNamespace={ns}"),
            "--show-only",
            "templates/serviceaccount.yaml",
            "--show-only",
            "templates/rbac.yaml",
        ],
    )
    .await?;
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut service_account = None;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut value: Value = serde::Deserialize::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        if let (Some(rule), Some(rules)) = (
            drop_rule_for,
            value.get_mut("rules").and_then(Value::as_array_mut),
        ) {
            rules.retain(|r| {
                !r["resources"]
                    .as_array()
                    .is_some_and(|res| res.iter().any(|x| x == rule))
            });
        }
        let object: DynamicObject = serde_json::from_value(value.clone())?;
        let types = object
            .types
            .clone()
            .context("manifest without apiVersion/kind")?;
        let (group, version) = types
            .api_version
            .split_once('/')
            .unwrap_or(("", &types.api_version));
        let (resource, _) = discovery
            .resolve_gvk(&kube::api::GroupVersionKind::gvk(
                group,
                version,
                &types.kind,
            ))
            .with_context(|| format!("unknown kind {}", types.kind))?;
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
        api.patch(
            &object.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(value),
        )
        .await?;
        if types.kind == "ServiceAccount" {
            service_account = Some(object.name_any());
        }
    }
    let service_account = service_account.context("the chart rendered no ServiceAccount")?;
    commlab_e2e::service_account_token(client, ns, &service_account).await
}

/// Applies the minimal PodChaos and NetworkChaos CRDs of
/// `e2e/fixtures/chaos-mesh-crds.yaml` unless a real Chaos Mesh's are there.
pub async fn install_chaos_mesh_crds(client: &Client) -> anyhow::Result<()> {
    commlab_e2e::crds::install_chaos_mesh_crds(client).await
}

/// Longest `cargo build` of the `commlab` binary may take (a cold build).
const BUILD_TIMEOUT: Duration = Duration::from_secs(1200);

/// The `commlab` binary of this workspace, built for the profile of the
/// running test (`cargo test` builds only the tested package's binaries).
///
/// `COMMLAB_BIN`, when set, names it and nothing is built. Otherwise this
/// runs `$CARGO build -p commlab-workload --bin commlab` once per test
/// process and returns the executable cargo reports: always current (cargo
/// rebuilds what changed, and does nothing when nothing did), in the same
/// target directory and profile as the test. Running cargo from a test is
/// fine: `cargo test` releases the build lock before it runs tests.
pub async fn commlab_binary() -> anyhow::Result<PathBuf> {
    static BINARY: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    BINARY
        .get_or_try_init(|| async {
            if let Some(path) = std::env::var_os("COMMLAB_BIN") {
                let path = PathBuf::from(path);
                if !path.is_file() {
                    bail!(
                        "COMMLAB_BIN={} is not a file: build it with `cargo build -p \
                         commlab-workload --bin commlab`, or unset COMMLAB_BIN",
                        path.display()
                    );
                }
                return Ok(path);
            }
            build_commlab().await
        })
        .await
        .cloned()
}

async fn build_commlab() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // target/<profile>/deps/<this test>: build for the same profile.
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .context("the test executable is not in target/<profile>/deps")?;
    let profile = match profile_dir {
        "debug" => "dev",
        other => other,
    };
    let mut command = Command::new(&cargo);
    command
        .args(["build", "--package", "commlab-workload", "--bin", "commlab"])
        .args([
            "--profile",
            profile,
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let output = tokio::time::timeout(BUILD_TIMEOUT, command.output())
        .await
        .with_context(|| format!("building commlab took longer than {BUILD_TIMEOUT:?}"))?
        .with_context(|| format!("running {}", cargo.to_string_lossy()))?;
    if !output.status.success() {
        bail!("cargo build --bin commlab failed: {}", output.status);
    }
    let stdout = String::from_utf8(output.stdout)?;
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| {
            message["reason"] == "compiler-artifact" && message["target"]["name"] == "commlab"
        })
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .context("cargo build reported no commlab executable")
}

/// Runs the kubectl from `COMMLAB_KUBECTL` with the admin kubeconfig, for at
/// most a minute; its stdout, or an error with its stderr.
pub async fn kubectl(args: &[&str]) -> anyhow::Result<String> {
    let kubectl = std::env::var("COMMLAB_KUBECTL")
        .context("COMMLAB_KUBECTL must name the kubectl binary (scripts/test.sh sets it)")?;
    let mut command = Command::new(&kubectl);
    command
        .arg("--kubeconfig")
        .arg(commlab_e2e::kubeconfig_path()?)
        .args(args)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .with_context(|| format!("kubectl {} took longer than a minute", args.join(" ")))?
        .with_context(|| format!("running {kubectl}"))?;
    if !output.status.success() {
        bail!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The chart's directory, `charts/commlab`.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/commlab")
}

/// Runs the helm from `COMMLAB_HELM` with the admin kubeconfig, for at most
/// [`HELM_TIMEOUT`]; its output whatever its exit status.
pub async fn helm(args: &[&str]) -> anyhow::Result<std::process::Output> {
    let helm = std::env::var("COMMLAB_HELM")
        .context("COMMLAB_HELM must name the helm binary (scripts/test.sh sets it)")?;
    let mut command = Command::new(&helm);
    command
        .args(args)
        .env("KUBECONFIG", commlab_e2e::kubeconfig_path()?)
        .kill_on_drop(true);
    tokio::time::timeout(HELM_TIMEOUT, command.output())
        .await
        .with_context(|| format!("helm {} took longer than {HELM_TIMEOUT:?}", args.join(" ")))?
        .with_context(|| format!("running {helm}"))
}

/// `--kube-version` for helm: the API server's version. A helm built with
/// `go install` otherwise assumes Kubernetes v1.20.
pub async fn kube_version(client: &Client) -> anyhow::Result<String> {
    Ok(client.apiserver_version().await?.git_version)
}

/// `helm template commlab <chart> --namespace <ns>` for the API server's
/// Kubernetes version with `extra` arguments: the rendered manifests, or an
/// error with helm's message.
pub async fn helm_template(client: &Client, ns: &str, extra: &[&str]) -> anyhow::Result<String> {
    let chart = chart_dir();
    let kube_version = kube_version(client).await?;
    let mut args = vec![
        "template",
        "commlab",
        chart.to_str().context("chart path is not UTF-8")?,
        "--namespace",
        ns,
        "--kube-version",
        &kube_version,
    ];
    args.extend_from_slice(extra);
    let output = helm(&args).await?;
    if !output.status.success() {
        bail!(
            "helm template failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}
