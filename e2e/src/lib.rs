//! Helpers for tests against the local Kubernetes control plane.
//!
//! `e2e/cluster/up.sh` starts the control plane and prints the path of an
//! admin kubeconfig; tests read that path from [`KUBECONFIG_ENV`]. Each test
//! runs inside [`with_temp_namespace`], which creates a labelled namespace,
//! prints what happened in it when the test fails, and deletes it afterwards.
//!
//! kwok runs no containers, so the operator's experiment runner Jobs are
//! played by local processes: [`runner`] reads a runner Job and runs its
//! command, [`player`] watches a namespace and plays each runner Job, and
//! [`token`] gives a process exactly a ServiceAccount's rights.

pub mod player;
pub mod runner;
pub mod token;

pub use token::{service_account_token, token_kubeconfig};

pub mod crds;
pub mod dashboard_stand_in;

use std::fmt::Debug;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use futures::FutureExt as _;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, ServiceAccount};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams,
    PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Client, Config, Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The environment variable holding the admin kubeconfig's path.
pub const KUBECONFIG_ENV: &str = "COMMLAB_KUBECONFIG";
/// The label every test namespace carries, so leftovers are easy to find.
pub const TEST_NAMESPACE_LABEL: &str = "commlab.dev/test";
/// A pod with this label set to `"true"` keeps running under kwok even when a
/// Job owns it (kwok otherwise completes Job pods after about two seconds).
pub const KEEP_RUNNING_LABEL: &str = "commlab.dev/kwok-keep-running";

/// How long a new namespace may take to get its `default` ServiceAccount.
const NAMESPACE_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The admin kubeconfig path from [`KUBECONFIG_ENV`]; an error telling how to
/// start the cluster when it is unset or missing.
pub fn kubeconfig_path() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os(KUBECONFIG_ENV).ok_or_else(|| {
        anyhow!(
            "{KUBECONFIG_ENV} is not set. Start the e2e control plane with \
             `e2e/cluster/up.sh` and export {KUBECONFIG_ENV}=<the path it prints>, e.g.\n  \
             export {KUBECONFIG_ENV}=$(e2e/cluster/up.sh)"
        )
    })?;
    let path = PathBuf::from(path);
    if !path.is_file() {
        bail!(
            "{KUBECONFIG_ENV}={} does not exist; is the cluster up? Run `e2e/cluster/up.sh`",
            path.display()
        );
    }
    Ok(path)
}

/// A client for the e2e control plane, as its admin.
pub async fn client() -> anyhow::Result<Client> {
    client_from(&kubeconfig_path()?).await
}

/// A client with the kubeconfig at `path` (its current context).
pub async fn client_from(path: &std::path::Path) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading kubeconfig {}", path.display()))?;
    Client::try_from(config).context("building a Kubernetes client")
}

/// Runs `test` with a client and the name of a fresh namespace labelled
/// `commlab.dev/test=true`. When the test fails (error or panic) the
/// namespace's events and pods are printed; the namespace is deleted in every
/// case (without waiting for it to be gone, and without the operator's
/// finalizers, see [`release_finalizers`]), then the failure is returned or
/// the panic resumed.
pub async fn with_temp_namespace<T, F, Fut>(test: F) -> anyhow::Result<T>
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let client = client().await?;
    let namespace = create_test_namespace(&client).await?;

    let outcome = AssertUnwindSafe(test(client.clone(), namespace.clone()))
        .catch_unwind()
        .await;
    if !matches!(outcome, Ok(Ok(_))) {
        if let Ok(Err(error)) = &outcome {
            eprintln!("test in namespace {namespace} failed: {error:#}");
        }
        dump_namespace(&client, &namespace).await;
    }
    release_finalizers(&client, &namespace).await;
    let namespaces: Api<Namespace> = Api::all(client);
    if let Err(error) = namespaces
        .delete(&namespace, &DeleteParams::background())
        .await
    {
        eprintln!("warning: could not delete test namespace {namespace}: {error}");
    }
    match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Removes the finalizers of the CommunicationPatterns left in `namespace`.
/// The operator that would remove them (after deleting their chaos
/// experiments) stopped with the test, so they would keep the namespace
/// Terminating for good. Best effort: a cluster without the CRD has none.
async fn release_finalizers(client: &Client, namespace: &str) {
    let resource = ApiResource {
        group: "commlab.dev".into(),
        version: "v1alpha1".into(),
        api_version: "commlab.dev/v1alpha1".into(),
        kind: "CommunicationPattern".into(),
        plural: "communicationpatterns".into(),
    };
    let patterns: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let Ok(left) = patterns.list_metadata(&ListParams::default()).await else {
        return;
    };
    let release = Patch::Merge(serde_json::json!({ "metadata": { "finalizers": null } }));
    for pattern in left.items.iter().filter(|p| !p.finalizers().is_empty()) {
        if let Err(error) = patterns
            .patch_metadata(&pattern.name_any(), &PatchParams::default(), &release)
            .await
        {
            eprintln!(
                "warning: could not remove the finalizers of {namespace}/{}: {error}",
                pattern.name_any()
            );
        }
    }
}

/// Creates a `commlab-e2e-*` namespace and waits until pods can be created in
/// it (its `default` ServiceAccount exists).
async fn create_test_namespace(client: &Client) -> anyhow::Result<String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            generate_name: Some("commlab-e2e-".into()),
            labels: Some([(TEST_NAMESPACE_LABEL.to_string(), "true".to_string())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let created = namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .context("creating the test namespace")?;
    let name = created.name_any();
    let service_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    wait_for(
        &service_accounts,
        "default",
        NAMESPACE_READY_TIMEOUT,
        "the namespace's default ServiceAccount",
        kube::runtime::wait::conditions::is_created(),
    )
    .await?;
    Ok(name)
}

/// Waits up to `timeout` for the object `name` to satisfy `condition` and
/// returns it. On timeout the error names `what` and shows the object as last
/// seen.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    what: &str,
    condition: impl Condition<K>,
) -> anyhow::Result<K>
where
    K: Clone + Debug + Send + DeserializeOwned + Serialize + Resource + 'static,
{
    await_object(api, name, timeout, what, condition)
        .await?
        .ok_or_else(|| anyhow!("{name} does not exist, so it cannot show {what}"))
}

/// Waits up to `timeout` until the object `name` no longer exists.
pub async fn wait_until_deleted<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()>
where
    K: Clone + Debug + Send + DeserializeOwned + Serialize + Resource + 'static,
{
    let gone = |object: Option<&K>| object.is_none();
    await_object(api, name, timeout, "deletion", gone)
        .await
        .map(drop)
}

async fn await_object<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    what: &str,
    condition: impl Condition<K>,
) -> anyhow::Result<Option<K>>
where
    K: Clone + Debug + Send + DeserializeOwned + Serialize + Resource + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, condition)).await {
        Ok(result) => result.with_context(|| format!("watching {name} for {what}")),
        Err(_) => {
            let seen = match api.get_opt(name).await {
                Ok(Some(object)) => {
                    let mut value = serde_json::to_value(&object).unwrap_or_default();
                    if let Some(metadata) = value["metadata"].as_object_mut() {
                        metadata.remove("managedFields");
                    }
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                }
                Ok(None) => "(it does not exist)".to_string(),
                Err(error) => format!("(could not read it: {error})"),
            };
            bail!("timed out after {timeout:?} waiting for {what} on {name}; last seen:\n{seen}")
        }
    }
}

/// Polls `check` every 200 ms until it returns `Some`, for at most `timeout`.
pub async fn poll_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// True when the object carries a condition `type_` with status `"True"`.
/// Works on any object through its JSON form (`status.conditions`).
pub fn has_condition<K: Serialize>(object: &K, type_: &str) -> bool {
    let Ok(value) = serde_json::to_value(object) else {
        return false;
    };
    value["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == type_ && c["status"] == "True")
        })
}

/// Prints the namespace's events (oldest first) and pods to stderr.
pub async fn dump_namespace(client: &Client, namespace: &str) {
    eprintln!("---- events in namespace {namespace} ----");
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    match events.list(&ListParams::default()).await {
        Ok(list) => {
            let mut items = list.items;
            items.sort_by_key(|event| event.metadata.creation_timestamp.clone());
            for event in items {
                eprintln!(
                    "{} {}/{} {}: {}",
                    event.type_.as_deref().unwrap_or("-"),
                    event.involved_object.kind.as_deref().unwrap_or("-"),
                    event.involved_object.name.as_deref().unwrap_or("-"),
                    event.reason.as_deref().unwrap_or("-"),
                    event.message.as_deref().unwrap_or("").trim(),
                );
            }
        }
        Err(error) => eprintln!("(could not list events: {error})"),
    }
    eprintln!("---- pods in namespace {namespace} ----");
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match pods.list(&ListParams::default()).await {
        Ok(list) => {
            for pod in list.items {
                let status = serde_json::to_value(&pod.status).unwrap_or(Value::Null);
                eprintln!(
                    "{} node={} phase={} podIP={} conditions={}",
                    pod.name_any(),
                    pod.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .unwrap_or("-"),
                    status["phase"].as_str().unwrap_or("-"),
                    status["podIP"].as_str().unwrap_or("-"),
                    status["conditions"],
                );
            }
        }
        Err(error) => eprintln!("(could not list pods: {error})"),
    }
}
