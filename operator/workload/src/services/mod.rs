//! orders and catalog, the two services of the reference scenario, for all six
//! patterns (docs/protocol.md is the contract).
//!
//! `commlab serve catalog|orders` calls [`catalog::serve`] and [`orders::serve`].

pub mod broker;
pub mod catalog;
pub mod database;
pub mod http;
pub mod orders;
pub mod protocol;
pub mod tasks;

use std::time::Duration;

/// Parses a flag such as `10ms`, `1s` or `1m30s` (the manifests' duration format).
pub fn parse_duration(text: &str) -> Result<Duration, commlab_api::DurationError> {
    text.parse::<commlab_api::Duration>().map(|d| d.as_std())
}
