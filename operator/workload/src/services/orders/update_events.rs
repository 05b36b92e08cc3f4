//! `CacheWithUpdateEvents`: orders replays the latest price event of every
//! product from the `CATALOG_PRICES` stream (deliver policy last-per-subject),
//! is ready once it has caught up, and then follows new events.
//!
//! An ordered consumer is used: it needs no acks and recreates itself from
//! the last sequence it saw after a broker outage, so orders keeps serving
//! from its cache while the broker is down and catches up afterwards.

use std::sync::Arc;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;

use crate::{
    error::{Dependency, Error, Result},
    services::{
        broker::{Broker, catalog_prices_stream},
        http::Readiness,
        orders::cache::PriceCache,
        protocol::{CATALOG_PRICES_SUBJECTS, Product},
        tasks::until_ok,
    },
};

pub async fn follow_price_events(broker: Broker, cache: Arc<PriceCache>, ready: Readiness) {
    loop {
        let (consumer, pending) = until_ok("binding the price stream", || bind(&broker)).await;
        if pending == 0 {
            ready.set_ready();
        }
        let mut messages = match consumer.messages().await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, "cannot read price events");
                continue;
            }
        };
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, "reading price events");
                    break;
                }
            };
            match serde_json::from_slice::<Product>(&message.payload) {
                Ok(product) => {
                    cache.upsert(&product);
                }
                Err(error) => {
                    tracing::warn!(%error, subject = %message.subject, "malformed price event")
                }
            }
            if !ready.is_ready() && message.info().is_ok_and(|info| info.pending == 0) {
                tracing::info!(products = cache.len(), "replayed the price events");
                ready.set_ready();
            }
        }
    }
}

/// A consumer of the latest event per product, and how many it will replay.
async fn bind(
    broker: &Broker,
) -> Result<(
    async_nats::jetstream::consumer::Consumer<pull::OrderedConfig>,
    u64,
)> {
    let stream = broker.ensure_stream(catalog_prices_stream()).await?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: CATALOG_PRICES_SUBJECTS.into(),
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::unavailable(Dependency::Broker, e))?;
    let pending = consumer.cached_info().num_pending;
    Ok((consumer, pending))
}
