//! The wire types and broker names of docs/protocol.md, shared by the
//! services, the load generator and the tests so that all of them read and
//! write the same JSON.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub type ProductId = i64;

/// A product as catalog owns it; every price change bumps `version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: ProductId,
    pub name: String,
    pub price_cents: i64,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

/// Body of `PUT /products/{id}/price`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceUpdate {
    pub price_cents: i64,
}

/// Answer of `PUT /products/{id}/price`, once the change is committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceChange {
    pub id: ProductId,
    pub price_cents: i64,
    pub version: i64,
}

/// Body of `POST /price-quotes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteRequest {
    pub product_id: ProductId,
}

/// Body of the `202` answer to `POST /price-quotes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteCreated {
    pub quote_id: String,
}

/// Answer of `GET /price-quotes/{quote_id}`.
///
/// `failed` is an addition to the protocol's `pending` and `done`: without it a
/// quote for a product that does not exist, or one catalog could not read
/// from its database, would stay pending until orders' deadline. `code` is the
/// HTTP status the failure stands for (`404` unknown product, `503` database).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum QuoteStatus {
    Pending,
    Done {
        product_id: ProductId,
        price_cents: i64,
        version: i64,
    },
    Failed {
        error: String,
        code: u16,
    },
}

/// Body of `POST /subscribers`: where catalog pushes price changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriber {
    pub url: String,
}

/// Body of `POST /checkout`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutRequest {
    pub product_id: ProductId,
    pub quantity: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Priced,
}

/// A priced order: the price orders used and that price's version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub product_id: ProductId,
    pub quantity: i64,
    pub price_cents: i64,
    pub version: i64,
    pub total_cents: i64,
    pub status: OrderStatus,
}

impl Order {
    pub fn priced(order_id: String, product_id: ProductId, quantity: i64, price: Price) -> Self {
        Order {
            order_id,
            product_id,
            quantity,
            price_cents: price.price_cents,
            version: price.version,
            total_cents: price.price_cents.saturating_mul(quantity),
            status: OrderStatus::Priced,
        }
    }
}

/// The `202` answer of an `AsyncMessaging` checkout, and a pending order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOrder {
    pub order_id: String,
    pub status: OrderStatus,
}

/// `GET /orders/{order_id}`: priced or still pending.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OrderView {
    Priced(Order),
    Pending(PendingOrder),
}

/// The event on [`ORDERS_COMPLETED`] when an `AsyncMessaging` order is priced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedOrder {
    #[serde(flatten)]
    pub order: Order,
    pub completed_at: DateTime<Utc>,
}

/// What orders asks catalog on [`PRICE_REQUESTS_SUBJECT`] (`AsyncMessaging`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceRequest {
    pub order_id: String,
    pub product_id: ProductId,
    pub quantity: i64,
    pub reply_to: String,
}

/// What catalog answers on the request's `reply_to` subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceReply {
    pub order_id: String,
    pub product_id: ProductId,
    pub price_cents: i64,
    pub version: i64,
}

/// Every error answer: `{"error": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// A price and its version, whatever way orders learnt it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Price {
    pub price_cents: i64,
    pub version: i64,
}

impl From<&Product> for Price {
    fn from(product: &Product) -> Self {
        Price {
            price_cents: product.price_cents,
            version: product.version,
        }
    }
}

// The broker's streams and subjects (NATS JetStream).

/// Latest price per product (`CacheWithUpdateEvents`), one message per subject.
pub const CATALOG_PRICES_STREAM: &str = "CATALOG_PRICES";
pub const CATALOG_PRICES_SUBJECTS: &str = "catalog.prices.*";
/// Checkouts waiting for a price (`AsyncMessaging`), a work queue.
pub const PRICE_REQUESTS_STREAM: &str = "PRICE_REQUESTS";
pub const PRICE_REQUESTS_SUBJECT: &str = "prices.requests";
/// catalog's answers, one subject per orders replica, a work queue.
pub const PRICE_REPLIES_STREAM: &str = "PRICE_REPLIES";
pub const PRICE_REPLIES_SUBJECTS: &str = "prices.replies.*";
/// catalog's durable consumer of [`PRICE_REQUESTS_STREAM`].
pub const CATALOG_CONSUMER: &str = "catalog";
/// Core NATS subject of [`CompletedOrder`] events.
pub const ORDERS_COMPLETED: &str = "orders.completed";

pub fn catalog_price_subject(product_id: ProductId) -> String {
    format!("catalog.prices.{product_id}")
}

pub fn price_replies_subject(replica_id: &str) -> String {
    format!("prices.replies.{replica_id}")
}

/// The durable consumer of one orders replica on [`PRICE_REPLIES_STREAM`].
pub fn orders_consumer(replica_id: &str) -> String {
    format!("orders-{replica_id}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quote_status_is_tagged_by_status() {
        assert_eq!(
            serde_json::to_value(QuoteStatus::Pending).unwrap(),
            json!({"status": "pending"})
        );
        let done = QuoteStatus::Done {
            product_id: 1,
            price_cents: 1299,
            version: 3,
        };
        assert_eq!(
            serde_json::to_value(done).unwrap(),
            json!({"status": "done", "product_id": 1, "price_cents": 1299, "version": 3})
        );
    }

    #[test]
    fn orders_serialise_as_the_protocol_says() {
        let order = Order::priced(
            "o-1".into(),
            1,
            2,
            Price {
                price_cents: 1299,
                version: 3,
            },
        );
        assert_eq!(
            serde_json::to_value(&order).unwrap(),
            json!({"order_id": "o-1", "product_id": 1, "quantity": 2, "price_cents": 1299,
                   "version": 3, "total_cents": 2598, "status": "priced"})
        );
        let pending: OrderView =
            serde_json::from_value(json!({"order_id": "o-2", "status": "pending"})).unwrap();
        assert!(matches!(pending, OrderView::Pending(_)));
        let completed = CompletedOrder {
            order,
            completed_at: Utc::now(),
        };
        let value = serde_json::to_value(&completed).unwrap();
        assert_eq!(value["price_cents"], 1299);
        assert!(value["completed_at"].is_string());
    }
}
