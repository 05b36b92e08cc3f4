//! The local backend maps each fault to the right action.

mod common;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use commlab_api::{Duration as SpecDuration, Fault, FaultKind, Target};
use commlab_chaos::{
    ActiveFault, ChaosError, FaultBackend, FaultHandle, FaultProxy, Injection, LocalBackend,
    LocalProcess, ManagedProcess, ProxyHandle, Recovery, Toxic,
};
use common::{LOOPBACK, any_port, free_port, http_get, http_server, wait_accepting};

/// A process controller that only records what it was asked to do.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<&'static str>>,
    fail_start: Mutex<bool>,
}

impl Recorder {
    fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl LocalProcess for Recorder {
    async fn stop(&self) -> Result<(), ChaosError> {
        self.calls.lock().unwrap().push("stop");
        Ok(())
    }
    async fn kill(&self) -> Result<(), ChaosError> {
        self.calls.lock().unwrap().push("kill");
        Ok(())
    }
    async fn start(&self) -> Result<(), ChaosError> {
        self.calls.lock().unwrap().push("start");
        if *self.fail_start.lock().unwrap() {
            return Err(ChaosError::process("recorder", "start", "refused"));
        }
        Ok(())
    }
}

fn fault(name: &str, fault: FaultKind, target: Target) -> Fault {
    Fault {
        name: name.into(),
        fault,
        target,
        at: SpecDuration::from_secs(5),
        duration: SpecDuration::from_secs(10),
        latency: None,
        jitter: None,
    }
}

fn delay(name: &str, target: Target, latency_ms: u64, jitter_ms: Option<u64>) -> Fault {
    Fault {
        latency: Some(SpecDuration::from_millis(latency_ms)),
        jitter: jitter_ms.map(SpecDuration::from_millis),
        ..fault(name, FaultKind::Delay, target)
    }
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// catalog with a recorded process and a proxy; the proxy points nowhere in particular.
async fn catalog_backend() -> (LocalBackend, Arc<Recorder>, ProxyHandle, FaultProxy) {
    let recorder = Arc::new(Recorder::default());
    let upstream = SocketAddr::from((LOOPBACK, free_port()));
    let proxy = FaultProxy::bind(any_port(), upstream).await.unwrap();
    let handle = proxy.handle();
    let backend = LocalBackend::new()
        .with_process(Target::Catalog, recorder.clone())
        .with_proxy(Target::Catalog, handle.clone());
    (backend, recorder, handle, proxy)
}

#[tokio::test]
async fn outage_stops_and_recover_starts() {
    let (backend, recorder, proxy, _p) = catalog_backend().await;
    assert_eq!(backend.name(), "local");
    let active = backend
        .inject(&fault("catalog-down", FaultKind::Outage, Target::Catalog))
        .await
        .unwrap();
    assert_eq!(active.name, "catalog-down");
    assert_eq!(
        (active.kind, active.target),
        (FaultKind::Outage, Target::Catalog)
    );
    assert!(matches!(active.handle, FaultHandle::Local(_)));
    // The local backend did it itself: in force once inject returned.
    let Injection::InForce { since } = active.injection else {
        panic!("a local fault is always applied: {:?}", active.injection);
    };
    assert!(since <= tokio::time::Instant::now());
    assert_eq!(recorder.calls(), ["stop"]);
    assert_eq!(
        proxy.toxic(),
        Toxic::None,
        "an outage leaves the network alone"
    );

    let recovery = backend.recover(active.clone()).await.unwrap();
    assert!(
        matches!(recovery, Recovery::Confirmed { at } if at >= since),
        "{recovery:?}"
    );
    assert_eq!(recorder.calls(), ["stop", "start"]);
    // Recovering twice changes nothing.
    backend.recover(active).await.unwrap();
    assert_eq!(recorder.calls(), ["stop", "start"]);
}

#[tokio::test]
async fn kill_kills_and_restarts_at_once() {
    let (backend, recorder, _proxy, _p) = catalog_backend().await;
    let active = backend
        .inject(&fault("catalog-crash", FaultKind::Kill, Target::Catalog))
        .await
        .unwrap();
    assert_eq!(recorder.calls(), ["kill", "start"]);
    backend.recover(active).await.unwrap();
    assert_eq!(
        recorder.calls(),
        ["kill", "start"],
        "recovering a kill does nothing"
    );
}

#[tokio::test]
async fn delay_and_partition_switch_the_proxy_toxic() {
    let (backend, recorder, proxy, _p) = catalog_backend().await;
    let slow = backend
        .inject(&delay("slow-catalog", Target::Catalog, 100, Some(20)))
        .await
        .unwrap();
    assert_eq!(
        proxy.toxic(),
        Toxic::Delay {
            latency: ms(100),
            jitter: ms(20)
        }
    );

    // A partition on top of a delay wins while it lasts.
    let cut = backend
        .inject(&fault("catalog-cut", FaultKind::Partition, Target::Catalog))
        .await
        .unwrap();
    assert_eq!(proxy.toxic(), Toxic::Partition);
    backend.recover(cut).await.unwrap();
    assert_eq!(
        proxy.toxic(),
        Toxic::Delay {
            latency: ms(100),
            jitter: ms(20)
        }
    );

    backend.recover(slow).await.unwrap();
    assert_eq!(proxy.toxic(), Toxic::None);
    assert!(
        recorder.calls().is_empty(),
        "network faults leave the process alone"
    );

    // Without jitter the delay is exact.
    let exact = backend
        .inject(&delay("exact", Target::Catalog, 50, None))
        .await
        .unwrap();
    assert_eq!(
        proxy.toxic(),
        Toxic::Delay {
            latency: ms(50),
            jitter: Duration::ZERO
        }
    );
    backend.recover(exact).await.unwrap();
}

#[tokio::test]
async fn overlapping_outages_start_the_target_once_the_last_ends() {
    let (backend, recorder, _proxy, _p) = catalog_backend().await;
    let first = backend
        .inject(&fault("first", FaultKind::Outage, Target::Catalog))
        .await
        .unwrap();
    let second = backend
        .inject(&fault("second", FaultKind::Outage, Target::Catalog))
        .await
        .unwrap();
    assert_ne!(first.handle, second.handle);
    assert_eq!(recorder.calls(), ["stop"]);

    // A kill while the target is down does not start it.
    backend
        .inject(&fault("crash", FaultKind::Kill, Target::Catalog))
        .await
        .unwrap();
    assert_eq!(recorder.calls(), ["stop", "kill"]);

    backend.recover(first).await.unwrap();
    assert_eq!(
        recorder.calls(),
        ["stop", "kill"],
        "still down: the second outage lasts"
    );
    backend.recover(second).await.unwrap();
    assert_eq!(recorder.calls(), ["stop", "kill", "start"]);
}

#[tokio::test]
async fn a_fault_without_what_it_needs_is_unsupported_and_changes_nothing() {
    let recorder = Arc::new(Recorder::default());
    let proxy = FaultProxy::bind(any_port(), SocketAddr::from((LOOPBACK, free_port())))
        .await
        .unwrap();
    // database has only a process, broker only a proxy, orders nothing.
    let backend = LocalBackend::new()
        .with_process(Target::Database, recorder.clone())
        .with_proxy(Target::Broker, proxy.handle());

    let cases = [
        (FaultKind::Delay, Target::Database, "fault proxy"),
        (FaultKind::Partition, Target::Database, "fault proxy"),
        (FaultKind::Outage, Target::Broker, "process controller"),
        (FaultKind::Kill, Target::Broker, "process controller"),
        (FaultKind::Outage, Target::Orders, "process controller"),
        (FaultKind::Delay, Target::Orders, "fault proxy"),
    ];
    for (kind, target, missing) in cases {
        let mut spec = fault("unsupported", kind, target);
        if kind == FaultKind::Delay {
            spec.latency = Some(SpecDuration::from_millis(10));
        }
        let err = backend.inject(&spec).await.unwrap_err();
        assert_eq!(err.category(), "unsupported", "{kind} on {target}");
        assert!(
            matches!(&err, ChaosError::Unsupported { missing: m, .. } if *m == missing),
            "{kind} on {target}: {err}"
        );
        assert!(err.to_string().contains(target.as_str()), "{err}");
    }
    assert!(recorder.calls().is_empty());
    assert_eq!(proxy.handle().toxic(), Toxic::None);
    backend.cleanup().await.unwrap();
    assert!(recorder.calls().is_empty());
}

#[tokio::test]
async fn a_delay_without_latency_is_invalid() {
    let (backend, _recorder, proxy, _p) = catalog_backend().await;
    let err = backend
        .inject(&fault("no-latency", FaultKind::Delay, Target::Catalog))
        .await
        .unwrap_err();
    assert_eq!(err.category(), "invalid_fault");
    assert_eq!(
        err.to_string(),
        "fault `no-latency`: a Delay fault needs a latency"
    );
    assert_eq!(proxy.toxic(), Toxic::None);
}

#[tokio::test]
async fn cleanup_undoes_whatever_is_still_in_force() {
    let (backend, recorder, proxy, _p) = catalog_backend().await;
    let down = backend
        .inject(&fault("down", FaultKind::Outage, Target::Catalog))
        .await
        .unwrap();
    backend
        .inject(&fault("down-again", FaultKind::Outage, Target::Catalog))
        .await
        .unwrap();
    let slow = backend
        .inject(&delay("slow", Target::Catalog, 100, None))
        .await
        .unwrap();
    assert_eq!(recorder.calls(), ["stop"]);

    backend.cleanup().await.unwrap();
    assert_eq!(recorder.calls(), ["stop", "start"], "started once");
    assert_eq!(proxy.toxic(), Toxic::None);

    // Recovering after cleanup, and cleaning up twice, change nothing.
    backend.recover(down).await.unwrap();
    backend.recover(slow).await.unwrap();
    backend.cleanup().await.unwrap();
    assert_eq!(recorder.calls(), ["stop", "start"]);
    assert_eq!(proxy.toxic(), Toxic::None);
}

#[tokio::test]
async fn a_failed_start_keeps_the_outage_for_the_next_try() {
    let (backend, recorder, _proxy, _p) = catalog_backend().await;
    let down = backend
        .inject(&fault("down", FaultKind::Outage, Target::Catalog))
        .await
        .unwrap();
    *recorder.fail_start.lock().unwrap() = true;
    assert_eq!(
        backend.recover(down.clone()).await.unwrap_err().category(),
        "process"
    );
    assert_eq!(backend.cleanup().await.unwrap_err().category(), "process");

    *recorder.fail_start.lock().unwrap() = false;
    backend.cleanup().await.unwrap();
    assert_eq!(recorder.calls(), ["stop", "start", "start", "start"]);
    backend.recover(down).await.unwrap();
    assert_eq!(recorder.calls().len(), 4);
}

#[tokio::test]
async fn a_fault_from_another_backend_is_refused() {
    let (backend, _recorder, _proxy, _p) = catalog_backend().await;
    let foreign = ActiveFault {
        name: "mesh".into(),
        kind: FaultKind::Outage,
        target: Target::Catalog,
        handle: FaultHandle::DashboardExperiment { uid: "0e2f".into() },
        injection: Injection::InForce {
            since: tokio::time::Instant::now(),
        },
    };
    let err = backend.recover(foreign).await.unwrap_err();
    assert_eq!(err.category(), "foreign_fault");
}

#[tokio::test]
async fn the_backend_is_shared_as_a_trait_object() {
    let (backend, recorder, _proxy, _p) = catalog_backend().await;
    let backend: Arc<dyn FaultBackend> = Arc::new(backend);
    let task = {
        let backend = backend.clone();
        tokio::spawn(async move {
            backend
                .inject(&fault("down", FaultKind::Outage, Target::Catalog))
                .await
                .unwrap()
        })
    };
    let active = task.await.unwrap();
    backend.recover(active).await.unwrap();
    assert_eq!(recorder.calls(), ["stop", "start"]);
}

/// The whole chain with a real process and a real proxy: catalog is an HTTP
/// server reached through a fault proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_process_and_proxy_outage_delay_and_partition() {
    let patience = Duration::from_secs(20);
    let port = free_port();
    let server_addr = SocketAddr::from((LOOPBACK, port));
    let catalog = Arc::new(ManagedProcess::new("catalog", move || http_server(port)));
    catalog.start().await.unwrap();
    assert!(
        wait_accepting(server_addr, true, patience).await,
        "catalog never accepted"
    );

    let proxy = FaultProxy::bind(any_port(), server_addr).await.unwrap();
    let backend = LocalBackend::new()
        .with_process(Target::Catalog, catalog.clone())
        .with_proxy(Target::Catalog, proxy.handle());
    let through_proxy = proxy.local_addr();
    let ok = http_get(through_proxy, patience).await;
    assert!(
        ok.as_deref().is_some_and(|line| line.contains(" 200 ")),
        "{ok:?}"
    );

    // Outage: the process is down, then serves again.
    let down = backend
        .inject(&fault("catalog-down", FaultKind::Outage, Target::Catalog))
        .await
        .unwrap();
    assert!(!catalog.is_running().await);
    assert!(!common::accepts(server_addr).await);
    assert_eq!(http_get(through_proxy, Duration::from_secs(2)).await, None);
    backend.recover(down).await.unwrap();
    assert!(
        wait_accepting(server_addr, true, patience).await,
        "catalog did not come back"
    );

    // Delay: a request through the proxy takes at least the latency longer.
    let slow = backend
        .inject(&delay("slow-catalog", Target::Catalog, 300, None))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let answer = http_get(through_proxy, patience).await;
    let took = started.elapsed();
    assert!(answer.is_some_and(|line| line.contains(" 200 ")));
    assert!(took >= ms(300), "a delayed request took {took:?}");
    backend.recover(slow).await.unwrap();

    // Partition: no answer while it lasts, then the same request completes.
    let cut = backend
        .inject(&fault("catalog-cut", FaultKind::Partition, Target::Catalog))
        .await
        .unwrap();
    let pending = tokio::spawn(http_get(through_proxy, patience));
    tokio::time::sleep(ms(500)).await;
    assert!(
        !pending.is_finished(),
        "a request was answered during a partition"
    );
    backend.recover(cut).await.unwrap();
    let answer = pending.await.unwrap();
    assert!(
        answer.is_some_and(|line| line.contains(" 200 ")),
        "no answer after the partition"
    );

    // Kill: a new process, serving again.
    let before = catalog.id().await.unwrap();
    backend
        .inject(&fault("catalog-crash", FaultKind::Kill, Target::Catalog))
        .await
        .unwrap();
    assert_ne!(catalog.id().await, Some(before));
    assert!(
        wait_accepting(server_addr, true, patience).await,
        "catalog did not restart"
    );

    backend.cleanup().await.unwrap();
    catalog.stop().await.unwrap();
}

#[tokio::test]
async fn a_fault_acts_on_every_replica() {
    let replicas = [Arc::new(Recorder::default()), Arc::new(Recorder::default())];
    let mut proxies = Vec::new();
    let mut backend = LocalBackend::new();
    for replica in &replicas {
        let proxy = FaultProxy::bind(any_port(), SocketAddr::from((LOOPBACK, free_port())))
            .await
            .unwrap();
        backend = backend
            .with_process(Target::Orders, replica.clone())
            .with_proxy(Target::Orders, proxy.handle());
        proxies.push(proxy);
    }

    let down = backend
        .inject(&fault("orders-down", FaultKind::Outage, Target::Orders))
        .await
        .unwrap();
    let slow = backend
        .inject(&delay("slow-orders", Target::Orders, 80, None))
        .await
        .unwrap();
    for replica in &replicas {
        assert_eq!(replica.calls(), ["stop"]);
    }
    for proxy in &proxies {
        assert_eq!(
            proxy.handle().toxic(),
            Toxic::Delay {
                latency: ms(80),
                jitter: Duration::ZERO
            }
        );
    }

    backend.recover(down).await.unwrap();
    backend.recover(slow).await.unwrap();
    backend
        .inject(&fault("orders-crash", FaultKind::Kill, Target::Orders))
        .await
        .unwrap();
    for replica in &replicas {
        assert_eq!(replica.calls(), ["stop", "start", "kill", "start"]);
    }
    for proxy in &proxies {
        assert_eq!(proxy.handle().toxic(), Toxic::None);
    }
}
