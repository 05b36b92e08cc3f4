//! `DashboardBackend` against an in-process **stand-in** for the Chaos Mesh
//! dashboard. No real dashboard runs here: the stand-in implements the
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
//!   "cluster";
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
use commlab_api::{Duration as SpecDuration, Fault, FaultKind, Target};
use commlab_chaos::{
    ChaosError, ChaosScope, DashboardBackend, DashboardConfig, FaultBackend, FaultHandle,
    chaos_mesh::chaos_object,
};
use serde_json::{Value, json};

const NAMESPACE: &str = "team-a";
const TOKEN: &str = "token-of-team-a";

/// One chaos object as the stand-in's "cluster" and archive know it.
#[derive(Clone, Debug)]
struct Experiment {
    uid: String,
    namespace: String,
    name: String,
    kind: String,
    /// When the dashboard's archive learns about it.
    archived_at: Instant,
    /// Still in the cluster (deleting removes it from the cluster, the
    /// archive keeps it).
    in_cluster: bool,
    body: Value,
}

/// A request as the stand-in received it.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    query: HashMap<String, String>,
    authorization: Option<String>,
    body: Option<Value>,
}

/// What the stand-in answers instead of the normal answer.
#[derive(Clone, Debug)]
enum Override {
    /// This status with this body, as a failing dashboard or a proxy would.
    Answer(StatusCode, String),
    /// The normal answer, after this long.
    Slow(Duration),
}

struct StandIn {
    /// Tokens the "Kubernetes API" accepts, with the namespaces their
    /// account may manage chaos in. `None`: security mode off.
    tokens: Option<HashMap<String, Vec<String>>>,
    archive_lag: Duration,
    experiments: Mutex<Vec<Experiment>>,
    seen: Mutex<Vec<Seen>>,
    answer: Mutex<Option<Override>>,
}

type Shared = Arc<StandIn>;

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
    fn new(tokens: Option<HashMap<String, Vec<String>>>, archive_lag: Duration) -> Shared {
        Arc::new(Self {
            tokens,
            archive_lag,
            experiments: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            answer: Mutex::new(None),
        })
    }

    /// The usual stand-in: security mode on, [`TOKEN`] may manage chaos in
    /// [`NAMESPACE`], the archive is immediate.
    fn secured() -> Shared {
        Self::new(
            Some(HashMap::from([(
                TOKEN.to_owned(),
                vec![NAMESPACE.to_owned()],
            )])),
            Duration::ZERO,
        )
    }

    fn answer(&self, answer: Option<Override>) {
        *self.answer.lock().unwrap() = answer;
    }

    fn experiments(&self) -> Vec<Experiment> {
        self.experiments.lock().unwrap().clone()
    }

    fn in_cluster(&self) -> Vec<Experiment> {
        self.experiments()
            .into_iter()
            .filter(|experiment| experiment.in_cluster)
            .collect()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Puts an object in the "cluster" as if created earlier, already archived.
    fn seed(&self, body: Value) -> String {
        let uid = uuid::Uuid::new_v4().to_string();
        self.experiments.lock().unwrap().push(Experiment {
            uid: uid.clone(),
            namespace: body["metadata"]["namespace"].as_str().unwrap().to_owned(),
            name: body["metadata"]["name"].as_str().unwrap().to_owned(),
            kind: body["kind"].as_str().unwrap().to_owned(),
            archived_at: Instant::now(),
            in_cluster: true,
            body,
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

    fn archived(&self, uid: &str) -> Option<Experiment> {
        self.experiments()
            .into_iter()
            .find(|experiment| experiment.uid == uid && experiment.archived_at <= Instant::now())
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
    experiments.push(Experiment {
        uid: uuid::Uuid::new_v4().to_string(),
        namespace,
        name,
        kind,
        archived_at: Instant::now() + stand_in.archive_lag,
        in_cluster: true,
        body: body.clone(),
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
                "status": "running",
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
    let path = format!("/api/experiments/{uid}");
    if let Err(response) = stand_in
        .admit(&Method::GET, path, &headers, &query, None)
        .await
    {
        return response;
    }
    let Some(experiment) = stand_in.archived(&uid) else {
        return not_in_archive(&uid);
    };
    if !experiment.in_cluster {
        return api_error(
            StatusCode::NOT_FOUND,
            "error.api.resource_not_found",
            &format!("{} \"{}\" not found", experiment.kind, experiment.name),
        );
    }
    let metadata = &experiment.body["metadata"];
    let body = json!({
        "namespace": experiment.namespace,
        "name": experiment.name,
        "kind": experiment.kind,
        "uid": experiment.uid,
        "created_at": "2026-01-01T00:00:00Z",
        "status": "running",
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
    let path = format!("/api/experiments/{uid}");
    if let Err(response) = stand_in
        .admit(&Method::DELETE, path, &headers, &query, None)
        .await
    {
        return response;
    }
    let Some(experiment) = stand_in.archived(&uid) else {
        return not_in_archive(&uid);
    };
    if !experiment.in_cluster {
        return api_error(
            StatusCode::NOT_FOUND,
            "error.api.resource_not_found",
            &format!("{} \"{}\" not found", experiment.kind, experiment.name),
        );
    }
    for stored in stand_in.experiments.lock().unwrap().iter_mut() {
        if stored.uid == uid {
            stored.in_cluster = false;
        }
    }
    (StatusCode::OK, axum::Json(json!({ "status": "success" }))).into_response()
}

/// Serves the stand-in on a free loopback port; returns its base URL.
async fn serve(stand_in: Shared) -> String {
    let app = Router::new()
        .route("/api/experiments", get(list).post(create))
        .route("/api/experiments/{uid}", get(detail).delete(delete))
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

fn config(url: &str) -> DashboardConfig {
    DashboardConfig::new(url)
        .with_token(TOKEN)
        .with_request_timeout(Duration::from_secs(2))
        .with_settle_timeout(Duration::from_secs(5))
}

fn backend(url: &str, instance: &str) -> DashboardBackend {
    DashboardBackend::new(config(url), ChaosScope::new(NAMESPACE, instance))
        .expect("a valid configuration")
}

fn fault(name: &str, kind: FaultKind, target: Target) -> Fault {
    let is_delay = kind == FaultKind::Delay;
    Fault {
        name: name.into(),
        fault: kind,
        target,
        at: SpecDuration::from_secs(5),
        duration: SpecDuration::from_secs(15),
        latency: is_delay.then(|| "100ms".parse().expect("a valid duration")),
        jitter: None,
    }
}

fn every_kind_of_fault() -> Vec<Fault> {
    vec![
        fault("catalog-down", FaultKind::Outage, Target::Catalog),
        fault("orders-killed", FaultKind::Kill, Target::Orders),
        fault("slow-catalog", FaultKind::Delay, Target::Catalog),
        fault("broker-cut", FaultKind::Partition, Target::Broker),
    ]
}

fn uid_of(handle: &FaultHandle) -> &str {
    match handle {
        FaultHandle::DashboardExperiment { uid } => uid,
        other => panic!("not a dashboard handle: {other:?}"),
    }
}

/// A chaos object of `instance` for `fault`, as commlab would post it.
fn body_for(instance: &str, fault: &Fault) -> Value {
    chaos_object(&ChaosScope::new(NAMESPACE, instance), fault)
        .expect("a valid fault")
        .body
}

#[tokio::test]
async fn inject_posts_the_chaos_object_and_returns_the_uid_the_list_shows() {
    let stand_in = StandIn::secured();
    let dashboard = backend(&serve(stand_in.clone()).await, "shop");
    for fault in every_kind_of_fault() {
        let active = dashboard.inject(&fault).await.expect("inject");
        assert_eq!(active.name, fault.name);
        assert_eq!(active.kind, fault.fault);
        let stored = stand_in
            .in_cluster()
            .into_iter()
            .find(|e| e.name == format!("shop-{}", fault.name))
            .expect("created");
        assert_eq!(uid_of(&active.handle), stored.uid);
        assert_eq!(stored.body, body_for("shop", &fault), "the exact object");
    }
    let seen = stand_in.seen();
    let posts: Vec<_> = seen.iter().filter(|s| s.method == Method::POST).collect();
    assert_eq!(posts.len(), 4);
    assert!(posts.iter().all(|post| post.path == "/api/experiments"));
    for request in &seen {
        assert_eq!(
            request.authorization.as_deref(),
            Some("Bearer token-of-team-a"),
            "{request:?}"
        );
        assert_eq!(
            request.query.get("namespace").map(String::as_str),
            Some(NAMESPACE),
            "{request:?}"
        );
    }
    // The uid is looked up by namespace, name and kind.
    let lookup = seen
        .iter()
        .find(|s| {
            s.method == Method::GET
                && s.query
                    .get("name")
                    .is_some_and(|n| n == "shop-slow-catalog")
        })
        .expect("a lookup");
    assert_eq!(lookup.query["kind"], "NetworkChaos");
    assert!(posts[0].body.is_some());
}

#[tokio::test]
async fn recover_deletes_the_experiment_and_is_idempotent() {
    let stand_in = StandIn::secured();
    let dashboard = backend(&serve(stand_in.clone()).await, "shop");
    let active = dashboard
        .inject(&fault("catalog-down", FaultKind::Outage, Target::Catalog))
        .await
        .expect("inject");
    dashboard.recover(active.clone()).await.expect("recover");
    assert!(stand_in.in_cluster().is_empty());
    let delete = stand_in
        .seen()
        .into_iter()
        .find(|s| s.method == Method::DELETE)
        .expect("a DELETE");
    assert_eq!(
        delete.path,
        format!("/api/experiments/{}", uid_of(&active.handle))
    );
    // The dashboard answers 404 now; the experiment is gone, so that is Ok.
    dashboard.recover(active).await.expect("recover again");
}

#[tokio::test]
async fn recover_waits_for_the_dashboard_to_archive_a_new_experiment() {
    let stand_in = StandIn::new(
        Some(HashMap::from([(
            TOKEN.to_owned(),
            vec![NAMESPACE.to_owned()],
        )])),
        Duration::from_millis(700),
    );
    let dashboard = backend(&serve(stand_in.clone()).await, "shop");
    let active = dashboard
        .inject(&fault("slow-catalog", FaultKind::Delay, Target::Catalog))
        .await
        .expect("inject");
    dashboard.recover(active).await.expect("recover");
    assert!(stand_in.in_cluster().is_empty());
    let deletes = stand_in
        .seen()
        .iter()
        .filter(|s| s.method == Method::DELETE)
        .count();
    assert!(deletes >= 2, "retried while not archived, {deletes} DELETE");
}

#[tokio::test]
async fn cleanup_deletes_what_belongs_to_the_experiment_and_nothing_else() {
    let stand_in = StandIn::secured();
    let url = serve(stand_in.clone()).await;
    let dashboard = backend(&url, "shop");
    dashboard
        .inject(&fault("catalog-down", FaultKind::Outage, Target::Catalog))
        .await
        .expect("inject");
    dashboard
        .inject(&fault("broker-cut", FaultKind::Partition, Target::Broker))
        .await
        .expect("inject");
    // Left by an earlier process for the same experiment.
    stand_in.seed(body_for(
        "shop",
        &fault("orders-killed", FaultKind::Kill, Target::Orders),
    ));
    // Another experiment whose name starts like this one's.
    let other = stand_in.seed(body_for(
        "shop-v2",
        &fault("catalog-down", FaultKind::Outage, Target::Catalog),
    ));
    // Someone else's experiment, without commlab's labels.
    let mut foreign = body_for(
        "shop",
        &fault("catalog-slow", FaultKind::Delay, Target::Catalog),
    );
    foreign["metadata"]["labels"] = json!({ "team": "a" });
    let foreign = stand_in.seed(foreign);

    dashboard.cleanup().await.expect("cleanup");
    let mut left: Vec<_> = stand_in.in_cluster().into_iter().map(|e| e.uid).collect();
    left.sort();
    let mut expected = vec![other, foreign];
    expected.sort();
    assert_eq!(left, expected);
    // Nothing of this experiment is left: still Ok.
    dashboard.cleanup().await.expect("cleanup again");
}

#[tokio::test]
async fn inject_replaces_a_leftover_of_an_interrupted_run() {
    let stand_in = StandIn::secured();
    let dashboard = backend(&serve(stand_in.clone()).await, "shop");
    let outage = fault("catalog-down", FaultKind::Outage, Target::Catalog);
    let leftover = stand_in.seed(body_for("shop", &outage));
    let active = dashboard.inject(&outage).await.expect("inject");
    let in_cluster = stand_in.in_cluster();
    assert_eq!(in_cluster.len(), 1);
    assert_ne!(in_cluster[0].uid, leftover);
    assert_eq!(uid_of(&active.handle), in_cluster[0].uid);
}

#[tokio::test]
async fn inject_never_replaces_an_experiment_commlab_does_not_manage() {
    let stand_in = StandIn::secured();
    let dashboard = backend(&serve(stand_in.clone()).await, "shop");
    let outage = fault("catalog-down", FaultKind::Outage, Target::Catalog);
    let mut foreign = body_for("shop", &outage);
    foreign["metadata"]["labels"] = json!({ "app.kubernetes.io/instance": "shop" });
    let foreign = stand_in.seed(foreign);
    let err = dashboard
        .inject(&outage)
        .await
        .expect_err("the name is taken");
    assert_eq!(err.category(), "name_taken", "{err}");
    let in_cluster = stand_in.in_cluster();
    assert_eq!(in_cluster.len(), 1);
    assert_eq!(in_cluster[0].uid, foreign);
}

#[tokio::test]
async fn a_dashboard_without_security_mode_needs_no_token() {
    let stand_in = StandIn::new(None, Duration::ZERO);
    let url = serve(stand_in.clone()).await;
    let dashboard = DashboardBackend::new(
        DashboardConfig::new(&url),
        ChaosScope::new(NAMESPACE, "shop"),
    )
    .expect("a valid configuration");
    let active = dashboard
        .inject(&fault("catalog-down", FaultKind::Outage, Target::Catalog))
        .await
        .expect("inject");
    dashboard.recover(active).await.expect("recover");
    assert!(stand_in.seen().iter().all(|s| s.authorization.is_none()));
}

async fn inject_error(
    stand_in: Shared,
    config: impl FnOnce(&str) -> DashboardConfig,
) -> ChaosError {
    let url = serve(stand_in).await;
    let dashboard = DashboardBackend::new(config(&url), ChaosScope::new(NAMESPACE, "shop"))
        .expect("a valid configuration");
    dashboard
        .inject(&fault("catalog-down", FaultKind::Outage, Target::Catalog))
        .await
        .expect_err("the dashboard refuses")
}

#[tokio::test]
async fn a_token_the_api_server_rejects_is_unauthorized() {
    let err = inject_error(StandIn::secured(), |url| config(url).with_token("expired")).await;
    assert_eq!(err.category(), "unauthorized", "{err}");
    assert!(matches!(err, ChaosError::Unauthorized { .. }));
    assert!(err.to_string().contains("Unauthorized"), "{err}");
    assert!(
        !err.to_string().contains("expired"),
        "never the token: {err}"
    );
}

#[tokio::test]
async fn a_token_without_rights_in_the_namespace_is_unauthorized() {
    let stand_in = StandIn::new(
        Some(HashMap::from([(
            TOKEN.to_owned(),
            vec!["team-b".to_owned()],
        )])),
        Duration::ZERO,
    );
    let err = inject_error(stand_in, config).await;
    assert_eq!(err.category(), "unauthorized", "{err}");
    assert!(
        err.to_string()
            .contains("can't list resource in namespace team-a (error.api.no_namespace_privilege)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_token_is_unauthorized() {
    let err = inject_error(StandIn::secured(), |url| DashboardConfig::new(url)).await;
    assert_eq!(err.category(), "unauthorized", "{err}");
    assert!(err.to_string().contains("token is empty"), "{err}");
}

#[tokio::test]
async fn a_proxy_answering_403_is_forbidden() {
    let stand_in = StandIn::secured();
    stand_in.answer(Some(Override::Answer(
        StatusCode::FORBIDDEN,
        "<html><body>403 Forbidden</body></html>".into(),
    )));
    let err = inject_error(stand_in, config).await;
    assert_eq!(err.category(), "forbidden", "{err}");
    assert!(matches!(err, ChaosError::Forbidden { .. }));
    assert!(err.to_string().contains("403 Forbidden"), "{err}");
}

#[tokio::test]
async fn a_server_error_is_dashboard_unavailable() {
    let stand_in = StandIn::secured();
    stand_in.answer(Some(Override::Answer(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({
            "code": 500,
            "type": "error.api.internal_server_error",
            "message": "etcdserver: request timed out",
            "full_text": "",
        })
        .to_string(),
    )));
    let err = inject_error(stand_in.clone(), config).await;
    assert_eq!(err.category(), "dashboard_unavailable", "{err}");
    assert!(
        err.to_string()
            .contains("HTTP 500: etcdserver: request timed out"),
        "{err}"
    );

    stand_in.answer(Some(Override::Answer(
        StatusCode::BAD_GATEWAY,
        "bad gateway".into(),
    )));
    let err = inject_error(stand_in, config).await;
    assert_eq!(err.category(), "dashboard_unavailable", "{err}");
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout_not_a_hang() {
    let stand_in = StandIn::secured();
    stand_in.answer(Some(Override::Slow(Duration::from_secs(30))));
    let started = Instant::now();
    let err = inject_error(stand_in, |url| {
        config(url).with_request_timeout(Duration::from_millis(300))
    })
    .await;
    assert_eq!(err.category(), "timeout", "{err}");
    assert!(matches!(err, ChaosError::Timeout { .. }));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn recover_and_cleanup_time_out_too() {
    let stand_in = StandIn::secured();
    let dashboard = DashboardBackend::new(
        config(&serve(stand_in.clone()).await).with_request_timeout(Duration::from_millis(300)),
        ChaosScope::new(NAMESPACE, "shop"),
    )
    .expect("a valid configuration");
    let active = dashboard
        .inject(&fault("catalog-down", FaultKind::Outage, Target::Catalog))
        .await
        .expect("inject");
    stand_in.answer(Some(Override::Slow(Duration::from_secs(30))));
    let started = Instant::now();
    let err = dashboard.recover(active).await.expect_err("too slow");
    assert_eq!(err.category(), "timeout", "{err}");
    let err = dashboard.cleanup().await.expect_err("too slow");
    assert_eq!(err.category(), "timeout", "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_closed_port_is_dashboard_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    drop(listener);
    let dashboard = backend(&url, "shop");
    let err = dashboard
        .inject(&fault("catalog-down", FaultKind::Outage, Target::Catalog))
        .await
        .expect_err("nothing listens");
    assert_eq!(err.category(), "dashboard_unavailable", "{err}");
    assert!(err.to_string().contains("GET /api/experiments"), "{err}");
}

#[tokio::test]
async fn an_unreadable_answer_is_a_protocol_error() {
    let stand_in = StandIn::secured();
    stand_in.answer(Some(Override::Answer(
        StatusCode::OK,
        "<html>dashboard UI</html>".into(),
    )));
    let err = inject_error(stand_in, config).await;
    assert_eq!(err.category(), "dashboard_protocol", "{err}");
}
