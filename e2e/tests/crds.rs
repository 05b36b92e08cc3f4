//! The commlab.dev CRDs against the real API server: they install and become
//! Established, `kubectl get` prints their printer columns, every manifest in
//! `examples/` is admitted and every one in `examples/invalid/` is refused
//! with the message its `# expect:` line names.
//!
//! Needs a running cluster and the kubectl built with it:
//! `export COMMLAB_KUBECONFIG=$(e2e/cluster/up.sh)` and
//! `export COMMLAB_KUBECTL=$(source e2e/cluster/lib.sh; component_bin kubectl)`
//! (`scripts/test.sh` sets both).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use commlab_e2e::crds::apply_established;
use commlab_e2e::{has_condition, kubeconfig_path, with_temp_namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Client, ResourceExt as _};
use serde_json::Value;

/// The environment variable naming the kubectl binary built with the cluster.
const KUBECTL_ENV: &str = "COMMLAB_KUBECTL";
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(30);
/// `examples/invalid/` documents the API's rules; fewer files than this means
/// most rules have no example.
const MIN_INVALID_EXAMPLES: usize = 10;
/// The first line of every file in `examples/invalid/`.
const EXPECT_PREFIX: &str = "# expect: ";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `*.yaml` files directly in `dir`, sorted.
fn yaml_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// One manifest file: its single YAML document, and for an invalid example
/// the substring the API server's error must contain.
struct Manifest {
    path: PathBuf,
    expect: Option<String>,
    object: Value,
}

impl Manifest {
    fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let expect = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix(EXPECT_PREFIX))
            .map(|expect| expect.trim().to_string());
        let mut documents = Vec::new();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(document)
                .with_context(|| format!("parsing {}", path.display()))?;
            if !value.is_null() {
                documents.push(value);
            }
        }
        ensure!(
            documents.len() == 1,
            "{} holds {} YAML documents; examples hold exactly one",
            path.display(),
            documents.len()
        );
        Ok(Self {
            path: path.to_owned(),
            expect,
            object: documents.remove(0),
        })
    }

    fn file_name(&self) -> String {
        self.path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    }

    /// The API of this manifest's kind in `namespace`; an error when the kind
    /// is not one of the commlab.dev CRDs or its apiVersion is not served.
    fn api(&self, client: &Client, namespace: &str) -> anyhow::Result<Api<DynamicObject>> {
        let kind = self.object["kind"]
            .as_str()
            .with_context(|| format!("{}: no kind", self.file_name()))?;
        let api_version = self.object["apiVersion"]
            .as_str()
            .with_context(|| format!("{}: no apiVersion", self.file_name()))?;
        let crd = commlab_api::crds()
            .into_iter()
            .find(|crd| crd.spec.names.kind == kind)
            .with_context(|| {
                format!("{}: kind {kind} is not a commlab.dev CRD", self.file_name())
            })?;
        let (group, version) = api_version.split_once('/').with_context(|| {
            format!(
                "{}: apiVersion {api_version} has no group",
                self.file_name()
            )
        })?;
        ensure!(
            group == crd.spec.group
                && crd
                    .spec
                    .versions
                    .iter()
                    .any(|v| v.name == version && v.served),
            "{}: apiVersion {api_version} is not served for {kind}",
            self.file_name()
        );
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, kind),
            &crd.spec.names.plural,
        );
        Ok(Api::namespaced_with(client.clone(), namespace, &resource))
    }

    /// Creates the object in `namespace`; the API server's refusal as `Err(Ok(status))`.
    async fn create(
        &self,
        client: &Client,
        namespace: &str,
    ) -> anyhow::Result<Result<DynamicObject, kube::core::Status>> {
        let api = self.api(client, namespace)?;
        let object: DynamicObject = serde_json::from_value(self.object.clone())
            .with_context(|| format!("{}: not a Kubernetes object", self.file_name()))?;
        match api.create(&PostParams::default(), &object).await {
            Ok(created) => Ok(Ok(created)),
            Err(kube::Error::Api(status)) => Ok(Err(*status)),
            Err(error) => {
                Err(anyhow!(error).context(format!("creating {} in {namespace}", self.file_name())))
            }
        }
    }
}

/// Server-side applies the committed `crds/*.yaml` (what a user applies) and
/// waits until each is Established; returns them as the API server has them.
async fn install_crds(client: &Client) -> anyhow::Result<Vec<CustomResourceDefinition>> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let files = yaml_files(&repo_root().join("crds"))?;
    ensure!(!files.is_empty(), "crds/ holds no CRD");
    let mut installed = Vec::new();
    for path in files {
        let manifest = Manifest::read(&path)?;
        let name = manifest.object["metadata"]["name"]
            .as_str()
            .with_context(|| format!("{}: no metadata.name", path.display()))?
            .to_string();
        installed.push(
            apply_established(&crds, &name, &manifest.object)
                .await
                .with_context(|| format!("applying {}", path.display()))?,
        );
    }
    Ok(installed)
}

/// Runs the cluster's kubectl as the admin; its stdout, or an error with its stderr.
async fn kubectl(args: &[&str]) -> anyhow::Result<String> {
    let kubectl = std::env::var_os(KUBECTL_ENV).ok_or_else(|| {
        anyhow!(
            "{KUBECTL_ENV} is not set; export {KUBECTL_ENV}=$(source e2e/cluster/lib.sh; \
             component_bin kubectl) (scripts/test.sh does)"
        )
    })?;
    let mut command = tokio::process::Command::new(&kubectl);
    command
        .arg("--kubeconfig")
        .arg(kubeconfig_path()?)
        .args(args)
        .kill_on_drop(true);
    let output = tokio::time::timeout(KUBECTL_TIMEOUT, command.output())
        .await
        .map_err(|_| {
            anyhow!(
                "kubectl {} took longer than {KUBECTL_TIMEOUT:?}",
                args.join(" ")
            )
        })?
        .with_context(|| format!("running {}", PathBuf::from(&kubectl).display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "kubectl {} failed ({}): {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr),
            stdout
        );
    }
    Ok(stdout)
}

/// `kubectl get <resource> -n <namespace>`: the header's column names and the
/// first row's words.
async fn kubectl_get_table(
    resource: &str,
    namespace: &str,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let output = kubectl(&["get", resource, "-n", namespace]).await?;
    let mut lines = output.lines();
    let words = |line: Option<&str>| -> Vec<String> {
        line.unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let header = words(lines.next());
    let row = words(lines.next());
    ensure!(
        lines.next().is_none(),
        "expected a header and one row, kubectl printed:\n{output}"
    );
    Ok((header, row))
}

#[tokio::test]
async fn crds_install_with_server_side_apply_and_become_established() -> anyhow::Result<()> {
    let client = commlab_e2e::client().await?;
    let installed = install_crds(&client).await?;
    let mut names: Vec<_> = installed.iter().map(|crd| crd.name_any()).collect();
    names.sort();
    ensure!(
        names
            == [
                "communicationpatterns.commlab.dev",
                "patterncomparisons.commlab.dev"
            ],
        "crds/ holds {names:?}"
    );
    for crd in &installed {
        ensure!(
            has_condition(crd, "NamesAccepted"),
            "{}: names not accepted: {:?}",
            crd.name_any(),
            crd.status
        );
        let short_names = crd
            .status
            .as_ref()
            .and_then(|s| s.accepted_names.as_ref())
            .and_then(|n| n.short_names.clone())
            .unwrap_or_default();
        let expected = match crd.spec.names.kind.as_str() {
            "CommunicationPattern" => "cpat",
            _ => "pcmp",
        };
        ensure!(
            short_names.iter().any(|s| s == expected),
            "{}: accepted short names {short_names:?}, expected {expected}",
            crd.name_any()
        );
    }
    Ok(())
}

#[tokio::test]
async fn kubectl_get_prints_the_printer_columns() -> anyhow::Result<()> {
    let client = commlab_e2e::client().await?;
    install_crds(&client).await?;
    with_temp_namespace(|client, ns| async move {
        for file in ["direct-api-call.yaml", "compare-all.yaml"] {
            let manifest = Manifest::read(&repo_root().join("examples").join(file))?;
            manifest
                .create(&client, &ns)
                .await?
                .map_err(|status| anyhow!("{file} was refused: {}", status.message))?;
        }

        // The short names, qualified with the group: another test's CRD may
        // claim `cpat` for a while, which makes the bare short name ambiguous.
        let (header, row) = kubectl_get_table("cpat.commlab.dev", &ns).await?;
        let expected = [
            "NAME",
            "PATTERN",
            "PHASE",
            "P99",
            "AVAILABILITY",
            "STALENESS",
            "VERDICT",
            "AGE",
        ];
        ensure!(
            header == expected,
            "kubectl get cpat printed the header {header:?}, expected {expected:?}"
        );
        ensure!(
            row.get(..2) == Some(&["direct-api-call".to_string(), "DirectApiCall".to_string()][..]),
            "kubectl get cpat printed the row {row:?}"
        );

        let (header, row) = kubectl_get_table("pcmp.commlab.dev", &ns).await?;
        let expected = ["NAME", "PATTERNS", "PHASE", "BEST", "AGE"];
        ensure!(
            header == expected,
            "kubectl get pcmp printed the header {header:?}, expected {expected:?}"
        );
        ensure!(
            row.first().map(String::as_str) == Some("compare-all"),
            "kubectl get pcmp printed the row {row:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn every_example_is_admitted() -> anyhow::Result<()> {
    let client = commlab_e2e::client().await?;
    install_crds(&client).await?;
    with_temp_namespace(|client, ns| async move {
        let files = yaml_files(&repo_root().join("examples"))?;
        ensure!(!files.is_empty(), "examples/ holds no manifest");
        let mut refused = Vec::new();
        for path in &files {
            let manifest = Manifest::read(path)?;
            match manifest.create(&client, &ns).await? {
                Ok(created) => ensure!(
                    Some(created.name_any().as_str())
                        == manifest.object["metadata"]["name"].as_str(),
                    "{}: created as {}",
                    manifest.file_name(),
                    created.name_any()
                ),
                Err(status) => {
                    refused.push(format!("{}: {}", manifest.file_name(), status.message))
                }
            }
        }
        ensure!(
            refused.is_empty(),
            "the API server refused {} of {} examples:\n  {}",
            refused.len(),
            files.len(),
            refused.join("\n  ")
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn every_invalid_example_is_refused_with_its_expected_message() -> anyhow::Result<()> {
    let client = commlab_e2e::client().await?;
    install_crds(&client).await?;
    with_temp_namespace(|client, ns| async move {
        let files = yaml_files(&repo_root().join("examples/invalid"))?;
        ensure!(
            files.len() >= MIN_INVALID_EXAMPLES,
            "examples/invalid/ holds {} manifests, expected at least {MIN_INVALID_EXAMPLES}",
            files.len()
        );
        let mut wrong = Vec::new();
        for path in &files {
            let manifest = Manifest::read(path)?;
            let name = manifest.file_name();
            let expect = manifest.expect.clone().with_context(|| {
                format!("{name}: the first line must be `{EXPECT_PREFIX}<substring of the error>`")
            })?;
            ensure!(!expect.is_empty(), "{name}: empty `{EXPECT_PREFIX}` line");
            match manifest.create(&client, &ns).await? {
                Ok(_) => wrong.push(format!(
                    "{name}: admitted, expected an error containing {expect:?}"
                )),
                Err(status) if status.code != 422 => wrong.push(format!(
                    "{name}: refused with HTTP {} ({}) instead of 422 Invalid: {}",
                    status.code, status.reason, status.message
                )),
                Err(status) if !status.message.contains(&expect) => wrong.push(format!(
                    "{name}: the error does not contain {expect:?}: {}",
                    status.message
                )),
                Err(_) => {}
            }
        }
        ensure!(
            wrong.is_empty(),
            "{} of {} invalid examples went wrong:\n  {}",
            wrong.len(),
            files.len(),
            wrong.join("\n  ")
        );
        Ok(())
    })
    .await
}
