//! `SharedData`: orders reads catalog's `products` table directly. No call to
//! catalog at all, but orders now depends on catalog's schema and database.

use std::time::Duration;

use deadpool_postgres::Pool;
use futures::future::BoxFuture;

use crate::{
    error::{Dependency, Error, Result, within},
    services::{
        database::{pool_error, query_error},
        orders::pricing::PriceSource,
        protocol::{Price, ProductId},
    },
};

pub struct SharedDatabase {
    pub pool: Pool,
    pub timeout: Duration,
}

impl PriceSource for SharedDatabase {
    fn price(&self, product_id: ProductId) -> BoxFuture<'_, Result<Price>> {
        Box::pin(within(Dependency::Database, self.timeout, async move {
            let connection = self
                .pool
                .get()
                .await
                .map_err(|e| pool_error(e, self.timeout))?;
            let statement = connection
                .prepare_cached("SELECT price_cents, version FROM products WHERE id = $1::bigint")
                .await
                .map_err(query_error)?;
            let row = connection
                .query_opt(&statement, &[&product_id])
                .await
                .map_err(query_error)?;
            let row = row.ok_or(Error::UnknownProduct(product_id))?;
            Ok(Price {
                price_cents: row.get(0),
                version: row.get(1),
            })
        }))
    }
}
