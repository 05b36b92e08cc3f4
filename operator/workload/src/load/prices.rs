//! The price updater: `PUT /products/{id}/price` on catalog at the update
//! rate, logging every acknowledged change for the staleness judge.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use tokio::sync::{Semaphore, watch};

use super::checkout::endpoint;
use super::schedule::{splitmix64, uniform_1_to};
use super::{Counters, LoadError, Schedule};
use crate::measure::PriceChange;

/// Price changes outstanding at once; more are counted as failed.
const MAX_IN_FLIGHT: usize = 64;
/// Mixed into the seed so price changes do not follow the checkouts' products.
const PRODUCT_STREAM: u64 = 0x5052_4943_4550_524F;
const PRICE_STREAM: u64 = 0x5052_4943_4543_4E54;

/// catalog's replicas, used round-robin.
pub(super) struct Catalog {
    client: reqwest::Client,
    bases: Vec<reqwest::Url>,
}

impl Catalog {
    pub(super) fn new(client: reqwest::Client, bases: &[String]) -> Result<Self, LoadError> {
        let bases = bases
            .iter()
            .map(|base| endpoint(base, ""))
            .collect::<Result<_, _>>()?;
        Ok(Self { client, bases })
    }

    /// Changes the price of `product_id`; the version catalog acknowledged, if it did.
    async fn change(&self, j: u64, product_id: u32, price_cents: u64) -> Option<u64> {
        #[derive(Deserialize)]
        struct Acknowledged {
            version: u64,
        }
        let base = &self.bases[(j % self.bases.len() as u64) as usize];
        let url = base.join(&format!("products/{product_id}/price")).ok()?;
        let response = self
            .client
            .put(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(format!(r#"{{"price_cents":{price_cents}}}"#))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = response.bytes().await.ok()?;
        serde_json::from_slice::<Acknowledged>(&body)
            .ok()
            .map(|ack| ack.version)
    }
}

pub(super) struct Plan {
    pub origin: Instant,
    pub schedule: Schedule,
    pub products: u32,
    pub seed: u64,
}

/// The `j`-th change: which product, and its new price in cents (1.00 to 1000.00).
pub(crate) fn change_for(seed: u64, j: u64, products: u32) -> (u32, u64) {
    let product_id = uniform_1_to(splitmix64(seed ^ PRODUCT_STREAM, j), products);
    let price_cents = 100 + splitmix64(seed ^ PRICE_STREAM, j) % 99_901;
    (product_id, price_cents)
}

/// Runs the changes until the schedule ends or `stop` is set; returns the
/// acknowledged changes and how many failed.
pub(super) async fn run(
    catalog: Catalog,
    plan: Plan,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> (Vec<PriceChange>, u64) {
    let catalog = Arc::new(catalog);
    let log = Arc::new(Mutex::new(Vec::new()));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for j in 0..plan.schedule.len() {
        let due = plan.origin + plan.schedule.offset(j);
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            counters
                .price_changes_failed
                .fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (product_id, price_cents) = change_for(plan.seed, j, plan.products);
        let (catalog, log, counters, origin) =
            (catalog.clone(), log.clone(), counters.clone(), plan.origin);
        tasks.spawn(async move {
            match catalog.change(j, product_id, price_cents).await {
                Some(version) => {
                    let acked = origin.elapsed();
                    log.lock().expect("price log lock").push(PriceChange {
                        product_id,
                        version,
                        acked,
                    });
                    counters.price_changes.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    counters
                        .price_changes_failed
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(permit);
        });
        // Reap finished tasks so the set stays small over a long run.
        while tasks.try_join_next().is_some() {}
    }
    // Changes in flight end within the client's timeout.
    while tasks.join_next().await.is_some() {}
    let changes = std::mem::take(&mut *log.lock().expect("price log lock"));
    (
        changes,
        counters.price_changes_failed.load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_pick_products_and_prices_in_range() {
        for j in 0..10_000 {
            let (product_id, price_cents) = change_for(7, j, 50);
            assert!((1..=50).contains(&product_id));
            assert!((100..=100_000).contains(&price_cents));
        }
        assert_eq!(change_for(7, 3, 50), change_for(7, 3, 50));
    }

    #[test]
    fn base_urls_join_the_price_path() {
        let base = endpoint("http://127.0.0.1:8080", "").unwrap();
        assert_eq!(
            base.join("products/4/price").unwrap().as_str(),
            "http://127.0.0.1:8080/products/4/price"
        );
        let base = endpoint("http://catalog/", "").unwrap();
        assert_eq!(
            base.join("products/4/price").unwrap().as_str(),
            "http://catalog/products/4/price"
        );
    }
}
