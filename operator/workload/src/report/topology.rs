//! What a pattern deploys and which network links it adds: the facts the
//! complexity score counts. A pure function of the pattern and its
//! components, so it is the same locally and in a cluster.
//!
//! Not counted, because every pattern has them alike: the clients' HTTP calls
//! to orders and the load generator's price changes through catalog's API.

use commlab_api::{BrokerKind, CacheKind, Components, Pattern};
use serde::{Deserialize, Serialize};

/// A deployed part of the reference architecture.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    Orders,
    Catalog,
    Database,
    Broker,
    Cache,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Orders => "orders",
            Component::Catalog => "catalog",
            Component::Database => "database",
            Component::Broker => "broker",
            Component::Cache => "cache",
        }
    }
}

/// A protocol spoken on a link between components.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "PostgreSQL")]
    Postgres,
    #[serde(rename = "NATS")]
    Nats,
    #[serde(rename = "AMQP")]
    Amqp,
    #[serde(rename = "RESP")]
    Redis,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Postgres => "PostgreSQL",
            Protocol::Nats => "NATS",
            Protocol::Amqp => "AMQP",
            Protocol::Redis => "RESP",
        }
    }
}

/// Which work a link serves.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkPath {
    /// Needed before orders can answer a checkout.
    Response,
    /// Needed before a checkout is priced, after orders answered
    /// (asynchronous completion).
    Completion,
    /// Keeps data in sync, independent of any one checkout.
    Background,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeployedComponent {
    pub name: Component,
    /// What runs it, e.g. `PostgreSQL` or `NATS JetStream`.
    pub technology: String,
    pub replicas: u32,
}

/// A network dependency: `from` opens connections to `to`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    pub from: Component,
    pub to: Component,
    pub protocol: Protocol,
    pub path: LinkPath,
    /// The exchange does not complete within one request and its answer:
    /// something must correlate, retry or redeliver (polling, messages, pushes).
    pub asynchronous: bool,
    pub purpose: String,
}

/// What a pattern deploys and how its parts talk.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    pub components: Vec<DeployedComponent>,
    pub links: Vec<Link>,
    /// The distinct protocols on `links`.
    pub protocols: Vec<Protocol>,
}

impl Topology {
    /// The topology of `pattern` with `components` (broker and cache kinds,
    /// replicas). A broker is deployed only for the patterns that need one,
    /// a shared cache only for the cache patterns.
    pub fn of(pattern: Pattern, components: &Components) -> Self {
        use Component::*;
        use LinkPath::*;

        let replicas = &components.replicas;
        let mut deployed = vec![
            DeployedComponent {
                name: Orders,
                technology: "commlab orders".into(),
                replicas: replicas.orders.max(1) as u32,
            },
            DeployedComponent {
                name: Catalog,
                technology: "commlab catalog".into(),
                replicas: replicas.catalog.max(1) as u32,
            },
            DeployedComponent {
                name: Database,
                technology: "PostgreSQL".into(),
                replicas: 1,
            },
        ];
        let (broker, broker_technology) = match components
            .broker
            .as_ref()
            .map(|b| b.kind)
            .unwrap_or_default()
        {
            BrokerKind::Nats => (Protocol::Nats, "NATS JetStream"),
            BrokerKind::RabbitMq => (Protocol::Amqp, "RabbitMQ"),
        };
        if pattern.needs_broker() {
            deployed.push(DeployedComponent {
                name: Broker,
                technology: broker_technology.into(),
                replicas: 1,
            });
        }
        let link = |from, to, protocol, path, asynchronous, purpose: &str| Link {
            from,
            to,
            protocol,
            path,
            asynchronous,
            purpose: purpose.to_owned(),
        };
        let mut links = match pattern {
            Pattern::SharedData => vec![
                link(
                    Orders,
                    Database,
                    Protocol::Postgres,
                    Response,
                    false,
                    "reads catalog's products table on every checkout",
                ),
                link(
                    Catalog,
                    Database,
                    Protocol::Postgres,
                    Background,
                    false,
                    "owns the products table and writes price changes",
                ),
            ],
            Pattern::DirectApiCall => vec![
                link(
                    Orders,
                    Catalog,
                    Protocol::Http,
                    Response,
                    false,
                    "GET /products/{id} on every checkout",
                ),
                link(
                    Catalog,
                    Database,
                    Protocol::Postgres,
                    Response,
                    false,
                    "reads the price it answers with",
                ),
            ],
            Pattern::AsyncPolling => vec![
                link(
                    Orders,
                    Catalog,
                    Protocol::Http,
                    Response,
                    true,
                    "POST /price-quotes, then polls the quote until it is done",
                ),
                link(
                    Catalog,
                    Database,
                    Protocol::Postgres,
                    Response,
                    false,
                    "reads the price while working the quote",
                ),
            ],
            Pattern::AsyncMessaging => vec![
                link(
                    Orders,
                    Broker,
                    broker,
                    Response,
                    true,
                    "publishes a price request per checkout and consumes the replies",
                ),
                link(
                    Catalog,
                    Broker,
                    broker,
                    Completion,
                    true,
                    "consumes price requests and publishes the replies",
                ),
                link(
                    Catalog,
                    Database,
                    Protocol::Postgres,
                    Completion,
                    false,
                    "reads the price it replies with",
                ),
            ],
            Pattern::CacheWithApiUpdates => vec![
                link(
                    Orders,
                    Catalog,
                    Protocol::Http,
                    Background,
                    false,
                    "loads every product at start and registers as a subscriber",
                ),
                link(
                    Catalog,
                    Orders,
                    Protocol::Http,
                    Background,
                    true,
                    "pushes every price change to each orders replica",
                ),
                link(
                    Catalog,
                    Database,
                    Protocol::Postgres,
                    Background,
                    false,
                    "owns the products and remembers the subscribers",
                ),
            ],
            Pattern::CacheWithUpdateEvents => vec![
                link(
                    Catalog,
                    Broker,
                    broker,
                    Background,
                    true,
                    "publishes every price change as an event",
                ),
                link(
                    Orders,
                    Broker,
                    broker,
                    Background,
                    true,
                    "replays the latest price per product at start, then follows changes",
                ),
                link(
                    Catalog,
                    Database,
                    Protocol::Postgres,
                    Background,
                    false,
                    "owns the products",
                ),
            ],
        };
        let shared_cache = components
            .cache
            .as_ref()
            .is_some_and(|c| c.kind == CacheKind::Redis);
        if pattern.caches_prices() && shared_cache {
            deployed.push(DeployedComponent {
                name: Cache,
                technology: "Redis".into(),
                replicas: 1,
            });
            links.push(link(
                Orders,
                Cache,
                Protocol::Redis,
                Response,
                false,
                "reads the cached price on every checkout",
            ));
        }
        let mut protocols: Vec<Protocol> = links.iter().map(|l| l.protocol).collect();
        protocols.sort();
        protocols.dedup();
        Self {
            components: deployed,
            links,
            protocols,
        }
    }

    /// The links orders' answer or the checkout's pricing waits on.
    pub fn request_path(&self) -> impl Iterator<Item = &Link> {
        self.links.iter().filter(|l| l.path != LinkPath::Background)
    }

    /// The links with an asynchronous exchange.
    pub fn asynchronous_links(&self) -> impl Iterator<Item = &Link> {
        self.links.iter().filter(|l| l.asynchronous)
    }

    /// Moving parts someone must build, deploy and debug: one per deployed
    /// component, per link, per distinct protocol and per asynchronous link.
    pub fn complexity_units(&self) -> u32 {
        (self.components.len()
            + self.links.len()
            + self.protocols.len()
            + self.asynchronous_links().count()) as u32
    }

    /// Replicas of orders and catalog together: what a capacity is divided by.
    pub fn service_replicas(&self) -> u32 {
        self.components
            .iter()
            .filter(|c| matches!(c.name, Component::Orders | Component::Catalog))
            .map(|c| c.replicas)
            .sum()
    }

    pub fn has(&self, component: Component) -> bool {
        self.components.iter().any(|c| c.name == component)
    }
}

#[cfg(test)]
mod tests {
    use commlab_api::{Broker, Cache, Replicas};

    use super::*;

    fn units(pattern: Pattern) -> u32 {
        Topology::of(pattern, &Components::default()).complexity_units()
    }

    #[test]
    fn every_pattern_has_its_components() {
        for pattern in Pattern::ALL {
            let topology = Topology::of(pattern, &Components::default());
            assert!(topology.has(Component::Orders) && topology.has(Component::Catalog));
            assert!(topology.has(Component::Database));
            assert_eq!(
                topology.has(Component::Broker),
                pattern.needs_broker(),
                "{pattern}"
            );
            assert!(
                !topology.has(Component::Cache),
                "in-process cache is no component"
            );
            for link in &topology.links {
                assert!(
                    topology.has(link.from) && topology.has(link.to),
                    "{pattern}: {link:?}"
                );
            }
        }
    }

    #[test]
    fn request_paths_follow_the_article() {
        let path = |pattern| {
            Topology::of(pattern, &Components::default())
                .request_path()
                .map(|l| (l.from, l.to))
                .collect::<Vec<_>>()
        };
        use Component::*;
        assert_eq!(path(Pattern::SharedData), [(Orders, Database)]);
        assert_eq!(
            path(Pattern::DirectApiCall),
            [(Orders, Catalog), (Catalog, Database)]
        );
        assert_eq!(
            path(Pattern::AsyncMessaging),
            [(Orders, Broker), (Catalog, Broker), (Catalog, Database)]
        );
        assert!(path(Pattern::CacheWithApiUpdates).is_empty());
        assert!(path(Pattern::CacheWithUpdateEvents).is_empty());
    }

    #[test]
    fn complexity_units_rank_patterns_as_counted() {
        assert_eq!(units(Pattern::SharedData), 6);
        assert_eq!(units(Pattern::DirectApiCall), 7);
        assert_eq!(units(Pattern::AsyncPolling), 8);
        assert_eq!(units(Pattern::CacheWithApiUpdates), 9);
        assert_eq!(units(Pattern::AsyncMessaging), 11);
        assert_eq!(units(Pattern::CacheWithUpdateEvents), 11);
    }

    #[test]
    fn a_shared_redis_cache_adds_a_component_a_link_and_a_protocol() {
        let redis = Components {
            cache: Some(Cache {
                kind: CacheKind::Redis,
            }),
            ..Components::default()
        };
        let topology = Topology::of(Pattern::CacheWithUpdateEvents, &redis);
        assert!(topology.has(Component::Cache));
        assert_eq!(
            topology.complexity_units(),
            units(Pattern::CacheWithUpdateEvents) + 3
        );
        assert_eq!(topology.request_path().count(), 1);
        // Patterns without a cache ignore the cache kind.
        assert_eq!(
            Topology::of(Pattern::DirectApiCall, &redis).complexity_units(),
            7
        );
    }

    #[test]
    fn broker_kind_picks_the_protocol() {
        let rabbit = Components {
            broker: Some(Broker {
                kind: BrokerKind::RabbitMq,
            }),
            ..Components::default()
        };
        let topology = Topology::of(Pattern::AsyncMessaging, &rabbit);
        assert_eq!(topology.protocols, [Protocol::Postgres, Protocol::Amqp]);
        assert_eq!(topology.components[3].technology, "RabbitMQ");
        // A broker given to a pattern without one deploys nothing.
        assert!(!Topology::of(Pattern::SharedData, &rabbit).has(Component::Broker));
    }

    #[test]
    fn replicas_are_counted_for_orders_and_catalog() {
        let components = Components {
            replicas: Replicas {
                orders: 3,
                catalog: 2,
            },
            ..Components::default()
        };
        assert_eq!(
            Topology::of(Pattern::DirectApiCall, &components).service_replicas(),
            5
        );
        assert_eq!(
            Topology::of(Pattern::DirectApiCall, &Components::default()).service_replicas(),
            2
        );
    }

    #[test]
    fn topology_serializes_readably() {
        let json =
            serde_json::to_value(Topology::of(Pattern::DirectApiCall, &Components::default()))
                .unwrap();
        assert_eq!(json["links"][0]["from"], "orders");
        assert_eq!(json["links"][0]["protocol"], "HTTP");
        assert_eq!(json["links"][0]["path"], "Response");
        assert_eq!(json["protocols"], serde_json::json!(["HTTP", "PostgreSQL"]));
    }
}
