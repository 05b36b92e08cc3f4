//! The orders this replica took, in memory: pending `AsyncMessaging` orders
//! waiting for their price, and priced orders for `GET /orders/{id}`. Entries
//! are forgotten after a while so memory stays bounded under load.

use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::services::protocol::{Order, OrderStatus, OrderView, PendingOrder, Price, ProductId};

/// How long an order is kept after it was taken.
const RETENTION: Duration = Duration::from_secs(300);
/// Priced orders of the synchronous patterns are kept only for people
/// looking at `GET /orders/{id}`: past this many entries they are not
/// recorded, so a capacity probe at thousands of checkouts a second does not
/// grow memory. Pending orders are always kept: orders needs them.
const MAX_ENTRIES: usize = 100_000;

enum Entry {
    Pending {
        product_id: ProductId,
        quantity: i64,
    },
    Priced(Order),
}

#[derive(Default)]
pub struct OrderBook {
    orders: DashMap<String, (Instant, Entry)>,
}

impl OrderBook {
    pub fn record_priced(&self, order: Order) {
        if self.orders.len() >= MAX_ENTRIES {
            return;
        }
        self.orders.insert(
            order.order_id.clone(),
            (Instant::now(), Entry::Priced(order)),
        );
    }

    pub fn record_pending(&self, order_id: &str, product_id: ProductId, quantity: i64) {
        self.orders.insert(
            order_id.to_owned(),
            (
                Instant::now(),
                Entry::Pending {
                    product_id,
                    quantity,
                },
            ),
        );
    }

    pub fn forget(&self, order_id: &str) {
        self.orders.remove(order_id);
    }

    /// Prices a pending order; `None` when it is unknown (taken by an earlier
    /// run of this replica) or already priced (a redelivered reply).
    pub fn complete(&self, order_id: &str, product_id: ProductId, price: Price) -> Option<Order> {
        let mut entry = self.orders.get_mut(order_id)?;
        let Entry::Pending {
            product_id: ordered,
            quantity,
        } = entry.1
        else {
            return None;
        };
        if ordered != product_id {
            return None;
        }
        let order = Order::priced(order_id.to_owned(), product_id, quantity, price);
        entry.1 = Entry::Priced(order.clone());
        Some(order)
    }

    pub fn get(&self, order_id: &str) -> Option<OrderView> {
        self.orders.get(order_id).map(|entry| match &entry.1 {
            Entry::Pending { .. } => OrderView::Pending(PendingOrder {
                order_id: order_id.to_owned(),
                status: OrderStatus::Pending,
            }),
            Entry::Priced(order) => OrderView::Priced(order.clone()),
        })
    }

    pub async fn sweep_forever(self: std::sync::Arc<Self>) {
        let mut interval = tokio::time::interval(RETENTION / 10);
        loop {
            interval.tick().await;
            self.orders
                .retain(|_, (taken, _)| taken.elapsed() < RETENTION);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_order_completes_once() {
        let book = OrderBook::default();
        book.record_pending("o-1", 7, 3);
        assert!(matches!(book.get("o-1"), Some(OrderView::Pending(_))));
        let price = Price {
            price_cents: 250,
            version: 4,
        };
        assert_eq!(book.complete("o-1", 8, price), None, "another product");
        let order = book.complete("o-1", 7, price).expect("completes");
        assert_eq!(order.total_cents, 750);
        assert_eq!(book.complete("o-1", 7, price), None, "a redelivered reply");
        assert_eq!(book.complete("unknown", 7, price), None);
        assert!(matches!(book.get("o-1"), Some(OrderView::Priced(_))));
    }
}
