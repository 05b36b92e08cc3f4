//! The Chaos Mesh objects commlab creates for its faults, built by pure
//! functions shared by both cluster backends
//! ([`ChaosMeshBackend`](crate::ChaosMeshBackend) creates them through the
//! Kubernetes API, [`DashboardBackend`](crate::DashboardBackend) posts the
//! same JSON to the Chaos Mesh dashboard).
//!
//! # One object per fault
//!
//! | fault | kind | `spec.action` | also in `spec` |
//! |---|---|---|---|
//! | `Outage` | `PodChaos` | `pod-failure` | |
//! | `Kill` | `PodChaos` | `pod-kill` | |
//! | `Delay` | `NetworkChaos` | `delay` | `delay: {latency, jitter}`, `direction: to`, `target` |
//! | `Partition` | `NetworkChaos` | `partition` | `direction: both`, `target` |
//!
//! Every object lives in the experiment's namespace, is called
//! `<CommunicationPattern>-<fault name>` (see [`object_name`]), has
//! `mode: all` and `duration` = the fault's duration, and selects the
//! target component's pods (`selector.namespaces: [namespace]`,
//! `selector.labelSelectors` = the labels the operator puts on that
//! component's pods: `app.kubernetes.io/name=commlab`,
//! `app.kubernetes.io/instance=<CommunicationPattern>`,
//! `app.kubernetes.io/component=<target>`). It carries the labels
//! `app.kubernetes.io/managed-by=commlab-operator`,
//! `app.kubernetes.io/instance=<CommunicationPattern>` and
//! `commlab.dev/fault=<fault name>`, and an owner reference to the
//! CommunicationPattern when the backend was given one, so that deleting
//! the CommunicationPattern deletes its chaos too.
//!
//! # The network faults act on the link between orders and the target
//!
//! A `NetworkChaos` with a `target` only affects traffic between the pods
//! it selects and the pods its `target` selects; `direction` says which way
//! (`to`: packets from the selected pods to the target's, `both`: both
//! ways). commlab measures what **orders** experiences, so:
//!
//! - the selected pods are the target component's, and the `target` pods
//!   are orders' (all of them, `mode: all`);
//! - when the target *is* orders, the `target` pods are those of every
//!   component orders depends on (`app.kubernetes.io/component` in
//!   `broker`, `catalog`, `database`), so the fault sits between orders and
//!   all of its dependencies.
//!
//! What follows from that choice:
//!
//! - `Partition` on catalog cuts orders off from catalog while catalog
//!   still reaches its database and the broker, and the load generator
//!   still reaches catalog. That is the question a partition asks and an
//!   `Outage` does not: which patterns need a direct network path from
//!   orders to catalog (a direct API call, polling and API-pushed cache
//!   updates do; a cache fed by events through the broker does not). The
//!   same holds for the broker and the database: a `Partition` on the
//!   database in `DirectApiCall` changes nothing, because orders has no
//!   path to the database in that pattern, which is the pattern's point.
//! - `Delay` with `direction: to` delays the packets the target sends to
//!   orders, so every round trip between orders and the target takes
//!   `latency` (± `jitter`) longer, as the fault contract promises. Without
//!   a `target` Chaos Mesh would delay everything the target sends,
//!   including its own queries to the database, which would add the
//!   latency several times per checkout and also slow the load generator's
//!   price updates.
//! - The load generator is never in a `target`, so it keeps measuring.
//!
//! Chaos Mesh facts relied on (API `chaos-mesh.org/v1alpha1`, read in
//! chaos-mesh/chaos-mesh `api/v1alpha1/{podchaos,networkchaos}_types.go`,
//! `selector.go`, `networkchaos_webhook.go` and `config/crd/bases/`):
//! the plurals `podchaos`/`networkchaos`; `PodSelector` is `selector`
//! (`namespaces`, `labelSelectors`, `expressionSelectors`) + `mode` (+
//! `value`); `NetworkChaosSpec.target` is a `PodSelector`; `direction` is
//! `to`/`from`/`both` and `from`/`both` need a `target` for netem actions;
//! `delay.latency`/`delay.jitter` are Go durations; `duration` is a Go
//! duration, required by `pod-failure`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use commlab_api::{Fault, FaultKind, Target};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ApiResource;
use serde_json::{Value, json};

use crate::{ChaosError, backend::latency_and_jitter};

/// Chaos Mesh's API group.
pub const GROUP: &str = "chaos-mesh.org";
/// The version of Chaos Mesh's API commlab uses.
pub const VERSION: &str = "v1alpha1";
/// `chaos-mesh.org/v1alpha1`.
pub const API_VERSION: &str = "chaos-mesh.org/v1alpha1";

/// Labels on the pods of a CommunicationPattern's components, as the
/// operator sets them (`operator/controller/src/labels.rs`).
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`NAME_LABEL`] on every commlab pod.
pub const APP: &str = "commlab";
/// The value of [`MANAGED_BY_LABEL`] on everything the operator creates.
pub const MANAGER: &str = "commlab-operator";
/// The label naming the fault a chaos object applies.
pub const FAULT_LABEL: &str = "commlab.dev/fault";

/// Chaos object names are DNS-1123 labels: at most this long.
pub const MAX_NAME_LEN: usize = 63;
/// Hex digits of the hash that ends a shortened name.
const NAME_HASH_LEN: usize = 8;

/// The two Chaos Mesh kinds commlab creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChaosKind {
    PodChaos,
    NetworkChaos,
}

impl ChaosKind {
    pub const ALL: [ChaosKind; 2] = [ChaosKind::PodChaos, ChaosKind::NetworkChaos];

    /// The kind for a fault: `PodChaos` for `Outage` and `Kill`,
    /// `NetworkChaos` for `Delay` and `Partition`.
    pub fn for_fault(kind: FaultKind) -> Self {
        match kind {
            FaultKind::Outage | FaultKind::Kill => ChaosKind::PodChaos,
            FaultKind::Delay | FaultKind::Partition => ChaosKind::NetworkChaos,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChaosKind::PodChaos => "PodChaos",
            ChaosKind::NetworkChaos => "NetworkChaos",
        }
    }

    /// The resource name in URLs, from Chaos Mesh's CRDs.
    pub fn plural(self) -> &'static str {
        match self {
            ChaosKind::PodChaos => "podchaos",
            ChaosKind::NetworkChaos => "networkchaos",
        }
    }

    /// For kube's dynamic API (`Api::<DynamicObject>::namespaced_with`).
    pub fn api_resource(self) -> ApiResource {
        ApiResource {
            group: GROUP.into(),
            version: VERSION.into(),
            api_version: API_VERSION.into(),
            kind: self.as_str().into(),
            plural: self.plural().into(),
        }
    }
}

impl fmt::Display for ChaosKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChaosKind {
    type Err = String;

    fn from_str(kind: &str) -> Result<Self, Self::Err> {
        ChaosKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(|| format!("`{kind}` is not a chaos kind commlab creates"))
    }
}

/// Which experiment a cluster backend works for: where its chaos objects
/// go, which pods they select, and who owns them.
#[derive(Clone, Debug, PartialEq)]
pub struct ChaosScope {
    /// The namespace of the CommunicationPattern and of its pods.
    pub namespace: String,
    /// The CommunicationPattern's name (the `app.kubernetes.io/instance`
    /// label of its pods).
    pub instance: String,
    /// The owner reference every chaos object carries, normally the
    /// CommunicationPattern's controller reference.
    pub owner: Option<OwnerReference>,
}

impl ChaosScope {
    /// A scope without an owner reference.
    pub fn new(namespace: impl Into<String>, instance: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            instance: instance.into(),
            owner: None,
        }
    }

    /// Sets the owner reference of every chaos object.
    pub fn with_owner(mut self, owner: OwnerReference) -> Self {
        self.owner = Some(owner);
        self
    }

    /// The label selector that finds every chaos object of this experiment.
    pub fn label_selector(&self) -> String {
        format!(
            "{INSTANCE_LABEL}={},{MANAGED_BY_LABEL}={MANAGER}",
            self.instance
        )
    }

    /// Whether an object with these labels was created by commlab for this
    /// experiment.
    pub fn owns(&self, labels: &BTreeMap<String, String>) -> bool {
        labels.get(INSTANCE_LABEL) == Some(&self.instance)
            && labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGER)
    }
}

/// A chaos object ready to be created.
#[derive(Clone, Debug, PartialEq)]
pub struct ChaosObject {
    pub kind: ChaosKind,
    pub namespace: String,
    pub name: String,
    /// The whole object: `apiVersion`, `kind`, `metadata` and `spec`.
    pub body: Value,
}

/// The Chaos Mesh object that applies `fault` to the experiment in `scope`.
///
/// A `Delay` without a latency is [`ChaosError::InvalidFault`] (the API
/// server's CEL rules normally reject it first).
pub fn chaos_object(scope: &ChaosScope, fault: &Fault) -> Result<ChaosObject, ChaosError> {
    let kind = ChaosKind::for_fault(fault.fault);
    let name = object_name(&scope.instance, &fault.name);
    let mut metadata = json!({
        "name": name,
        "namespace": scope.namespace,
        "labels": object_labels(scope, &fault.name),
    });
    if let Some(owner) = &scope.owner {
        metadata["ownerReferences"] = json!([owner]);
    }
    let duration = go_duration(fault.duration.as_std());
    let selector = pod_selector(scope, fault.target);
    let spec = match fault.fault {
        FaultKind::Outage | FaultKind::Kill => json!({
            "action": if fault.fault == FaultKind::Outage { "pod-failure" } else { "pod-kill" },
            "mode": "all",
            "selector": selector,
            "duration": duration,
        }),
        FaultKind::Delay => {
            let (latency, jitter) = latency_and_jitter(fault)?;
            json!({
                "action": "delay",
                "mode": "all",
                "selector": selector,
                "duration": duration,
                "delay": {
                    "latency": go_duration(latency),
                    "jitter": go_duration(jitter),
                },
                "direction": "to",
                "target": { "mode": "all", "selector": peer_selector(scope, fault.target) },
            })
        }
        FaultKind::Partition => json!({
            "action": "partition",
            "mode": "all",
            "selector": selector,
            "duration": duration,
            "direction": "both",
            "target": { "mode": "all", "selector": peer_selector(scope, fault.target) },
        }),
    };
    let body = json!({
        "apiVersion": API_VERSION,
        "kind": kind.as_str(),
        "metadata": metadata,
        "spec": spec,
    });
    Ok(ChaosObject {
        kind,
        namespace: scope.namespace.clone(),
        name,
        body,
    })
}

/// `<instance>-<fault>`, or when that is longer than [`MAX_NAME_LEN`], its
/// beginning followed by `-` and a hash of the whole, so that two long names
/// never collide and the same fault always gets the same name.
pub fn object_name(instance: &str, fault: &str) -> String {
    let full = format!("{instance}-{fault}");
    if full.len() <= MAX_NAME_LEN {
        return full;
    }
    let keep = MAX_NAME_LEN - NAME_HASH_LEN - 1;
    // Names are ASCII (DNS labels and subdomains), so a byte index is a char index.
    let prefix = full[..keep].trim_end_matches(['-', '.']);
    format!("{prefix}-{:08x}", fnv1a_32(full.as_bytes()))
}

/// The labels of a chaos object.
pub fn object_labels(scope: &ChaosScope, fault: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGER.to_owned()),
        (INSTANCE_LABEL.to_owned(), scope.instance.clone()),
        (FAULT_LABEL.to_owned(), fault.to_owned()),
    ])
}

/// Selects the pods of `component` in the experiment.
fn pod_selector(scope: &ChaosScope, component: Target) -> Value {
    json!({
        "namespaces": [scope.namespace],
        "labelSelectors": {
            NAME_LABEL: APP,
            INSTANCE_LABEL: scope.instance,
            COMPONENT_LABEL: component.as_str(),
        },
    })
}

/// Selects the other end of a network fault on `target` (see the module
/// documentation): orders' pods, or those of orders' dependencies when the
/// target is orders.
fn peer_selector(scope: &ChaosScope, target: Target) -> Value {
    if target != Target::Orders {
        return pod_selector(scope, Target::Orders);
    }
    let dependencies = [Target::Broker, Target::Catalog, Target::Database].map(Target::as_str);
    json!({
        "namespaces": [scope.namespace],
        "labelSelectors": {
            NAME_LABEL: APP,
            INSTANCE_LABEL: scope.instance,
        },
        "expressionSelectors": [
            { "key": COMPONENT_LABEL, "operator": "In", "values": dependencies },
        ],
    })
}

/// A duration as Go's `time.ParseDuration` reads it: `15s`, or `250ms` when
/// it is not a whole number of seconds.
fn go_duration(duration: std::time::Duration) -> String {
    commlab_api::Duration::from(duration).to_string()
}

/// 32-bit FNV-1a: small, stable across Rust versions and platforms.
fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use commlab_api::Duration;

    use super::*;

    fn fault(name: &str, kind: FaultKind, target: Target) -> Fault {
        Fault {
            name: name.into(),
            fault: kind,
            target,
            at: Duration::from_secs(20),
            duration: Duration::from_secs(15),
            latency: None,
            jitter: None,
        }
    }

    fn scope() -> ChaosScope {
        ChaosScope::new("team-a", "shop")
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "commlab.dev/v1alpha1".into(),
            kind: "CommunicationPattern".into(),
            name: "shop".into(),
            uid: "0b5c8c5e-6f9e-4d43-9a8e-2f3f1e1d2c3b".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn build(scope: &ChaosScope, fault: &Fault) -> ChaosObject {
        chaos_object(scope, fault).expect("a valid fault builds")
    }

    /// The whole object for fault `fault` of shop in team-a, without an
    /// owner reference. Written out rather than built by the code under
    /// test, so that a change to what is built shows here.
    fn expected_body(kind: &str, fault: &str, spec: Value) -> Value {
        json!({
            "apiVersion": "chaos-mesh.org/v1alpha1",
            "kind": kind,
            "metadata": {
                "name": format!("shop-{fault}"),
                "namespace": "team-a",
                "labels": {
                    "app.kubernetes.io/instance": "shop",
                    "app.kubernetes.io/managed-by": "commlab-operator",
                    "commlab.dev/fault": fault,
                },
            },
            "spec": spec,
        })
    }

    /// Selects the pods of shop's `component` in team-a.
    fn expected_selector(component: &str) -> Value {
        json!({
            "namespaces": ["team-a"],
            "labelSelectors": {
                "app.kubernetes.io/name": "commlab",
                "app.kubernetes.io/instance": "shop",
                "app.kubernetes.io/component": component,
            },
        })
    }

    #[test]
    fn outage_is_a_pod_failure_of_the_target_pods_for_the_fault_duration() {
        let object = build(
            &scope().with_owner(owner()),
            &fault("catalog-down", FaultKind::Outage, Target::Catalog),
        );
        assert_eq!(object.kind, ChaosKind::PodChaos);
        assert_eq!(object.name, "shop-catalog-down");
        assert_eq!(object.namespace, "team-a");
        let mut expected = expected_body(
            "PodChaos",
            "catalog-down",
            json!({
                "action": "pod-failure",
                "mode": "all",
                "selector": expected_selector("catalog"),
                "duration": "15s",
            }),
        );
        expected["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "commlab.dev/v1alpha1",
            "kind": "CommunicationPattern",
            "name": "shop",
            "uid": "0b5c8c5e-6f9e-4d43-9a8e-2f3f1e1d2c3b",
            "controller": true,
            "blockOwnerDeletion": true,
        }]);
        assert_eq!(object.body, expected);
    }

    #[test]
    fn kill_is_a_pod_kill_and_has_no_owner_reference_when_none_is_given() {
        let mut kill = fault("orders-killed", FaultKind::Kill, Target::Orders);
        kill.duration = Duration::from_millis(1500);
        let object = build(&scope(), &kill);
        assert_eq!(object.kind, ChaosKind::PodChaos);
        assert_eq!(
            object.body,
            expected_body(
                "PodChaos",
                "orders-killed",
                json!({
                    "action": "pod-kill",
                    "mode": "all",
                    "selector": expected_selector("orders"),
                    "duration": "1500ms",
                }),
            )
        );
    }

    #[test]
    fn delay_slows_what_the_target_sends_to_orders() {
        let mut delay = fault("slow-catalog", FaultKind::Delay, Target::Catalog);
        delay.duration = Duration::from_secs(10);
        delay.latency = Some("100ms".parse().unwrap());
        delay.jitter = Some("10ms".parse().unwrap());
        let object = build(&scope(), &delay);
        assert_eq!(object.kind, ChaosKind::NetworkChaos);
        assert_eq!(
            object.body,
            expected_body(
                "NetworkChaos",
                "slow-catalog",
                json!({
                    "action": "delay",
                    "mode": "all",
                    "selector": expected_selector("catalog"),
                    "duration": "10s",
                    "delay": { "latency": "100ms", "jitter": "10ms" },
                    "direction": "to",
                    "target": { "mode": "all", "selector": expected_selector("orders") },
                }),
            )
        );
    }

    #[test]
    fn delay_without_jitter_says_zero_and_without_latency_is_invalid() {
        let mut delay = fault("slow-db", FaultKind::Delay, Target::Database);
        delay.latency = Some("1.5s".parse().unwrap());
        let object = build(&scope(), &delay);
        assert_eq!(
            object.body["spec"]["delay"],
            json!({ "latency": "1500ms", "jitter": "0s" })
        );

        delay.latency = None;
        let err = chaos_object(&scope(), &delay).unwrap_err();
        assert_eq!(err.category(), "invalid_fault");
        assert_eq!(
            err.to_string(),
            "fault `slow-db`: a Delay fault needs a latency"
        );
    }

    #[test]
    fn partition_cuts_the_target_from_orders_both_ways() {
        let object = build(
            &scope(),
            &fault("broker-cut", FaultKind::Partition, Target::Broker),
        );
        assert_eq!(object.kind, ChaosKind::NetworkChaos);
        assert_eq!(
            object.body,
            expected_body(
                "NetworkChaos",
                "broker-cut",
                json!({
                    "action": "partition",
                    "mode": "all",
                    "selector": expected_selector("broker"),
                    "duration": "15s",
                    "direction": "both",
                    "target": { "mode": "all", "selector": expected_selector("orders") },
                }),
            )
        );
    }

    #[test]
    fn a_network_fault_on_orders_sits_between_orders_and_its_dependencies() {
        let object = build(
            &scope(),
            &fault("orders-cut", FaultKind::Partition, Target::Orders),
        );
        assert_eq!(
            object.body["spec"]["selector"]["labelSelectors"]["app.kubernetes.io/component"],
            "orders"
        );
        assert_eq!(
            object.body["spec"]["target"],
            json!({
                "mode": "all",
                "selector": {
                    "namespaces": ["team-a"],
                    "labelSelectors": {
                        "app.kubernetes.io/name": "commlab",
                        "app.kubernetes.io/instance": "shop",
                    },
                    "expressionSelectors": [{
                        "key": "app.kubernetes.io/component",
                        "operator": "In",
                        "values": ["broker", "catalog", "database"],
                    }],
                },
            })
        );
    }

    #[test]
    fn long_names_are_shortened_to_a_dns_label_with_a_stable_hash() {
        assert_eq!(object_name("shop", "catalog-down"), "shop-catalog-down");
        let instance = "a-communication-pattern-with-a-rather-long-name";
        let first = object_name(instance, "catalog-down-for-a-long-while");
        let second = object_name(instance, "catalog-down-for-a-long-time");
        assert_eq!(first.len(), MAX_NAME_LEN);
        assert_eq!(second.len(), MAX_NAME_LEN);
        assert_ne!(first, second);
        assert!(first.starts_with("a-communication-pattern-with-a-rather-long-name-cata"));
        assert_eq!(
            first,
            object_name(instance, "catalog-down-for-a-long-while"),
            "the same fault always gets the same name"
        );
        let is_dns_label = |name: &str| {
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !name.starts_with('-')
                && !name.ends_with('-')
        };
        assert!(is_dns_label(&first), "{first}");
        // A cut right after a dash drops it rather than doubling the hash's own dash.
        let cut_after_dash = object_name(&"x".repeat(53), &"y".repeat(20));
        assert_eq!(cut_after_dash.len(), MAX_NAME_LEN - 1);
        assert!(is_dns_label(&cut_after_dash), "{cut_after_dash}");
        assert!(!cut_after_dash.contains("--"), "{cut_after_dash}");
    }

    #[test]
    fn kinds_name_their_resources() {
        let resource = ChaosKind::NetworkChaos.api_resource();
        assert_eq!(resource.api_version, "chaos-mesh.org/v1alpha1");
        assert_eq!(resource.plural, "networkchaos");
        assert_eq!(ChaosKind::PodChaos.api_resource().plural, "podchaos");
        assert_eq!("PodChaos".parse(), Ok(ChaosKind::PodChaos));
        assert!("IOChaos".parse::<ChaosKind>().is_err());
    }

    #[test]
    fn the_scope_finds_its_own_objects_only() {
        let scope = scope();
        assert_eq!(
            scope.label_selector(),
            "app.kubernetes.io/instance=shop,app.kubernetes.io/managed-by=commlab-operator"
        );
        assert!(scope.owns(&object_labels(&scope, "catalog-down")));
        assert!(!scope.owns(&object_labels(&ChaosScope::new("team-a", "shop-v2"), "x")));
        let mut foreign = object_labels(&scope, "x");
        foreign.remove(MANAGED_BY_LABEL);
        assert!(!scope.owns(&foreign));
    }
}
