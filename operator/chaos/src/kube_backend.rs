//! The Chaos Mesh backend that creates `PodChaos` and `NetworkChaos`
//! objects through the Kubernetes API.

use std::{future::Future, time::Duration};

use async_trait::async_trait;
use commlab_api::Fault;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, DynamicObject, ListParams, PostParams},
    core::Status,
};
use tracing::{debug, info, instrument, warn};

use crate::{
    ActiveFault, ChaosError, FaultBackend, FaultHandle, Injection, Recovery,
    chaos_mesh::{API_VERSION, ChaosKind, ChaosObject, ChaosScope, chaos_object},
    chaos_mesh_status::{ChaosStatus, Observed},
    confirm::{DEFAULT_CONFIRM_TIMEOUT, confirm},
};

/// How long one Kubernetes API request may take by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `inject` waits by default for a leftover object of an earlier
/// run to be deleted before it creates its own.
pub const DEFAULT_REPLACE_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two reads while waiting for a deletion.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Applies faults with Chaos Mesh, by creating its custom resources with
/// kube's dynamic API (see [`chaos_mesh`](crate::chaos_mesh) for the objects).
///
/// - `inject` creates the fault's object in the experiment's namespace and
///   returns [`FaultHandle::ChaosMeshObject`]. When an object of that name
///   is left over from an interrupted run of the same experiment (same
///   labels), it is deleted first, waiting up to the replace timeout for
///   it to be gone (Chaos Mesh holds it with a finalizer until the fault
///   is undone); an object of that name that commlab did not create for
///   this experiment is never touched: [`ChaosError::NameTaken`].
///   Then it reads the object's status every 100 ms until Chaos Mesh
///   reports every selected pod injected ([`Injection::InForce`], since
///   that reading) or an injection failed ([`Injection::NotApplied`] with
///   Chaos Mesh's message), for at most the confirm timeout and never
///   longer than the fault's duration; what the status showed last is the
///   reason of a fault not confirmed in time (see
///   [`chaos_mesh_status`](crate::chaos_mesh_status)). A status it cannot
///   read counts as not confirmed, not as an error.
/// - `recover` deletes the object; Chaos Mesh then undoes the fault if its
///   `duration` has not already run out. Deleting an object that is gone
///   is `Ok`. It then waits, up to the confirm timeout, until Chaos Mesh
///   reports every pod recovered or lets the object go (its finalizer
///   holds a deleted object until the fault is undone):
///   [`Recovery::Confirmed`], else [`Recovery::Unconfirmed`] with what the
///   status showed.
/// - `cleanup` lists both kinds by the experiment's labels
///   ([`ChaosScope::label_selector`]) and deletes all it finds, so it also
///   removes what an earlier process injected.
///
/// Every API request is bounded by the request timeout
/// ([`ChaosError::Timeout`]). A cluster without Chaos Mesh's CRDs gives
/// [`ChaosError::ChaosMeshNotInstalled`] on `inject` and `recover`;
/// `cleanup` has nothing to do there and succeeds.
///
/// A cluster where nothing acts on these objects (no Chaos Mesh
/// controller, only its CRDs) gets every fault back as not applied once
/// the wait runs out.
///
/// RBAC: `create`, `get`, `list` and `delete` on `podchaos` and
/// `networkchaos` in `chaos-mesh.org`, in the experiment's namespace. An
/// owner reference with `blockOwnerDeletion: true` also needs `update` on
/// `communicationpatterns/finalizers` where the API server enforces owner
/// reference permissions; kube's `controller_owner_ref` leaves it unset.
///
/// For one CommunicationPattern, owned by it:
///
/// ```no_run
/// use commlab_api::CommunicationPattern;
/// use commlab_chaos::{ChaosError, ChaosMeshBackend, ChaosScope, FaultBackend};
/// use kube::{Resource, ResourceExt};
///
/// # async fn run(client: kube::Client, cpat: &CommunicationPattern) -> Result<(), ChaosError> {
/// let mut scope = ChaosScope::new(cpat.namespace().unwrap_or_default(), cpat.name_any());
/// if let Some(owner) = cpat.controller_owner_ref(&()) {
///     scope = scope.with_owner(owner);
/// }
/// let backend = ChaosMeshBackend::new(client, scope);
/// for fault in &cpat.spec.chaos {
///     let active = backend.inject(fault).await?;
///     // ... at fault.at + fault.duration:
///     backend.recover(active).await?;
/// }
/// backend.cleanup().await
/// # }
/// ```
#[derive(Clone)]
pub struct ChaosMeshBackend {
    client: Client,
    scope: ChaosScope,
    request_timeout: Duration,
    replace_timeout: Duration,
    confirm_timeout: Duration,
}

impl std::fmt::Debug for ChaosMeshBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaosMeshBackend")
            .field("scope", &self.scope)
            .field("request_timeout", &self.request_timeout)
            .field("replace_timeout", &self.replace_timeout)
            .field("confirm_timeout", &self.confirm_timeout)
            .finish_non_exhaustive()
    }
}

impl ChaosMeshBackend {
    /// A backend for the experiment in `scope`, with the default timeouts.
    pub fn new(client: Client, scope: ChaosScope) -> Self {
        Self {
            client,
            scope,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            replace_timeout: DEFAULT_REPLACE_TIMEOUT,
            confirm_timeout: DEFAULT_CONFIRM_TIMEOUT,
        }
    }

    /// Bounds the wait for Chaos Mesh to confirm a fault in force (in
    /// `inject`) or undone (in `recover`).
    pub fn with_confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout;
        self
    }

    /// Bounds every Kubernetes API request.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Bounds the wait for a leftover object to be deleted in `inject`.
    pub fn with_replace_timeout(mut self, timeout: Duration) -> Self {
        self.replace_timeout = timeout;
        self
    }

    pub fn scope(&self) -> &ChaosScope {
        &self.scope
    }

    fn api(&self, kind: ChaosKind) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            &self.scope.namespace,
            &kind.api_resource(),
        )
    }

    fn describe(&self, kind: ChaosKind, name: &str) -> String {
        format!("{kind} {}/{name}", self.scope.namespace)
    }

    /// Runs one API request within the request timeout.
    async fn call<T>(
        &self,
        kind: ChaosKind,
        action: &'static str,
        object: impl FnOnce() -> String,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, ChaosError> {
        match tokio::time::timeout(self.request_timeout, request).await {
            Ok(result) => result.map_err(|err| api_error(kind, action, object(), err)),
            Err(_) => Err(ChaosError::Timeout {
                request: format!("Kubernetes API: {action} {}", object()),
                after: self.request_timeout,
            }),
        }
    }

    /// Gets an object; `None` when it does not exist.
    async fn get(&self, kind: ChaosKind, name: &str) -> Result<Option<DynamicObject>, ChaosError> {
        let api = self.api(kind);
        match self
            .call(kind, "get", || self.describe(kind, name), api.get(name))
            .await
        {
            Ok(object) => Ok(Some(object)),
            Err(ChaosError::Kubernetes {
                source: kube::Error::Api(status),
                ..
            }) if object_not_found(&status) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Chaos Mesh's status of an object, read for `step`; `None` when the
    /// object is gone. A status that cannot be read is pending: the wait
    /// for confirmation decides what that means.
    async fn observe(
        &self,
        kind: ChaosKind,
        name: &str,
        step: fn(&ChaosStatus) -> Observed,
    ) -> Option<Observed> {
        let object = match self.get(kind, name).await {
            Ok(object) => object?,
            Err(err) => return Some(Observed::Pending(format!("could not read it: {err}"))),
        };
        Some(match ChaosStatus::of(&object.data) {
            Ok(status) => step(&status),
            Err(err) => Observed::Pending(format!("could not read its status: {err}")),
        })
    }

    /// Deletes an object; `Ok` when it does not exist.
    async fn delete(&self, kind: ChaosKind, name: &str) -> Result<(), ChaosError> {
        let api = self.api(kind);
        let deleted = self
            .call(
                kind,
                "delete",
                || self.describe(kind, name),
                api.delete(name, &DeleteParams::default()),
            )
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(ChaosError::Kubernetes {
                source: kube::Error::Api(status),
                ..
            }) if object_not_found(&status) => Ok(()),
            Err(err) => Err(err),
        }
    }

    async fn create(&self, object: &ChaosObject) -> Result<DynamicObject, ChaosError> {
        let dynamic: DynamicObject = serde_json::from_value(object.body.clone())
            .expect("chaos objects are built as well-formed Kubernetes objects");
        let api = self.api(object.kind);
        self.call(
            object.kind,
            "create",
            || self.describe(object.kind, &object.name),
            api.create(&PostParams::default(), &dynamic),
        )
        .await
    }

    /// Deletes a leftover of an earlier run that holds `object`'s name, and
    /// waits until it is gone; refuses when it is not this experiment's.
    async fn replace_leftover(&self, object: &ChaosObject) -> Result<(), ChaosError> {
        let (kind, name) = (object.kind, object.name.as_str());
        let deadline = tokio::time::Instant::now() + self.replace_timeout;
        let mut deleted = false;
        while let Some(existing) = self.get(kind, name).await? {
            if !self.scope.owns(existing.labels()) {
                return Err(ChaosError::NameTaken {
                    kind: kind.as_str(),
                    namespace: self.scope.namespace.clone(),
                    name: name.to_owned(),
                    instance: self.scope.instance.clone(),
                });
            }
            if !deleted {
                warn!(%kind, name, "deleting a chaos object left over from an earlier run");
                self.delete(kind, name).await?;
                deleted = true;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ChaosError::Timeout {
                    request: format!("deleting the leftover {}", self.describe(kind, name)),
                    after: self.replace_timeout,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Ok(())
    }
}

#[async_trait]
impl FaultBackend for ChaosMeshBackend {
    fn name(&self) -> &'static str {
        "chaos-mesh"
    }

    #[instrument(skip_all, fields(fault = %fault.name, kind = %fault.fault, target = %fault.target))]
    async fn inject(&self, fault: &Fault) -> Result<ActiveFault, ChaosError> {
        let object = chaos_object(&self.scope, fault)?;
        let created = match self.create(&object).await {
            Err(ChaosError::Kubernetes {
                source: kube::Error::Api(status),
                ..
            }) if status.is_already_exists() => {
                self.replace_leftover(&object).await?;
                self.create(&object).await?
            }
            other => other?,
        };
        let uid = created.uid().unwrap_or_default();
        debug!(chaos = %object.kind, name = %object.name, %uid, "chaos object created");
        // A fault not in force by the end of its window was not in force in it.
        let wait = self.confirm_timeout.min(fault.duration.as_std());
        let injection = confirm(wait, || async {
            self.observe(object.kind, &object.name, ChaosStatus::injection)
                .await
                .unwrap_or_else(|| Observed::Failed("its chaos object was deleted".into()))
        })
        .await
        .into_injection();
        match &injection {
            Injection::InForce { .. } => {
                info!(chaos = %object.kind, name = %object.name, %uid, "fault in force");
            }
            Injection::NotApplied { reason } => {
                warn!(chaos = %object.kind, name = %object.name, %uid, %reason, "fault not applied");
            }
        }
        Ok(ActiveFault::new(
            fault,
            FaultHandle::ChaosMeshObject {
                kind: object.kind.as_str().to_owned(),
                namespace: object.namespace,
                name: object.name,
            },
            injection,
        ))
    }

    #[instrument(skip_all, fields(fault = %active.name))]
    async fn recover(&self, active: ActiveFault) -> Result<Recovery, ChaosError> {
        let foreign = || ChaosError::ForeignFault {
            name: active.name.clone(),
            backend: "chaos-mesh",
        };
        let FaultHandle::ChaosMeshObject {
            kind,
            namespace,
            name,
        } = &active.handle
        else {
            return Err(foreign());
        };
        let kind: ChaosKind = kind.parse().map_err(|_| foreign())?;
        if *namespace != self.scope.namespace {
            return Err(foreign());
        }
        self.delete(kind, name).await?;
        let recovery = confirm(self.confirm_timeout, || async {
            // Gone: Chaos Mesh's finalizer let it go, so the fault is undone.
            self.observe(kind, name, ChaosStatus::recovery)
                .await
                .unwrap_or(Observed::Done)
        })
        .await
        .into_recovery();
        match &recovery {
            Recovery::Confirmed { .. } => info!(chaos = %kind, %name, "fault recovered"),
            Recovery::Unconfirmed { reason } => {
                warn!(chaos = %kind, %name, %reason, "fault recovery not confirmed");
            }
        }
        Ok(recovery)
    }

    #[instrument(skip_all, fields(instance = %self.scope.instance))]
    async fn cleanup(&self) -> Result<(), ChaosError> {
        let selector = self.scope.label_selector();
        let mut first_error = None;
        for kind in ChaosKind::ALL {
            let api = self.api(kind);
            let listed = self
                .call(
                    kind,
                    "list",
                    || format!("{kind} in {} labelled {selector}", self.scope.namespace),
                    api.list(&ListParams::default().labels(&selector)),
                )
                .await;
            let objects = match listed {
                Ok(list) => list.items,
                // Not served: there is nothing of this kind to clean up.
                Err(ChaosError::ChaosMeshNotInstalled { .. }) => continue,
                Err(err) => {
                    first_error.get_or_insert(err);
                    continue;
                }
            };
            for object in objects {
                let name = object.name_any();
                debug!(%kind, %name, "deleting chaos object");
                if let Err(err) = self.delete(kind, &name).await {
                    first_error.get_or_insert(err);
                }
            }
        }
        info!("chaos objects cleaned up");
        first_error.map_or(Ok(()), Err)
    }
}

/// A 404 about an object (it, or its namespace, does not exist), as opposed
/// to one about the resource type (the API server does not serve it).
fn object_not_found(status: &Status) -> bool {
    status.code == 404 && status.details.as_ref().is_some_and(|d| !d.name.is_empty())
}

/// A 404 saying the API server does not serve the resource at all: either
/// the whole group is unknown (a plain-text `404 page not found` body, which
/// kube turns into a `Status` without details) or the group is known but not
/// the kind (`the server could not find the requested resource`, empty
/// details).
fn resource_not_served(status: &Status) -> bool {
    status.code == 404 && !object_not_found(status)
}

fn api_error(
    kind: ChaosKind,
    action: &'static str,
    object: String,
    err: kube::Error,
) -> ChaosError {
    match &err {
        kube::Error::Api(status) if resource_not_served(status) => {
            ChaosError::ChaosMeshNotInstalled {
                kind: kind.as_str(),
                api_version: API_VERSION,
            }
        }
        _ => ChaosError::Kubernetes {
            action,
            object,
            source: err,
        },
    }
}

#[cfg(test)]
mod tests {
    use kube::core::response::StatusDetails;

    use super::*;

    fn status(code: u16, reason: &str, details: Option<StatusDetails>) -> Status {
        Status {
            code,
            reason: reason.into(),
            details,
            ..Status::failure("", reason)
        }
    }

    fn details(details: serde_json::Value) -> Option<StatusDetails> {
        Some(serde_json::from_value(details).expect("well-formed status details"))
    }

    fn named(name: &str, kind: &str) -> Option<StatusDetails> {
        details(serde_json::json!({ "name": name, "kind": kind }))
    }

    /// What creating shop's catalog-down PodChaos fails with when the API
    /// server answers `status`.
    fn create_error(status: Status) -> ChaosError {
        api_error(
            ChaosKind::PodChaos,
            "create",
            "PodChaos team-a/shop-catalog-down".into(),
            kube::Error::Api(status.boxed()),
        )
    }

    /// The shapes below are what kube-apiserver v1.34 answered in the e2e
    /// cluster (`kubectl -v=9`): a missing object or namespace names it in
    /// `details`; an unknown group is a plain-text `404 page not found`
    /// (kube reconstructs a `Status` without details); a known group without
    /// the kind has empty details.
    #[test]
    fn a_missing_object_is_told_apart_from_a_missing_resource_type() {
        let missing_object = status(404, "NotFound", named("shop-catalog-down", "podchaos"));
        assert!(object_not_found(&missing_object));
        assert!(!resource_not_served(&missing_object));

        let missing_namespace = status(404, "NotFound", named("team-a", "namespaces"));
        assert!(!resource_not_served(&missing_namespace));

        let unknown_group = status(404, "Failed to parse error data", None);
        assert!(resource_not_served(&unknown_group));
        let unknown_kind = status(404, "NotFound", details(serde_json::json!({})));
        assert!(resource_not_served(&unknown_kind));

        let err = create_error(unknown_group);
        assert_eq!(err.category(), "chaos_mesh_not_installed");
        assert_eq!(
            err.to_string(),
            "the cluster does not serve PodChaos (chaos-mesh.org/v1alpha1): \
             is Chaos Mesh installed, with its CRDs?"
        );

        let forbidden = status(403, "Forbidden", named("shop-catalog-down", "podchaos"));
        let err = create_error(forbidden);
        assert_eq!(err.category(), "kubernetes");
        assert!(
            err.to_string()
                .starts_with("could not create PodChaos team-a/shop-catalog-down: "),
            "{err}"
        );
    }
}
