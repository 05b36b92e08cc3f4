//! `CacheWithApiUpdates`: catalog knows its consumers and pushes every price
//! change to each one's `PUT /cache/products/{id}`.
//!
//! Each subscriber has its own outbox, so a slow or dead orders replica does
//! not delay the others. Subscribers are kept in catalog's database so that a
//! restarted catalog still knows them; at start catalog pushes every product
//! to each, which repairs changes committed but not yet pushed when it died.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use futures::future::BoxFuture;

use crate::{
    error::{Dependency, Error, Result},
    services::{
        catalog::outbox::{Destination, Outbox, RetryPolicy},
        protocol::Product,
        tasks::Tasks,
    },
};

/// One subscriber's push endpoint.
struct SubscriberApi {
    client: reqwest::Client,
    base_url: String,
}

impl Destination for SubscriberApi {
    fn deliver<'a>(&'a self, product: &'a Product) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let url = format!("{}/cache/products/{}", self.base_url, product.id);
            let response = self
                .client
                .put(&url)
                .json(product)
                .send()
                .await
                .map_err(|e| {
                    Error::unavailable(Dependency::Orders, format!("push to {url}: {e}"))
                })?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(Error::unavailable(
                    Dependency::Orders,
                    format!("push to {url}: {}", response.status()),
                ))
            }
        })
    }

    fn describe(&self) -> String {
        self.base_url.clone()
    }
}

/// The orders replicas catalog pushes to.
pub struct Subscribers {
    client: reqwest::Client,
    tasks: Tasks,
    outboxes: Mutex<HashMap<String, Arc<Outbox>>>,
}

impl Subscribers {
    pub fn new(client: reqwest::Client, tasks: Tasks) -> Self {
        Subscribers {
            client,
            tasks,
            outboxes: Mutex::default(),
        }
    }

    /// Starts pushing to `url`; returns false when it was known already.
    pub fn add(&self, url: &str) -> bool {
        let base_url = url.trim_end_matches('/').to_owned();
        let mut outboxes = self.outboxes.lock().expect("subscribers lock");
        if outboxes.contains_key(&base_url) {
            return false;
        }
        let destination = SubscriberApi {
            client: self.client.clone(),
            base_url: base_url.clone(),
        };
        let (outbox, worker) = Outbox::new(destination, RetryPolicy::PUSH);
        self.tasks.spawn(worker);
        outboxes.insert(base_url.clone(), outbox);
        tracing::info!(subscriber = %base_url, "pushing price changes");
        true
    }

    /// Queues `product` for every subscriber; returns at once.
    pub fn publish(&self, product: &Product) {
        for outbox in self.outboxes.lock().expect("subscribers lock").values() {
            outbox.enqueue(product.clone());
        }
    }

    /// Queues `products` for the subscriber at `url` only (a full resync).
    pub fn publish_to(&self, url: &str, products: &[Product]) {
        let base_url = url.trim_end_matches('/');
        if let Some(outbox) = self
            .outboxes
            .lock()
            .expect("subscribers lock")
            .get(base_url)
        {
            for product in products {
                outbox.enqueue(product.clone());
            }
        }
    }
}
