//! An in-process **stand-in** for the Chaos Mesh dashboard, for tests: no
//! real dashboard runs here (it needs a cluster with Chaos Mesh). The
//! stand-in implements the
//! `/api/experiments` endpoints the way Chaos Mesh publishes them (its
//! swagger annotations and handlers in chaos-mesh/chaos-mesh
//! `pkg/dashboard/apiserver/experiment/experiment.go`, errors from
//! `pkg/dashboard/apiserver/utils/error.go`, the token check from
//! `utils/auth.go` and `pkg/clientpool/client.go`), including the answers
//! it gives when things go wrong:
//!
//! - `POST /api/experiments` answers `200` with the body it was sent (no
//!   uid); a name that exists is a `500` (the Kubernetes API's
//!   "already exists" is not one of the errors the dashboard maps);
//! - `GET /api/experiments?namespace=&name=&kind=` lists
//!   `{namespace, name, kind, uid, created_at, status}` straight from the
//!   "cluster", `status` being the dashboard's summary of Chaos Mesh's
//!   conditions (`pkg/status/status.go`): what the stand-in's Chaos Mesh
//!   did with it ([`ChaosMeshActs`]), `running` by default;
//! - `GET /api/events?object_id=<uid>&namespace=` lists the Kubernetes
//!   Events collected for an experiment, `{id, object_id, created_at,
//!   namespace, name, kind, type, reason, message}`
//!   (`pkg/dashboard/apiserver/event/event.go`, `core/event.go`): a
//!   failed injection is Chaos Mesh's `Warning` `Failed` "Failed to apply
//!   chaos: <reason>" (`controllers/utils/recorder/error.go`);
//! - `GET` and `DELETE /api/experiments/{uid}` look the uid up in the
//!   dashboard's archive, which learns about new experiments a little
//!   later (`archive_lag`), and answer `404` until then;
//! - no token: `400` "token is empty"; a token the Kubernetes API rejects:
//!   `500` "Unauthorized"; a token whose account may not act in the
//!   namespace named by the `namespace` query parameter: `401`
//!   `error.api.no_namespace_privilege`;
//! - errors are `{code, type, message, full_text}`.
//!
//! A `403` does not come from the dashboard itself; the stand-in can play
//! a proxy in front of it that answers one, and can answer `500` or answer
//! slowly on demand.
//!
//! Shared by the tests of `DashboardBackend` (operator/chaos) and of the
//! operator and its runner with the dashboard backend (operator/controller).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// One chaos object as the stand-in's "cluster" and archive know it.
#[derive(Clone, Debug)]
pub struct Experiment {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub kind: String,
    /// When the dashboard's archive learns about it.
    pub archived_at: Instant,
    /// Still in the cluster (deleting removes it from the cluster, the
    /// archive keeps it).
    pub in_cluster: bool,
    pub body: Value,
    /// The dashboard's status of it: `running`, `injecting`, ...
    pub status: String,
    /// The Kubernetes Events the dashboard collected about it.
    pub events: Vec<Value>,
}

/// What the stand-in's Chaos Mesh does with each new experiment. No Chaos
/// Mesh runs here: this is how a test says what it would have done.
#[derive(Clone, Debug, Default)]
pub enum ChaosMeshActs {
    /// Injects it at once: the dashboard reports it `running`.
    #[default]
    Injects,
    /// Never gets to it, as when its controller is not running: the
    /// dashboard reports it `injecting` and no event explains why.
    Ignores,
    /// Fails to inject it, as chaos-daemon does on a kernel without netem:
    /// the dashboard reports it `injecting` for ever, and Chaos Mesh's
    /// Warning event says why.
    FailsToApply(String),
}

impl ChaosMeshActs {
    /// The status and events of an experiment this Chaos Mesh acted on.
    fn on(&self, uid: &str, body: &Value) -> (String, Vec<Value>) {
        match self {
            ChaosMeshActs::Injects => ("running".into(), Vec::new()),
            ChaosMeshActs::Ignores => ("injecting".into(), Vec::new()),
            ChaosMeshActs::FailsToApply(reason) => {
                let event = json!({
                    "id": 1,
                    "object_id": uid,
                    "created_at": "2026-01-01T00:00:01Z",
                    "namespace": body["metadata"]["namespace"],
                    "name": body["metadata"]["name"],
                    "kind": body["kind"],
                    "type": "Warning",
                    "reason": "Failed",
                    "message": format!("Failed to apply chaos: {reason}"),
                });
                ("injecting".into(), vec![event])
            }
        }
    }
}

/// A request as the stand-in received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub authorization: Option<String>,
    pub body: Option<Value>,
}

/// What the stand-in answers instead of the normal answer.
#[derive(Clone, Debug)]
pub enum Override {
    /// This status with this body, as a failing dashboard or a proxy would.
    Answer(StatusCode, String),
    /// The normal answer, after this long.
    Slow(Duration),
}

impl Override {
    /// A `500` with the dashboard's error body, as when the Kubernetes API
    /// behind it fails, e.g. `etcdserver: request timed out`.
    pub fn server_error(message: &str) -> Self {
        let body = json!({
            "code": 500,
            "type": "error.api.internal_server_error",
            "message": message,
            "full_text": "",
        });
        Override::Answer(StatusCode::INTERNAL_SERVER_ERROR, body.to_string())
    }
}

pub struct StandIn {
    /// Tokens the "Kubernetes API" accepts, with the namespaces their
    /// account may manage chaos in. `None`: security mode off.
    tokens: Option<HashMap<String, Vec<String>>>,
    archive_lag: Duration,
    experiments: Mutex<Vec<Experiment>>,
    seen: Mutex<Vec<Seen>>,
    answer: Mutex<Option<Override>>,
    chaos_mesh: Mutex<ChaosMeshActs>,
}

pub type Shared = Arc<StandIn>;

fn api_error(status: StatusCode, type_: &str, message: &str) -> Response {
    let body = json!({
        "code": status.as_u16(),
        "type": type_,
        "message": message,
        "full_text": format!("{type_}: {message}"),
    });
    (status, axum::Json(body)).into_response()
}

impl StandIn {
    pub fn new(tokens: Option<HashMap<String, Vec<String>>>, archive_lag: Duration) -> Shared {
        Arc::new(Self {
            tokens,
            archive_lag,
            experiments: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            answer: Mutex::new(None),
            chaos_mesh: Mutex::new(ChaosMeshActs::default()),
        })
    }

    /// What Chaos Mesh does with the experiments created from now on.
    pub fn chaos_mesh(&self, acts: ChaosMeshActs) {
        *self.chaos_mesh.lock().unwrap() = acts;
    }

    /// The usual stand-in: security mode on, `token` may manage chaos in
    /// `namespace`, the archive is immediate.
    pub fn secured(token: &str, namespace: &str) -> Shared {
        Self::new(
            Some(HashMap::from([(
                token.to_owned(),
                vec![namespace.to_owned()],
            )])),
            Duration::ZERO,
        )
    }

    pub fn answer(&self, answer: Option<Override>) {
        *self.answer.lock().unwrap() = answer;
    }

    pub fn experiments(&self) -> Vec<Experiment> {
        self.experiments.lock().unwrap().clone()
    }

    pub fn in_cluster(&self) -> Vec<Experiment> {
        self.experiments()
            .into_iter()
            .filter(|experiment| experiment.in_cluster)
            .collect()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Puts an object in the "cluster" as if created earlier, already archived.
    pub fn seed(&self, body: Value) -> String {
        let uid = uuid::Uuid::new_v4().to_string();
        self.experiments.lock().unwrap().push(Experiment {
            uid: uid.clone(),
            namespace: body["metadata"]["namespace"].as_str().unwrap().to_owned(),
            name: body["metadata"]["name"].as_str().unwrap().to_owned(),
            kind: body["kind"].as_str().unwrap().to_owned(),
            archived_at: Instant::now(),
            in_cluster: true,
            body,
            status: "running".into(),
            events: Vec::new(),
        });
        uid
    }

    /// Records the request, applies an override, then checks the token as
    /// the dashboard does: `list` for GET, `patch` for anything else, in
    /// the namespace of the `namespace` query parameter.
    async fn admit(
        &self,
        method: &Method,
        path: String,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
        body: Option<Value>,
    ) -> Result<(), Response> {
        let authorization = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        self.seen.lock().unwrap().push(Seen {
            method: method.clone(),
            path,
            query: query.clone(),
            authorization: authorization.clone(),
            body,
        });
        let answer = self.answer.lock().unwrap().clone();
        match answer {
            Some(Override::Answer(status, body)) => return Err((status, body).into_response()),
            Some(Override::Slow(delay)) => tokio::time::sleep(delay).await,
            None => {}
        }
        let Some(tokens) = &self.tokens else {
            return Ok(());
        };
        let token = authorization
            .as_deref()
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        if token.is_empty() {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                "error.api.bad_request",
                "token is empty",
            ));
        }
        let Some(namespaces) = tokens.get(token) else {
            // The SelfSubjectAccessReview fails with the API server's 401,
            // which the dashboard reports as an internal error.
            return Err(api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "error.api.internal_server_error",
                "Unauthorized",
            ));
        };
        let verb = if *method == Method::GET {
            "list"
        } else {
            "patch"
        };
        match query.get("namespace").filter(|ns| !ns.is_empty()) {
            None => Err(api_error(
                StatusCode::UNAUTHORIZED,
                "error.api.no_cluster_privilege",
                &format!("can't {verb} resource in the cluster"),
            )),
            Some(namespace) if !namespaces.contains(namespace) => Err(api_error(
                StatusCode::UNAUTHORIZED,
                "error.api.no_namespace_privilege",
                &format!("can't {verb} resource in namespace {namespace}"),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Admits a `GET` or `DELETE /api/experiments/{uid}` as any request, then
    /// finds experiment `uid` as the dashboard does: in the archive, and still
    /// in the cluster; otherwise its `404`.
    async fn admit_one(
        &self,
        method: &Method,
        uid: &str,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
    ) -> Result<Experiment, Response> {
        self.admit(
            method,
            format!("/api/experiments/{uid}"),
            headers,
            query,
            None,
        )
        .await?;
        let archived = self
            .experiments()
            .into_iter()
            .find(|experiment| experiment.uid == uid && experiment.archived_at <= Instant::now());
        match archived {
            None => Err(not_in_archive(uid)),
            Some(experiment) if !experiment.in_cluster => Err(api_error(
                StatusCode::NOT_FOUND,
                "error.api.resource_not_found",
                &format!("{} \"{}\" not found", experiment.kind, experiment.name),
            )),
            Some(experiment) => Ok(experiment),
        }
    }
}

fn not_in_archive(uid: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        "error.api.resource_not_found",
        &format!("Experiment {uid} not found"),
    )
}

async fn create(
    State(stand_in): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    if let Err(response) = stand_in
        .admit(
            &Method::POST,
            "/api/experiments".into(),
            &headers,
            &query,
            parsed.as_ref().ok().cloned(),
        )
        .await
    {
        return response;
    }
    let Ok(body) = parsed else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "error.api.bad_request",
            "invalid JSON",
        );
    };
    let kind = body["kind"].as_str().unwrap_or_default().to_owned();
    if !["PodChaos", "NetworkChaos"].contains(&kind.as_str()) {
        return api_error(
            StatusCode::BAD_REQUEST,
            "error.api.bad_request",
            &format!("Kind {kind} is not supported"),
        );
    }
    let namespace = body["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let name = body["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut experiments = stand_in.experiments.lock().unwrap();
    let exists = experiments.iter().any(|experiment| {
        experiment.in_cluster
            && experiment.kind == kind
            && experiment.namespace == namespace
            && experiment.name == name
    });
    if exists {
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "error.api.internal_server_error",
            &format!(
                "{}.chaos-mesh.org \"{name}\" already exists",
                kind.to_lowercase()
            ),
        );
    }
    let uid = uuid::Uuid::new_v4().to_string();
    let (status, events) = stand_in.chaos_mesh.lock().unwrap().on(&uid, &body);
    experiments.push(Experiment {
        uid,
        namespace,
        name,
        kind,
        archived_at: Instant::now() + stand_in.archive_lag,
        in_cluster: true,
        body: body.clone(),
        status,
        events,
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn list(
    State(stand_in): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(response) = stand_in
        .admit(
            &Method::GET,
            "/api/experiments".into(),
            &headers,
            &query,
            None,
        )
        .await
    {
        return response;
    }
    let wanted = |key: &str, value: &str| {
        query
            .get(key)
            .filter(|wanted| !wanted.is_empty())
            .is_none_or(|wanted| wanted == value)
    };
    let listed: Vec<Value> = stand_in
        .in_cluster()
        .into_iter()
        .filter(|e| wanted("namespace", &e.namespace) && wanted("name", &e.name))
        .filter(|e| wanted("kind", &e.kind))
        .map(|e| {
            json!({
                "namespace": e.namespace,
                "name": e.name,
                "kind": e.kind,
                "uid": e.uid,
                "created_at": "2026-01-01T00:00:00Z",
                "status": e.status,
            })
        })
        .collect();
    (StatusCode::OK, axum::Json(Value::Array(listed))).into_response()
}

async fn detail(
    State(stand_in): State<Shared>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let experiment = match stand_in
        .admit_one(&Method::GET, &uid, &headers, &query)
        .await
    {
        Ok(experiment) => experiment,
        Err(response) => return response,
    };
    let metadata = &experiment.body["metadata"];
    let body = json!({
        "namespace": experiment.namespace,
        "name": experiment.name,
        "kind": experiment.kind,
        "uid": experiment.uid,
        "created_at": "2026-01-01T00:00:00Z",
        "status": experiment.status,
        "kube_object": {
            "apiVersion": "chaos-mesh.org/v1alpha1",
            "kind": experiment.kind,
            "metadata": {
                "namespace": experiment.namespace,
                "name": experiment.name,
                "labels": metadata.get("labels").cloned().unwrap_or(Value::Null),
                "annotations": metadata.get("annotations").cloned().unwrap_or(Value::Null),
            },
            "spec": experiment.body["spec"],
        },
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn delete(
    State(stand_in): State<Shared>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(response) = stand_in
        .admit_one(&Method::DELETE, &uid, &headers, &query)
        .await
    {
        return response;
    }
    for stored in stand_in.experiments.lock().unwrap().iter_mut() {
        if stored.uid == uid {
            stored.in_cluster = false;
        }
    }
    (StatusCode::OK, axum::Json(json!({ "status": "success" }))).into_response()
}

async fn events(
    State(stand_in): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(response) = stand_in
        .admit(&Method::GET, "/api/events".into(), &headers, &query, None)
        .await
    {
        return response;
    }
    let object = query.get("object_id").cloned().unwrap_or_default();
    let listed: Vec<Value> = stand_in
        .experiments()
        .into_iter()
        .filter(|e| object.is_empty() || e.uid == object)
        .flat_map(|e| e.events)
        .collect();
    (StatusCode::OK, axum::Json(Value::Array(listed))).into_response()
}

/// Serves the stand-in on a free loopback port; returns its base URL.
pub async fn serve(stand_in: Shared) -> String {
    let app = Router::new()
        .route("/api/experiments", get(list).post(create))
        .route("/api/experiments/{uid}", get(detail).delete(delete))
        .route("/api/events", get(events))
        .with_state(stand_in);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("a free loopback port");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}
