//! Delivery of price changes after they are committed, to one destination (a
//! subscriber's API, or the broker), with retries.
//!
//! An outbox keeps at most one pending change per product, the newest: a
//! consumer only needs the latest price, so coalescing bounds the memory by
//! the number of products however long the destination is down, and it never
//! delivers a version older than one it already delivered.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use tokio::sync::Notify;

use crate::{
    error::Result,
    services::protocol::{Product, ProductId},
};

/// Where an outbox delivers: one attempt per call.
pub trait Destination: Send + Sync + 'static {
    fn deliver<'a>(&'a self, product: &'a Product) -> BoxFuture<'a, Result<()>>;
    /// For logs.
    fn describe(&self) -> String;
}

/// How long an outbox keeps trying.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts per change before it is dropped; `None` keeps trying.
    pub max_attempts: Option<u32>,
}

impl RetryPolicy {
    /// Pushes to a subscriber: retried for about 20 s (100 ms doubling up to
    /// 5 s, 10 attempts). A subscriber that is gone longer reloads everything
    /// when it starts again, and an endless queue to a dead subscriber would
    /// only cost catalog.
    pub const PUSH: RetryPolicy = RetryPolicy {
        first_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(5),
        max_attempts: Some(10),
    };

    /// Change events on the broker: kept until the broker takes them, since
    /// the stream is what orders replays at start; coalescing bounds the cost.
    pub const EVENTS: RetryPolicy = RetryPolicy {
        first_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        max_attempts: None,
    };
}

struct Pending {
    product: Product,
    attempts: u32,
}

#[derive(Default)]
struct Queue {
    pending: BTreeMap<ProductId, Pending>,
    delivered: HashMap<ProductId, i64>,
}

impl Queue {
    /// Keeps `product` unless a version at least as new is pending or delivered.
    fn offer(&mut self, product: Product, attempts: u32) -> bool {
        let newest_known = self
            .pending
            .get(&product.id)
            .map(|p| p.product.version)
            .into_iter()
            .chain(self.delivered.get(&product.id).copied())
            .max();
        if newest_known.is_some_and(|v| v >= product.version) {
            return false;
        }
        self.pending
            .insert(product.id, Pending { product, attempts });
        true
    }

    fn take_all(&mut self) -> Vec<Pending> {
        std::mem::take(&mut self.pending).into_values().collect()
    }

    fn is_superseded(&self, product: &Product) -> bool {
        self.delivered
            .get(&product.id)
            .is_some_and(|v| *v >= product.version)
    }

    fn delivered(&mut self, product: &Product) {
        let version = self.delivered.entry(product.id).or_default();
        *version = (*version).max(product.version);
    }
}

pub struct Outbox {
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Outbox {
    /// An outbox and the loop that delivers from it; the caller spawns the
    /// loop with the service's tasks.
    pub fn new(
        destination: impl Destination,
        policy: RetryPolicy,
    ) -> (Arc<Outbox>, impl Future<Output = ()> + Send + 'static) {
        let outbox = Arc::new(Outbox {
            queue: Mutex::default(),
            wake: Notify::new(),
        });
        let worker = outbox.clone().deliver_forever(destination, policy);
        (outbox, worker)
    }

    pub fn enqueue(&self, product: Product) {
        if self.queue.lock().expect("outbox lock").offer(product, 0) {
            self.wake.notify_one();
        }
    }

    async fn deliver_forever(self: Arc<Self>, destination: impl Destination, policy: RetryPolicy) {
        let mut backoff = policy.first_backoff;
        loop {
            let batch = self.queue.lock().expect("outbox lock").take_all();
            if batch.is_empty() {
                // notify_one keeps a permit, so an enqueue between the take and
                // this wait is not missed.
                self.wake.notified().await;
                continue;
            }
            let mut batch = batch.into_iter();
            let mut failure = None;
            for pending in batch.by_ref() {
                if self
                    .queue
                    .lock()
                    .expect("outbox lock")
                    .is_superseded(&pending.product)
                {
                    continue;
                }
                match destination.deliver(&pending.product).await {
                    Ok(()) => self
                        .queue
                        .lock()
                        .expect("outbox lock")
                        .delivered(&pending.product),
                    Err(error) => {
                        failure = Some((pending, error));
                        break;
                    }
                }
            }
            let Some((failed, error)) = failure else {
                backoff = policy.first_backoff;
                continue;
            };
            // The destination is failing: stop this round, put the rest back
            // (each counts one more attempt), wait, and try again.
            tracing::debug!(destination = %destination.describe(), %error, "delivery failed");
            let mut dropped = 0;
            {
                let mut queue = self.queue.lock().expect("outbox lock");
                for Pending { product, attempts } in std::iter::once(failed).chain(batch) {
                    let attempts = attempts + 1;
                    if policy.max_attempts.is_some_and(|max| attempts >= max) {
                        dropped += 1;
                    } else {
                        queue.offer(product, attempts);
                    }
                }
            }
            if dropped > 0 {
                tracing::warn!(
                    destination = %destination.describe(), %error, dropped,
                    "gave up delivering price changes"
                );
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(policy.max_backoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chrono::Utc;

    use super::*;
    use crate::error::{Dependency, Error};

    fn product(id: ProductId, version: i64) -> Product {
        Product {
            id,
            name: format!("product-{id}"),
            price_cents: 100 * version,
            version,
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn the_queue_keeps_only_the_newest_change_per_product() {
        let mut queue = Queue::default();
        assert!(queue.offer(product(1, 2), 0));
        assert!(!queue.offer(product(1, 1), 0), "older than pending");
        assert!(queue.offer(product(1, 3), 0));
        let taken = queue.take_all();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].product.version, 3);
        queue.delivered(&taken[0].product);
        assert!(!queue.offer(product(1, 3), 0), "already delivered");
        assert!(queue.offer(product(1, 4), 0));
    }

    /// Fails the first `failures` deliveries, then records what it receives.
    struct Flaky {
        failures: AtomicUsize,
        received: Arc<Mutex<Vec<(ProductId, i64)>>>,
    }

    impl Destination for Flaky {
        fn deliver<'a>(&'a self, product: &'a Product) -> BoxFuture<'a, Result<()>> {
            Box::pin(async move {
                if self.failures.load(Ordering::SeqCst) > 0 {
                    self.failures.fetch_sub(1, Ordering::SeqCst);
                    return Err(Error::unavailable(Dependency::Catalog, "down"));
                }
                self.received
                    .lock()
                    .unwrap()
                    .push((product.id, product.version));
                Ok(())
            })
        }

        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_deliveries_are_retried_with_the_newest_version() {
        let received = Arc::new(Mutex::new(Vec::new()));
        let destination = Flaky {
            failures: AtomicUsize::new(3),
            received: received.clone(),
        };
        let (outbox, worker) = Outbox::new(destination, RetryPolicy::PUSH);
        let worker = tokio::spawn(worker);
        outbox.enqueue(product(1, 1));
        outbox.enqueue(product(2, 1));
        tokio::time::sleep(Duration::from_millis(50)).await;
        outbox.enqueue(product(1, 2));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(*received.lock().unwrap(), vec![(1, 2), (2, 1)]);
        worker.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounded_policy_drops_changes_after_its_last_attempt() {
        let received = Arc::new(Mutex::new(Vec::new()));
        let destination = Flaky {
            failures: AtomicUsize::new(1000),
            received: received.clone(),
        };
        let policy = RetryPolicy {
            max_attempts: Some(3),
            ..RetryPolicy::PUSH
        };
        let (outbox, worker) = Outbox::new(destination, policy);
        let worker = tokio::spawn(worker);
        outbox.enqueue(product(1, 1));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(outbox.queue.lock().unwrap().pending.is_empty());
        assert!(received.lock().unwrap().is_empty());
        worker.abort();
    }
}
