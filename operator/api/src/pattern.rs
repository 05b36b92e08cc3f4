//! The six communication patterns and the vocabulary of faults, as in
//! "Comparing Techniques for Communicating Between Services" (Steve Smith, 2021).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How `orders` gets the current price of a product from `catalog`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Pattern {
    /// orders reads catalog's table directly in the shared PostgreSQL.
    SharedData,
    /// orders calls `GET catalog/products/{id}` on every checkout.
    DirectApiCall,
    /// orders asks catalog for a quote (`202` + `Location`) and polls until it is done.
    AsyncPolling,
    /// orders accepts the checkout at once and completes it when catalog's reply message arrives.
    AsyncMessaging,
    /// orders serves from an in-process cache that catalog updates through orders' API.
    CacheWithApiUpdates,
    /// orders serves from an in-process cache fed by catalog's change events on the broker.
    CacheWithUpdateEvents,
}

impl Pattern {
    pub const ALL: [Pattern; 6] = [
        Pattern::SharedData,
        Pattern::DirectApiCall,
        Pattern::AsyncPolling,
        Pattern::AsyncMessaging,
        Pattern::CacheWithApiUpdates,
        Pattern::CacheWithUpdateEvents,
    ];

    /// Whether the pattern needs a message broker between the services.
    pub fn needs_broker(self) -> bool {
        matches!(
            self,
            Pattern::AsyncMessaging | Pattern::CacheWithUpdateEvents
        )
    }

    /// Whether orders answers before the checkout is priced, so completion
    /// latency differs from response latency.
    pub fn completes_asynchronously(self) -> bool {
        matches!(self, Pattern::AsyncMessaging)
    }

    /// Whether orders serves prices from a local cache.
    pub fn caches_prices(self) -> bool {
        matches!(
            self,
            Pattern::CacheWithApiUpdates | Pattern::CacheWithUpdateEvents
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::SharedData => "SharedData",
            Pattern::DirectApiCall => "DirectApiCall",
            Pattern::AsyncPolling => "AsyncPolling",
            Pattern::AsyncMessaging => "AsyncMessaging",
            Pattern::CacheWithApiUpdates => "CacheWithApiUpdates",
            Pattern::CacheWithUpdateEvents => "CacheWithUpdateEvents",
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Pattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Pattern::ALL.iter().map(|p| p.as_str()).collect();
                format!(
                    "unknown pattern `{s}`: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// What a fault does to its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum FaultKind {
    /// The target is down for the fault's duration, then comes back.
    Outage,
    /// The target is killed and restarted at once, as a Deployment would.
    Kill,
    /// Traffic to the target gets extra latency (and optional jitter).
    Delay,
    /// Connections to the target are blackholed.
    Partition,
}

/// The component a fault hits.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Orders,
    Catalog,
    Broker,
    Database,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Orders => "orders",
            Target::Catalog => "catalog",
            Target::Broker => "broker",
            Target::Database => "database",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
