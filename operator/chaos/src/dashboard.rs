//! The Chaos Mesh backend that goes through the Chaos Mesh dashboard's HTTP
//! API instead of the Kubernetes API, for clusters where commlab may talk
//! to the dashboard but not create Chaos Mesh objects itself.
//!
//! # The dashboard API this relies on
//!
//! Read in chaos-mesh/chaos-mesh, `pkg/dashboard/apiserver/experiment/experiment.go`
//! (routes and handlers), `pkg/dashboard/apiserver/utils/{error,auth,gin}.go`,
//! `pkg/dashboard/core/common.go`, `pkg/clientpool/client.go` and
//! `pkg/dashboard/apiserver/server.go`:
//!
//! - every route is under `/api`; the token is sent as
//!   `Authorization: Bearer <token>` and the dashboard acts with it against
//!   the Kubernetes API (security mode; without it the token is ignored);
//! - `POST /api/experiments` takes the whole chaos object as JSON (same
//!   schema as the Kubernetes object, `kind` chooses the type, `metadata`
//!   with labels and owner references is kept) and answers `200` with the
//!   body it was sent, **without a uid**;
//! - `GET /api/experiments?namespace=&name=&kind=` lists the chaos objects
//!   found in the cluster at that moment: a JSON array of
//!   `{namespace, name, kind, uid, created_at, status}`, where `status` is
//!   the dashboard's summary of Chaos Mesh's conditions
//!   (`pkg/status/status.go`): `running` once `Selected` and `AllInjected`
//!   are true, `injecting` before (and while an injection keeps failing),
//!   `finished` once over (for a one-shot `pod-kill`: once every pod was
//!   killed), `paused`, `deleting`. The records and their messages are not
//!   exposed;
//! - `GET /api/events?object_id=<uid>&namespace=` lists the Kubernetes
//!   Events the dashboard collected for an experiment,
//!   `[{object_id, created_at, namespace, name, kind, type, reason,
//!   message}]`; Chaos Mesh records a failed injection there as a
//!   `Warning` `Failed` event, "Failed to apply chaos: <reason>"
//!   (`controllers/utils/recorder`). The dashboard collects them
//!   asynchronously, so one may be missing for a while;
//! - `GET /api/experiments/{uid}` answers one experiment with its
//!   `kube_object: {apiVersion, kind, metadata: {namespace, name, labels,
//!   annotations}, spec}`, and `DELETE /api/experiments/{uid}` deletes it
//!   (`200 {"status": "success"}`). Both look the uid up in the dashboard's
//!   own archive, which records new experiments asynchronously, so they may
//!   answer `404` for an experiment created a moment ago;
//! - errors are `{code, type, message, full_text}` with `400` (bad request,
//!   also a missing token: "token is empty"), `401`
//!   (`error.api.no_cluster_privilege` / `no_namespace_privilege`: the
//!   token's account may not do this), `404` and `500` (anything else the
//!   Kubernetes API refused, e.g. "already exists", or the API server's
//!   "Unauthorized" for a token it rejects, which fails the dashboard's
//!   access review); the authorization check reads the `namespace` query
//!   parameter to decide where the account needs rights, so commlab sends
//!   `?namespace=<namespace>` with every request to let a namespaced
//!   account through.
//!
//! Plain HTTP only: the workspace builds reqwest without TLS, so that
//! rustls keeps exactly one crypto provider (ring, through kube) in every
//! binary. The dashboard's Service (`chaos-dashboard.chaos-mesh:2333`)
//! speaks plain HTTP inside the cluster; an `https://` URL is refused when
//! the backend is built.

use std::{collections::BTreeMap, fmt, sync::Mutex, time::Duration};

use async_trait::async_trait;
use commlab_api::{Fault, FaultKind};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use tracing::{debug, info, instrument, warn};

use crate::{
    ActiveFault, ChaosError, FaultBackend, FaultHandle, Injection, Recovery,
    chaos_mesh::{ChaosKind, ChaosObject, ChaosScope, chaos_object, object_name},
    chaos_mesh_status::Observed,
    confirm::{DEFAULT_CONFIRM_TIMEOUT, confirm},
};

/// How long one request to the dashboard may take by default, body included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to the dashboard may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long by default `recover` keeps asking the dashboard to delete an
/// experiment it has not archived yet, and `inject` waits for a leftover
/// experiment to be gone.
pub const DEFAULT_SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two attempts while waiting for the dashboard.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// The dashboard's status of an experiment whose every pod is injected.
const RUNNING: &str = "running";
/// Longest error text from the dashboard quoted in an error.
const MAX_QUOTED: usize = 300;

/// Where the dashboard is and how to talk to it.
#[derive(Clone)]
pub struct DashboardConfig {
    /// The dashboard's base URL, `http://` only, e.g.
    /// `http://chaos-dashboard.chaos-mesh.svc:2333` (a path prefix, as
    /// behind an ingress, is kept).
    pub url: String,
    /// Sent as `Authorization: Bearer <token>`: a token of a Kubernetes
    /// service account allowed to manage Chaos Mesh objects in the
    /// experiment's namespace. `None` for a dashboard without security mode.
    pub token: Option<String>,
    /// Bounds each request, from connecting to the end of the body.
    pub request_timeout: Duration,
    /// Bounds connecting.
    pub connect_timeout: Duration,
    /// See [`DEFAULT_SETTLE_TIMEOUT`].
    pub settle_timeout: Duration,
    /// Bounds the wait for the dashboard to report a fault in force (in
    /// `inject`) or gone (in `recover`); see [`DEFAULT_CONFIRM_TIMEOUT`].
    pub confirm_timeout: Duration,
}

impl DashboardConfig {
    /// The dashboard at `url`, without a token, with the default timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            settle_timeout: DEFAULT_SETTLE_TIMEOUT,
            confirm_timeout: DEFAULT_CONFIRM_TIMEOUT,
        }
    }

    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn with_settle_timeout(mut self, timeout: Duration) -> Self {
        self.settle_timeout = timeout;
        self
    }

    pub fn with_confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout;
        self
    }
}

impl fmt::Debug for DashboardConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DashboardConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("settle_timeout", &self.settle_timeout)
            .field("confirm_timeout", &self.confirm_timeout)
            .finish()
    }
}

/// Applies faults by creating Chaos Mesh experiments through the Chaos
/// Mesh dashboard's HTTP API, with the same objects as
/// [`ChaosMeshBackend`](crate::ChaosMeshBackend) (see
/// [`chaos_mesh`](crate::chaos_mesh)).
///
/// - `inject`: `POST /api/experiments`, then
///   `GET /api/experiments?namespace=&name=&kind=` for the new
///   experiment's uid, returned as [`FaultHandle::DashboardExperiment`].
///   An experiment of the same name left over from an interrupted run of
///   this experiment (checked by its labels) is deleted first; one that is
///   not this experiment's is [`ChaosError::NameTaken`]. Then it lists the
///   experiment every 100 ms until the dashboard calls it `running`
///   ([`Injection::InForce`]; `finished` too for a `Kill`, a one-shot
///   `pod-kill`), for at most the confirm timeout and never longer than the
///   fault's duration. Meanwhile it reads the experiment's events: a
///   `Warning` "Failed to apply chaos" ends the wait as
///   [`Injection::NotApplied`] with Chaos Mesh's message, as does a
///   `paused` or `deleting` experiment; one not confirmed in time is not
///   applied too, with the last status (and warnings) seen.
/// - `recover`: `DELETE /api/experiments/{uid}`; a `404` for an experiment
///   the list still shows means the dashboard has not archived it yet, and
///   the delete is retried for up to the settle timeout; otherwise the
///   experiment is gone and `recover` is `Ok`. It then lists it until the
///   cluster no longer has it (Chaos Mesh's finalizer keeps a deleted
///   experiment until it is undone), up to the confirm timeout:
///   [`Recovery::Confirmed`], else [`Recovery::Unconfirmed`]. The
///   dashboard exposes no per-pod records, so this is all it can confirm.
/// - `cleanup`: deletes what this backend injected and did not recover,
///   then lists the namespace's experiments and deletes every `PodChaos`
///   and `NetworkChaos` whose labels say it is this experiment's (from an
///   earlier process, say).
///
/// Errors: 401 is [`ChaosError::Unauthorized`], and so are the dashboard's
/// other ways of saying the token is missing (400 "token is empty") or
/// rejected by the Kubernetes API (500 "Unauthorized"); 403 is
/// [`ChaosError::Forbidden`], other 5xx and connection failures
/// [`ChaosError::DashboardUnavailable`], other 4xx
/// [`ChaosError::DashboardRejected`], a request over its timeout
/// [`ChaosError::Timeout`]; each quotes the dashboard's `message`. No
/// request waits longer than the request timeout.
///
/// ```no_run
/// use commlab_chaos::{ChaosError, ChaosScope, DashboardBackend, DashboardConfig};
///
/// # fn build(token: String) -> Result<DashboardBackend, ChaosError> {
/// let config = DashboardConfig::new("http://chaos-dashboard.chaos-mesh.svc:2333")
///     .with_token(token);
/// DashboardBackend::new(config, ChaosScope::new("team-a", "shop"))
/// # }
/// ```
pub struct DashboardBackend {
    http: reqwest::Client,
    /// Ends with `/`, so that `api/...` joins below any path prefix.
    base: Url,
    token: Option<String>,
    scope: ChaosScope,
    request_timeout: Duration,
    settle_timeout: Duration,
    confirm_timeout: Duration,
    /// Injected and not recovered yet: uid → (kind, name).
    injected: Mutex<BTreeMap<String, (ChaosKind, String)>>,
}

impl fmt::Debug for DashboardBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DashboardBackend")
            .field("url", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("scope", &self.scope)
            .field("request_timeout", &self.request_timeout)
            .field("settle_timeout", &self.settle_timeout)
            .field("confirm_timeout", &self.confirm_timeout)
            .finish_non_exhaustive()
    }
}

/// One entry of `GET /api/experiments`.
#[derive(Clone, Debug, Deserialize)]
struct Listed {
    #[serde(default)]
    namespace: String,
    name: String,
    kind: String,
    uid: String,
    /// The dashboard's summary of Chaos Mesh's status, e.g. `running`.
    #[serde(default)]
    status: String,
}

/// One entry of `GET /api/events`: a Kubernetes Event about an experiment.
#[derive(Clone, Debug, Deserialize)]
struct ChaosEvent {
    #[serde(default, rename = "type")]
    type_: String,
    #[serde(default)]
    message: String,
}

/// What Chaos Mesh's events, as the dashboard collected them, say about an
/// injection: the message of a failed one (Chaos Mesh's recorder writes
/// "Failed to apply chaos: <reason>").
fn failed_injection(events: &[ChaosEvent]) -> Option<&str> {
    events
        .iter()
        .rev()
        .find(|e| e.type_ == "Warning" && e.message.starts_with("Failed to apply chaos"))
        .map(|e| e.message.as_str())
}

/// What the dashboard's status of an experiment says about an injection
/// (see the module documentation for the values).
fn injection(listed: &Listed, kind: FaultKind) -> Observed {
    match listed.status.as_str() {
        RUNNING => Observed::Done,
        "finished" if kind == FaultKind::Kill => Observed::Done,
        "finished" => Observed::Failed(
            "the dashboard reports it finished before commlab saw it in force".into(),
        ),
        "paused" | "deleting" => {
            Observed::Failed(format!("the dashboard reports it {}", listed.status))
        }
        other => Observed::Pending(format!("the dashboard reports it `{other}`")),
    }
}

/// The part of `GET /api/experiments/{uid}` commlab reads.
#[derive(Debug, Deserialize)]
struct Detail {
    kube_object: DetailObject,
}

#[derive(Debug, Deserialize)]
struct DetailObject {
    metadata: DetailMetadata,
}

#[derive(Debug, Deserialize)]
struct DetailMetadata {
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// The dashboard's error body.
#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default, rename = "type")]
    type_: String,
    #[serde(default)]
    message: String,
}

impl DashboardBackend {
    /// A backend for the experiment in `scope`, talking to the dashboard of
    /// `config`. Fails on a URL that is not `http://`.
    pub fn new(config: DashboardConfig, scope: ChaosScope) -> Result<Self, ChaosError> {
        let base = base_url(&config.url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .build()
            .map_err(|err| ChaosError::InvalidConfig {
                reason: format!("building the HTTP client: {err}"),
            })?;
        Ok(Self {
            http,
            base,
            token: config.token,
            scope,
            request_timeout: config.request_timeout,
            settle_timeout: config.settle_timeout,
            confirm_timeout: config.confirm_timeout,
            injected: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn scope(&self) -> &ChaosScope {
        &self.scope
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self
            .base
            .join(path)
            .expect("API paths are relative references");
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("namespace", &self.scope.namespace);
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
        }
        url
    }

    /// Sends one request and reads the whole answer within the request
    /// timeout. Answers other than 2xx become errors.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Vec<u8>, ChaosError> {
        let request_name = format!("{method} /{path}");
        let mut request = self
            .http
            .request(method, self.url(path, query))
            .timeout(self.request_timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport_error = |err: reqwest::Error| {
            if err.is_timeout() {
                ChaosError::Timeout {
                    request: format!("Chaos Mesh dashboard: {request_name}"),
                    after: self.request_timeout,
                }
            } else {
                ChaosError::DashboardUnavailable {
                    request: request_name.clone(),
                    reason: error_chain(&err),
                }
            }
        };
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport_error)?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let message = error_message(&bytes);
        debug!(request = %request_name, %status, %message, "dashboard refused a request");
        Err(match status {
            StatusCode::UNAUTHORIZED => ChaosError::Unauthorized {
                request: request_name,
                message: format!("HTTP 401: {message}"),
            },
            // How the dashboard reports token trouble outside 401: no token
            // while security mode is on is a 400 "token is empty", and a
            // token the Kubernetes API rejects (invalid, expired) fails the
            // dashboard's access review with the API server's
            // "Unauthorized", which it reports as a 500.
            StatusCode::BAD_REQUEST if message.contains("token is empty") => {
                ChaosError::Unauthorized {
                    request: request_name,
                    message: format!("HTTP 400, no token was sent: {message}"),
                }
            }
            status if status.is_server_error() && message.contains("Unauthorized") => {
                ChaosError::Unauthorized {
                    request: request_name,
                    message: format!(
                        "HTTP {}, the Kubernetes API rejected the token: {message}",
                        status.as_u16()
                    ),
                }
            }
            StatusCode::FORBIDDEN => ChaosError::Forbidden {
                request: request_name,
                message: format!("HTTP 403: {message}"),
            },
            status if status.is_server_error() => ChaosError::DashboardUnavailable {
                request: request_name,
                reason: format!("HTTP {}: {message}", status.as_u16()),
            },
            status => ChaosError::DashboardRejected {
                request: request_name,
                status: status.as_u16(),
                message,
            },
        })
    }

    /// `GET /api/experiments?namespace=&name=&kind=`: the experiment of
    /// that kind and name, if the cluster has it.
    async fn find(&self, kind: ChaosKind, name: &str) -> Result<Option<Listed>, ChaosError> {
        let listed = self
            .list(&[("name", name), ("kind", kind.as_str())])
            .await?;
        Ok(listed.into_iter().find(|experiment| {
            experiment.name == name
                && experiment.kind == kind.as_str()
                && (experiment.namespace.is_empty() || experiment.namespace == self.scope.namespace)
        }))
    }

    async fn list(&self, query: &[(&str, &str)]) -> Result<Vec<Listed>, ChaosError> {
        let body = self
            .send(Method::GET, "api/experiments", query, None)
            .await?;
        serde_json::from_slice(&body).map_err(|err| ChaosError::DashboardProtocol {
            request: "GET /api/experiments".into(),
            reason: format!("not a list of experiments: {err}"),
        })
    }

    /// The labels of experiment `uid`; `None` when the dashboard does not
    /// know the uid (yet).
    async fn labels(&self, uid: &str) -> Result<Option<BTreeMap<String, String>>, ChaosError> {
        let path = format!("api/experiments/{uid}");
        match self.send(Method::GET, &path, &[], None).await {
            Ok(body) => {
                let detail: Detail =
                    serde_json::from_slice(&body).map_err(|err| ChaosError::DashboardProtocol {
                        request: format!("GET /{path}"),
                        reason: format!("not an experiment: {err}"),
                    })?;
                Ok(Some(detail.kube_object.metadata.labels))
            }
            Err(ChaosError::DashboardRejected { status: 404, .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Deletes experiment `uid` (`kind` `name`); `Ok` once it is deleted or
    /// gone. A `404` while the list still shows the uid is the dashboard's
    /// archive lagging behind: retried until the settle timeout.
    async fn delete(&self, uid: &str, kind: ChaosKind, name: &str) -> Result<(), ChaosError> {
        let path = format!("api/experiments/{uid}");
        let deadline = tokio::time::Instant::now() + self.settle_timeout;
        loop {
            match self.send(Method::DELETE, &path, &[], None).await {
                Ok(_) => return Ok(()),
                Err(ChaosError::DashboardRejected { status: 404, .. }) => {
                    let still_there = self
                        .find(kind, name)
                        .await?
                        .is_some_and(|experiment| experiment.uid == uid);
                    if !still_there {
                        return Ok(());
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ChaosError::DashboardProtocol {
                            request: format!("DELETE /{path}"),
                            reason: format!(
                                "the dashboard still answers 404 after {:?} for {kind} \
                                 {}/{name}, which the cluster has",
                                self.settle_timeout, self.scope.namespace
                            ),
                        });
                    }
                    debug!(%uid, "experiment not archived by the dashboard yet, retrying");
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Deletes a leftover experiment holding `object`'s name when it is this
    /// experiment's, and waits until the cluster no longer has it.
    async fn replace_leftover(
        &self,
        object: &ChaosObject,
        leftover: Listed,
    ) -> Result<(), ChaosError> {
        let deadline = tokio::time::Instant::now() + self.settle_timeout;
        // Its labels, once the dashboard has archived it.
        let labels = loop {
            if let Some(labels) = self.labels(&leftover.uid).await? {
                break labels;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ChaosError::DashboardProtocol {
                    request: format!("GET /api/experiments/{}", leftover.uid),
                    reason: format!(
                        "the dashboard does not know {} {}/{}, which the cluster has",
                        object.kind, object.namespace, object.name
                    ),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        if !self.scope.owns(&labels) {
            return Err(ChaosError::NameTaken {
                kind: object.kind.as_str(),
                namespace: object.namespace.clone(),
                name: object.name.clone(),
                instance: self.scope.instance.clone(),
            });
        }
        warn!(kind = %object.kind, name = %object.name, "deleting a chaos experiment left over from an earlier run");
        self.delete(&leftover.uid, object.kind, &object.name)
            .await?;
        while self.find(object.kind, &object.name).await?.is_some() {
            if tokio::time::Instant::now() >= deadline {
                return Err(ChaosError::Timeout {
                    request: format!(
                        "deleting the leftover {} {}/{}",
                        object.kind, object.namespace, object.name
                    ),
                    after: self.settle_timeout,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Ok(())
    }

    /// `GET /api/events?object_id=<uid>`: what Chaos Mesh recorded about
    /// experiment `uid`, as far as the dashboard collected it.
    async fn events(&self, uid: &str) -> Result<Vec<ChaosEvent>, ChaosError> {
        let body = self
            .send(Method::GET, "api/events", &[("object_id", uid)], None)
            .await?;
        serde_json::from_slice(&body).map_err(|err| ChaosError::DashboardProtocol {
            request: "GET /api/events".into(),
            reason: format!("not a list of events: {err}"),
        })
    }

    /// One reading of whether experiment `uid` (`kind` `name`, for fault
    /// kind `fault`) is in force. A request that fails is pending: the
    /// wait decides what that means.
    async fn observe_injection(
        &self,
        uid: &str,
        kind: ChaosKind,
        name: &str,
        fault: FaultKind,
    ) -> Observed {
        let listed = match self.find(kind, name).await {
            Ok(Some(listed)) if listed.uid == uid => listed,
            Ok(_) => return Observed::Failed("the dashboard no longer lists it".into()),
            Err(err) => return Observed::Pending(format!("could not list it: {err}")),
        };
        match injection(&listed, fault) {
            Observed::Pending(status) => match self.events(uid).await {
                Ok(events) => match failed_injection(&events) {
                    Some(failure) => Observed::Failed(format!("Chaos Mesh: {failure}")),
                    None => Observed::Pending(status),
                },
                Err(err) => Observed::Pending(format!("{status}; its events: {err}")),
            },
            decided => decided,
        }
    }

    /// One reading of whether experiment `uid` is gone from the cluster.
    async fn observe_gone(&self, uid: &str, kind: ChaosKind, name: &str) -> Observed {
        match self.find(kind, name).await {
            Ok(Some(listed)) if listed.uid == uid => {
                Observed::Pending(format!("the dashboard still lists it, `{}`", listed.status))
            }
            Ok(_) => Observed::Done,
            Err(err) => Observed::Pending(format!("could not list it: {err}")),
        }
    }

    fn injected(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (ChaosKind, String)>> {
        // A panic while holding this lock leaves a map that is still valid.
        self.injected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl FaultBackend for DashboardBackend {
    fn name(&self) -> &'static str {
        "chaos-mesh-dashboard"
    }

    #[instrument(skip_all, fields(fault = %fault.name, kind = %fault.fault, target = %fault.target))]
    async fn inject(&self, fault: &Fault) -> Result<ActiveFault, ChaosError> {
        let object = chaos_object(&self.scope, fault)?;
        if let Some(leftover) = self.find(object.kind, &object.name).await? {
            self.replace_leftover(&object, leftover).await?;
        }
        self.send(Method::POST, "api/experiments", &[], Some(&object.body))
            .await?;
        let created = self.find(object.kind, &object.name).await?.ok_or_else(|| {
            ChaosError::DashboardProtocol {
                request: "GET /api/experiments".into(),
                reason: format!(
                    "{} {}/{} was created but is not listed",
                    object.kind, object.namespace, object.name
                ),
            }
        })?;
        self.injected()
            .insert(created.uid.clone(), (object.kind, object.name.clone()));
        debug!(chaos = %object.kind, name = %object.name, uid = %created.uid, "experiment created");
        // A fault not in force by the end of its window was not in force in it.
        let wait = self.confirm_timeout.min(fault.duration.as_std());
        let injection = confirm(wait, || {
            self.observe_injection(&created.uid, object.kind, &object.name, fault.fault)
        })
        .await
        .into_injection();
        match &injection {
            Injection::InForce { .. } => {
                info!(chaos = %object.kind, name = %object.name, uid = %created.uid, "fault in force");
            }
            Injection::NotApplied { reason } => {
                warn!(chaos = %object.kind, name = %object.name, uid = %created.uid, %reason, "fault not applied");
            }
        }
        Ok(ActiveFault::new(
            fault,
            FaultHandle::DashboardExperiment { uid: created.uid },
            injection,
        ))
    }

    #[instrument(skip_all, fields(fault = %active.name))]
    async fn recover(&self, active: ActiveFault) -> Result<Recovery, ChaosError> {
        let FaultHandle::DashboardExperiment { uid } = &active.handle else {
            return Err(ChaosError::ForeignFault {
                name: active.name,
                backend: "chaos-mesh-dashboard",
            });
        };
        let kind = ChaosKind::for_fault(active.kind);
        let name = object_name(&self.scope.instance, &active.name);
        self.delete(uid, kind, &name).await?;
        self.injected().remove(uid);
        let recovery = confirm(self.confirm_timeout, || self.observe_gone(uid, kind, &name))
            .await
            .into_recovery();
        match &recovery {
            Recovery::Confirmed { .. } => info!(chaos = %kind, %name, %uid, "fault recovered"),
            Recovery::Unconfirmed { reason } => {
                warn!(chaos = %kind, %name, %uid, %reason, "fault recovery not confirmed");
            }
        }
        Ok(recovery)
    }

    #[instrument(skip_all, fields(instance = %self.scope.instance))]
    async fn cleanup(&self) -> Result<(), ChaosError> {
        let mut first_error = None;
        let injected: Vec<_> = self
            .injected()
            .iter()
            .map(|(uid, (kind, name))| (uid.clone(), *kind, name.clone()))
            .collect();
        for (uid, kind, name) in injected {
            match self.delete(&uid, kind, &name).await {
                Ok(()) => {
                    self.injected().remove(&uid);
                }
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        // Leftovers of earlier processes, found by their labels.
        match self.list(&[]).await {
            Ok(listed) => {
                for experiment in listed {
                    let Ok(kind) = experiment.kind.parse::<ChaosKind>() else {
                        continue;
                    };
                    if !experiment.namespace.is_empty()
                        && experiment.namespace != self.scope.namespace
                    {
                        continue;
                    }
                    let outcome = match self.labels(&experiment.uid).await {
                        Ok(Some(labels)) if self.scope.owns(&labels) => {
                            self.delete(&experiment.uid, kind, &experiment.name).await
                        }
                        Ok(_) => Ok(()),
                        Err(err) => Err(err),
                    };
                    if let Err(err) = outcome {
                        first_error.get_or_insert(err);
                    }
                }
            }
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
        info!("dashboard experiments cleaned up");
        first_error.map_or(Ok(()), Err)
    }
}

/// The dashboard's base URL, checked: `http://` only, without a query or
/// fragment, ending with `/` so that `api/...` joins below a path prefix.
/// Public so that a command line can refuse a bad URL before anything runs.
pub fn base_url(url: &str) -> Result<Url, ChaosError> {
    let invalid = |reason: String| ChaosError::InvalidConfig { reason };
    let mut base =
        Url::parse(url).map_err(|err| invalid(format!("dashboard URL `{url}`: {err}")))?;
    match base.scheme() {
        "http" => {}
        "https" => {
            return Err(invalid(format!(
                "dashboard URL `{url}`: https is not supported, commlab's HTTP client is \
                 built without TLS (rustls keeps one crypto provider across the \
                 workspace); use the dashboard's in-cluster Service over http, e.g. \
                 http://chaos-dashboard.chaos-mesh.svc:2333"
            )));
        }
        other => {
            return Err(invalid(format!(
                "dashboard URL `{url}`: scheme `{other}` is not http"
            )));
        }
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(invalid(format!(
            "dashboard URL `{url}` must not have a query or fragment"
        )));
    }
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok(base)
}

/// The dashboard's `message` (and error `type`) from an error body, or the
/// body itself, shortened.
fn error_message(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<ApiError>(body) {
        Ok(error) if !error.message.is_empty() && !error.type_.is_empty() => {
            format!("{} ({})", error.message, error.type_)
        }
        Ok(error) if !error.message.is_empty() => error.message,
        _ => String::from_utf8_lossy(body).trim().to_owned(),
    };
    if text.is_empty() {
        return "(no message)".to_owned();
    }
    match text.char_indices().nth(MAX_QUOTED) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// An error and its sources, e.g. `error sending request: connection refused`.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(url: &str) -> Result<DashboardBackend, ChaosError> {
        DashboardBackend::new(DashboardConfig::new(url), ChaosScope::new("team-a", "shop"))
    }

    #[test]
    fn urls_keep_a_path_prefix_and_always_name_the_namespace() {
        let dashboard = backend("http://dashboard.example:2333").unwrap();
        assert_eq!(
            dashboard
                .url("api/experiments", &[("name", "shop-x")])
                .as_str(),
            "http://dashboard.example:2333/api/experiments?namespace=team-a&name=shop-x"
        );
        let behind_ingress = backend("http://gateway.example/chaos").unwrap();
        assert_eq!(
            behind_ingress.url("api/experiments/u-1", &[]).as_str(),
            "http://gateway.example/chaos/api/experiments/u-1?namespace=team-a"
        );
    }

    #[test]
    fn only_plain_http_urls_are_accepted() {
        let err = backend("https://dashboard.example").unwrap_err();
        assert_eq!(err.category(), "invalid_config");
        assert!(err.to_string().contains("https is not supported"), "{err}");
        assert_eq!(backend("ftp://x").unwrap_err().category(), "invalid_config");
        assert_eq!(
            backend("not a url").unwrap_err().category(),
            "invalid_config"
        );
        assert_eq!(
            backend("http://x/?a=b").unwrap_err().category(),
            "invalid_config"
        );
    }

    #[test]
    fn error_messages_quote_the_dashboard() {
        let body = br#"{"code":401,"type":"error.api.no_namespace_privilege","message":"can't patch resource in namespace team-a","full_text":"..."}"#;
        assert_eq!(
            error_message(body),
            "can't patch resource in namespace team-a (error.api.no_namespace_privilege)"
        );
        assert_eq!(
            error_message(b"  upstream timed out \n"),
            "upstream timed out"
        );
        assert_eq!(error_message(b""), "(no message)");
        let long = "x".repeat(MAX_QUOTED + 10);
        assert_eq!(
            error_message(long.as_bytes()).chars().count(),
            MAX_QUOTED + 1
        );
    }

    fn listed(status: &str) -> Listed {
        Listed {
            namespace: "team-a".into(),
            name: "shop-catalog-down".into(),
            kind: "PodChaos".into(),
            uid: "u-1".into(),
            status: status.into(),
        }
    }

    #[test]
    fn the_dashboard_status_confirms_a_fault_running_and_a_kill_finished() {
        assert_eq!(
            injection(&listed("running"), FaultKind::Outage),
            Observed::Done
        );
        assert_eq!(
            injection(&listed("finished"), FaultKind::Kill),
            Observed::Done
        );
        assert!(matches!(
            injection(&listed("finished"), FaultKind::Outage),
            Observed::Failed(_)
        ));
        assert_eq!(
            injection(&listed("paused"), FaultKind::Delay),
            Observed::Failed("the dashboard reports it paused".into())
        );
        assert_eq!(
            injection(&listed("injecting"), FaultKind::Delay),
            Observed::Pending("the dashboard reports it `injecting`".into())
        );
    }

    #[test]
    fn a_failed_injection_is_read_from_chaos_mesh_s_warning_event() {
        let events: Vec<ChaosEvent> = serde_json::from_value(serde_json::json!([
            { "object_id": "u-1", "type": "Normal", "reason": "Started", "message": "Experiment has started" },
            { "object_id": "u-1", "type": "Warning", "reason": "Failed",
              "message": "Failed to apply chaos: Error: Specified qdisc kind is unknown." },
            { "object_id": "u-1", "type": "Normal", "reason": "Updated", "message": "Successfully update records of resource" },
        ]))
        .unwrap();
        assert_eq!(
            failed_injection(&events),
            Some("Failed to apply chaos: Error: Specified qdisc kind is unknown.")
        );
        assert_eq!(failed_injection(&events[..1]), None);
    }

    #[test]
    fn the_token_is_never_printed() {
        let config = DashboardConfig::new("http://x").with_token("s3cret");
        assert!(!format!("{config:?}").contains("s3cret"));
        let dashboard = DashboardBackend::new(config, ChaosScope::new("a", "b")).unwrap();
        assert!(!format!("{dashboard:?}").contains("s3cret"));
    }
}
