//! Apply step: server-side apply of the desired children with one field
//! manager, then pruning of labelled children that are no longer desired
//! (the owned-set pattern: e.g. the broker after a switch to DirectApiCall).
//!
//! Objects are applied concurrently, and what to prune is read from the
//! operator's cache, so a reconcile costs one round trip per child and no
//! list at all.

use std::{collections::BTreeSet, fmt::Debug, hash::Hash};

use futures::future::try_join_all;
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::{Deployment, StatefulSet},
        batch::v1::Job,
    },
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

/// What apply returned: the children as the API server now has them.
#[derive(Default)]
pub struct Applied {
    pub deployments: Vec<Deployment>,
    pub stateful_sets: Vec<StatefulSet>,
}

pub async fn apply_all(
    client: &Client,
    cache: &Cache,
    owner: &Owner<'_>,
    children: Children,
) -> Result<Applied> {
    let (config_maps, secrets, services, stateful_sets, deployments) = futures::try_join!(
        apply_kind(client, owner, children.config_maps),
        apply_kind(client, owner, children.secrets),
        apply_kind(client, owner, children.services),
        apply_kind(client, owner, children.stateful_sets),
        apply_kind(client, owner, children.deployments),
    )?;
    futures::try_join!(
        prune(client, owner, &cache.config_maps, &config_maps),
        prune(client, owner, &cache.secrets, &secrets),
        prune(client, owner, &cache.services, &services),
        prune(client, owner, &cache.stateful_sets, &stateful_sets),
        prune(client, owner, &cache.deployments, &deployments),
    )?;
    Ok(Applied {
        deployments,
        stateful_sets,
    })
}

/// Applies the experiment runner's objects (none when no experiment is due)
/// and prunes those of other generations; returns the applied Jobs.
pub async fn apply_runner(
    client: &Client,
    cache: &Cache,
    owner: &Owner<'_>,
    runner: RunnerObjects,
) -> Result<Vec<Job>> {
    let (service_accounts, roles, role_bindings, jobs) = futures::try_join!(
        apply_kind(client, owner, runner.service_accounts),
        apply_kind(client, owner, runner.roles),
        apply_kind(client, owner, runner.role_bindings),
        apply_kind(client, owner, runner.jobs),
    )?;
    futures::try_join!(
        prune(client, owner, &cache.service_accounts, &service_accounts),
        prune(client, owner, &cache.roles, &roles),
        prune(client, owner, &cache.role_bindings, &role_bindings),
        prune(client, owner, &cache.jobs, &jobs),
    )?;
    Ok(jobs)
}

/// Applies every desired object of one kind.
#[instrument(skip_all, fields(kind = K::kind(&()).as_ref(), count = desired.len()))]
async fn apply_kind<K>(client: &Client, owner: &Owner<'_>, desired: Vec<K>) -> Result<Vec<K>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), owner.namespace);
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
            Ok(api.patch(&name, params, &Patch::Apply(body)).await?)
        }
    }))
    .await
}

/// Deletes the owner's children of one kind that the cache holds and
/// `applied` does not name.
async fn prune<K, M>(
    client: &Client,
    owner: &Owner<'_>,
    cached: &Store<M>,
    applied: &[K],
) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    M: Resource + Clone,
    M::DynamicType: Default + Eq + Hash + Clone,
{
    let keep: BTreeSet<String> = applied
        .iter()
        .filter_map(|o| o.meta().name.clone())
        .collect();
    let stale = cache::undesired(cached, owner.namespace, owner.instance, owner.uid, &keep);
    if stale.is_empty() {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(client.clone(), owner.namespace);
    for name in stale {
        info!(kind = K::kind(&()).as_ref(), %name, "deleting a child that is no longer desired");
        match api.delete(&name, &DeleteParams::background()).await {
            // Already gone: the cache had not caught up yet.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            result => {
                result?;
            }
        }
    }
    Ok(())
}
