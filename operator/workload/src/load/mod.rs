//! The load generator: checkouts at a constant arrival rate (open model),
//! price changes through catalog's API, and, for `AsyncMessaging`, the
//! completions orders publishes on `orders.completed`.
//!
//! # Using it
//!
//! ```no_run
//! # async fn example() -> Result<(), commlab_workload::load::LoadError> {
//! use std::time::Duration;
//! use commlab_workload::load::{LoadConfig, LoadRun};
//!
//! let workload = commlab_api::Workload::default();
//! let mut config = LoadConfig::from_workload(
//!     &workload,
//!     vec!["http://127.0.0.1:8081".into()], // orders replicas, round-robin
//!     vec!["http://127.0.0.1:8080".into()], // catalog, for price changes
//! );
//! config.broker = Some("nats://127.0.0.1:4222".into()); // AsyncMessaging only
//!
//! let handle = LoadRun::start(config).await?;
//! let origin = handle.origin(); // time zero of every offset below
//! let mut progress = handle.progress(); // a watch channel, updated every 100 ms
//! tokio::spawn(async move {
//!     while progress.changed().await.is_ok() {
//!         let p = progress.borrow().clone();
//!         println!("{}/{} ok {} errors {}", p.scheduled, p.total, p.ok, p.errors);
//!     }
//! });
//! // ... inject faults at `origin + warmup + fault.at` ...
//! let recording = handle.finish().await?;
//!
//! let warmup = workload.warmup.as_std();
//! let baseline = recording.phase(warmup..warmup + Duration::from_secs(20));
//! let timeline = recording.timeline(warmup);
//! # let _ = (origin, baseline, timeline);
//! # Ok(())
//! # }
//! ```
//!
//! [`LoadRun::start`] subscribes to `orders.completed` (when a broker is
//! given), fixes the origin and starts sending at once; the schedule covers
//! `config.duration` (the warm-up included: the engine cuts the warm-up off
//! when it asks for phases). [`LoadHandle::finish`] waits for the schedule to
//! end, for the checkouts in flight (each ends within the request timeout),
//! and for outstanding completions (at most `completion_grace`), then returns
//! the [`Recording`] that [`crate::measure`] cuts into phases, faults and a
//! timeline. [`LoadHandle::stop`] ends the schedule early.
//!
//! # How it sends
//!
//! - The `i`-th checkout is due at `origin + i / rate` and is handed to the
//!   tokio runtime as its own task, without waiting for earlier ones. Up to
//!   [`PRECISE_SCHEDULE_MAX_RATE`] a dedicated thread keeps the schedule with
//!   `nanosleep` precision (sends within tens of microseconds of their time);
//!   above it a runtime task keeps it with tokio's timer, sending each
//!   millisecond's checkouts together (up to about 1 ms late, counted).
//! - At most `max_in_flight` checkouts are outstanding; one that comes due
//!   while the bound is reached is not sent and is recorded as
//!   [`Outcome::Dropped`] (like k6's dropped iterations), so it counts
//!   against availability.
//! - Latency is measured from the *scheduled* time, so a stalled server or a
//!   late sender cannot hide (no coordinated omission); the actual send time
//!   is recorded too, for the service time and for how far sends fell behind.
//! - Orders replicas are used round-robin; each checkout picks a product
//!   uniformly from `1..=products` with a seeded SplitMix64, the same for the
//!   same seed and index whatever the timing.
//! - Checkouts go over keep-alive HTTP/1 connections (hyper's client
//!   connection, a pool per replica, as many connections as checkouts in
//!   flight); price changes use a shared `reqwest` client. The request
//!   timeout covers connect, send and the whole answer.

mod checkout;
mod completions;
mod prices;
pub mod schedule;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, oneshot, watch};

use crate::measure::RecordingInput;
pub use crate::measure::{CheckoutRecord, Completion, Outcome, PriceChange, Recording};
pub use schedule::{Schedule, product_for};

/// How long `finish` waits beyond the request timeout for checkouts in flight.
const DRAIN_MARGIN: Duration = Duration::from_secs(5);
/// Up to this rate a dedicated thread keeps the schedule with `nanosleep`
/// precision; above it a task on the runtime keeps it with tokio's
/// millisecond timer, sending the checkouts due in each millisecond together
/// (as oha does): one thread wake-up per checkout costs more CPU than the
/// checkout itself at such rates (see `bench/loadgen-vs-oha.sh`).
pub const PRECISE_SCHEDULE_MAX_RATE: f64 = 2000.0;
/// The default number of connections to each orders replica never goes
/// above this (1024 checkouts in flight is half a second at 2000/s).
pub const MAX_CONNECTIONS_CAP: usize = 1024;
/// The default bound on checkouts in flight never goes above this.
pub const MAX_IN_FLIGHT_CAP: usize = 8192;

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Base URLs of orders replicas (`http://127.0.0.1:8081`); round-robin.
    pub orders: Vec<String>,
    /// Base URLs of catalog replicas for price changes; round-robin. Empty:
    /// no price changes.
    pub catalog: Vec<String>,
    /// NATS URL to follow `orders.completed` (`AsyncMessaging`).
    pub broker: Option<String>,
    /// Checkouts per second.
    pub rate: f64,
    /// How long the schedule runs (warm-up included).
    pub duration: Duration,
    /// Checkouts pick a product uniformly from `1..=products`.
    pub products: u32,
    /// Price changes per second; 0 for none.
    pub update_rate: f64,
    /// A checkout (or price change) not answered within this has failed.
    pub request_timeout: Duration,
    /// The most checkouts outstanding at once; more are dropped.
    pub max_in_flight: usize,
    /// The most connections to each orders replica, opened as needed; a
    /// checkout that finds them all busy waits for one (the wait counts in
    /// its latency and its timeout). Defaults to `max_in_flight` (so the
    /// open model holds) up to [`MAX_CONNECTIONS_CAP`], which keeps an
    /// overloaded orders from a storm of new connections (the benchmark gives
    /// oha and us the same cap).
    pub max_connections: usize,
    /// How long `finish` waits for completions of accepted checkouts after
    /// the last answer.
    pub completion_grace: Duration,
    /// Seed of the product and price choices.
    pub seed: u64,
}

impl LoadConfig {
    /// The workload's rate, products, update rate and timeout, over warm-up
    /// plus duration. The in-flight bound allows every checkout of one
    /// request timeout to be outstanding (rate × timeout + 64, at most
    /// [`MAX_IN_FLIGHT_CAP`]).
    pub fn from_workload(
        workload: &commlab_api::Workload,
        orders: Vec<String>,
        catalog: Vec<String>,
    ) -> Self {
        let mut config = Self::new(
            orders,
            workload.rate,
            workload.warmup.as_std() + workload.duration.as_std(),
        );
        config.catalog = catalog;
        config.products = workload.products;
        config.update_rate = workload.update_rate;
        config.request_timeout = workload.request_timeout.as_std();
        config.max_in_flight = default_max_in_flight(config.rate, config.request_timeout);
        config.max_connections = config.max_in_flight.min(MAX_CONNECTIONS_CAP);
        config
    }

    /// Checkouts only, at `rate` for `duration`, with defaults for the rest:
    /// 1000 products, no price changes, no broker, a 2 s timeout, seed 1.
    pub fn new(orders: Vec<String>, rate: f64, duration: Duration) -> Self {
        let request_timeout = Duration::from_secs(2);
        let max_in_flight = default_max_in_flight(rate, request_timeout);
        Self {
            orders,
            catalog: Vec::new(),
            broker: None,
            rate,
            duration,
            products: 1000,
            update_rate: 0.0,
            request_timeout,
            max_in_flight,
            max_connections: max_in_flight.min(MAX_CONNECTIONS_CAP),
            completion_grace: Duration::from_secs(5),
            seed: 1,
        }
    }

    fn validate(&self) -> Result<(), LoadError> {
        let invalid = |message: String| Err(LoadError::InvalidConfig(message));
        if self.orders.is_empty() {
            return invalid("no orders URL to send checkouts to".into());
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return invalid(format!("rate must be a positive number, not {}", self.rate));
        }
        if !(self.update_rate.is_finite() && self.update_rate >= 0.0) {
            return invalid(format!(
                "update rate must be zero or more, not {}",
                self.update_rate
            ));
        }
        if self.update_rate > 0.0 && self.catalog.is_empty() {
            return invalid("price changes need a catalog URL".into());
        }
        if self.products == 0 {
            return invalid("products must be at least 1".into());
        }
        if self.max_in_flight == 0
            || self.max_in_flight > Semaphore::MAX_PERMITS.min(u32::MAX as usize)
        {
            return invalid(format!(
                "max in flight must be at least 1, not {}",
                self.max_in_flight
            ));
        }
        if self.max_connections == 0 || self.max_connections > Semaphore::MAX_PERMITS {
            return invalid(format!(
                "max connections must be at least 1, not {}",
                self.max_connections
            ));
        }
        if self.request_timeout.is_zero() {
            return invalid("request timeout must be more than 0".into());
        }
        Ok(())
    }
}

/// rate × timeout + 64, capped at [`MAX_IN_FLIGHT_CAP`].
pub fn default_max_in_flight(rate: f64, request_timeout: Duration) -> usize {
    let outstanding = (rate.max(0.0) * request_timeout.as_secs_f64()).ceil() as usize;
    (outstanding + 64).min(MAX_IN_FLIGHT_CAP)
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid load: {0}")]
    InvalidConfig(String),
    #[error("invalid URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("cannot follow orders.completed on {url}: {reason}")]
    Broker { url: String, reason: String },
    #[error("the load generator's schedule thread failed: {0}")]
    Scheduler(String),
}

impl LoadError {
    /// A bounded label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            LoadError::InvalidConfig(_) | LoadError::InvalidUrl { .. } => "invalid-config",
            LoadError::Client(_) => "client",
            LoadError::Broker { .. } => "broker",
            LoadError::Scheduler(_) => "scheduler",
        }
    }
}

/// Where a run stands, for progress bars. Published every 100 ms and once
/// more when the run is finished.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// Since the origin.
    pub elapsed: Duration,
    /// Checkouts the whole schedule holds.
    pub total: u64,
    /// Checkouts whose time has come (sent or dropped).
    pub scheduled: u64,
    /// Answered 2xx within the timeout.
    pub ok: u64,
    /// Answered otherwise, timed out or failed.
    pub errors: u64,
    /// Not sent: the in-flight bound was reached.
    pub dropped: u64,
    pub in_flight: u64,
    pub price_changes: u64,
    pub price_changes_failed: u64,
    /// Completions seen on `orders.completed`.
    pub completions: u64,
    /// The schedule has ended (or was stopped).
    pub schedule_done: bool,
}

/// Counters shared by the tasks of one run.
#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub scheduled: AtomicU64,
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    pub dropped: AtomicU64,
    pub in_flight: AtomicU64,
    pub accepted: AtomicU64,
    pub price_changes: AtomicU64,
    pub price_changes_failed: AtomicU64,
    pub completions: AtomicU64,
}

impl Counters {
    fn progress(&self, elapsed: Duration, total: u64, schedule_done: bool) -> Progress {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Progress {
            elapsed,
            total,
            scheduled: read(&self.scheduled),
            ok: read(&self.ok),
            errors: read(&self.errors),
            dropped: read(&self.dropped),
            in_flight: read(&self.in_flight),
            price_changes: read(&self.price_changes),
            price_changes_failed: read(&self.price_changes_failed),
            completions: read(&self.completions),
            schedule_done,
        }
    }
}

/// The entry point: `LoadRun::start(config)`.
pub struct LoadRun;

impl LoadRun {
    /// Validates `config`, subscribes to `orders.completed` when a broker is
    /// given, and starts the schedule now. Must be called inside a tokio
    /// runtime (multi-threaded for best accuracy).
    pub async fn start(config: LoadConfig) -> Result<LoadHandle, LoadError> {
        config.validate()?;
        let client = checkout::http_client(&config)?;
        let orders = checkout::Orders::new(
            &config.orders,
            config.request_timeout,
            config.max_connections,
        )?;
        let catalog = prices::Catalog::new(client, &config.catalog)?;
        let listener = match &config.broker {
            Some(url) => Some(completions::Listener::subscribe(url).await?),
            None => None,
        };

        let counters = Arc::new(Counters::default());
        let origin = Instant::now();
        let schedule = Schedule::new(config.rate, config.duration);
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_flag = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
        let records = Arc::new(Mutex::new(Vec::with_capacity(
            schedule.len().min(4_000_000) as usize,
        )));

        let completions = listener.map(|listener| listener.run(origin, counters.clone()));
        let price_updater = (config.update_rate > 0.0).then(|| {
            tokio::spawn(prices::run(
                catalog,
                prices::Plan {
                    origin,
                    schedule: Schedule::new(config.update_rate, config.duration),
                    products: config.products,
                    seed: config.seed,
                },
                counters.clone(),
                stop_rx.clone(),
            ))
        });

        let (done_tx, done_rx) = oneshot::channel();
        let sender = checkout::Sender {
            runtime: tokio::runtime::Handle::current(),
            orders: Arc::new(orders),
            origin,
            schedule,
            products: config.products,
            seed: config.seed,
            in_flight: in_flight.clone(),
            counters: counters.clone(),
            records: records.clone(),
            stop: stop_flag.clone(),
        };
        if schedule.rate() > PRECISE_SCHEDULE_MAX_RATE {
            tokio::spawn(async move {
                let end = sender.run_in_runtime().await;
                let _ = done_tx.send(end);
            });
        } else {
            std::thread::Builder::new()
                .name("commlab-load-schedule".into())
                .spawn(move || {
                    let end = sender.run();
                    let _ = done_tx.send(end);
                })
                .map_err(|error| LoadError::Scheduler(error.to_string()))?;
        }

        let (progress_tx, progress_rx) =
            watch::channel(counters.progress(Duration::ZERO, schedule.len(), false));
        let progress_tx = Arc::new(progress_tx);
        let ticker = tokio::spawn(publish_progress(
            progress_tx.clone(),
            counters.clone(),
            origin,
            schedule.len(),
            stop_rx,
        ));

        Ok(LoadHandle {
            config,
            origin,
            schedule,
            counters,
            records,
            in_flight,
            done: Some(done_rx),
            stop_flag,
            stop_tx,
            price_updater,
            completions,
            progress_tx,
            progress_rx,
            ticker,
        })
    }
}

async fn publish_progress(
    progress: Arc<watch::Sender<Progress>>,
    counters: Arc<Counters>,
    origin: Instant,
    total: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        let scheduled = counters.scheduled.load(Ordering::Relaxed);
        progress.send_replace(counters.progress(origin.elapsed(), total, scheduled >= total));
    }
}

/// A running load. Dropping it without [`LoadHandle::finish`] stops the schedule.
pub struct LoadHandle {
    config: LoadConfig,
    origin: Instant,
    schedule: Schedule,
    counters: Arc<Counters>,
    records: Arc<Mutex<Vec<CheckoutRecord>>>,
    in_flight: Arc<Semaphore>,
    done: Option<oneshot::Receiver<Duration>>,
    stop_flag: Arc<AtomicBool>,
    stop_tx: watch::Sender<bool>,
    price_updater: Option<tokio::task::JoinHandle<(Vec<PriceChange>, u64)>>,
    completions: Option<completions::Running>,
    progress_tx: Arc<watch::Sender<Progress>>,
    progress_rx: watch::Receiver<Progress>,
    ticker: tokio::task::JoinHandle<()>,
}

impl LoadHandle {
    /// Time zero: the `i`-th checkout is due at `origin + i / rate`, and every
    /// offset in the [`Recording`] counts from here.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The schedule being kept.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    pub fn config(&self) -> &LoadConfig {
        &self.config
    }

    /// Progress, updated every 100 ms; the last value is published by `finish`.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress_rx.clone()
    }

    /// Ends the schedule early; checkouts already sent still finish.
    pub fn stop(&self) {
        self.stop_flag.store(true, Ordering::Relaxed);
    }

    /// Waits for the schedule to end, for every checkout in flight, and for
    /// outstanding completions (at most `completion_grace`), then returns
    /// everything that was recorded.
    pub async fn finish(mut self) -> Result<Recording, LoadError> {
        let done = self.done.take().expect("finish runs once");
        let schedule_end = done.await.map_err(|_| {
            LoadError::Scheduler("the schedule thread ended without an answer".into())
        })?;

        // Every checkout in flight holds a permit and ends within the timeout.
        let all = self.config.max_in_flight as u32;
        let drained = tokio::time::timeout(
            self.config.request_timeout + DRAIN_MARGIN,
            self.in_flight.acquire_many(all),
        )
        .await;
        if !matches!(drained, Ok(Ok(_))) {
            tracing::warn!(
                in_flight = self.counters.in_flight.load(Ordering::Relaxed),
                "checkouts still in flight after the request timeout; leaving them out"
            );
        }

        // Price changes stop with the checkouts.
        let _ = self.stop_tx.send(true);
        let (price_changes, price_changes_failed) = match self.price_updater.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => (Vec::new(), 0),
        };

        let checkouts = std::mem::take(&mut *self.records.lock().expect("records lock"));
        let completions = match self.completions.take() {
            Some(running) => {
                let accepted = checkouts
                    .iter()
                    .filter_map(|checkout| match &checkout.outcome {
                        Outcome::Accepted { order_id } => Some(order_id.clone()),
                        _ => None,
                    })
                    .collect();
                running.finish(accepted, self.config.completion_grace).await
            }
            None => Vec::new(),
        };
        self.ticker.abort();
        self.progress_tx.send_replace(self.counters.progress(
            self.origin.elapsed(),
            self.schedule.len(),
            true,
        ));
        Ok(Recording::new(RecordingInput {
            checkouts,
            price_changes,
            price_changes_failed,
            completions,
            schedule_end,
        }))
    }
}

impl Drop for LoadHandle {
    fn drop(&mut self) {
        self.stop_flag.store(true, Ordering::Relaxed);
        let _ = self.stop_tx.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_bound_covers_one_timeout_of_checkouts() {
        assert_eq!(default_max_in_flight(200.0, Duration::from_secs(2)), 464);
        assert_eq!(
            default_max_in_flight(20_000.0, Duration::from_secs(2)),
            MAX_IN_FLIGHT_CAP
        );
        assert_eq!(default_max_in_flight(0.5, Duration::from_millis(10)), 65);
    }

    #[test]
    fn from_workload_covers_warmup_and_duration() {
        let workload = commlab_api::Workload::default();
        let config =
            LoadConfig::from_workload(&workload, vec!["http://o".into()], vec!["http://c".into()]);
        assert_eq!(config.duration, Duration::from_secs(70));
        assert_eq!(config.rate, 200.0);
        assert_eq!(config.update_rate, 5.0);
        assert_eq!(config.request_timeout, Duration::from_secs(2));
        assert_eq!(config.max_connections, config.max_in_flight);
        let fast = LoadConfig::new(vec!["http://o".into()], 5000.0, Duration::from_secs(1));
        assert_eq!(fast.max_connections, MAX_CONNECTIONS_CAP);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn invalid_configs_are_refused_with_a_reason() {
        let base = LoadConfig::new(vec!["http://o".into()], 10.0, Duration::from_secs(1));
        let mut no_orders = base.clone();
        no_orders.orders.clear();
        let mut zero_rate = base.clone();
        zero_rate.rate = 0.0;
        let mut updates_without_catalog = base.clone();
        updates_without_catalog.update_rate = 1.0;
        let mut no_products = base.clone();
        no_products.products = 0;
        let mut no_room = base.clone();
        no_room.max_in_flight = 0;
        for config in [
            no_orders,
            zero_rate,
            updates_without_catalog,
            no_products,
            no_room,
        ] {
            let error = config.validate().unwrap_err();
            assert_eq!(error.category(), "invalid-config", "{error}");
        }
    }
}
