//! In-memory caches of the operator's children, filled by the same watches
//! that trigger reconciles. A reconcile reads its Secret, runner Job and
//! report from here and finds the children to prune here, instead of asking
//! the API server: with many CommunicationPatterns deploying at once, those
//! reads were most of each reconcile's round trips, and every reconcile
//! queued behind them.
//!
//! Managed fields are dropped from every cached object, and pod templates
//! from the workloads (the reconcile reads their replicas and status, never
//! their template), to keep the operator's memory small.

use std::{
    collections::BTreeSet,
    fmt::Debug,
    hash::{DefaultHasher, Hash, Hasher},
};

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    batch::v1::Job,
    core::v1::{ConfigMap, Secret, Service, ServiceAccount},
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;

use crate::{children::is_owned_by, labels};

/// What the operator knows about its children without asking.
#[derive(Clone)]
pub struct Cache {
    pub secrets: Store<Secret>,
    pub jobs: Store<Job>,
    /// The operator's ConfigMaps and the runners' reports.
    pub config_maps: Store<ConfigMap>,
    pub deployments: Store<Deployment>,
    pub stateful_sets: Store<StatefulSet>,
    pub services: Store<Service>,
    pub service_accounts: Store<ServiceAccount>,
    pub roles: Store<Role>,
    pub role_bindings: Store<RoleBinding>,
}

impl Cache {
    /// Whether every cache has had its first full list. Until then a miss
    /// means nothing, so reconciles wait for it.
    pub fn is_ready(&self) -> bool {
        is_ready(&self.secrets)
            && is_ready(&self.jobs)
            && is_ready(&self.config_maps)
            && is_ready(&self.deployments)
            && is_ready(&self.stateful_sets)
            && is_ready(&self.services)
            && is_ready(&self.service_accounts)
            && is_ready(&self.roles)
            && is_ready(&self.role_bindings)
    }
}

fn is_ready<K>(store: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    store
        .wait_until_ready()
        .now_or_never()
        .is_some_and(|r| r.is_ok())
}

/// A watch that fills a cache as it goes; the controller consumes it as the
/// trigger for the owners of what changed.
pub type Trigger<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// Watches one kind into a cache, each object passed through `trim` first
/// (see [`whole`], [`without_pod_template`]).
pub fn objects<K>(api: Api<K>, config: watcher::Config, trim: fn(&mut K)) -> (Store<K>, Trigger<K>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(move |o| {
            o.managed_fields_mut().clear();
            trim(o);
        })
        .reflect(writer)
        .touched_objects();
    (store, stream.boxed())
}

/// Keeps everything but the managed fields.
pub fn whole<K>(_: &mut K) {}

/// Kinds with a pod template the reconcile never reads back.
pub trait PodTemplate {
    fn drop_pod_template(&mut self);
}

impl PodTemplate for Deployment {
    fn drop_pod_template(&mut self) {
        if let Some(spec) = self.spec.as_mut() {
            spec.template = Default::default();
        }
    }
}

impl PodTemplate for StatefulSet {
    fn drop_pod_template(&mut self) {
        if let Some(spec) = self.spec.as_mut() {
            spec.template = Default::default();
            spec.volume_claim_templates = None;
        }
    }
}

impl PodTemplate for Job {
    fn drop_pod_template(&mut self) {
        if let Some(spec) = self.spec.as_mut() {
            spec.template = Default::default();
        }
    }
}

pub fn without_pod_template<K: PodTemplate>(object: &mut K) {
    object.drop_pod_template();
}

/// Watches the objects a controller reconciles into a cache and passes on
/// those whose spec (generation), finalizers or deletion changed, not the
/// status updates the operator writes itself: each of those would otherwise
/// come back as one more reconcile that has nothing to do.
pub fn spec_or_lifecycle_changes<K>(api: Api<K>) -> (Store<K>, Trigger<K>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(spec_or_lifecycle, Default::default());
    (store, stream.boxed())
}

/// A digest of what [`spec_or_lifecycle_changes`] lets through.
fn spec_or_lifecycle<K: Resource>(object: &K) -> Option<u64> {
    let meta = object.meta();
    let mut hasher = DefaultHasher::new();
    meta.uid.hash(&mut hasher);
    meta.generation.hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// One object of a namespace from a cache.
pub fn get<K>(store: &Store<K>, ns: &str, name: &str) -> Option<std::sync::Arc<K>>
where
    K: Resource + Clone,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    store.get(&ObjectRef::new(name).within(ns))
}

/// Names of the children of `instance` (owner `uid`) in a cache that are not
/// in `desired`: what the owned-set prune deletes.
pub fn undesired<K>(
    store: &Store<K>,
    ns: &str,
    instance: &str,
    uid: &str,
    desired: &BTreeSet<String>,
) -> Vec<String>
where
    K: Resource + Clone,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let mut names: Vec<String> = store
        .state()
        .iter()
        .filter(|o| {
            o.namespace().as_deref() == Some(ns)
                && labels::is_child_of(o.labels(), instance)
                && is_owned_by(o.meta().owner_references.as_ref(), uid)
                && !desired.contains(&o.name_any())
        })
        .map(|o| o.name_any())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use kube::runtime::watcher::Event;

    fn service(ns: &str, name: &str, instance: &str, owner_uid: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                labels: Some(labels::child(instance, "orders")),
                owner_references: Some(vec![OwnerReference {
                    uid: owner_uid.into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            ..Service::default()
        }
    }

    #[test]
    fn only_this_owners_undesired_children_in_this_namespace_are_pruned() {
        let (store, mut writer) = reflector::store();
        for object in [
            service("ns", "a-orders", "a", "uid-a"),
            service("ns", "a-broker", "a", "uid-a"),
            // Same name and labels, but an earlier object of the same name
            // (another uid): left to garbage collection.
            service("ns", "a-old", "a", "uid-old"),
            service("ns", "b-broker", "b", "uid-b"),
            service("other", "a-broker", "a", "uid-a"),
        ] {
            writer.apply_watcher_event(&Event::Apply(object));
        }
        let desired = BTreeSet::from(["a-orders".to_owned()]);
        assert_eq!(
            undesired(&store, "ns", "a", "uid-a", &desired),
            ["a-broker"]
        );
        assert!(
            undesired(
                &store,
                "ns",
                "a",
                "uid-a",
                &BTreeSet::from(["a-orders".into(), "a-broker".into()])
            )
            .is_empty()
        );
    }

    #[test]
    fn status_updates_do_not_trigger_but_spec_finalizers_and_deletion_do() {
        let cp = |generation: i64| {
            let mut cp = commlab_api::CommunicationPattern::new(
                "a",
                serde_json::from_value(serde_json::json!({"pattern": "DirectApiCall"}))
                    .expect("a valid spec"),
            );
            cp.metadata.uid = Some("uid-a".into());
            cp.metadata.generation = Some(generation);
            cp
        };
        let digest = spec_or_lifecycle(&cp(1));
        let mut with_status = cp(1);
        with_status.status = Some(Default::default());
        with_status.metadata.resource_version = Some("99".into());
        assert_eq!(spec_or_lifecycle(&with_status), digest);
        assert_ne!(spec_or_lifecycle(&cp(2)), digest);
        let mut finalized = cp(1);
        finalized.metadata.finalizers = Some(vec!["communicationpatterns.commlab.dev".into()]);
        assert_ne!(spec_or_lifecycle(&finalized), digest);
        let mut deleted = cp(1);
        deleted.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
        );
        assert_ne!(spec_or_lifecycle(&deleted), digest);
    }
}
