//! `ChaosMeshBackend` against the real local Kubernetes API server.
//!
//! The control plane runs no Chaos Mesh: the tests install the minimal
//! PodChaos and NetworkChaos CRDs of `e2e/fixtures/chaos-mesh-crds.yaml`
//! (left installed afterwards; an existing CRD that is not that fixture is
//! used as it is, never replaced), then check the objects the backend
//! creates, deletes and cleans up. Nothing undoes faults here, since no
//! Chaos Mesh controller watches these objects; what is checked is the
//! API traffic, the stored objects and Kubernetes' own garbage collection.
//!
//! Needs a running cluster: `export COMMLAB_KUBECONFIG=$(e2e/cluster/up.sh)`.

mod common;

use std::time::Duration;

use anyhow::{Context as _, ensure};
use commlab_api::{Duration as SpecDuration, Fault, FaultKind, Target};
use commlab_chaos::{
    ChaosError, ChaosMeshBackend, ChaosScope, FaultBackend, FaultHandle,
    chaos_mesh::{ChaosKind, chaos_object},
};
use commlab_e2e::crds::install_chaos_mesh_crds;
use commlab_e2e::{poll_until, with_temp_namespace};
use common::{catalog_down, fault};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams,
};
use kube::{Api, Client, ResourceExt as _};
use serde_json::{Value, json};

const DELETION_TIMEOUT: Duration = Duration::from_secs(30);
/// Kubernetes' garbage collector may take a while to notice an owner is gone.
const GC_TIMEOUT: Duration = Duration::from_secs(90);
/// A namespace that does not exist: requests there fail and create nothing.
const NO_SUCH_NAMESPACE: &str = "commlab-e2e-no-such-namespace";

/// A ConfigMap standing in for the CommunicationPattern as the owner of the
/// chaos objects: a real object, so that the garbage collector keeps its
/// dependents while it exists.
async fn owner(client: &Client, namespace: &str, name: &str) -> anyhow::Result<OwnerReference> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let owner = config_maps
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            },
        )
        .await
        .context("creating the owner")?;
    Ok(OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: name.into(),
        uid: owner.uid().context("the owner has a uid")?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// One fault of each kind, on different targets.
fn every_kind_of_fault() -> Vec<Fault> {
    vec![
        catalog_down("15s"),
        fault("orders-killed", FaultKind::Kill, Target::Orders, "5s"),
        fault("slow-catalog", FaultKind::Delay, Target::Catalog, "10s"),
        fault(
            "database-cut",
            FaultKind::Partition,
            Target::Database,
            "1m30s",
        ),
    ]
}

fn chaos_api(client: &Client, namespace: &str, kind: ChaosKind) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &kind.api_resource())
}

/// The names of the chaos objects of one kind that belong to `scope`.
async fn names(
    client: &Client,
    scope: &ChaosScope,
    kind: ChaosKind,
) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<_> = chaos_api(client, &scope.namespace, kind)
        .list(&ListParams::default().labels(&scope.label_selector()))
        .await?
        .items
        .iter()
        .map(|object| object.name_any())
        .collect();
    names.sort();
    Ok(names)
}

async fn backend_in_a_missing_namespace() -> anyhow::Result<ChaosMeshBackend> {
    let client = commlab_e2e::client().await?;
    install_chaos_mesh_crds(&client).await?;
    Ok(ChaosMeshBackend::new(
        client,
        ChaosScope::new(NO_SUCH_NAMESPACE, "shop"),
    ))
}

/// The object a handle points to, as stored.
async fn stored(client: &Client, handle: &FaultHandle) -> anyhow::Result<Option<Value>> {
    let FaultHandle::ChaosMeshObject {
        kind,
        namespace,
        name,
    } = handle
    else {
        anyhow::bail!("not a Chaos Mesh object handle: {handle:?}");
    };
    let kind: ChaosKind = kind.parse().map_err(anyhow::Error::msg)?;
    let object = chaos_api(client, namespace, kind).get_opt(name).await?;
    Ok(object.map(|object| serde_json::to_value(object).expect("objects serialize")))
}

#[tokio::test]
async fn every_fault_kind_creates_its_chaos_object_as_built() -> anyhow::Result<()> {
    with_temp_namespace(|client, namespace| async move {
        install_chaos_mesh_crds(&client).await?;
        let owner = owner(&client, &namespace, "shop").await?;
        let scope = ChaosScope::new(&namespace, "shop").with_owner(owner.clone());
        let backend = ChaosMeshBackend::new(client.clone(), scope.clone());

        for fault in every_kind_of_fault() {
            let built = chaos_object(&scope, &fault)?;
            let active = backend.inject(&fault).await?;
            assert_eq!(active.name, fault.name);
            assert_eq!(
                active.handle,
                FaultHandle::ChaosMeshObject {
                    kind: built.kind.to_string(),
                    namespace: namespace.clone(),
                    name: format!("shop-{}", fault.name),
                }
            );
            let object = stored(&client, &active.handle)
                .await?
                .with_context(|| format!("{} was not created", built.name))?;

            let expected_kind = match fault.fault {
                FaultKind::Outage | FaultKind::Kill => "PodChaos",
                FaultKind::Delay | FaultKind::Partition => "NetworkChaos",
            };
            assert_eq!(object["apiVersion"], "chaos-mesh.org/v1alpha1");
            assert_eq!(object["kind"], expected_kind);
            // The API server stored exactly the spec that was built.
            assert_eq!(object["spec"], built.body["spec"], "{}", fault.name);

            let spec = &object["spec"];
            let expected_action = match fault.fault {
                FaultKind::Outage => "pod-failure",
                FaultKind::Kill => "pod-kill",
                FaultKind::Delay => "delay",
                FaultKind::Partition => "partition",
            };
            assert_eq!(spec["action"], expected_action);
            assert_eq!(spec["mode"], "all");
            assert_eq!(
                spec["duration"],
                SpecDuration::from(fault.duration.as_std()).to_string()
            );
            assert_eq!(spec["selector"]["namespaces"], json!([namespace]));
            assert_eq!(
                spec["selector"]["labelSelectors"],
                json!({
                    "app.kubernetes.io/name": "commlab",
                    "app.kubernetes.io/instance": "shop",
                    "app.kubernetes.io/component": fault.target.as_str(),
                })
            );
            match fault.fault {
                FaultKind::Delay => {
                    assert_eq!(
                        spec["delay"],
                        json!({ "latency": "100ms", "jitter": "10ms" })
                    );
                    assert_eq!(spec["direction"], "to");
                }
                FaultKind::Partition => assert_eq!(spec["direction"], "both"),
                _ => assert!(spec.get("direction").is_none()),
            }

            let metadata = &object["metadata"];
            assert_eq!(
                metadata["labels"],
                json!({
                    "app.kubernetes.io/managed-by": "commlab-operator",
                    "app.kubernetes.io/instance": "shop",
                    "commlab.dev/fault": fault.name,
                })
            );
            assert_eq!(metadata["ownerReferences"][0]["uid"], owner.uid.as_str());
            assert_eq!(metadata["ownerReferences"][0]["kind"], "ConfigMap");
        }
        assert_eq!(
            names(&client, &scope, ChaosKind::PodChaos).await?,
            ["shop-catalog-down", "shop-orders-killed"]
        );
        assert_eq!(
            names(&client, &scope, ChaosKind::NetworkChaos).await?,
            ["shop-database-cut", "shop-slow-catalog"]
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn recover_deletes_the_object_and_is_idempotent() -> anyhow::Result<()> {
    with_temp_namespace(|client, namespace| async move {
        install_chaos_mesh_crds(&client).await?;
        let backend = ChaosMeshBackend::new(client.clone(), ChaosScope::new(&namespace, "shop"));
        for fault in every_kind_of_fault() {
            let active = backend.inject(&fault).await?;
            ensure!(stored(&client, &active.handle).await?.is_some());
            backend.recover(active.clone()).await?;
            ensure!(
                stored(&client, &active.handle).await?.is_none(),
                "{} still exists after recover",
                fault.name
            );
            // Already recovered: still Ok.
            backend.recover(active).await?;
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn cleanup_deletes_every_object_of_the_experiment_and_only_those() -> anyhow::Result<()> {
    with_temp_namespace(|client, namespace| async move {
        install_chaos_mesh_crds(&client).await?;
        let shop = ChaosScope::new(&namespace, "shop");
        // Another experiment whose name starts like this one's.
        let shop_v2 = ChaosScope::new(&namespace, "shop-v2");
        let backend = ChaosMeshBackend::new(client.clone(), shop.clone());
        let other = ChaosMeshBackend::new(client.clone(), shop_v2.clone());
        for fault in every_kind_of_fault() {
            backend.inject(&fault).await?;
        }
        other.inject(&catalog_down("15s")).await?;
        other
            .inject(&fault(
                "slow-catalog",
                FaultKind::Delay,
                Target::Catalog,
                "10s",
            ))
            .await?;

        // A second backend for the same experiment, as after a restart.
        ChaosMeshBackend::new(client.clone(), shop.clone())
            .cleanup()
            .await?;
        poll_until(
            DELETION_TIMEOUT,
            "shop's chaos objects to be gone",
            || async {
                let pods = names(&client, &shop, ChaosKind::PodChaos).await?;
                let network = names(&client, &shop, ChaosKind::NetworkChaos).await?;
                Ok((pods.is_empty() && network.is_empty()).then_some(()))
            },
        )
        .await?;
        assert_eq!(
            names(&client, &shop_v2, ChaosKind::PodChaos).await?,
            ["shop-v2-catalog-down"]
        );
        assert_eq!(
            names(&client, &shop_v2, ChaosKind::NetworkChaos).await?,
            ["shop-v2-slow-catalog"]
        );
        // Nothing left to do: still Ok.
        backend.cleanup().await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn inject_replaces_a_leftover_of_an_interrupted_run() -> anyhow::Result<()> {
    with_temp_namespace(|client, namespace| async move {
        install_chaos_mesh_crds(&client).await?;
        let scope = ChaosScope::new(&namespace, "shop");
        let earlier_run = ChaosMeshBackend::new(client.clone(), scope.clone());
        let leftover = earlier_run.inject(&catalog_down("1s")).await?;
        let leftover_uid = stored(&client, &leftover.handle)
            .await?
            .context("leftover")?["metadata"]["uid"]
            .clone();

        let backend = ChaosMeshBackend::new(client.clone(), scope.clone());
        let active = backend.inject(&catalog_down("20s")).await?;
        assert_eq!(active.handle, leftover.handle, "same name");
        let object = stored(&client, &active.handle)
            .await?
            .context("replacement")?;
        assert_ne!(object["metadata"]["uid"], leftover_uid, "a new object");
        assert_eq!(object["spec"]["duration"], "20s");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn inject_waits_until_a_leftover_held_by_a_finalizer_is_gone() -> anyhow::Result<()> {
    with_temp_namespace(|client, namespace| async move {
        install_chaos_mesh_crds(&client).await?;
        let scope = ChaosScope::new(&namespace, "shop");
        let outage = catalog_down("15s");
        let leftover = ChaosMeshBackend::new(client.clone(), scope.clone())
            .inject(&outage)
            .await?;
        // Chaos Mesh holds a deleted object with its finalizer until the
        // fault is undone; this finalizer plays that part.
        let api = chaos_api(&client, &namespace, ChaosKind::PodChaos);
        let name = "shop-catalog-down";
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "finalizers": ["commlab.dev/test-hold"] } })),
        )
        .await?;
        let leftover_uid = api.get(name).await?.uid();

        let impatient = ChaosMeshBackend::new(client.clone(), scope.clone())
            .with_replace_timeout(Duration::from_secs(1));
        let err = impatient
            .inject(&outage)
            .await
            .expect_err("the leftover is still held");
        assert_eq!(err.category(), "timeout", "{err}");
        let held = api.get(name).await?;
        assert_eq!(held.uid(), leftover_uid);
        assert!(
            held.metadata.deletion_timestamp.is_some(),
            "its deletion was requested"
        );

        let release = {
            let api = api.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                api.patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
                )
                .await
            })
        };
        let active = ChaosMeshBackend::new(client.clone(), scope.clone())
            .inject(&outage)
            .await?;
        release.await??;
        assert_eq!(active.handle, leftover.handle);
        let replacement = api.get(name).await?;
        assert_ne!(replacement.uid(), leftover_uid, "a new object");
        assert!(replacement.metadata.deletion_timestamp.is_none());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn inject_never_replaces_an_object_commlab_does_not_manage() -> anyhow::Result<()> {
    with_temp_namespace(|client, namespace| async move {
        install_chaos_mesh_crds(&client).await?;
        let api = chaos_api(&client, &namespace, ChaosKind::PodChaos);
        let mut someone_elses =
            DynamicObject::new("shop-catalog-down", &ChaosKind::PodChaos.api_resource())
                .data(json!({ "spec": { "action": "pod-kill", "mode": "one", "selector": {} } }));
        someone_elses.metadata.namespace = Some(namespace.clone());
        let created = api.create(&PostParams::default(), &someone_elses).await?;

        let backend = ChaosMeshBackend::new(client.clone(), ChaosScope::new(&namespace, "shop"));
        let err = backend
            .inject(&catalog_down("15s"))
            .await
            .expect_err("the name is taken by an object commlab does not manage");
        assert_eq!(err.category(), "name_taken", "{err}");
        assert!(matches!(err, ChaosError::NameTaken { .. }));
        let still_there = api.get("shop-catalog-down").await?;
        assert_eq!(still_there.uid(), created.uid(), "left alone");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn deleting_the_owner_garbage_collects_the_chaos_objects() -> anyhow::Result<()> {
    with_temp_namespace(|client, namespace| async move {
        install_chaos_mesh_crds(&client).await?;
        let owner = owner(&client, &namespace, "shop").await?;
        let backend = ChaosMeshBackend::new(
            client.clone(),
            ChaosScope::new(&namespace, "shop").with_owner(owner),
        );
        let outage = backend.inject(&catalog_down("15s")).await?;
        let partition = backend
            .inject(&fault(
                "broker-cut",
                FaultKind::Partition,
                Target::Broker,
                "15s",
            ))
            .await?;

        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
        config_maps
            .delete("shop", &DeleteParams::background())
            .await?;
        poll_until(
            GC_TIMEOUT,
            "the garbage collector to delete the chaos objects",
            || async {
                let outage_gone = stored(&client, &outage.handle).await?.is_none();
                let partition_gone = stored(&client, &partition.handle).await?.is_none();
                Ok((outage_gone && partition_gone).then_some(()))
            },
        )
        .await
    })
    .await
}

#[tokio::test]
async fn a_missing_namespace_is_a_kubernetes_error_not_a_missing_chaos_mesh() -> anyhow::Result<()>
{
    let backend = backend_in_a_missing_namespace().await?;
    let err = backend
        .inject(&catalog_down("15s"))
        .await
        .expect_err("the namespace does not exist");
    assert_eq!(err.category(), "kubernetes", "{err}");
    assert!(
        err.to_string().starts_with(
            "could not create PodChaos commlab-e2e-no-such-namespace/shop-catalog-down: "
        ),
        "{err}"
    );
    // Cleaning up where nothing exists is Ok.
    backend.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn a_request_over_the_timeout_fails_as_a_timeout() -> anyhow::Result<()> {
    // Should the request get through after all, it creates nothing.
    let backend = backend_in_a_missing_namespace()
        .await?
        .with_request_timeout(Duration::from_nanos(1));
    let started = std::time::Instant::now();
    let err = backend
        .inject(&catalog_down("15s"))
        .await
        .expect_err("no API server answers within a nanosecond");
    assert_eq!(err.category(), "timeout", "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}
