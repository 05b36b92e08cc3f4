//! The e2e control plane behaves like a Kubernetes cluster: real API server
//! and controllers, kwok playing the kubelet.
//!
//! Needs a running cluster: `export COMMLAB_KUBECONFIG=$(e2e/cluster/up.sh)`.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use commlab_e2e::{
    KEEP_RUNNING_LABEL, TEST_NAMESPACE_LABEL, has_condition, poll_until, wait_for,
    wait_until_deleted, with_temp_namespace,
};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt as _};
use serde_json::json;

const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(60);
const GC_TIMEOUT: Duration = Duration::from_secs(60);

fn deployment(name: &str, replicas: i32) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "main", "image": "registry.k8s.io/pause:3.10" }] }
            }
        }
    }))?)
}

fn job(name: &str, pod_labels: serde_json::Value) -> anyhow::Result<Job> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "labels": pod_labels },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{ "name": "main", "image": "registry.k8s.io/pause:3.10" }]
                }
            }
        }
    }))?)
}

async fn pods_with(api: &Api<Pod>, selector: &str) -> anyhow::Result<Vec<Pod>> {
    Ok(api
        .list(&ListParams::default().labels(selector))
        .await?
        .items)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

#[tokio::test]
async fn version_reports_the_built_kubernetes_release() -> anyhow::Result<()> {
    let client = commlab_e2e::client().await?;
    let version = client.apiserver_version().await.context("GET /version")?;
    ensure!(
        version.major == "1" && version.minor == "34" && version.git_version.starts_with("v1.34."),
        "expected kube-apiserver v1.34.x, got {version:?}"
    );
    Ok(())
}

#[tokio::test]
async fn deployment_becomes_available_with_running_pods() -> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        deployments
            .create(&PostParams::default(), &deployment("web", 3)?)
            .await?;

        let available = |d: Option<&Deployment>| {
            d.is_some_and(|d| {
                has_condition(d, "Available")
                    && d.status.as_ref().and_then(|s| s.available_replicas) == Some(3)
            })
        };
        wait_for(
            &deployments,
            "web",
            WORKLOAD_TIMEOUT,
            "3 available replicas",
            available,
        )
        .await?;

        let pods = pods_with(&Api::namespaced(client, &ns), "app=web").await?;
        ensure!(pods.len() == 3, "expected 3 pods, found {}", pods.len());
        for pod in &pods {
            let status = pod.status.as_ref().context("pod without status")?;
            ensure!(
                phase(pod) == "Running",
                "pod {} is {:?}",
                pod.name_any(),
                status.phase
            );
            ensure!(
                status.pod_ip.is_some(),
                "pod {} has no pod IP",
                pod.name_any()
            );
            ensure!(
                has_condition(pod, "Ready"),
                "pod {} is not Ready",
                pod.name_any()
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn job_completes() -> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
        jobs.create(
            &PostParams::default(),
            &job("once", json!({ "app": "once" }))?,
        )
        .await?;

        let complete = |j: Option<&Job>| j.is_some_and(|j| has_condition(j, "Complete"));
        let done = wait_for(
            &jobs,
            "once",
            WORKLOAD_TIMEOUT,
            "condition Complete",
            complete,
        )
        .await?;
        let succeeded = done.status.and_then(|s| s.succeeded);
        ensure!(
            succeeded == Some(1),
            "expected 1 succeeded pod, job status says {succeeded:?}"
        );

        let pods = pods_with(&Api::namespaced(client, &ns), "app=once").await?;
        ensure!(
            pods.iter().any(|p| phase(p) == "Succeeded"),
            "no Succeeded pod among {:?}",
            pods.iter()
                .map(|p| (p.name_any(), phase(p).to_string()))
                .collect::<Vec<_>>()
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn job_pod_labelled_keep_running_stays_running() -> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
        let labels = json!({ "app": "server", KEEP_RUNNING_LABEL: "true" });
        jobs.create(&PostParams::default(), &job("server", labels)?)
            .await?;

        let pods: Api<Pod> = Api::namespaced(client, &ns);
        let running = poll_until(WORKLOAD_TIMEOUT, "the job's pod to run", || async {
            let pods = pods_with(&pods, "app=server").await?;
            Ok(pods.into_iter().find(|p| phase(p) == "Running"))
        })
        .await?;

        // Unlabelled Job pods complete about 2 s after they start running.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let pod = pods.get(&running.name_any()).await?;
        ensure!(
            phase(&pod) == "Running",
            "pod {} turned {}",
            pod.name_any(),
            phase(&pod)
        );
        let job = jobs.get("server").await?;
        ensure!(
            !has_condition(&job, "Complete"),
            "job completed although its pod keeps running"
        );
        ensure!(
            job.status.as_ref().and_then(|s| s.active) == Some(1),
            "expected 1 active pod, job status: {:?}",
            job.status
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn deleting_an_owner_collects_its_dependents() -> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let owner = config_maps
            .create(
                &PostParams::default(),
                &ConfigMap {
                    metadata: ObjectMeta {
                        name: Some("owner".into()),
                        ..ObjectMeta::default()
                    },
                    ..ConfigMap::default()
                },
            )
            .await?;
        let child = ConfigMap {
            metadata: ObjectMeta {
                name: Some("child".into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: owner.name_any(),
                    uid: owner.uid().context("owner has no uid")?,
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        config_maps.create(&PostParams::default(), &child).await?;

        config_maps
            .delete("owner", &DeleteParams::background())
            .await?;
        wait_until_deleted(&config_maps, "child", GC_TIMEOUT).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn deleting_a_deployment_collects_its_replica_sets_and_pods() -> anyhow::Result<()> {
    with_temp_namespace(|client, ns| async move {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        deployments
            .create(&PostParams::default(), &deployment("gone", 2)?)
            .await?;
        let available = |d: Option<&Deployment>| d.is_some_and(|d| has_condition(d, "Available"));
        wait_for(
            &deployments,
            "gone",
            WORKLOAD_TIMEOUT,
            "condition Available",
            available,
        )
        .await?;

        let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
        let owned = replica_sets
            .list(&ListParams::default().labels("app=gone"))
            .await?
            .items;
        ensure!(
            owned.len() == 1,
            "expected 1 ReplicaSet, found {}",
            owned.len()
        );
        let replica_set = owned[0].name_any();

        deployments
            .delete("gone", &DeleteParams::background())
            .await?;
        wait_until_deleted(&replica_sets, &replica_set, GC_TIMEOUT).await?;
        let pods: Api<Pod> = Api::namespaced(client, &ns);
        poll_until(
            GC_TIMEOUT,
            "the deployment's pods to be deleted",
            || async { Ok(pods_with(&pods, "app=gone").await?.is_empty().then_some(())) },
        )
        .await
    })
    .await
}

#[tokio::test]
async fn temp_namespace_is_deleted_with_its_pods() -> anyhow::Result<()> {
    let namespace = with_temp_namespace(|client, ns| async move {
        let deployments: Api<Deployment> = Api::namespaced(client, &ns);
        deployments
            .create(&PostParams::default(), &deployment("doomed", 2)?)
            .await?;
        let available = |d: Option<&Deployment>| d.is_some_and(|d| has_condition(d, "Available"));
        wait_for(
            &deployments,
            "doomed",
            WORKLOAD_TIMEOUT,
            "condition Available",
            available,
        )
        .await?;
        Ok(ns)
    })
    .await?;

    let namespaces: Api<Namespace> = Api::all(commlab_e2e::client().await?);
    let labelled = namespaces
        .list(&ListParams::default().labels(&format!("{TEST_NAMESPACE_LABEL}=true")))
        .await?;
    ensure!(
        labelled.items.iter().all(|n| n.name_any() != namespace)
            || labelled
                .items
                .iter()
                .any(|n| n.name_any() == namespace && n.metadata.deletion_timestamp.is_some()),
        "namespace {namespace} is neither gone nor terminating"
    );
    wait_until_deleted(&namespaces, &namespace, GC_TIMEOUT).await
}
