//! orders: serves `POST /checkout` and gets the price from catalog in the
//! way the pattern prescribes (see [`pricing::PriceSource`]).

pub mod api;
pub mod api_updates;
pub mod book;
pub mod cache;
pub mod catalog_client;
pub mod direct_api;
pub mod messaging;
pub mod polling;
pub mod pricing;
pub mod shared_data;
pub mod update_events;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use commlab_api::Pattern;
use tokio::net::TcpListener;

use crate::{
    error::{Error, Result},
    services::{
        broker::Broker,
        database,
        http::{self, Readiness},
        orders::{
            api::Orders, book::OrderBook, cache::PriceCache, catalog_client::CatalogClient,
            direct_api::CatalogApi, messaging::PriceRequests, polling::PriceQuotes,
            pricing::Checkout, shared_data::SharedDatabase,
        },
        parse_duration,
        tasks::Tasks,
    },
};

/// Connections orders keeps to catalog's database (`SharedData`).
const DATABASE_CONNECTIONS: usize = 16;

/// `commlab serve orders` flags; each also reads `COMMLAB_<FLAG>`.
#[derive(Clone, Debug, clap::Args)]
pub struct OrdersConfig {
    /// The communication pattern of the experiment.
    #[arg(long, env = "COMMLAB_PATTERN")]
    pub pattern: Pattern,
    /// Address to serve HTTP on.
    #[arg(long, env = "COMMLAB_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// catalog's base URL (DirectApiCall, AsyncPolling, CacheWithApiUpdates).
    #[arg(long, env = "COMMLAB_CATALOG_URL")]
    pub catalog_url: Option<String>,
    /// catalog's PostgreSQL database (SharedData).
    #[arg(long, env = "COMMLAB_DATABASE_URL")]
    pub database_url: Option<String>,
    /// NATS server (AsyncMessaging, CacheWithUpdateEvents).
    #[arg(long, env = "COMMLAB_BROKER_URL")]
    pub broker_url: Option<String>,
    /// The URL catalog pushes to (CacheWithApiUpdates); defaults to http://LISTEN.
    #[arg(long, env = "COMMLAB_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Bound on each call to catalog, the database or the broker.
    #[arg(long, env = "COMMLAB_UPSTREAM_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,
    /// Time between two polls of a price quote (AsyncPolling).
    #[arg(long, env = "COMMLAB_POLL_INTERVAL", default_value = "10ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Longest wait for a price quote (AsyncPolling).
    #[arg(long, env = "COMMLAB_POLL_DEADLINE", default_value = "2s", value_parser = parse_duration)]
    pub poll_deadline: Duration,
    /// Names this replica's reply subject and durable consumer (AsyncMessaging):
    /// letters, digits, `-` and `_`.
    #[arg(long, env = "COMMLAB_REPLICA_ID", default_value = "0")]
    pub replica_id: String,
}

impl OrdersConfig {
    /// The flags for `pattern` with everything else at its default.
    pub fn new(pattern: Pattern, listen: SocketAddr) -> Self {
        OrdersConfig {
            pattern,
            listen,
            catalog_url: None,
            database_url: None,
            broker_url: None,
            advertise_url: None,
            upstream_timeout: Duration::from_secs(1),
            poll_interval: Duration::from_millis(10),
            poll_deadline: Duration::from_secs(2),
            replica_id: "0".into(),
        }
    }

    fn require<'a>(&self, value: &'a Option<String>, flag: &str) -> Result<&'a str> {
        value
            .as_deref()
            .ok_or_else(|| Error::Config(format!("--{flag} is required for {}", self.pattern)))
    }

    fn advertise_url(&self) -> Result<String> {
        match &self.advertise_url {
            Some(url) => Ok(url.trim_end_matches('/').to_owned()),
            None if self.listen.ip().is_unspecified() => Err(Error::Config(format!(
                "--advertise-url is required for {} when listening on {}",
                self.pattern, self.listen
            ))),
            None => Ok(format!("http://{}", self.listen)),
        }
    }

    fn validate(&self) -> Result<()> {
        let valid_id = !self.replica_id.is_empty()
            && self
                .replica_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_id {
            return Err(Error::Config(format!(
                "--replica-id `{}` may only hold letters, digits, `-` and `_`",
                self.replica_id
            )));
        }
        Ok(())
    }
}

/// Binds `config.listen` and serves until `shutdown` completes.
pub async fn serve(
    config: OrdersConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = http::bind(config.listen).await?;
    serve_on(listener, config, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0).
pub async fn serve_on(
    listener: TcpListener,
    config: OrdersConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.validate()?;
    tracing::info!(pattern = %config.pattern, replica = %config.replica_id, "starting orders");
    let tasks = Tasks::default();
    let ready = Readiness::default();
    let book = Arc::new(OrderBook::default());
    tasks.spawn(book.clone().sweep_forever());
    let (checkout, cache) = start_pricing(&config, &tasks, &ready, &book).await?;
    let orders = Orders {
        checkout,
        cache,
        book,
        ready,
    };
    let result = http::serve(listener, api::router(orders), shutdown).await;
    tasks.abort_all();
    result
}

/// Builds the pattern's way of pricing and spawns its start-up; nothing here
/// waits for catalog, the database or the broker to be up.
async fn start_pricing(
    config: &OrdersConfig,
    tasks: &Tasks,
    ready: &Readiness,
    book: &Arc<OrderBook>,
) -> Result<(Checkout, Option<Arc<PriceCache>>)> {
    let timeout = config.upstream_timeout;
    let catalog =
        || CatalogClient::new(config.require(&config.catalog_url, "catalog-url")?, timeout);
    let broker = || async {
        Broker::connect(
            config.require(&config.broker_url, "broker-url")?,
            "orders",
            timeout,
        )
        .await
    };
    Ok(match config.pattern {
        Pattern::SharedData => {
            let url = config.require(&config.database_url, "database-url")?;
            let pool = database::pool(url, timeout, DATABASE_CONNECTIONS)?;
            ready.set_ready();
            (
                Checkout::Priced(Arc::new(SharedDatabase { pool, timeout })),
                None,
            )
        }
        Pattern::DirectApiCall => {
            ready.set_ready();
            (Checkout::Priced(Arc::new(CatalogApi(catalog()?))), None)
        }
        Pattern::AsyncPolling => {
            let quotes = PriceQuotes {
                catalog: catalog()?,
                poll_interval: config.poll_interval,
                poll_deadline: config.poll_deadline,
            };
            ready.set_ready();
            (Checkout::Priced(Arc::new(quotes)), None)
        }
        Pattern::AsyncMessaging => {
            let broker = broker().await?;
            let replica_id = config.replica_id.clone();
            tasks.spawn(messaging::follow_replies(
                broker.clone(),
                replica_id.clone(),
                book.clone(),
                ready.clone(),
            ));
            (
                Checkout::Messaging(Arc::new(PriceRequests {
                    broker,
                    replica_id,
                    book: book.clone(),
                })),
                None,
            )
        }
        Pattern::CacheWithApiUpdates => {
            let cache = Arc::new(PriceCache::default());
            let advertise_url = config.advertise_url()?;
            tasks.spawn(api_updates::join_catalog(
                catalog()?,
                advertise_url,
                cache.clone(),
                ready.clone(),
            ));
            (Checkout::Priced(cache.clone()), Some(cache))
        }
        Pattern::CacheWithUpdateEvents => {
            let cache = Arc::new(PriceCache::default());
            tasks.spawn(update_events::follow_price_events(
                broker().await?,
                cache.clone(),
                ready.clone(),
            ));
            (Checkout::Priced(cache.clone()), Some(cache))
        }
    })
}
