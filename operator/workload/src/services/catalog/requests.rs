//! `AsyncMessaging`: catalog's durable consumer of `PRICE_REQUESTS` answers
//! each request with a message on the request's `reply_to` subject.
//!
//! The consumer is durable and the stream a work queue, so requests sent
//! while catalog is down wait in the broker and are answered when it is back.
//! A request is acknowledged only after its reply is stored; a database
//! failure asks the broker to redeliver it a little later.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{
    AckKind, Message,
    consumer::{AckPolicy, pull},
};
use tokio::sync::Semaphore;

use crate::{
    error::{Dependency, Error, Result},
    services::{
        broker::{
            ACK_WAIT, Broker, next_message, price_replies_stream, price_requests_stream,
            pull_messages,
        },
        catalog::store::Store,
        http::Readiness,
        protocol::{CATALOG_CONSUMER, PriceReply, PriceRequest},
        tasks::until_ok,
    },
};

/// Requests answered at the same time; each waits on the database and the broker.
const CONCURRENT_REQUESTS: usize = 64;
/// How soon a request that failed is offered again.
const REDELIVERY_DELAY: Duration = Duration::from_millis(500);

/// Binds the consumer (marking catalog ready the first time) and answers
/// requests for the life of catalog, binding again after broker trouble.
pub async fn answer_forever(broker: Broker, store: Store, ready: Readiness) {
    let limit = Arc::new(Semaphore::new(CONCURRENT_REQUESTS));
    let mut connections = broker.connections.clone();
    loop {
        connections.borrow_and_update();
        let consumer = until_ok("binding the price request consumer", || bind(&broker)).await;
        ready.set_ready();
        let mut messages = match pull_messages(&consumer).await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, "cannot read price requests");
                tokio::time::sleep(REDELIVERY_DELAY).await;
                continue;
            }
        };
        while let Some(message) = next_message(&mut messages, &mut connections).await {
            match message {
                Ok(message) => {
                    let permit = limit.clone().acquire_owned().await.expect("never closed");
                    let (broker, store) = (broker.clone(), store.clone());
                    tokio::spawn(async move {
                        answer(&broker, &store, message).await;
                        drop(permit);
                    });
                }
                Err(error) => {
                    // Heartbeats stop when the broker goes away: bind again.
                    tracing::warn!(%error, "reading price requests");
                    break;
                }
            }
        }
        tokio::time::sleep(REDELIVERY_DELAY).await;
    }
}

async fn bind(broker: &Broker) -> Result<async_nats::jetstream::consumer::Consumer<pull::Config>> {
    broker.ensure_stream(price_replies_stream()).await?;
    let stream = broker.ensure_stream(price_requests_stream()).await?;
    stream
        .get_or_create_consumer(
            CATALOG_CONSUMER,
            pull::Config {
                durable_name: Some(CATALOG_CONSUMER.into()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| Error::unavailable(Dependency::Broker, e))
}

async fn answer(broker: &Broker, store: &Store, message: Message) {
    let request: PriceRequest = match serde_json::from_slice(&message.payload) {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(%error, "dropping a malformed price request");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    match reply(broker, store, &request).await {
        Ok(()) => {
            if let Err(error) = message.ack().await {
                tracing::warn!(%error, order_id = %request.order_id, "cannot ack a price request");
            }
        }
        Err(Error::UnknownProduct(product_id)) => {
            // The reply has no error field: the order stays pending.
            tracing::warn!(product_id, order_id = %request.order_id, "price request for an unknown product");
            let _ = message.ack_with(AckKind::Term).await;
        }
        Err(error) => {
            tracing::debug!(%error, order_id = %request.order_id, "price request failed; redelivering");
            let _ = message.ack_with(AckKind::Nak(Some(REDELIVERY_DELAY))).await;
        }
    }
}

async fn reply(broker: &Broker, store: &Store, request: &PriceRequest) -> Result<()> {
    let product = store
        .product(request.product_id)
        .await?
        .ok_or(Error::UnknownProduct(request.product_id))?;
    let reply = PriceReply {
        order_id: request.order_id.clone(),
        product_id: product.id,
        price_cents: product.price_cents,
        version: product.version,
    };
    let payload = serde_json::to_vec(&reply).expect("a reply serialises");
    broker
        .jetstream
        .publish(request.reply_to.clone(), payload.into())
        .await
        .map_err(|e| Error::unavailable(Dependency::Broker, e))?
        .await
        .map_err(|e| Error::unavailable(Dependency::Broker, e))?;
    Ok(())
}
