//! `AsyncPolling`: ask catalog for a quote (`202` + `Location`), then poll it
//! every `poll_interval` until it is done or `poll_deadline` has passed.

use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::{
    error::{Dependency, Error, Result},
    services::{
        orders::{catalog_client::CatalogClient, pricing::PriceSource},
        protocol::{Price, ProductId, QuoteStatus},
    },
};

pub struct PriceQuotes {
    pub catalog: CatalogClient,
    pub poll_interval: Duration,
    pub poll_deadline: Duration,
}

impl PriceQuotes {
    async fn quote(&self, product_id: ProductId) -> Result<Price> {
        let location = self.catalog.create_quote(product_id).await?;
        loop {
            tokio::time::sleep(self.poll_interval).await;
            match self.catalog.quote(&location).await? {
                QuoteStatus::Pending => continue,
                QuoteStatus::Done {
                    price_cents,
                    version,
                    ..
                } => {
                    return Ok(Price {
                        price_cents,
                        version,
                    });
                }
                QuoteStatus::Failed { code: 404, .. } => {
                    return Err(Error::UnknownProduct(product_id));
                }
                QuoteStatus::Failed { error, .. } => {
                    return Err(Error::unavailable(Dependency::Catalog, error));
                }
            }
        }
    }
}

impl PriceSource for PriceQuotes {
    fn price(&self, product_id: ProductId) -> BoxFuture<'_, Result<Price>> {
        Box::pin(async move {
            let deadline = Instant::now() + self.poll_deadline;
            tokio::time::timeout_at(deadline, self.quote(product_id))
                .await
                .map_err(|_| Error::Timeout {
                    dependency: Dependency::Catalog,
                    timeout: self.poll_deadline,
                })?
        })
    }
}
