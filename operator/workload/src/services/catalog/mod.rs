//! catalog: owns products and their prices in its own PostgreSQL database,
//! and tells orders about them in the way the pattern prescribes.

pub mod api;
pub mod events;
pub mod outbox;
pub mod push;
pub mod quotes;
pub mod requests;
pub mod store;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use commlab_api::Pattern;
use tokio::net::TcpListener;

use crate::{
    error::{Error, Result},
    services::{
        broker::{Broker, catalog_prices_stream},
        catalog::{
            api::Catalog,
            events::PriceEvents,
            outbox::{Outbox, RetryPolicy},
            push::Subscribers,
            quotes::Quotes,
            store::Store,
        },
        database,
        http::{self, Readiness},
        parse_duration,
        tasks::{Tasks, until_ok},
    },
};

/// Connections catalog keeps to its database.
const DATABASE_CONNECTIONS: usize = 16;

/// `commlab serve catalog` flags; each also reads `COMMLAB_<FLAG>`.
#[derive(Clone, Debug, clap::Args)]
pub struct CatalogConfig {
    /// The communication pattern of the experiment.
    #[arg(long, env = "COMMLAB_PATTERN")]
    pub pattern: Pattern,
    /// Address to serve HTTP on.
    #[arg(long, env = "COMMLAB_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// catalog's PostgreSQL database, e.g. postgres://postgres@127.0.0.1:5432/catalog.
    #[arg(long, env = "COMMLAB_DATABASE_URL")]
    pub database_url: String,
    /// NATS server, e.g. nats://127.0.0.1:4222 (AsyncMessaging, CacheWithUpdateEvents).
    #[arg(long, env = "COMMLAB_BROKER_URL")]
    pub broker_url: Option<String>,
    /// Products `1..=N` to seed when the table is empty.
    #[arg(long, env = "COMMLAB_PRODUCTS", default_value_t = 1000)]
    pub products: i64,
    /// Bound on each database call, broker call and push to orders.
    #[arg(long, env = "COMMLAB_UPSTREAM_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,
}

impl CatalogConfig {
    /// The flags for `pattern` with everything else at its default.
    pub fn new(pattern: Pattern, listen: SocketAddr, database_url: impl Into<String>) -> Self {
        CatalogConfig {
            pattern,
            listen,
            database_url: database_url.into(),
            broker_url: None,
            products: 1000,
            upstream_timeout: Duration::from_secs(1),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.pattern.needs_broker() && self.broker_url.is_none() {
            return Err(Error::Config(format!(
                "--broker-url is required for {}",
                self.pattern
            )));
        }
        if self.products < 1 {
            return Err(Error::Config("--products must be at least 1".into()));
        }
        Ok(())
    }
}

/// Binds `config.listen` and serves until `shutdown` completes.
pub async fn serve(
    config: CatalogConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = http::bind(config.listen).await?;
    serve_on(listener, config, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0).
pub async fn serve_on(
    listener: TcpListener,
    config: CatalogConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.validate()?;
    let timeout = config.upstream_timeout;
    tracing::info!(pattern = %config.pattern, "starting catalog");
    let store = Store::new(
        database::pool(&config.database_url, timeout, DATABASE_CONNECTIONS)?,
        timeout,
    );
    let tasks = Tasks::default();
    let ready = Readiness::default();
    let broker = match &config.broker_url {
        Some(url) if config.pattern.needs_broker() => {
            Some(Broker::connect(url, "catalog", timeout).await?)
        }
        _ => None,
    };
    let subscribers = (config.pattern == Pattern::CacheWithApiUpdates)
        .then(|| {
            http::client(timeout).map(|client| Arc::new(Subscribers::new(client, tasks.clone())))
        })
        .transpose()?;
    let events = match (&broker, config.pattern) {
        (Some(broker), Pattern::CacheWithUpdateEvents) => {
            let (outbox, worker) = Outbox::new(PriceEvents(broker.clone()), RetryPolicy::EVENTS);
            tasks.spawn(worker);
            Some(outbox)
        }
        _ => None,
    };
    let quotes = Arc::new(Quotes::default());
    tasks.spawn(quotes.clone().sweep_forever());
    tasks.spawn(start_up(
        config.clone(),
        store.clone(),
        broker,
        subscribers.clone(),
        ready.clone(),
    ));

    let catalog = Catalog {
        store,
        quotes,
        subscribers,
        events,
        ready,
    };
    let result = http::serve(listener, api::router(catalog), shutdown).await;
    tasks.abort_all();
    result
}

/// Prepares the database, then what the pattern needs, then marks catalog ready.
async fn start_up(
    config: CatalogConfig,
    store: Store,
    broker: Option<Broker>,
    subscribers: Option<Arc<Subscribers>>,
    ready: Readiness,
) {
    until_ok("preparing the catalog database", || {
        store.migrate_and_seed(config.products)
    })
    .await;
    match (config.pattern, broker, subscribers) {
        (Pattern::CacheWithApiUpdates, _, Some(subscribers)) => {
            // Known subscribers get every product again: a change committed
            // but not pushed before a crash is repaired here.
            let urls = until_ok("loading subscribers", || store.subscribers()).await;
            let products = until_ok("loading products", || store.products()).await;
            for url in &urls {
                subscribers.add(url);
                subscribers.publish_to(url, &products);
            }
            ready.set_ready();
        }
        (Pattern::CacheWithUpdateEvents, Some(broker), _) => {
            until_ok("creating the price stream", || {
                broker.ensure_stream(catalog_prices_stream())
            })
            .await;
            let products = until_ok("loading products", || store.products()).await;
            until_ok("publishing every price", || {
                events::publish_all(&broker, &products)
            })
            .await;
            tracing::info!(products = products.len(), "published every price");
            ready.set_ready();
        }
        (Pattern::AsyncMessaging, Some(broker), _) => {
            requests::answer_forever(broker, store, ready).await;
        }
        _ => ready.set_ready(),
    }
}
