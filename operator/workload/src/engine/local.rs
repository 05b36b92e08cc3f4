//! The local platform: every component a process on this machine, on
//! loopback, for `commlab compare` and the integration tests.
//!
//! # What runs
//!
//! - Once per platform (one `commlab compare`): a throw-away PostgreSQL
//!   server, and a NATS server with JetStream when a pattern needs a broker.
//! - Per pattern, fresh: a database of its own in that server
//!   (`catalog_<n>_<pattern>`), JetStream without any stream (every stream
//!   is deleted before a broker pattern starts, so the services create
//!   theirs empty), and fault proxies:
//!
//! ```text
//!   load ──▶ [orders proxy]¹ ──▶ orders ──▶ [catalog proxy] ──▶ catalog
//!                                  │                              │
//!                                  └──▶ [database proxy] ◀────────┤──▶ PostgreSQL
//!                                  └──▶ [broker proxy]   ◀────────┘──▶ NATS
//! ```
//!
//!   Every connection orders and catalog open to each other, to the
//!   database and to the broker goes through a proxy, which is how `Delay`
//!   and `Partition` are applied. ¹ orders gets a proxy only when the plan
//!   delays or partitions orders; otherwise the load generator talks to it
//!   directly, one hop less on the measured path. The load generator
//!   changes prices on catalog directly and follows completions on NATS
//!   directly: it is the observer, not part of the system under test.
//! - The services are `commlab serve catalog|orders` processes of the
//!   current executable (the same binary), catalog first (it creates the
//!   schema, seeds products and creates streams), then orders.
//!
//! `Outage` stops a process (catalog, orders, PostgreSQL or NATS) and starts
//! it again on the same port with the same data; `Kill` sends `SIGKILL` and
//! starts it again at once.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use commlab_api::{BrokerKind, CacheKind, FaultKind, Pattern, Target};
use commlab_chaos::{ChaosError, FaultBackend, FaultProxy, LocalBackend, LocalProcess};
use tokio::sync::Mutex;

use super::{Deployment, EngineError, Event, Experiment, Observer, Platform, Targets};
use crate::infra::{
    NatsServer, PostgresServer, Restartable, ServiceProcess, ServiceSpec, TopologyConfig,
    free_port, postgres::SUPERUSER,
};

/// How to run patterns locally.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// The `commlab` executable that serves catalog and orders.
    pub binary: PathBuf,
    /// Start NATS with PostgreSQL (otherwise at the first pattern that needs it).
    pub broker: bool,
    /// Keep the services' and servers' logs in `<log_dir>/<pattern>/`;
    /// `None` removes them with the processes.
    pub log_dir: Option<PathBuf>,
    /// Extra environment for the services, e.g. `RUST_LOG`.
    pub service_env: Vec<(String, String)>,
}

impl LocalOptions {
    /// The services of `binary`, logs removed with the processes, `RUST_LOG=warn` for them.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            broker: true,
            log_dir: None,
            service_env: vec![("RUST_LOG".into(), "warn".into())],
        }
    }

    /// The current executable: `commlab` runs its own services.
    pub fn current_exe() -> Result<Self, EngineError> {
        let binary = std::env::current_exe().map_err(|source| EngineError::Io {
            context: "finding the commlab executable".into(),
            source,
        })?;
        Ok(Self::new(binary))
    }
}

/// What the local engine cannot deploy yet, named by field.
pub fn check_supported(experiment: &Experiment) -> Result<(), EngineError> {
    let components = &experiment.components;
    if experiment.pattern.needs_broker()
        && components
            .broker
            .as_ref()
            .is_some_and(|b| b.kind == BrokerKind::RabbitMq)
    {
        return Err(EngineError::Invalid(
            "spec.components.broker.kind: RabbitMq is not supported locally yet; use Nats".into(),
        ));
    }
    if experiment.pattern.caches_prices()
        && components
            .cache
            .as_ref()
            .is_some_and(|c| c.kind == CacheKind::Redis)
    {
        return Err(EngineError::Invalid(
            "spec.components.cache.kind: Redis is not supported locally yet; use InProcess".into(),
        ));
    }
    Ok(())
}

/// PostgreSQL and NATS shared by the patterns of one run.
pub struct LocalPlatform {
    options: LocalOptions,
    postgres: Arc<Mutex<PostgresServer>>,
    nats: Option<Arc<Mutex<NatsServer>>>,
    observer: Arc<dyn Observer>,
    deployed: usize,
}

impl LocalPlatform {
    /// Starts PostgreSQL (and NATS, when `options.broker`), in parallel.
    /// A missing server names the Debian package to install.
    pub async fn start(
        options: LocalOptions,
        observer: Arc<dyn Observer>,
    ) -> Result<Self, EngineError> {
        let started = Instant::now();
        observer.event(Event::PlatformStarting {
            what: if options.broker {
                "PostgreSQL and NATS".into()
            } else {
                "PostgreSQL".into()
            },
        });
        let (postgres, nats) = if options.broker {
            let (postgres, nats) =
                tokio::try_join!(PostgresServer::launch(), NatsServer::launch())?;
            (postgres, Some(nats))
        } else {
            (PostgresServer::launch().await?, None)
        };
        observer.event(Event::PlatformReady {
            took: started.elapsed(),
        });
        Ok(Self {
            options,
            postgres: Arc::new(Mutex::new(postgres)),
            nats: nats.map(|nats| Arc::new(Mutex::new(nats))),
            observer,
            deployed: 0,
        })
    }

    /// Stops NATS and PostgreSQL and removes their data.
    pub async fn shutdown(self) -> Result<(), EngineError> {
        let mut first_error = None;
        if let Some(nats) = &self.nats
            && let Err(error) = nats.lock().await.stop().await
        {
            first_error.get_or_insert(error);
        }
        if let Err(error) = self.postgres.lock().await.stop().await {
            first_error.get_or_insert(error);
        }
        first_error.map_or(Ok(()), |error| Err(error.into()))
    }

    /// PostgreSQL's port (for tests that look inside).
    pub async fn postgres_port(&self) -> u16 {
        self.postgres.lock().await.port()
    }

    /// Starts NATS if no pattern needed it yet; starts PostgreSQL and NATS
    /// again if a fault left one down.
    async fn servers(&mut self, broker: bool) -> Result<(u16, Option<u16>), EngineError> {
        let postgres_port = {
            let mut postgres = self.postgres.lock().await;
            if !postgres.is_running() {
                postgres.start().await?;
            }
            postgres.port()
        };
        if broker && self.nats.is_none() {
            self.observer.event(Event::PlatformStarting {
                what: "NATS".into(),
            });
            self.nats = Some(Arc::new(Mutex::new(NatsServer::launch().await?)));
        }
        let nats_port = match (&self.nats, broker) {
            (Some(nats), true) => {
                let mut nats = nats.lock().await;
                if !nats.is_running() {
                    nats.start().await?;
                }
                Some(nats.port())
            }
            _ => None,
        };
        Ok((postgres_port, nats_port))
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

async fn proxy_to(port: u16) -> Result<FaultProxy, EngineError> {
    FaultProxy::bind(loopback(0), loopback(port))
        .await
        .map_err(|source| EngineError::Fault {
            fault: format!("proxy to port {port}"),
            action: "bind",
            source: Box::new(source),
        })
}

fn proxy_port(proxy: &FaultProxy) -> u16 {
    proxy.local_addr().port()
}

#[async_trait]
impl Platform for LocalPlatform {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn deploy(
        &mut self,
        experiment: &Experiment,
    ) -> Result<Box<dyn Deployment>, EngineError> {
        check_supported(experiment)?;
        let pattern = experiment.pattern;
        let (postgres_port, nats_port) = self.servers(pattern.needs_broker()).await?;
        self.deployed += 1;

        // A database of its own, through a proxy.
        let database = format!("catalog_{}_{}", self.deployed, snake_case(pattern));
        self.postgres
            .lock()
            .await
            .create_database(&database)
            .await?;
        let mut proxies = Vec::new();
        let database_proxy = proxy_to(postgres_port).await?;
        let database_url = format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{database}",
            proxy_port(&database_proxy)
        );

        // The broker, empty, through a proxy.
        let mut broker_proxy = None;
        if let Some(nats_port) = nats_port {
            delete_streams(&format!("nats://127.0.0.1:{nats_port}")).await?;
            broker_proxy = Some(proxy_to(nats_port).await?);
        }

        let log_dir = self
            .options
            .log_dir
            .as_ref()
            .map(|dir| dir.join(format!("{}-{}", self.deployed, snake_case(pattern))));
        let mut topology = TopologyConfig::new(pattern, &self.options.binary);
        topology.database_url = database_url;
        topology.broker_url = broker_proxy
            .as_ref()
            .map(|proxy| format!("nats://127.0.0.1:{}", proxy_port(proxy)));
        topology.products = i64::from(experiment.workload.products);
        topology.log_dir = log_dir.clone();
        topology.env = self.options.service_env.clone();
        let replicas = &experiment.components.replicas;

        // catalog first: it creates the schema, seeds and creates streams.
        let mut catalog = Vec::new();
        let mut catalog_proxies = Vec::new();
        for replica in 1..=replicas.catalog.max(1) {
            let port = free_port()?;
            let proxy = proxy_to(port).await?;
            let mut config = topology.catalog_config();
            config.listen = loopback(port);
            let mut spec = ServiceSpec::catalog(&self.options.binary, &config);
            spec.name = format!("catalog-{replica}");
            spec.log_dir = log_dir.clone();
            spec.env = topology.env.clone();
            catalog.push(Arc::new(LocalService::new(
                ServiceProcess::launch(spec).await?,
            )));
            catalog_proxies.push(proxy);
        }

        let proxy_orders = experiment.chaos.iter().any(|fault| {
            fault.target == Target::Orders
                && matches!(fault.fault, FaultKind::Delay | FaultKind::Partition)
        });
        let mut orders = Vec::new();
        let mut orders_urls = Vec::new();
        let mut orders_proxies = Vec::new();
        for replica in 1..=replicas.orders.max(1) as usize {
            let catalog_proxy = &catalog_proxies[(replica - 1) % catalog_proxies.len()];
            let catalog_url = format!("http://127.0.0.1:{}", proxy_port(catalog_proxy));
            let port = free_port()?;
            let mut config = topology.orders_config(replica, &catalog_url);
            config.listen = loopback(port);
            let mut url = format!("http://127.0.0.1:{port}");
            if proxy_orders {
                let proxy = proxy_to(port).await?;
                url = format!("http://127.0.0.1:{}", proxy_port(&proxy));
                orders_proxies.push(proxy);
            }
            // catalog pushes (CacheWithApiUpdates) take the path clients take.
            config.advertise_url = Some(url.clone());
            let mut spec = ServiceSpec::orders(&self.options.binary, &config);
            spec.log_dir = log_dir.clone();
            spec.env = topology.env.clone();
            orders.push(Arc::new(LocalService::new(
                ServiceProcess::launch(spec).await?,
            )));
            orders_urls.push(url);
        }

        let mut backend = LocalBackend::new()
            .with_process(
                Target::Database,
                Arc::new(LocalServer(self.postgres.clone())),
            )
            .with_proxy(Target::Database, database_proxy.handle());
        for (service, proxy) in catalog.iter().zip(&catalog_proxies) {
            backend = backend
                .with_process(Target::Catalog, service.clone())
                .with_proxy(Target::Catalog, proxy.handle());
        }
        for service in &orders {
            backend = backend.with_process(Target::Orders, service.clone());
        }
        for proxy in &orders_proxies {
            backend = backend.with_proxy(Target::Orders, proxy.handle());
        }
        if let (Some(nats), Some(proxy)) = (&self.nats, &broker_proxy) {
            backend = backend
                .with_process(Target::Broker, Arc::new(LocalServer(nats.clone())))
                .with_proxy(Target::Broker, proxy.handle());
        }

        let mut catalog_urls = Vec::new();
        for service in &catalog {
            catalog_urls.push(service.url().await);
        }
        let targets = Targets {
            orders: orders_urls,
            catalog: catalog_urls,
            broker: nats_port.map(|port| format!("nats://127.0.0.1:{port}")),
        };
        proxies.push(database_proxy);
        proxies.extend(catalog_proxies);
        proxies.extend(orders_proxies);
        proxies.extend(broker_proxy);
        Ok(Box::new(LocalDeployment {
            targets,
            backend: Arc::new(backend),
            orders,
            catalog,
            proxies,
        }))
    }
}

/// `CacheWithUpdateEvents` → `cache_with_update_events`.
fn snake_case(pattern: Pattern) -> String {
    let mut out = String::new();
    for (i, c) in pattern.as_str().chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Deletes every JetStream stream, so a pattern starts without the previous
/// one's messages and consumers. Raw API requests: the typed client expects
/// fields Debian's nats-server 2.9 does not send.
async fn delete_streams(url: &str) -> Result<(), EngineError> {
    let failed = |detail: String| EngineError::NotReady {
        what: format!("NATS at {url}"),
        after: Duration::from_secs(10),
        detail,
    };
    let work = async {
        let client = async_nats::connect(url).await.map_err(|e| e.to_string())?;
        let reply = client
            .request("$JS.API.STREAM.NAMES", "".into())
            .await
            .map_err(|e| e.to_string())?;
        let names: serde_json::Value =
            serde_json::from_slice(&reply.payload).map_err(|e| e.to_string())?;
        let streams = names["streams"].as_array().cloned().unwrap_or_default();
        for name in streams.iter().filter_map(|n| n.as_str()) {
            client
                .request(format!("$JS.API.STREAM.DELETE.{name}"), "".into())
                .await
                .map_err(|e| format!("deleting stream {name}: {e}"))?;
        }
        Ok::<_, String>(())
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| failed("timed out deleting the previous pattern's streams".into()))?
        .map_err(failed)
}

/// One pattern's processes and proxies.
struct LocalDeployment {
    targets: Targets,
    backend: Arc<LocalBackend>,
    orders: Vec<Arc<LocalService>>,
    catalog: Vec<Arc<LocalService>>,
    proxies: Vec<FaultProxy>,
}

#[async_trait]
impl Deployment for LocalDeployment {
    fn targets(&self) -> &Targets {
        &self.targets
    }

    fn fault_backend(&self) -> Arc<dyn FaultBackend> {
        self.backend.clone()
    }

    async fn teardown(self: Box<Self>) -> Result<(), EngineError> {
        let mut first_error = None;
        // Restarts whatever a fault left down (PostgreSQL and NATS are shared).
        if let Err(source) = self.backend.cleanup().await {
            first_error.get_or_insert(EngineError::Fault {
                fault: "cleanup".into(),
                action: "undo",
                source: Box::new(source),
            });
        }
        // orders first, so it does not see catalog go away; replicas together.
        for group in [&self.orders, &self.catalog] {
            let stops = group.iter().map(|service| service.shut_down());
            for result in futures::future::join_all(stops).await {
                if let Err(error) = result {
                    first_error.get_or_insert(error.into());
                }
            }
        }
        for proxy in self.proxies {
            proxy.shutdown().await;
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A catalog or orders process the local backend can stop, kill and start.
struct LocalService {
    name: String,
    process: Mutex<ServiceProcess>,
}

impl LocalService {
    fn new(process: ServiceProcess) -> Self {
        Self {
            name: process.name().to_owned(),
            process: Mutex::new(process),
        }
    }

    async fn url(&self) -> String {
        self.process.lock().await.url()
    }

    async fn shut_down(&self) -> Result<(), crate::error::Error> {
        self.process.lock().await.stop().await
    }

    fn error(&self, action: &'static str, error: crate::error::Error) -> ChaosError {
        ChaosError::process(self.name.clone(), action, error)
    }
}

#[async_trait]
impl LocalProcess for LocalService {
    async fn stop(&self) -> Result<(), ChaosError> {
        let mut process = self.process.lock().await;
        process.stop().await.map_err(|e| self.error("stop", e))
    }

    async fn kill(&self) -> Result<(), ChaosError> {
        let mut process = self.process.lock().await;
        process.kill().await.map_err(|e| self.error("kill", e))
    }

    /// Starts the process without waiting until it is ready: how long that
    /// takes is the recovery the experiment measures.
    async fn start(&self) -> Result<(), ChaosError> {
        let mut process = self.process.lock().await;
        if process.is_running() {
            return Ok(());
        }
        process.spawn().map_err(|e| self.error("start", e))
    }
}

/// A shared server as a fault target: PostgreSQL for `database`, NATS for
/// `broker`, for `Outage` and `Kill`.
struct LocalServer<S>(Arc<Mutex<S>>);

#[async_trait]
impl<S: Restartable + 'static> LocalProcess for LocalServer<S> {
    async fn stop(&self) -> Result<(), ChaosError> {
        let mut server = self.0.lock().await;
        let binary = server.binary();
        server
            .stop()
            .await
            .map_err(|e| ChaosError::process(binary, "stop", e))
    }

    async fn kill(&self) -> Result<(), ChaosError> {
        let mut server = self.0.lock().await;
        let binary = server.binary();
        server
            .kill()
            .await
            .map_err(|e| ChaosError::process(binary, "kill", e))
    }

    /// Returns once the server serves again (its own start waits).
    async fn start(&self) -> Result<(), ChaosError> {
        let mut server = self.0.lock().await;
        if server.is_running() {
            return Ok(());
        }
        let binary = server.binary();
        server
            .start()
            .await
            .map_err(|e| ChaosError::process(binary, "start", e))
    }
}

#[cfg(test)]
mod tests {
    use commlab_api::{Cache, Components, Workload};

    use super::*;

    #[test]
    fn database_names_are_snake_case() {
        assert_eq!(
            snake_case(Pattern::CacheWithUpdateEvents),
            "cache_with_update_events"
        );
        assert_eq!(snake_case(Pattern::SharedData), "shared_data");
    }

    #[test]
    fn redis_is_refused_naming_the_field() {
        let mut experiment =
            Experiment::new(Pattern::CacheWithApiUpdates, Workload::default(), &[]);
        experiment.components = Components {
            cache: Some(Cache {
                kind: CacheKind::Redis,
            }),
            ..Components::default()
        };
        let error = check_supported(&experiment).unwrap_err();
        assert!(
            error.to_string().starts_with("spec.components.cache.kind"),
            "{error}"
        );
        // A cache given to a pattern without one is ignored, as the operator does.
        experiment.pattern = Pattern::DirectApiCall;
        assert!(check_supported(&experiment).is_ok());
    }
}
