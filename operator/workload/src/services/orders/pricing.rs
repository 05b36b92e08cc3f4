//! How orders prices a checkout: one [`PriceSource`] per synchronous pattern,
//! or, for `AsyncMessaging`, a request that is answered later.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::{
    error::Result,
    services::{
        orders::messaging::PriceRequests,
        protocol::{Price, ProductId},
    },
};

/// Where a synchronous pattern gets the current price of a product.
pub trait PriceSource: Send + Sync + 'static {
    fn price(&self, product_id: ProductId) -> BoxFuture<'_, Result<Price>>;
}

/// What `POST /checkout` does in this orders process.
#[derive(Clone)]
pub enum Checkout {
    /// Price now and answer `200` with the order.
    Priced(Arc<dyn PriceSource>),
    /// Answer `202` and price when catalog's reply message arrives.
    Messaging(Arc<PriceRequests>),
}
