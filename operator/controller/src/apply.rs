//! Apply step: server-side apply of the desired children with one field
//! manager, then pruning of labelled children that are no longer desired
//! (the owned-set pattern: e.g. the broker after a switch to DirectApiCall).
//!
//! Objects are applied concurrently, and what to prune is read from the
//! operator's cache, so a reconcile makes no list call. A child whose
//! desired state is what the operator last applied, and which the cache
//! shows unchanged since, is not applied again (see [`LastApplied`]): most
//! reconciles come from the children's status changes while they roll out,
//! and they then cost no round trip per child.

use std::{
    collections::{BTreeSet, HashMap},
    fmt::Debug,
    hash::{DefaultHasher, Hash, Hasher},
    sync::Mutex,
};

use futures::future::try_join_all;
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::{Deployment, StatefulSet},
        batch::v1::Job,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client, Resource,
    api::{DeleteParams, Patch, PatchParams},
    runtime::reflector::Store,
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::{info, instrument};

use crate::{
    cache::{self, Cache},
    children::Children,
    error::{Error, Result},
    experiment::RunnerObjects,
};

/// The one field manager for children and status.
pub const FIELD_MANAGER: &str = "commlab-operator";

/// Whose children are applied and pruned.
pub struct Owner<'a> {
    pub namespace: &'a str,
    /// The CommunicationPattern's name, in every child's instance label.
    pub instance: &'a str,
    pub uid: &'a str,
}

/// For each owner (by uid), what the operator last applied to each child
/// and the version the API server answered with.
///
/// A child is unchanged since the operator's apply when the cached copy
/// still has that version: its `generation` for kinds that have one (so a
/// Deployment's status updates do not count, but anyone's spec edit does),
/// else its `resourceVersion`. Held in memory only: after a restart the
/// first reconcile applies everything again (a no-op for the API server).
#[derive(Default)]
pub struct LastApplied {
    owners: Mutex<HashMap<String, HashMap<ChildKey, Stamp>>>,
}

type ChildKey = (&'static str, String);

#[derive(Clone, Debug, PartialEq)]
struct Stamp {
    desired: u64,
    version: Version,
}

#[derive(Clone, Debug, PartialEq)]
enum Version {
    Generation(i64),
    ResourceVersion(String),
}

impl Version {
    fn of(meta: &ObjectMeta) -> Option<Self> {
        meta.generation
            .map(Version::Generation)
            .or_else(|| meta.resource_version.clone().map(Version::ResourceVersion))
    }
}

impl LastApplied {
    fn is_current(&self, owner: &str, key: &ChildKey, desired: u64, cached: &ObjectMeta) -> bool {
        let Some(version) = Version::of(cached) else {
            return false;
        };
        self.lock()
            .get(owner)
            .and_then(|children| children.get(key))
            .is_some_and(|stamp| *stamp == Stamp { desired, version })
    }

    fn record(&self, owner: &str, key: ChildKey, desired: u64, applied: &ObjectMeta) {
        let mut owners = self.lock();
        let children = owners.entry(owner.to_owned()).or_default();
        match Version::of(applied) {
            Some(version) => children.insert(key, Stamp { desired, version }),
            None => children.remove(&key),
        };
    }

    fn forget_child(&self, owner: &str, key: &ChildKey) {
        if let Some(children) = self.lock().get_mut(owner) {
            children.remove(key);
        }
    }

    /// Drops what is known about an owner's children, once it is deleted.
    pub fn forget(&self, owner: &str) {
        self.lock().remove(owner);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<ChildKey, Stamp>>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A digest of the body the operator would apply.
fn digest(body: &serde_json::Value) -> u64 {
    let mut hasher = DefaultHasher::new();
    body.to_string().hash(&mut hasher);
    hasher.finish()
}

/// What apply returned: the children as the API server now has them.
#[derive(Default)]
pub struct Applied {
    pub deployments: Vec<Deployment>,
    pub stateful_sets: Vec<StatefulSet>,
}

/// The operator's view of the cluster, for the apply step.
pub struct Known<'a> {
    pub client: &'a Client,
    pub cache: &'a Cache,
    pub last_applied: &'a LastApplied,
}

pub async fn apply_all(
    known: &Known<'_>,
    owner: &Owner<'_>,
    children: Children,
) -> Result<Applied> {
    let cache = known.cache;
    let (config_maps, secrets, services, stateful_sets, deployments) = futures::try_join!(
        apply_kind(known, &cache.config_maps, owner, children.config_maps),
        apply_kind(known, &cache.secrets, owner, children.secrets),
        apply_kind(known, &cache.services, owner, children.services),
        apply_kind(known, &cache.stateful_sets, owner, children.stateful_sets),
        apply_kind(known, &cache.deployments, owner, children.deployments),
    )?;
    futures::try_join!(
        prune(known, owner, &cache.config_maps, &config_maps),
        prune(known, owner, &cache.secrets, &secrets),
        prune(known, owner, &cache.services, &services),
        prune(known, owner, &cache.stateful_sets, &stateful_sets),
        prune(known, owner, &cache.deployments, &deployments),
    )?;
    Ok(Applied {
        deployments,
        stateful_sets,
    })
}

/// Applies the experiment runner's objects (none when no experiment is due)
/// and prunes those of other generations; returns the applied Jobs.
pub async fn apply_runner(
    known: &Known<'_>,
    owner: &Owner<'_>,
    runner: RunnerObjects,
) -> Result<Vec<Job>> {
    let cache = known.cache;
    // A runner Job runs as it was created: its pod template cannot change,
    // and an operator setting changed mid-experiment (the chaos backend, the
    // runner's labels) must not make every later apply of it fail. So a Job
    // already in the cache is kept as it is; the setting applies to the
    // next generation's Job.
    let mut jobs = Vec::new();
    let mut to_create = Vec::new();
    for job in runner.jobs {
        let name = job.metadata.name.as_deref().unwrap_or_default();
        match cache::get(&cache.jobs, owner.namespace, name) {
            Some(started) => jobs.push(Job::clone(&started)),
            None => to_create.push(job),
        }
    }
    // In order: Kubernetes lets the operator bind the runner's Role only
    // once that Role exists (it checks that the operator holds every right
    // it grants), and the runner's pod must not start before its rights do.
    let (service_accounts, roles) = futures::try_join!(
        apply_kind(
            known,
            &cache.service_accounts,
            owner,
            runner.service_accounts
        ),
        apply_kind(known, &cache.roles, owner, runner.roles),
    )?;
    let role_bindings =
        apply_kind(known, &cache.role_bindings, owner, runner.role_bindings).await?;
    let created = apply_kind(known, &cache.jobs, owner, to_create).await?;
    jobs.extend(created);
    futures::try_join!(
        prune(known, owner, &cache.service_accounts, &service_accounts),
        prune(known, owner, &cache.roles, &roles),
        prune(known, owner, &cache.role_bindings, &role_bindings),
        prune(known, owner, &cache.jobs, &jobs),
    )?;
    Ok(jobs)
}

/// Applies every desired object of one kind that is not already current
/// (see [`LastApplied`]); returns them all as the API server has them.
#[instrument(skip_all, fields(kind = K::kind(&()).as_ref(), count = desired.len()))]
async fn apply_kind<K>(
    known: &Known<'_>,
    cached: &Store<K>,
    owner: &Owner<'_>,
    desired: Vec<K>,
) -> Result<Vec<K>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(known.client.clone(), owner.namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    try_join_all(desired.into_iter().map(|object| {
        let (api, params) = (&api, &params);
        async move {
            let name = object
                .meta()
                .name
                .clone()
                .ok_or(Error::MissingField("metadata.name"))?;
            let mut body = serde_json::to_value(&object).map_err(|source| Error::Serialize {
                what: "child",
                source,
            })?;
            // Server-side apply needs apiVersion and kind in the body.
            body["apiVersion"] = K::api_version(&()).as_ref().into();
            body["kind"] = K::kind(&()).as_ref().into();
            let desired = digest(&body);
            let key = (child_kind::<K>(), name);
            if let Some(current) = cache::get(cached, owner.namespace, &key.1)
                && known
                    .last_applied
                    .is_current(owner.uid, &key, desired, current.meta())
            {
                return Ok(K::clone(&current));
            }
            let applied = api.patch(&key.1, params, &Patch::Apply(body)).await?;
            known
                .last_applied
                .record(owner.uid, key, desired, applied.meta());
            Ok(applied)
        }
    }))
    .await
}

/// The kind's name, as a key that needs no allocation.
fn child_kind<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()) {
        std::borrow::Cow::Borrowed(kind) => kind,
        std::borrow::Cow::Owned(_) => "dynamic",
    }
}

/// Deletes the owner's children of one kind that the cache holds and
/// `applied` does not name.
async fn prune<K>(
    known: &Known<'_>,
    owner: &Owner<'_>,
    cached: &Store<K>,
    applied: &[K],
) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let keep: BTreeSet<String> = applied
        .iter()
        .filter_map(|o| o.meta().name.clone())
        .collect();
    let stale = cache::undesired(cached, owner.namespace, owner.instance, owner.uid, &keep);
    if stale.is_empty() {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(known.client.clone(), owner.namespace);
    for name in stale {
        info!(kind = K::kind(&()).as_ref(), %name, "deleting a child that is no longer desired");
        match api.delete(&name, &DeleteParams::background()).await {
            // Already gone: the cache had not caught up yet.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            result => {
                result?;
            }
        }
        known
            .last_applied
            .forget_child(owner.uid, &(child_kind::<K>(), name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(generation: Option<i64>, resource_version: &str) -> ObjectMeta {
        ObjectMeta {
            generation,
            resource_version: Some(resource_version.into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn a_child_is_current_only_with_the_same_desired_state_and_nobody_elses_change() {
        let last = LastApplied::default();
        let key = ("Deployment", "a-orders".to_owned());
        assert!(
            !last.is_current("uid-a", &key, 1, &meta(Some(1), "10")),
            "never applied"
        );
        last.record("uid-a", key.clone(), 1, &meta(Some(1), "10"));
        assert!(
            last.is_current("uid-a", &key, 1, &meta(Some(1), "17")),
            "status updates change the resourceVersion, not the generation"
        );
        assert!(
            !last.is_current("uid-a", &key, 2, &meta(Some(1), "17")),
            "the spec changed"
        );
        assert!(
            !last.is_current("uid-a", &key, 1, &meta(Some(2), "18")),
            "someone edited it"
        );
        assert!(
            !last.is_current("uid-b", &key, 1, &meta(Some(1), "10")),
            "another owner"
        );
        last.forget("uid-a");
        assert!(!last.is_current("uid-a", &key, 1, &meta(Some(1), "10")));
    }

    #[test]
    fn kinds_without_a_generation_compare_resource_versions() {
        let last = LastApplied::default();
        let key = ("Service", "a-orders".to_owned());
        last.record("uid-a", key.clone(), 1, &meta(None, "10"));
        assert!(last.is_current("uid-a", &key, 1, &meta(None, "10")));
        assert!(!last.is_current("uid-a", &key, 1, &meta(None, "11")));
        last.forget_child("uid-a", &key);
        assert!(!last.is_current("uid-a", &key, 1, &meta(None, "10")));
    }
}
