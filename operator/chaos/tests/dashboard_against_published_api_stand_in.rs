//! `DashboardBackend` against the in-process **stand-in** for the Chaos
//! Mesh dashboard in `commlab_e2e::dashboard_stand_in`. No real dashboard
//! runs here: the stand-in implements the `/api/experiments` endpoints the
//! way Chaos Mesh publishes them, including the answers it gives when
//! things go wrong (see that module for what it implements and where it
//! was read).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use commlab_api::{Fault, FaultKind, Target};
use commlab_chaos::{
    ChaosError, ChaosScope, DashboardBackend, DashboardConfig, FaultBackend, FaultHandle,
    Injection, Recovery, chaos_mesh::chaos_object,
};
use commlab_e2e::dashboard_stand_in::{ChaosMeshActs, Override, Shared, StandIn, serve};
use common::catalog_down;
use serde_json::{Value, json};

const NAMESPACE: &str = "team-a";
const TOKEN: &str = "token-of-team-a";
/// Nothing runs the faults here, so they all last the same.
const DURATION: &str = "15s";

/// The usual stand-in: [`TOKEN`] may manage chaos in [`NAMESPACE`].
fn secured() -> Shared {
    StandIn::secured(TOKEN, NAMESPACE)
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
    common::fault(name, kind, target, DURATION)
}

fn every_kind_of_fault() -> Vec<Fault> {
    vec![
        catalog_down(DURATION),
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
    let stand_in = secured();
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
async fn a_fault_is_in_force_once_the_dashboard_reports_it_running_and_recovered_once_gone() {
    let stand_in = secured();
    let dashboard = backend(&serve(stand_in.clone()).await, "shop");
    let before = tokio::time::Instant::now();
    let active = dashboard
        .inject(&catalog_down(DURATION))
        .await
        .expect("inject");
    let Injection::InForce { since } = active.injection else {
        panic!("not in force: {:?}", active.injection);
    };
    assert!(since >= before);
    // Confirmed from a listing after the experiment was created.
    let seen = stand_in.seen();
    let post = seen.iter().position(|s| s.method == Method::POST).unwrap();
    assert!(
        seen[post + 1..]
            .iter()
            .filter(|s| s.method == Method::GET && s.path == "/api/experiments")
            .count()
            >= 2,
        "the uid, then the status: {seen:#?}"
    );
    let recovery = dashboard.recover(active).await.expect("recover");
    assert!(
        matches!(recovery, Recovery::Confirmed { at } if at >= since),
        "{recovery:?}"
    );
}

#[tokio::test]
async fn a_fault_chaos_mesh_fails_to_apply_is_not_applied_with_its_event_at_once() {
    let stand_in = secured();
    let qdisc = "rpc error: code = Unknown desc = error code: 2, msg: Error: Specified qdisc kind is unknown.";
    stand_in.chaos_mesh(ChaosMeshActs::FailsToApply(qdisc.into()));
    let dashboard = DashboardBackend::new(
        config(&serve(stand_in.clone()).await).with_confirm_timeout(Duration::from_secs(20)),
        ChaosScope::new(NAMESPACE, "shop"),
    )
    .expect("a valid configuration");
    let started = Instant::now();
    let active = dashboard
        .inject(&fault("slow-catalog", FaultKind::Delay, Target::Catalog))
        .await
        .expect("inject");
    assert_eq!(
        active.injection,
        Injection::NotApplied {
            reason: format!("Chaos Mesh: Failed to apply chaos: {qdisc}")
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the failure ended the wait: {:?}",
        started.elapsed()
    );
    let uid = uid_of(&active.handle).to_owned();
    let asked = stand_in
        .seen()
        .into_iter()
        .find(|s| s.path == "/api/events")
        .expect("its events were read");
    assert_eq!(asked.query.get("object_id"), Some(&uid));
    assert_eq!(
        asked.query.get("namespace").map(String::as_str),
        Some(NAMESPACE)
    );
}

#[tokio::test]
async fn a_fault_the_dashboard_never_reports_running_is_not_applied_after_the_wait() {
    let stand_in = secured();
    stand_in.chaos_mesh(ChaosMeshActs::Ignores);
    let dashboard = DashboardBackend::new(
        config(&serve(stand_in.clone()).await).with_confirm_timeout(Duration::from_millis(600)),
        ChaosScope::new(NAMESPACE, "shop"),
    )
    .expect("a valid configuration");
    let active = dashboard
        .inject(&catalog_down(DURATION))
        .await
        .expect("inject");
    assert_eq!(
        active.injection,
        Injection::NotApplied {
            reason: "not confirmed in force within 600ms: the dashboard reports it `injecting`"
                .into()
        }
    );
}

#[tokio::test]
async fn recover_deletes_the_experiment_and_is_idempotent() {
    let stand_in = secured();
    let dashboard = backend(&serve(stand_in.clone()).await, "shop");
    let active = dashboard
        .inject(&catalog_down(DURATION))
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
    let stand_in = secured();
    let url = serve(stand_in.clone()).await;
    let dashboard = backend(&url, "shop");
    dashboard
        .inject(&catalog_down(DURATION))
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
    let other = stand_in.seed(body_for("shop-v2", &catalog_down(DURATION)));
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
    let stand_in = secured();
    let dashboard = backend(&serve(stand_in.clone()).await, "shop");
    let outage = catalog_down(DURATION);
    let leftover = stand_in.seed(body_for("shop", &outage));
    let active = dashboard.inject(&outage).await.expect("inject");
    let in_cluster = stand_in.in_cluster();
    assert_eq!(in_cluster.len(), 1);
    assert_ne!(in_cluster[0].uid, leftover);
    assert_eq!(uid_of(&active.handle), in_cluster[0].uid);
}

#[tokio::test]
async fn inject_never_replaces_an_experiment_commlab_does_not_manage() {
    let stand_in = secured();
    let dashboard = backend(&serve(stand_in.clone()).await, "shop");
    let outage = catalog_down(DURATION);
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
        .inject(&catalog_down(DURATION))
        .await
        .expect("inject");
    dashboard.recover(active).await.expect("recover");
    assert!(stand_in.seen().iter().all(|s| s.authorization.is_none()));
}

/// What `inject` fails with when every request gets `answer`.
async fn inject_error_answered(answer: Override) -> ChaosError {
    let stand_in = secured();
    stand_in.answer(Some(answer));
    inject_error(stand_in, config).await
}

async fn inject_error(
    stand_in: Shared,
    config: impl FnOnce(&str) -> DashboardConfig,
) -> ChaosError {
    let url = serve(stand_in).await;
    let dashboard = DashboardBackend::new(config(&url), ChaosScope::new(NAMESPACE, "shop"))
        .expect("a valid configuration");
    dashboard
        .inject(&catalog_down(DURATION))
        .await
        .expect_err("the dashboard refuses")
}

#[tokio::test]
async fn a_token_the_api_server_rejects_is_unauthorized() {
    let err = inject_error(secured(), |url| config(url).with_token("expired")).await;
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
    let err = inject_error(secured(), |url| DashboardConfig::new(url)).await;
    assert_eq!(err.category(), "unauthorized", "{err}");
    assert!(err.to_string().contains("token is empty"), "{err}");
}

#[tokio::test]
async fn a_proxy_answering_403_is_forbidden() {
    let err = inject_error_answered(Override::Answer(
        StatusCode::FORBIDDEN,
        "<html><body>403 Forbidden</body></html>".into(),
    ))
    .await;
    assert_eq!(err.category(), "forbidden", "{err}");
    assert!(matches!(err, ChaosError::Forbidden { .. }));
    assert!(err.to_string().contains("403 Forbidden"), "{err}");
}

#[tokio::test]
async fn a_server_error_is_dashboard_unavailable() {
    let err = inject_error_answered(Override::server_error("etcdserver: request timed out")).await;
    assert_eq!(err.category(), "dashboard_unavailable", "{err}");
    assert!(
        err.to_string()
            .contains("HTTP 500: etcdserver: request timed out"),
        "{err}"
    );

    let err = inject_error_answered(Override::Answer(
        StatusCode::BAD_GATEWAY,
        "bad gateway".into(),
    ))
    .await;
    assert_eq!(err.category(), "dashboard_unavailable", "{err}");
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout_not_a_hang() {
    let stand_in = secured();
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
    let stand_in = secured();
    let dashboard = DashboardBackend::new(
        config(&serve(stand_in.clone()).await).with_request_timeout(Duration::from_millis(300)),
        ChaosScope::new(NAMESPACE, "shop"),
    )
    .expect("a valid configuration");
    let active = dashboard
        .inject(&catalog_down(DURATION))
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
        .inject(&catalog_down(DURATION))
        .await
        .expect_err("nothing listens");
    assert_eq!(err.category(), "dashboard_unavailable", "{err}");
    assert!(err.to_string().contains("GET /api/experiments"), "{err}");
}

#[tokio::test]
async fn an_unreadable_answer_is_a_protocol_error() {
    let err = inject_error_answered(Override::Answer(
        StatusCode::OK,
        "<html>dashboard UI</html>".into(),
    ))
    .await;
    assert_eq!(err.category(), "dashboard_protocol", "{err}");
}
