//! `CacheWithUpdateEvents`: every price change becomes the latest message of
//! its product's subject in the `CATALOG_PRICES` stream, which keeps one
//! message per subject, so the stream always holds the current price list.

use futures::future::BoxFuture;

use crate::{
    error::{Dependency, Error, Result},
    services::{
        broker::Broker,
        catalog::outbox::Destination,
        protocol::{Product, catalog_price_subject},
    },
};

/// Publishes one product's price to the stream and waits for the broker's ack.
pub async fn publish_price(broker: &Broker, product: &Product) -> Result<()> {
    broker.check_connected()?;
    let payload = serde_json::to_vec(product).expect("a product serialises");
    let ack = broker
        .jetstream
        .publish(catalog_price_subject(product.id), payload.into())
        .await
        .map_err(|e| Error::unavailable(Dependency::Broker, e))?;
    ack.await
        .map_err(|e| Error::unavailable(Dependency::Broker, e))?;
    Ok(())
}

/// Publishes every product, all acks awaited together: catalog does this at
/// start so the stream holds every product even before any change.
pub async fn publish_all(broker: &Broker, products: &[Product]) -> Result<()> {
    broker.check_connected()?;
    let mut acks = Vec::with_capacity(products.len());
    for product in products {
        let payload = serde_json::to_vec(product).expect("a product serialises");
        let ack = broker
            .jetstream
            .publish(catalog_price_subject(product.id), payload.into())
            .await
            .map_err(|e| Error::unavailable(Dependency::Broker, e))?;
        acks.push(ack);
    }
    for ack in acks {
        ack.await
            .map_err(|e| Error::unavailable(Dependency::Broker, e))?;
    }
    Ok(())
}

/// The outbox destination of change events.
pub struct PriceEvents(pub Broker);

impl Destination for PriceEvents {
    fn deliver<'a>(&'a self, product: &'a Product) -> BoxFuture<'a, Result<()>> {
        Box::pin(publish_price(&self.0, product))
    }

    fn describe(&self) -> String {
        "the broker".into()
    }
}
