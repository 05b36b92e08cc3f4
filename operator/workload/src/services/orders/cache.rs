//! The in-process price cache of the two cache patterns: a concurrent map
//! from product to its newest known price. A change never replaces a newer
//! one, so pushes or events that arrive out of order do no harm.

use dashmap::{DashMap, mapref::entry::Entry};
use futures::future::BoxFuture;

use crate::{
    error::{Error, Result},
    services::{
        orders::pricing::PriceSource,
        protocol::{Price, Product, ProductId},
    },
};

#[derive(Default)]
pub struct PriceCache {
    prices: DashMap<ProductId, Price>,
}

impl PriceCache {
    /// Stores `product`'s price unless the cache has this version or a newer
    /// one; returns whether it was stored.
    pub fn upsert(&self, product: &Product) -> bool {
        match self.prices.entry(product.id) {
            Entry::Occupied(mut cached) if cached.get().version < product.version => {
                cached.insert(Price::from(product));
                true
            }
            Entry::Occupied(_) => false,
            Entry::Vacant(vacant) => {
                vacant.insert(Price::from(product));
                true
            }
        }
    }

    pub fn get(&self, product_id: ProductId) -> Option<Price> {
        self.prices.get(&product_id).map(|price| *price)
    }

    pub fn len(&self) -> usize {
        self.prices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }
}

impl PriceSource for PriceCache {
    fn price(&self, product_id: ProductId) -> BoxFuture<'_, Result<Price>> {
        // The cache holds every product once orders is ready: a miss is a
        // product that does not exist.
        let price = self
            .get(product_id)
            .ok_or(Error::UnknownProduct(product_id));
        Box::pin(std::future::ready(price))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn product(version: i64, price_cents: i64) -> Product {
        Product {
            id: 1,
            name: "product-1".into(),
            price_cents,
            version,
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn only_newer_versions_replace_a_cached_price() {
        let cache = PriceCache::default();
        assert!(cache.upsert(&product(2, 200)));
        assert!(!cache.upsert(&product(1, 100)), "older");
        assert!(!cache.upsert(&product(2, 999)), "same version");
        assert!(cache.upsert(&product(3, 300)));
        assert_eq!(
            cache.get(1),
            Some(Price {
                price_cents: 300,
                version: 3
            })
        );
        assert_eq!(cache.len(), 1);
    }
}
