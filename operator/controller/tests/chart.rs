//! The Helm chart `charts/commlab`: it lints clean, renders manifests the
//! real API server accepts, installs an operator Deployment that becomes
//! Available (kwok plays the kubelet), ships the generated CRDs unchanged, and
//! its values schema refuses bad values.
//!
//! Needs a running cluster and the kubectl and helm built with it:
//! `export COMMLAB_KUBECONFIG=$(e2e/cluster/up.sh)`, `COMMLAB_KUBECTL` and
//! `COMMLAB_HELM` (`scripts/test.sh` sets all three).

#[allow(dead_code)] // each test binary uses part of the helpers
mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use commlab_e2e::{has_condition, wait_for, with_temp_namespace};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use support::{chart_dir, helm, helm_template, install_crds, kube_version, repo_root};

/// The environment variable naming the kubectl binary built with the cluster.
const KUBECTL_ENV: &str = "COMMLAB_KUBECTL";
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);
const AVAILABLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The release name the tests install; the Deployment is `<release>-operator`.
const RELEASE: &str = "commlab";
/// Any image will do: kwok runs no containers.
const IMAGE_REPOSITORY: &str = "registry.invalid/commlab/commlab";

/// Sorted `(file name, bytes)` of the `*.yaml` files in `dir`.
fn yaml_files(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".yaml") {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            files.push((name, bytes));
        }
    }
    files.sort();
    Ok(files)
}

/// `kubectl apply --dry-run=server -f -` in `ns` with `manifests` on stdin:
/// stdout, or an error with what kubectl said. Warnings fail too: the API
/// server accepts a deprecated or dubious field with a warning.
async fn kubectl_apply_dry_run(ns: &str, manifests: &str) -> anyhow::Result<String> {
    let kubectl = std::env::var(KUBECTL_ENV).map_err(|_| {
        anyhow!(
            "{KUBECTL_ENV} must name the kubectl binary: export {KUBECTL_ENV}=$(source \
             e2e/cluster/lib.sh; component_bin kubectl) (scripts/test.sh does)"
        )
    })?;
    let mut child = Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(commlab_e2e::kubeconfig_path()?)
        .args(["apply", "--dry-run=server", "--namespace", ns, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {kubectl}"))?;
    let mut stdin = child.stdin.take().context("kubectl without stdin")?;
    stdin.write_all(manifests.as_bytes()).await?;
    drop(stdin);
    let output = tokio::time::timeout(KUBECTL_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            anyhow!("kubectl apply --dry-run=server took longer than {KUBECTL_TIMEOUT:?}")
        })??;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success() && stderr.trim().is_empty(),
        "kubectl apply --dry-run=server ({}):\n{stderr}{stdout}",
        output.status
    );
    Ok(stdout)
}

#[test]
fn the_charts_crds_are_the_generated_crds() -> anyhow::Result<()> {
    let generated = yaml_files(&repo_root().join("crds"))?;
    let shipped = yaml_files(&chart_dir().join("crds"))?;
    ensure!(!generated.is_empty(), "crds/ holds no CRD");
    let names = |files: &[(String, Vec<u8>)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    ensure!(
        names(&generated) == names(&shipped),
        "crds/ holds {:?} but charts/commlab/crds/ holds {:?}; run `cargo run -p commlab-controller --bin crdgen`",
        names(&generated),
        names(&shipped)
    );
    for ((name, generated), (_, shipped)) in generated.iter().zip(&shipped) {
        ensure!(
            generated == shipped,
            "charts/commlab/crds/{name} differs from crds/{name}; run `cargo run -p commlab-controller --bin crdgen`"
        );
    }
    Ok(())
}

#[tokio::test]
async fn helm_lint_reports_no_error_or_warning() -> anyhow::Result<()> {
    let client = commlab_e2e::client().await?;
    let kube_version = kube_version(&client).await?;
    let chart = chart_dir();
    let chart = chart.to_str().context("chart path is not UTF-8")?;
    for extra in [&[][..], &["--set", "watchNamespace=commlab"][..]] {
        let mut args = vec!["lint", chart, "--strict", "--kube-version", &kube_version];
        args.extend_from_slice(extra);
        let output = helm(&args).await?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let complaints: Vec<_> = text
            .lines()
            .filter(|l| l.contains("[ERROR]") || l.contains("[WARNING]"))
            .collect();
        ensure!(
            output.status.success() && complaints.is_empty(),
            "helm {} ({}):\n{text}",
            args.join(" "),
            output.status
        );
    }
    Ok(())
}

#[tokio::test]
async fn helm_template_passes_a_server_side_dry_run() -> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        // Both RBAC shapes: a ClusterRole (every namespace) and a Role (one).
        let watch_one = format!("watchNamespace={ns}");
        for extra in [&[][..], &["--set", &watch_one][..]] {
            let manifests = helm_template(&client, &ns, extra).await?;
            let applied = kubectl_apply_dry_run(&ns, &manifests).await?;
            for kind in [
                "serviceaccount/",
                "deployment.apps/",
                "role.rbac",
                "rolebinding.rbac",
            ] {
                ensure!(
                    applied.to_lowercase().contains(kind),
                    "the dry run with {extra:?} did not apply a {kind}: {applied}"
                );
            }
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn helm_install_brings_the_operator_deployment_to_available() -> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        // As the chart's crds/ folder would, before the release.
        install_crds(&client).await?;
        let chart = chart_dir();
        let install = [
            "install",
            RELEASE,
            chart.to_str().context("chart path is not UTF-8")?,
            "--namespace",
            &ns,
            "--skip-crds",
            "--set",
            &format!("image.repository={IMAGE_REPOSITORY}"),
            // A Role in the test namespace: nothing cluster-wide to collide
            // with other tests' releases.
            "--set",
            &format!("watchNamespace={ns}"),
        ];
        let output = helm(&install).await?;
        ensure!(
            output.status.success(),
            "helm install failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );

        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let available = |d: Option<&Deployment>| {
            d.is_some_and(|d| {
                has_condition(d, "Available")
                    && d.status.as_ref().and_then(|s| s.available_replicas) == Some(1)
            })
        };
        let deployment = wait_for(
            &deployments,
            &format!("{RELEASE}-operator"),
            AVAILABLE_TIMEOUT,
            "condition Available with 1 available replica",
            available,
        )
        .await?;
        let template = deployment
            .spec
            .and_then(|s| s.template.spec)
            .context("a Deployment without a pod template")?;
        ensure!(
            template.service_account_name.as_deref() == Some(&format!("{RELEASE}-operator")),
            "the operator runs as {:?}",
            template.service_account_name
        );
        ensure!(
            template.containers[0]
                .image
                .as_deref()
                .is_some_and(|i| i.starts_with(IMAGE_REPOSITORY)),
            "image {:?}",
            template.containers[0].image
        );

        let output = helm(&["uninstall", RELEASE, "--namespace", &ns]).await?;
        ensure!(
            output.status.success(),
            "helm uninstall failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_values_schema_refuses_bad_values() -> anyhow::Result<()> {
    let client = commlab_e2e::client().await?;
    helm_template(&client, "commlab", &[])
        .await
        .context("the default values must render")?;
    for (value, named) in [
        ("concurrency=0", "concurrency"),
        ("concurrency=65", "concurrency"),
        ("logLevel=loud", "logLevel"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("image.repository=", "repository"),
        ("replicas=2", "replicas"),
        ("chaos.backend=litmus", "backend"),
        ("chaos.dashboard.url=https://chaos-dashboard:2333", "url"),
        ("chaos.confirmTimeout=soon", "confirmTimeout"),
    ] {
        match helm_template(&client, "commlab", &["--set", value]).await {
            Ok(_) => {
                bail!("helm template --set {value} rendered; the values schema must refuse it")
            }
            Err(error) => {
                let message = format!("{error:#}");
                ensure!(
                    message.contains("values don't meet the specifications of the schema")
                        && message.contains(named),
                    "helm template --set {value} failed, but not for the schema naming {named}: {message}"
                );
            }
        }
    }
    Ok(())
}

/// Values selecting the Chaos Mesh dashboard, with its URL and token Secret.
const DASHBOARD_URL: &str = "http://chaos-dashboard.chaos-mesh.svc:2333";
fn dashboard_values() -> Vec<String> {
    [
        "chaos.backend=dashboard".to_owned(),
        format!("chaos.dashboard.url={DASHBOARD_URL}"),
        "chaos.dashboard.tokenSecret.name=chaos-dashboard-token".to_owned(),
        "chaos.dashboard.tokenSecret.key=bearer".to_owned(),
    ]
    .into_iter()
    .flat_map(|value| ["--set".to_owned(), value])
    .collect()
}

/// The rendered documents of `manifests` of kind `kind`.
fn documents_of_kind(manifests: &str, kind: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut found = Vec::new();
    for document in serde_yaml::Deserializer::from_str(manifests) {
        let value: serde_json::Value = serde::Deserialize::deserialize(document)?;
        if value["kind"] == kind {
            found.push(value);
        }
    }
    Ok(found)
}

#[tokio::test]
async fn a_confirm_timeout_reaches_the_operator_only_when_given() -> anyhow::Result<()> {
    let client = commlab_e2e::client().await?;
    let confirm_timeout = |manifests: &str| -> anyhow::Result<Option<serde_json::Value>> {
        let deployments = documents_of_kind(manifests, "Deployment")?;
        let env = deployments[0]["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .context("the operator's env")?
            .clone();
        Ok(env
            .into_iter()
            .find(|e| e["name"] == "COMMLAB_CHAOS_CONFIRM_TIMEOUT")
            .map(|e| e["value"].clone()))
    };
    let given = helm_template(&client, "commlab", &["--set", "chaos.confirmTimeout=4s"]).await?;
    ensure!(confirm_timeout(&given)? == Some("4s".into()));
    let default = helm_template(&client, "commlab", &[]).await?;
    ensure!(confirm_timeout(&default)?.is_none(), "the runner's default");
    Ok(())
}

#[tokio::test]
async fn with_the_dashboard_the_operator_gets_its_url_and_the_token_by_secret_key_ref()
-> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        let values = dashboard_values();
        let mut args: Vec<&str> = values.iter().map(String::as_str).collect();
        let watch_one = format!("watchNamespace={ns}");
        args.extend(["--set", &watch_one]);
        let manifests = helm_template(&client, &ns, &args).await?;

        let deployments = documents_of_kind(&manifests, "Deployment")?;
        ensure!(deployments.len() == 1, "{} Deployments", deployments.len());
        let env = deployments[0]["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .context("the operator's env")?
            .clone();
        let named = |name: &str| env.iter().find(|e| e["name"] == name).cloned();
        ensure!(
            named("COMMLAB_CHAOS_BACKEND").map(|e| e["value"].clone()) == Some("dashboard".into()),
            "env {env:?}"
        );
        ensure!(
            named("COMMLAB_CHAOS_DASHBOARD_URL").map(|e| e["value"].clone())
                == Some(DASHBOARD_URL.into()),
            "env {env:?}"
        );
        let token = named("COMMLAB_CHAOS_DASHBOARD_TOKEN").context("the token's env")?;
        ensure!(
            token["valueFrom"]
                == serde_json::json!({
                    "secretKeyRef": { "name": "chaos-dashboard-token", "key": "bearer" }
                })
                && token.get("value").is_none(),
            "the token comes from its Secret only: {token}"
        );

        // The runners get no chaos-mesh.org rights, so the operator needs none.
        let roles = documents_of_kind(&manifests, "Role")?;
        ensure!(roles.len() == 1, "{} Roles", roles.len());
        ensure!(
            !roles[0]["rules"].to_string().contains("chaos-mesh.org"),
            "the operator's Role with the dashboard: {}",
            roles[0]["rules"]
        );
        // The default keeps Chaos Mesh's rights: the runner's Role needs them.
        let default = helm_template(&client, &ns, &["--set", &watch_one]).await?;
        let default_role = &documents_of_kind(&default, "Role")?[0];
        ensure!(default_role["rules"].to_string().contains("chaos-mesh.org"));

        kubectl_apply_dry_run(&ns, &manifests).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_values_schema_refuses_the_dashboard_without_its_url_or_token_secret()
-> anyhow::Result<()> {
    let client = commlab_e2e::client().await?;
    let values = dashboard_values();
    let complete: Vec<&str> = values.iter().map(String::as_str).collect();
    helm_template(&client, "commlab", &complete)
        .await
        .context("complete dashboard values must render")?;
    for (missing, named) in [
        ("chaos.dashboard.url", "/chaos/dashboard/url"),
        (
            "chaos.dashboard.tokenSecret.name",
            "/chaos/dashboard/tokenSecret/name",
        ),
    ] {
        let mut args = complete.clone();
        let cleared = format!("{missing}=");
        args.extend(["--set", &cleared]);
        match helm_template(&client, "commlab", &args).await {
            Ok(_) => bail!("the dashboard without {missing} rendered; the schema must refuse it"),
            Err(error) => {
                let message = format!("{error:#}");
                ensure!(
                    message.contains("values don't meet the specifications of the schema")
                        && message.contains(named),
                    "without {missing}: {message}"
                );
            }
        }
    }
    Ok(())
}
