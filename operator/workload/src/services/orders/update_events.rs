//! `CacheWithUpdateEvents`: orders replays the latest price event of every
//! product from the `CATALOG_PRICES` stream (deliver policy last-per-subject),
//! is ready once it has caught up, and then follows new events.
//!
//! An ordered consumer is used: it needs no acks and is cheap to create.
//! orders keeps serving from its cache while the broker is down, and when
//! the client reconnects it binds a new consumer and replays the latest
//! prices again, which catches up on whatever it missed.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::consumer::{DeliverPolicy, pull};

use crate::{
    error::{Dependency, Error, Result},
    services::{
        broker::{Broker, catalog_prices_stream, next_message},
        http::Readiness,
        orders::cache::PriceCache,
        protocol::{CATALOG_PRICES_SUBJECTS, Product},
        tasks::until_ok,
    },
};

pub async fn follow_price_events(broker: Broker, cache: Arc<PriceCache>, ready: Readiness) {
    let mut connections = broker.connections.clone();
    loop {
        connections.borrow_and_update();
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
        while let Some(message) = next_message(&mut messages, &mut connections).await {
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
            // Caps the pull expiry (30 s by default) and with it the idle
            // heartbeat (half of it): two missed heartbeats make the consumer
            // recreate itself, so after a broker restart orders follows again
            // within about 2 s instead of 30 s.
            max_expires: Duration::from_secs(2),
            ..Default::default()
        })
        .await
        .map_err(|e| Error::unavailable(Dependency::Broker, e))?;
    let pending = consumer.cached_info().num_pending;
    Ok((consumer, pending))
}
