//! `CacheWithApiUpdates`: at start orders registers its own URL with catalog
//! (`POST /subscribers`) and then loads every price (`GET /products`); from
//! then on catalog pushes each change to `PUT /cache/products/{id}`.
//!
//! Registering before loading means no change can fall between the two: one
//! pushed during the load is newer than the loaded price, or ignored.

use std::sync::Arc;

use crate::services::{
    http::Readiness,
    orders::{cache::PriceCache, catalog_client::CatalogClient},
    tasks::until_ok,
};

pub async fn join_catalog(
    catalog: CatalogClient,
    advertise_url: String,
    cache: Arc<PriceCache>,
    ready: Readiness,
) {
    until_ok("registering with catalog", || {
        catalog.register(&advertise_url)
    })
    .await;
    let products = until_ok("loading prices from catalog", || catalog.products()).await;
    for product in &products {
        cache.upsert(product);
    }
    tracing::info!(products = products.len(), subscriber = %advertise_url, "price cache loaded");
    ready.set_ready();
}
