//! One pattern's services as local processes: catalog, then orders.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use commlab_api::Pattern;

use crate::{
    error::Result,
    infra::{NatsServer, PostgresServer, ServiceProcess, ServiceSpec},
    services::{catalog::CatalogConfig, orders::OrdersConfig},
};

/// The database every local topology's catalog uses in its server.
pub const CATALOG_DATABASE: &str = "catalog";

/// How to start one pattern's services.
#[derive(Clone, Debug)]
pub struct TopologyConfig {
    pub pattern: Pattern,
    /// The `commlab` binary.
    pub binary: PathBuf,
    /// catalog's database (and, for `SharedData`, orders').
    pub database_url: String,
    /// The broker, for the patterns that need one.
    pub broker_url: Option<String>,
    pub products: i64,
    pub orders_replicas: usize,
    pub upstream_timeout: Duration,
    pub poll_interval: Duration,
    pub poll_deadline: Duration,
    /// Keep the services' logs here; `None` keeps them only while they run.
    pub log_dir: Option<PathBuf>,
    /// Extra environment for every service, e.g. `RUST_LOG`.
    pub env: Vec<(String, String)>,
}

impl TopologyConfig {
    pub fn new(pattern: Pattern, binary: impl Into<PathBuf>) -> Self {
        TopologyConfig {
            pattern,
            binary: binary.into(),
            database_url: String::new(),
            broker_url: None,
            products: 1000,
            orders_replicas: 1,
            upstream_timeout: Duration::from_secs(1),
            poll_interval: Duration::from_millis(10),
            poll_deadline: Duration::from_secs(2),
            log_dir: None,
            env: Vec::new(),
        }
    }

    pub fn catalog_config(&self) -> CatalogConfig {
        let mut config = CatalogConfig::new(self.pattern, unbound(), &self.database_url);
        config.products = self.products;
        config.upstream_timeout = self.upstream_timeout;
        config.broker_url = self
            .broker_url
            .clone()
            .filter(|_| self.pattern.needs_broker());
        config
    }

    /// orders replica `replica` (from 1), calling catalog at `catalog_url`.
    pub fn orders_config(&self, replica: usize, catalog_url: &str) -> OrdersConfig {
        let mut config = OrdersConfig::new(self.pattern, unbound());
        config.replica_id = replica.to_string();
        config.upstream_timeout = self.upstream_timeout;
        config.poll_interval = self.poll_interval;
        config.poll_deadline = self.poll_deadline;
        match self.pattern {
            Pattern::SharedData => config.database_url = Some(self.database_url.clone()),
            Pattern::AsyncMessaging | Pattern::CacheWithUpdateEvents => {
                config.broker_url = self.broker_url.clone();
            }
            Pattern::DirectApiCall | Pattern::AsyncPolling | Pattern::CacheWithApiUpdates => {
                config.catalog_url = Some(catalog_url.to_owned());
            }
        }
        config
    }

    fn spec(&self, mut spec: ServiceSpec) -> ServiceSpec {
        spec.log_dir = self.log_dir.clone();
        spec.env = self.env.clone();
        spec
    }
}

/// Port 0: the spec picks a free port.
fn unbound() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// catalog and the orders replicas of one pattern, running.
pub struct Topology {
    pub pattern: Pattern,
    pub orders: Vec<ServiceProcess>,
    pub catalog: ServiceProcess,
}

impl Topology {
    /// Starts catalog and waits until it is ready (schema, seed, streams),
    /// then each orders replica; returns when all are ready.
    pub async fn launch(config: &TopologyConfig) -> Result<Self> {
        let catalog = ServiceProcess::launch(config.spec(ServiceSpec::catalog(
            &config.binary,
            &config.catalog_config(),
        )))
        .await?;
        let mut orders = Vec::with_capacity(config.orders_replicas);
        for replica in 1..=config.orders_replicas.max(1) {
            let orders_config = config.orders_config(replica, &catalog.url());
            let spec = config.spec(ServiceSpec::orders(&config.binary, &orders_config));
            orders.push(ServiceProcess::launch(spec).await?);
        }
        Ok(Topology {
            pattern: config.pattern,
            orders,
            catalog,
        })
    }

    /// The first orders replica's URL (where a single-replica load goes).
    pub fn orders_url(&self) -> String {
        self.orders[0].url()
    }

    pub fn catalog_url(&self) -> String {
        self.catalog.url()
    }
}

/// Everything one pattern needs on this machine: its own PostgreSQL, NATS
/// when the pattern needs a broker, and its services. Dropping it stops all,
/// services first.
pub struct LocalStack {
    pub topology: Topology,
    pub nats: Option<NatsServer>,
    pub postgres: PostgresServer,
}

impl LocalStack {
    /// Starts the servers and the services of `config.pattern`; the database
    /// and broker URLs in `config` are replaced by the local servers'.
    pub async fn launch(mut config: TopologyConfig) -> Result<Self> {
        let postgres = PostgresServer::launch().await?;
        config.database_url = postgres.create_database(CATALOG_DATABASE).await?;
        let nats = match config.pattern.needs_broker() {
            true => Some(NatsServer::launch().await?),
            false => None,
        };
        config.broker_url = nats.as_ref().map(NatsServer::url);
        let topology = Topology::launch(&config).await?;
        Ok(LocalStack {
            topology,
            nats,
            postgres,
        })
    }
}
