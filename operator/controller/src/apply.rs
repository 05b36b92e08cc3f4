//! Apply step: server-side apply of the desired children with one field
//! manager, then pruning of labelled children that are no longer desired
//! (the owned-set pattern: e.g. the broker after a switch to DirectApiCall).

use std::collections::BTreeSet;

use k8s_openapi::NamespaceResourceScope;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::{info, instrument};

use crate::{
    children::{Children, is_owned_by},
    error::{Error, Result},
    labels,
};

/// The one field manager for children and status.
pub const FIELD_MANAGER: &str = "commlab-operator";

/// What apply returned: the children as the API server now has them.
#[derive(Default)]
pub struct Applied {
    pub deployments: Vec<k8s_openapi::api::apps::v1::Deployment>,
    pub stateful_sets: Vec<k8s_openapi::api::apps::v1::StatefulSet>,
}

pub async fn apply_all(
    client: &Client,
    ns: &str,
    instance: &str,
    uid: &str,
    children: Children,
) -> Result<Applied> {
    apply_kind(client, ns, instance, uid, children.config_maps).await?;
    apply_kind(client, ns, instance, uid, children.secrets).await?;
    apply_kind(client, ns, instance, uid, children.services).await?;
    let stateful_sets = apply_kind(client, ns, instance, uid, children.stateful_sets).await?;
    let deployments = apply_kind(client, ns, instance, uid, children.deployments).await?;
    Ok(Applied {
        deployments,
        stateful_sets,
    })
}

/// Applies the experiment runner's objects (none when no experiment is due)
/// and prunes those of other generations; returns the applied Jobs.
pub async fn apply_runner(
    client: &Client,
    ns: &str,
    instance: &str,
    uid: &str,
    runner: crate::experiment::RunnerObjects,
) -> Result<Vec<k8s_openapi::api::batch::v1::Job>> {
    apply_kind(client, ns, instance, uid, runner.service_accounts).await?;
    apply_kind(client, ns, instance, uid, runner.roles).await?;
    apply_kind(client, ns, instance, uid, runner.role_bindings).await?;
    apply_kind(client, ns, instance, uid, runner.jobs).await
}

/// Applies every desired object of one kind and deletes the owned ones of
/// that kind that are not desired.
#[instrument(skip_all, fields(kind = K::kind(&()).as_ref(), count = desired.len()))]
async fn apply_kind<K>(
    client: &Client,
    ns: &str,
    instance: &str,
    uid: &str,
    desired: Vec<K>,
) -> Result<Vec<K>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = Vec::with_capacity(desired.len());
    let mut names = BTreeSet::new();
    for object in desired {
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
        applied.push(api.patch(&name, &params, &Patch::Apply(body)).await?);
        names.insert(name);
    }
    let owned = api
        .list(&ListParams::default().labels(&labels::owned_by(instance)))
        .await?;
    for stale in owned.items.iter().filter(|o| {
        !names.contains(&o.name_any()) && is_owned_by(o.meta().owner_references.as_ref(), uid)
    }) {
        info!(name = %stale.name_any(), "deleting a child that is no longer desired");
        match api
            .delete(&stale.name_any(), &DeleteParams::background())
            .await
        {
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            result => {
                result?;
            }
        }
    }
    Ok(applied)
}
