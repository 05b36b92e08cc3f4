//! `AsyncMessaging`: orders accepts a checkout once its price request is
//! stored by the broker (`202`), and prices it when catalog's reply arrives
//! on this replica's reply subject; then it announces the priced order on
//! `orders.completed`.
//!
//! The request is published before answering: an order accepted but never
//! stored would be lost silently. When the broker is down the publish fails
//! at once (not connected) or within the upstream timeout.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{
    consumer::{AckPolicy, pull},
    context::PublishErrorKind,
};
use chrono::Utc;

use crate::{
    error::{Dependency, Error, Result},
    services::{
        broker::{
            ACK_WAIT, Broker, next_message, price_replies_stream, price_requests_stream,
            pull_messages,
        },
        http::Readiness,
        orders::book::OrderBook,
        protocol::{
            CheckoutRequest, CompletedOrder, ORDERS_COMPLETED, OrderStatus, PRICE_REQUESTS_SUBJECT,
            PendingOrder, Price, PriceReply, PriceRequest, orders_consumer, price_replies_subject,
        },
        tasks::until_ok,
    },
};

pub struct PriceRequests {
    pub broker: Broker,
    pub replica_id: String,
    pub book: Arc<OrderBook>,
}

impl PriceRequests {
    pub async fn accept(&self, checkout: &CheckoutRequest) -> Result<PendingOrder> {
        self.broker.check_connected()?;
        let order_id = uuid::Uuid::new_v4().to_string();
        let request = PriceRequest {
            order_id: order_id.clone(),
            product_id: checkout.product_id,
            quantity: checkout.quantity,
            reply_to: price_replies_subject(&self.replica_id),
        };
        // Recorded first, so that a fast reply finds its order.
        self.book
            .record_pending(&order_id, checkout.product_id, checkout.quantity);
        if let Err(error) = self.publish(&request).await {
            self.book.forget(&order_id);
            return Err(error);
        }
        Ok(PendingOrder {
            order_id,
            status: OrderStatus::Pending,
        })
    }

    async fn publish(&self, request: &PriceRequest) -> Result<()> {
        let timeout = self.broker.timeout;
        let failed = |kind: PublishErrorKind, error: String| match kind {
            PublishErrorKind::TimedOut => Error::Timeout {
                dependency: Dependency::Broker,
                timeout,
            },
            _ => Error::unavailable(Dependency::Broker, error),
        };
        let payload = serde_json::to_vec(request).expect("a request serialises");
        let ack = self
            .broker
            .jetstream
            .publish(PRICE_REQUESTS_SUBJECT, payload.into())
            .await
            .map_err(|e| failed(e.kind(), e.to_string()))?;
        // The context's timeout bounds the ack; this bound is a second guard.
        tokio::time::timeout(timeout + Duration::from_millis(100), ack)
            .await
            .map_err(|_| Error::Timeout {
                dependency: Dependency::Broker,
                timeout,
            })?
            .map_err(|e| failed(e.kind(), e.to_string()))?;
        Ok(())
    }
}

/// Binds this replica's durable reply consumer (ready the first time) and
/// completes orders from catalog's replies for the life of orders.
pub async fn follow_replies(
    broker: Broker,
    replica_id: String,
    book: Arc<OrderBook>,
    ready: Readiness,
) {
    let mut connections = broker.connections.clone();
    loop {
        connections.borrow_and_update();
        let consumer = until_ok("binding the price reply consumer", || {
            bind(&broker, &replica_id)
        })
        .await;
        ready.set_ready();
        let mut messages = match pull_messages(&consumer).await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, "cannot read price replies");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while let Some(message) = next_message(&mut messages, &mut connections).await {
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, "reading price replies");
                    break;
                }
            };
            match serde_json::from_slice::<PriceReply>(&message.payload) {
                Ok(reply) => complete(&broker, &book, reply).await,
                Err(error) => tracing::warn!(%error, "dropping a malformed price reply"),
            }
            if let Err(error) = message.ack().await {
                tracing::warn!(%error, "cannot ack a price reply");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn bind(
    broker: &Broker,
    replica_id: &str,
) -> Result<async_nats::jetstream::consumer::Consumer<pull::Config>> {
    broker.ensure_stream(price_requests_stream()).await?;
    let stream = broker.ensure_stream(price_replies_stream()).await?;
    let name = orders_consumer(replica_id);
    stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: price_replies_subject(replica_id),
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| Error::unavailable(Dependency::Broker, e))
}

async fn complete(broker: &Broker, book: &OrderBook, reply: PriceReply) {
    let price = Price {
        price_cents: reply.price_cents,
        version: reply.version,
    };
    let Some(order) = book.complete(&reply.order_id, reply.product_id, price) else {
        tracing::debug!(order_id = %reply.order_id, "reply for an order this replica does not wait for");
        return;
    };
    let event = CompletedOrder {
        order,
        completed_at: Utc::now(),
    };
    let payload = serde_json::to_vec(&event).expect("an order serialises");
    // Core NATS: the client buffers it while reconnecting.
    if let Err(error) = broker
        .client
        .publish(ORDERS_COMPLETED, payload.into())
        .await
    {
        tracing::warn!(%error, order_id = %event.order.order_id, "cannot announce a completed order");
    }
}
