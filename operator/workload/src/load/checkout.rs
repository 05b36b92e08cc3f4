//! Sending checkouts: the schedule thread and one task per checkout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Counters, LoadConfig, LoadError, Schedule, product_for};
use crate::measure::{CheckoutRecord, Outcome};

/// The schedule thread sleeps at most this long between checks of the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(10);

/// The schedule thread wakes at most once per quantum: checkouts closer
/// together than this go out together (it only matters near
/// [`super::PRECISE_SCHEDULE_MAX_RATE`]).
const QUANTUM: Duration = Duration::from_micros(200);

/// The HTTP client for price changes: keep-alive, no proxy (targets are loopback or
/// in-cluster), Nagle off, the request timeout over the whole exchange.
pub(super) fn http_client(config: &LoadConfig) -> Result<reqwest::Client, LoadError> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(config.request_timeout)
        .connect_timeout(config.request_timeout)
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(LoadError::Client)
}

/// `{base}/{path}` parsed once.
pub(super) fn endpoint(base: &str, path: &str) -> Result<reqwest::Url, LoadError> {
    let text = format!("{}/{path}", base.trim_end_matches('/'));
    let url = reqwest::Url::parse(&text).map_err(|error| LoadError::InvalidUrl {
        url: base.to_owned(),
        reason: error.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(LoadError::InvalidUrl {
            url: base.to_owned(),
            reason: "not http(s)".into(),
        });
    }
    Ok(url)
}

/// orders' replicas, used round-robin, each with its own pool of
/// keep-alive HTTP/1 connections (hyper's client connection, without
/// reqwest's per-request URL and header work: a checkout is the hot path).
pub(super) struct Orders {
    replicas: Vec<Replica>,
    request_timeout: Duration,
}

impl Orders {
    pub(super) fn new(
        bases: &[String],
        request_timeout: Duration,
        max_connections: usize,
    ) -> Result<Self, LoadError> {
        let replicas = bases
            .iter()
            .map(|base| Replica::new(base, max_connections))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            replicas,
            request_timeout,
        })
    }

    /// Sends the `i`-th checkout to replica `i mod n` and classifies what
    /// came back; the timeout covers connecting, sending and the whole answer.
    pub(super) async fn send(&self, i: u64, product_id: u32) -> Outcome {
        let replica = &self.replicas[(i % self.replicas.len() as u64) as usize];
        let body = Bytes::from(format!(r#"{{"product_id":{product_id},"quantity":1}}"#));
        match tokio::time::timeout(self.request_timeout, replica.exchange(body)).await {
            Ok(Ok((status, body))) => classify(status, &body),
            Ok(Err(Failed)) => Outcome::Failed,
            Err(_) => Outcome::TimedOut,
        }
    }
}

/// The request failed without an answer.
struct Failed;

impl<E: std::error::Error> From<E> for Failed {
    fn from(_: E) -> Self {
        Failed
    }
}

type Connection = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One orders replica: where to connect, what to ask, idle connections.
struct Replica {
    /// `host:port`, resolved on every new connection.
    authority: String,
    host: HeaderValue,
    checkout: Uri,
    idle: Mutex<Vec<Connection>>,
    /// One permit per checkout using a connection: never more connections
    /// than permits, so an overloaded orders does not get a storm of new ones.
    connections: Semaphore,
}

impl Replica {
    fn new(base: &str, max_connections: usize) -> Result<Self, LoadError> {
        let url = endpoint(base, "checkout")?;
        let invalid = |reason: &str| LoadError::InvalidUrl {
            url: base.to_owned(),
            reason: reason.into(),
        };
        if url.scheme() != "http" {
            return Err(invalid("orders is reached over plain http"));
        }
        let host = url.host_str().ok_or_else(|| invalid("no host"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let host_header = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok(Self {
            authority: format!("{host}:{port}"),
            host: HeaderValue::from_str(&host_header).map_err(|_| invalid("host"))?,
            checkout: url.path().parse().map_err(|_| invalid("path"))?,
            idle: Mutex::new(Vec::new()),
            connections: Semaphore::new(max_connections),
        })
    }

    async fn exchange(&self, body: Bytes) -> Result<(u16, Bytes), Failed> {
        let _permit = self.connections.acquire().await?;
        let mut connection = self.connection().await?;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.checkout.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let response = connection.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        // Answered in full: the connection can carry the next checkout.
        self.idle
            .lock()
            .expect("idle connections lock")
            .push(connection);
        Ok((status, body))
    }

    /// An idle connection that is still open, or a new one.
    async fn connection(&self) -> Result<Connection, Failed> {
        loop {
            let idle = self.idle.lock().expect("idle connections lock").pop();
            let Some(mut connection) = idle else { break };
            if connection.is_closed() {
                continue;
            }
            if connection.ready().await.is_ok() {
                return Ok(connection);
            }
        }
        let stream = TcpStream::connect(&self.authority).await?;
        stream.set_nodelay(true)?;
        let (connection, driver) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = driver.await;
        });
        Ok(connection)
    }
}

/// An order id as orders writes it: a string, or a number read as its digits.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OrderId {
    Text(String),
    Number(u64),
}

impl From<OrderId> for String {
    fn from(id: OrderId) -> Self {
        match id {
            OrderId::Text(text) => text,
            OrderId::Number(number) => number.to_string(),
        }
    }
}

/// What a checkout answer means (docs/protocol.md): a 2xx with a `version`
/// is priced, a 2xx with only an `order_id` is accepted for later pricing.
pub(crate) fn classify(status: u16, body: &[u8]) -> Outcome {
    #[derive(Deserialize)]
    struct Answer {
        version: Option<u64>,
        order_id: Option<OrderId>,
    }
    if !(200..300).contains(&status) {
        return Outcome::Rejected { status };
    }
    match serde_json::from_slice::<Answer>(body) {
        Ok(Answer {
            version: Some(version),
            ..
        }) => Outcome::Priced { version },
        Ok(Answer {
            order_id: Some(order_id),
            ..
        }) => Outcome::Accepted {
            order_id: order_id.into(),
        },
        _ => Outcome::Malformed { status },
    }
}

/// What the checkout tasks share.
struct Shared {
    orders: Arc<Orders>,
    origin: Instant,
    counters: Arc<Counters>,
    records: Arc<Mutex<Vec<CheckoutRecord>>>,
}

/// Keeps the schedule: on its own thread ([`Sender::run`]) or as a task on
/// the runtime ([`Sender::run_in_runtime`]).
pub(super) struct Sender {
    pub runtime: tokio::runtime::Handle,
    pub orders: Arc<Orders>,
    pub origin: Instant,
    pub schedule: Schedule,
    pub products: u32,
    pub seed: u64,
    pub in_flight: Arc<Semaphore>,
    pub counters: Arc<Counters>,
    pub records: Arc<Mutex<Vec<CheckoutRecord>>>,
    pub stop: Arc<AtomicBool>,
}

impl Sender {
    /// Dispatches every checkout when it is due; returns where the schedule
    /// ended (its duration, or the first checkout not sent when stopped).
    pub(super) fn run(self) -> Duration {
        let shared = self.shared();
        let mut next = 0u64;
        let mut last_wake = Instant::now();
        loop {
            if let Some(end) = self.dispatch_due(&shared, &mut next) {
                return end;
            }
            let wake = (self.origin + self.schedule.offset(next)).max(last_wake + QUANTUM);
            let now = Instant::now();
            if wake > now {
                std::thread::sleep((wake - now).min(STOP_CHECK));
            }
            last_wake = Instant::now();
        }
    }

    /// The same schedule kept by a task on the runtime with tokio's timer
    /// (whole milliseconds): checkouts due within a millisecond go together.
    pub(super) async fn run_in_runtime(self) -> Duration {
        let shared = self.shared();
        let mut next = 0u64;
        loop {
            if let Some(end) = self.dispatch_due(&shared, &mut next) {
                return end;
            }
            let wake = self.origin + self.schedule.offset(next);
            tokio::time::sleep_until(wake.min(Instant::now() + STOP_CHECK).into()).await;
        }
    }

    fn shared(&self) -> Arc<Shared> {
        Arc::new(Shared {
            orders: self.orders.clone(),
            origin: self.origin,
            counters: self.counters.clone(),
            records: self.records.clone(),
        })
    }

    /// Sends every checkout due by now, from `next` on. Returns where the
    /// schedule ended once it is stopped or every checkout was sent.
    fn dispatch_due(&self, shared: &Arc<Shared>, next: &mut u64) -> Option<Duration> {
        if self.stop.load(Ordering::Relaxed) {
            return Some(self.schedule.offset(*next).min(self.schedule.duration()));
        }
        let due = self.schedule.due_by(self.origin.elapsed());
        while *next < due {
            self.dispatch(shared, *next);
            *next += 1;
        }
        (*next >= self.schedule.len()).then(|| self.schedule.duration())
    }

    fn dispatch(&self, shared: &Arc<Shared>, i: u64) {
        let scheduled = self.schedule.offset(i);
        let product_id = product_for(self.seed, i, self.products);
        self.counters.scheduled.fetch_add(1, Ordering::Relaxed);
        match self.in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                self.counters.in_flight.fetch_add(1, Ordering::Relaxed);
                self.runtime
                    .spawn(checkout(shared.clone(), i, scheduled, product_id, permit));
            }
            Err(_) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                shared
                    .records
                    .lock()
                    .expect("records lock")
                    .push(CheckoutRecord {
                        scheduled,
                        sent: None,
                        ended: None,
                        product_id,
                        outcome: Outcome::Dropped,
                    });
            }
        }
    }
}

async fn checkout(
    shared: Arc<Shared>,
    i: u64,
    scheduled: Duration,
    product_id: u32,
    permit: OwnedSemaphorePermit,
) {
    let sent = shared.origin.elapsed();
    let outcome = shared.orders.send(i, product_id).await;
    let ended = shared.origin.elapsed();
    let counters = &shared.counters;
    if outcome.is_ok() {
        counters.ok.fetch_add(1, Ordering::Relaxed);
    } else {
        counters.errors.fetch_add(1, Ordering::Relaxed);
    }
    if matches!(outcome, Outcome::Accepted { .. }) {
        counters.accepted.fetch_add(1, Ordering::Relaxed);
    }
    shared
        .records
        .lock()
        .expect("records lock")
        .push(CheckoutRecord {
            scheduled,
            sent: Some(sent),
            ended: Some(ended),
            product_id,
            outcome,
        });
    counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    drop(permit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_the_protocol() {
        let order = br#"{"order_id":"o-1","product_id":3,"quantity":1,"price_cents":1234,"version":7,"total_cents":1234,"status":"priced"}"#;
        assert_eq!(classify(200, order), Outcome::Priced { version: 7 });
        assert_eq!(
            classify(202, br#"{"order_id":"o-2","status":"pending"}"#),
            Outcome::Accepted {
                order_id: "o-2".into()
            }
        );
        assert_eq!(
            classify(202, br#"{"order_id":42,"status":"pending"}"#),
            Outcome::Accepted {
                order_id: "42".into()
            }
        );
        assert_eq!(
            classify(503, br#"{"error":"catalog down"}"#),
            Outcome::Rejected { status: 503 }
        );
        assert_eq!(classify(504, b""), Outcome::Rejected { status: 504 });
        assert_eq!(
            classify(200, b"not json"),
            Outcome::Malformed { status: 200 }
        );
        assert_eq!(
            classify(200, br#"{"status":"priced"}"#),
            Outcome::Malformed { status: 200 }
        );
    }

    #[test]
    fn endpoints_join_base_and_path() {
        assert_eq!(
            endpoint("http://127.0.0.1:8081/", "checkout")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8081/checkout"
        );
        assert_eq!(
            endpoint("http://orders:80", "checkout").unwrap().path(),
            "/checkout"
        );
        assert!(endpoint("127.0.0.1:8081", "checkout").is_err());
        assert!(endpoint("not a url", "checkout").is_err());
    }
}
