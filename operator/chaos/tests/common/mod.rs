//! Helpers shared by the integration tests: faults as a chaos plan states
//! them, loopback servers and bounded waits.
#![allow(dead_code)]

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener as StdListener},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use commlab_api::{Duration as SpecDuration, Fault, FaultKind, Target};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    process::Command,
    time::{Instant, timeout},
};

pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A fault `duration` long (`15s`, `1m30s`, ...) from 5 s into the run; a
/// `Delay` is 100 ms ± 10 ms.
pub fn fault(name: &str, kind: FaultKind, target: Target, duration: &str) -> Fault {
    let is_delay = kind == FaultKind::Delay;
    Fault {
        name: name.into(),
        fault: kind,
        target,
        at: SpecDuration::from_secs(5),
        duration: duration.parse().expect("a valid duration"),
        latency: is_delay.then(|| "100ms".parse().expect("a valid duration")),
        jitter: is_delay.then(|| "10ms".parse().expect("a valid duration")),
    }
}

/// The fault most tests inject: an outage of catalog.
pub fn catalog_down(duration: &str) -> Fault {
    fault("catalog-down", FaultKind::Outage, Target::Catalog, duration)
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    StdListener::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn any_port() -> SocketAddr {
    SocketAddr::from((LOOPBACK, 0))
}

/// An echo server on a free loopback port; counts the connections it accepts.
pub struct Echo {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
}

impl Echo {
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

pub async fn echo_server() -> Echo {
    let listener = TcpListener::bind(any_port()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    // Lives as long as the test's runtime.
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    Echo { addr, accepted }
}

/// Sends `message` and reads the echo back, within `limit`.
pub async fn round_trip(stream: &mut TcpStream, message: &[u8], limit: Duration) -> Duration {
    let started = Instant::now();
    stream.write_all(message).await.unwrap();
    let mut echoed = vec![0; message.len()];
    timeout(limit, stream.read_exact(&mut echoed))
        .await
        .expect("no echo in time")
        .unwrap();
    assert_eq!(echoed, message);
    started.elapsed()
}

/// Whether something accepts connections on `addr`.
pub async fn accepts(addr: SocketAddr) -> bool {
    matches!(
        timeout(Duration::from_secs(1), TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// Polls `addr` until it accepts (or not, per `wanted`) within `limit`.
pub async fn wait_accepting(addr: SocketAddr, wanted: bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if accepts(addr).await == wanted {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A command for a tiny HTTP server on `port`, run as the server process itself.
pub fn http_server(port: u16) -> Command {
    let mut command = Command::new("python3");
    command
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// `GET /` over a raw TCP connection; returns the status line.
pub async fn http_get(addr: SocketAddr, limit: Duration) -> Option<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response);
        text.lines().next().map(str::to_owned)
    };
    timeout(limit, exchange).await.ok().flatten()
}
