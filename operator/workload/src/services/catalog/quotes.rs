//! `AsyncPolling`: a price quote is accepted at once (`202` + `Location`) and
//! worked in the background; orders polls until it is done.
//!
//! Quotes live in memory: one that catalog loses in a restart answers `404`,
//! and orders treats that as catalog being unavailable. Old quotes are swept
//! so memory stays bounded under load.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use dashmap::DashMap;

use crate::{
    error::Error,
    services::{catalog::store::Store, protocol::ProductId, protocol::QuoteStatus},
};

/// How long a quote is kept after it was asked for.
const QUOTE_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Quotes {
    quotes: DashMap<String, (Instant, QuoteStatus)>,
}

impl Quotes {
    /// Records a pending quote for `product_id`, starts working it, and returns its id.
    pub fn create(self: &Arc<Self>, store: Store, product_id: ProductId) -> String {
        let quote_id = uuid::Uuid::new_v4().to_string();
        self.quotes
            .insert(quote_id.clone(), (Instant::now(), QuoteStatus::Pending));
        let quotes = self.clone();
        let id = quote_id.clone();
        tokio::spawn(async move {
            let status = match store.product(product_id).await {
                Ok(Some(product)) => QuoteStatus::Done {
                    product_id,
                    price_cents: product.price_cents,
                    version: product.version,
                },
                Ok(None) => failed(Error::UnknownProduct(product_id)),
                Err(error) => failed(error),
            };
            if let Some(mut quote) = quotes.quotes.get_mut(&id) {
                quote.1 = status;
            }
        });
        quote_id
    }

    pub fn status(&self, quote_id: &str) -> Option<QuoteStatus> {
        self.quotes.get(quote_id).map(|quote| quote.1.clone())
    }

    /// Forgets quotes older than their lifetime; runs for the life of catalog.
    pub async fn sweep_forever(self: Arc<Self>) {
        let mut interval = tokio::time::interval(QUOTE_LIFETIME / 4);
        loop {
            interval.tick().await;
            self.quotes
                .retain(|_, (asked, _)| asked.elapsed() < QUOTE_LIFETIME);
        }
    }
}

fn failed(error: Error) -> QuoteStatus {
    let code = match error.status() {
        StatusCode::NOT_FOUND => 404,
        _ => 503,
    };
    QuoteStatus::Failed {
        error: error.to_string(),
        code,
    }
}
