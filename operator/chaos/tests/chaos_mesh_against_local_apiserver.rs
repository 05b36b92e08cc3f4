//! `ChaosMeshBackend` against the real local Kubernetes API server.
//!
//! The control plane runs no Chaos Mesh: the tests install the minimal
//! PodChaos and NetworkChaos CRDs of `e2e/fixtures/chaos-mesh-crds.yaml`
//! (left installed afterwards; an existing CRD that is not that fixture is
//! used as it is, never replaced), then check the objects the backend
//! creates, deletes and cleans up. No Chaos Mesh controller watches these
//! objects, so every fault comes back not applied once the backend's wait
//! for confirmation runs out (the tests that are about the objects keep
//! that wait short), and what is checked is the API traffic, the stored
//! objects and Kubernetes' own garbage collection.
//!
//! The confirmation itself is driven by [`ControllerStandIn`], a **stand-in
//! for Chaos Mesh's controller**: it writes the object's status and holds
//! its finalizer the way chaos-mesh's records, conditions and finalizer
//! controllers do, so the backend reads what it would read from the real
//! one. A test against the real controller is separate.
//!
//! Needs a running cluster: `export COMMLAB_KUBECONFIG=$(e2e/cluster/up.sh)`.

mod common;

use std::time::Duration;

use anyhow::{Context as _, ensure};
use commlab_api::{Duration as SpecDuration, Fault, FaultKind, Target};
use commlab_chaos::{
    ChaosError, ChaosMeshBackend, ChaosScope, FaultBackend, FaultHandle, Injection, Recovery,
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
use tokio::time::Instant;

const DELETION_TIMEOUT: Duration = Duration::from_secs(30);
/// Kubernetes' garbage collector may take a while to notice an owner is gone.
const GC_TIMEOUT: Duration = Duration::from_secs(90);
/// A namespace that does not exist: requests there fail and create nothing.
const NO_SUCH_NAMESPACE: &str = "commlab-e2e-no-such-namespace";
/// How long the tests about the objects wait for a confirmation that
/// cannot come (no controller acts here).
const SHORT_CONFIRM: Duration = Duration::from_millis(200);
/// How long the tests of the confirmation wait for the stand-in: far more
/// than it takes, so that a result before it shows the wait ended early.
const LONG_CONFIRM: Duration = Duration::from_secs(20);
/// How long the stand-in takes to act, as Chaos Mesh would take a moment.
const CONTROLLER_LAG: Duration = Duration::from_millis(300);
/// The backend reads the status every 100 ms; the rest is API latency on a
/// busy machine.
const CONFIRM_SLACK: Duration = Duration::from_secs(2);
/// Chaos Mesh's finalizer, held until every target is recovered
/// (chaos-mesh `controllers/common/finalizers`).
const CHAOS_MESH_FINALIZER: &str = "chaos-mesh/records";

/// A backend for `scope` that waits only [`SHORT_CONFIRM`] for Chaos Mesh.
fn backend(client: &Client, scope: ChaosScope) -> ChaosMeshBackend {
    ChaosMeshBackend::new(client.clone(), scope).with_confirm_timeout(SHORT_CONFIRM)
}

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
        let backend = backend(&client, scope.clone());

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
            // Nothing acts on it here, and the backend says so.
            assert_eq!(
                active.injection,
                Injection::NotApplied {
                    reason: "not confirmed in force within 200ms: Chaos Mesh has written no \
                             status for it (is its controller running?)"
                        .into()
                },
                "{}",
                fault.name
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
        let backend = backend(&client, ChaosScope::new(&namespace, "shop"));
        for fault in every_kind_of_fault() {
            let active = backend.inject(&fault).await?;
            ensure!(stored(&client, &active.handle).await?.is_some());
            // Without a finalizer the object goes at once: nothing holds it.
            let recovery = backend.recover(active.clone()).await?;
            ensure!(
                matches!(recovery, Recovery::Confirmed { .. }),
                "{recovery:?}"
            );
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
        let backend = backend(&client, shop.clone());
        let other = self::backend(&client, shop_v2.clone());
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
        self::backend(&client, shop.clone()).cleanup().await?;
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
        let earlier_run = backend(&client, scope.clone());
        let leftover = earlier_run.inject(&catalog_down("1s")).await?;
        let leftover_uid = stored(&client, &leftover.handle)
            .await?
            .context("leftover")?["metadata"]["uid"]
            .clone();

        let backend = backend(&client, scope.clone());
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
        let leftover = backend(&client, scope.clone()).inject(&outage).await?;
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

        let impatient =
            backend(&client, scope.clone()).with_replace_timeout(Duration::from_secs(1));
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
        let active = backend(&client, scope.clone()).inject(&outage).await?;
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

        let backend = backend(&client, ChaosScope::new(&namespace, "shop"));
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
        let backend = backend(
            &client,
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

/// A **stand-in for Chaos Mesh's controller** acting on one chaos object:
/// it holds Chaos Mesh's finalizer and writes `status` the way chaos-mesh's
/// records and conditions controllers do (an update of the object itself:
/// Chaos Mesh's CRDs, like the fixture, have no status subresource).
#[derive(Clone)]
struct ControllerStandIn {
    api: Api<DynamicObject>,
    name: String,
}

impl ControllerStandIn {
    fn new(client: &Client, namespace: &str, kind: ChaosKind, name: &str) -> Self {
        Self {
            api: chaos_api(client, namespace, kind),
            name: name.into(),
        }
    }

    /// Waits until the backend created the object, then takes it over as
    /// Chaos Mesh does first: with its finalizer.
    async fn take_over(&self) -> anyhow::Result<()> {
        poll_until(DELETION_TIMEOUT, "the chaos object", || async {
            Ok(self.api.get_opt(&self.name).await?.map(|_| ()))
        })
        .await?;
        self.merge(json!({ "metadata": { "finalizers": [CHAOS_MESH_FINALIZER] } }))
            .await
    }

    /// Writes `status` after [`CONTROLLER_LAG`]; returns when it was written.
    async fn write_status(&self, status: Value) -> anyhow::Result<Instant> {
        tokio::time::sleep(CONTROLLER_LAG).await;
        self.merge(json!({ "status": status })).await?;
        Ok(Instant::now())
    }

    /// Waits until the backend deleted the object (it is held by the finalizer).
    async fn deletion_requested(&self) -> anyhow::Result<()> {
        poll_until(DELETION_TIMEOUT, "the backend to delete it", || async {
            let object = self.api.get(&self.name).await?;
            Ok(object.metadata.deletion_timestamp.map(|_| ()))
        })
        .await
    }

    /// Lets the object go, as Chaos Mesh does once every target is recovered.
    async fn release(&self) -> anyhow::Result<()> {
        self.merge(json!({ "metadata": { "finalizers": null } }))
            .await
    }

    async fn merge(&self, patch: Value) -> anyhow::Result<()> {
        self.api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }
}

/// Chaos Mesh's status with one record per pod in `pods`, each in `phase`
/// with `events`, and the conditions its condition controller derives.
fn chaos_mesh_status(desired: &str, pods: &[&str], phase: &str, events: Value) -> Value {
    let flag = |on: bool| if on { "True" } else { "False" };
    json!({
        "conditions": [
            { "type": "Selected", "status": flag(!pods.is_empty()) },
            { "type": "AllInjected", "status": flag(phase == "Injected") },
            { "type": "AllRecovered", "status": flag(phase == "Not Injected") },
            { "type": "Paused", "status": "False" },
        ],
        "experiment": {
            "desiredPhase": desired,
            "containerRecords": pods.iter().map(|pod| json!({
                "id": pod,
                "selectorKey": ".",
                "phase": phase,
                "injectedCount": 1,
                "recoveredCount": 0,
                "events": events,
            })).collect::<Vec<_>>(),
        },
    })
}

fn record_event(type_: &str, operation: &str, message: &str) -> Value {
    json!({ "type": type_, "operation": operation, "message": message, "timestamp": "2026-01-01T00:00:05Z" })
}

/// `at` is no earlier than `after` and within the backend's polling of it.
fn confirmed_soon_after(at: Instant, after: Instant) -> anyhow::Result<()> {
    ensure!(
        at >= after && at <= after + CONFIRM_SLACK,
        "confirmed {:?} after the status was written",
        at.checked_duration_since(after)
    );
    Ok(())
}

#[tokio::test]
async fn a_fault_is_in_force_from_when_chaos_mesh_reports_it_injected_and_recovered_when_it_lets_go()
-> anyhow::Result<()> {
    with_temp_namespace(|client, namespace| async move {
        install_chaos_mesh_crds(&client).await?;
        let scope = ChaosScope::new(&namespace, "shop");
        let backend = ChaosMeshBackend::new(client.clone(), scope).with_confirm_timeout(LONG_CONFIRM);
        let controller =
            ControllerStandIn::new(&client, &namespace, ChaosKind::PodChaos, "shop-catalog-down");
        let pods = [format!("{namespace}/shop-catalog-1"), format!("{namespace}/shop-catalog-2")];
        let pods: Vec<&str> = pods.iter().map(String::as_str).collect();

        let injecting = {
            let (controller, pods) = (controller.clone(), pods.clone());
            let pods: Vec<String> = pods.into_iter().map(str::to_owned).collect();
            tokio::spawn(async move {
                controller.take_over().await?;
                let pods: Vec<&str> = pods.iter().map(String::as_str).collect();
                // One pod first: not yet in force.
                controller
                    .write_status(json!({
                        "experiment": {
                            "desiredPhase": "Run",
                            "containerRecords": [
                                { "id": pods[0], "selectorKey": ".", "phase": "Injected", "injectedCount": 1, "recoveredCount": 0 },
                                { "id": pods[1], "selectorKey": ".", "phase": "Not Injected", "injectedCount": 0, "recoveredCount": 0 },
                            ],
                        },
                    }))
                    .await?;
                let succeeded = json!([record_event("Succeeded", "Apply", "")]);
                controller
                    .write_status(chaos_mesh_status("Run", &pods, "Injected", succeeded))
                    .await
            })
        };
        let active = backend.inject(&catalog_down("30s")).await?;
        let written = injecting.await??;
        let Injection::InForce { since } = active.injection else {
            anyhow::bail!("not in force: {:?}", active.injection);
        };
        confirmed_soon_after(since, written)?;

        let recovering = {
            let controller = controller.clone();
            let pods: Vec<String> = pods.iter().map(|p| (*p).to_owned()).collect();
            tokio::spawn(async move {
                controller.deletion_requested().await?;
                let pods: Vec<&str> = pods.iter().map(String::as_str).collect();
                let events = json!([
                    record_event("Succeeded", "Apply", ""),
                    record_event("Succeeded", "Recover", ""),
                ]);
                let written = controller
                    .write_status(chaos_mesh_status("Stop", &pods, "Not Injected", events))
                    .await?;
                controller.release().await?;
                anyhow::Ok(written)
            })
        };
        let recovery = backend.recover(active.clone()).await?;
        let written = recovering.await??;
        let Recovery::Confirmed { at } = recovery else {
            anyhow::bail!("recovery not confirmed: {recovery:?}");
        };
        confirmed_soon_after(at, written)?;
        ensure!(stored(&client, &active.handle).await?.is_none(), "let go");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_delay_chaos_mesh_fails_to_inject_is_not_applied_with_its_message_at_once()
-> anyhow::Result<()> {
    with_temp_namespace(|client, namespace| async move {
        install_chaos_mesh_crds(&client).await?;
        let scope = ChaosScope::new(&namespace, "shop");
        let backend = ChaosMeshBackend::new(client.clone(), scope).with_confirm_timeout(LONG_CONFIRM);
        let controller = ControllerStandIn::new(
            &client,
            &namespace,
            ChaosKind::NetworkChaos,
            "shop-slow-catalog",
        );
        // What chaos-daemon answers on a kernel without netem.
        let qdisc = "rpc error: code = Unknown desc = error code: 2, msg: Error: Specified qdisc kind is unknown.";
        let pod = format!("{namespace}/shop-catalog-1");
        let failing = {
            let controller = controller.clone();
            let pod = pod.clone();
            tokio::spawn(async move {
                controller.take_over().await?;
                let failed = json!([record_event("Failed", "Apply", qdisc)]);
                controller
                    .write_status(chaos_mesh_status("Run", &[&pod], "Not Injected/Wait", failed))
                    .await
            })
        };
        let started = Instant::now();
        let active = backend
            .inject(&fault("slow-catalog", FaultKind::Delay, Target::Catalog, "30s"))
            .await?;
        let written = failing.await??;
        assert_eq!(
            active.injection,
            Injection::NotApplied {
                reason: format!("Chaos Mesh failed to inject it into {pod}: {qdisc}")
            }
        );
        ensure!(
            started.elapsed() < LONG_CONFIRM / 2 && written.elapsed() < CONFIRM_SLACK,
            "the failure ended the wait: {:?}",
            started.elapsed()
        );

        // Recovering what was not applied: Chaos Mesh has nothing in force
        // (no record injected) and lets it go.
        let releasing = {
            let controller = controller.clone();
            tokio::spawn(async move {
                controller.deletion_requested().await?;
                controller.release().await
            })
        };
        let recovery = backend.recover(active).await?;
        releasing.await??;
        ensure!(
            matches!(recovery, Recovery::Confirmed { .. }),
            "{recovery:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_recovery_chaos_mesh_does_not_confirm_says_what_it_reported() -> anyhow::Result<()> {
    with_temp_namespace(|client, namespace| async move {
        install_chaos_mesh_crds(&client).await?;
        let scope = ChaosScope::new(&namespace, "shop");
        // Long enough for the stand-in to report the failure, short enough
        // for the test.
        let backend = ChaosMeshBackend::new(client.clone(), scope)
            .with_confirm_timeout(Duration::from_secs(3));
        let controller = ControllerStandIn::new(
            &client,
            &namespace,
            ChaosKind::PodChaos,
            "shop-catalog-down",
        );
        let pod = format!("{namespace}/shop-catalog-1");
        let injecting = {
            let (controller, pod) = (controller.clone(), pod.clone());
            tokio::spawn(async move {
                controller.take_over().await?;
                let succeeded = json!([record_event("Succeeded", "Apply", "")]);
                controller
                    .write_status(chaos_mesh_status("Run", &[&pod], "Injected", succeeded))
                    .await?;
                controller.deletion_requested().await?;
                let events = json!([
                    record_event("Succeeded", "Apply", ""),
                    record_event("Failed", "Recover", "chaos-daemon unavailable"),
                ]);
                controller
                    .write_status(chaos_mesh_status("Stop", &[&pod], "Injected", events))
                    .await
            })
        };
        let active = backend.inject(&catalog_down("30s")).await?;
        ensure!(
            matches!(active.injection, Injection::InForce { .. }),
            "{:?}",
            active.injection
        );
        let recovery = backend.recover(active).await?;
        injecting.await??;
        assert_eq!(
            recovery,
            Recovery::Unconfirmed {
                reason: format!(
                    "not confirmed undone within 3s: Chaos Mesh failed to recover {pod}: \
                     chaos-daemon unavailable"
                )
            }
        );
        controller.release().await
    })
    .await
}
