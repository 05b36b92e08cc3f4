//! catalog's HTTP API (docs/protocol.md, "catalog").

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{StatusCode, header::LOCATION},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};

use crate::{
    error::{Error, Result},
    services::{
        catalog::{outbox::Outbox, push::Subscribers, quotes::Quotes, store::Store},
        http::{self, Readiness},
        protocol::{
            PriceChange, PriceUpdate, Product, ProductId, QuoteCreated, QuoteRequest, QuoteStatus,
            Subscriber,
        },
    },
};

/// What catalog's handlers share.
#[derive(Clone)]
pub struct Catalog {
    pub store: Store,
    pub quotes: Arc<Quotes>,
    /// `CacheWithApiUpdates`: the orders replicas to push changes to.
    pub subscribers: Option<Arc<Subscribers>>,
    /// `CacheWithUpdateEvents`: change events on their way to the broker.
    pub events: Option<Arc<Outbox>>,
    pub ready: Readiness,
}

pub fn router(catalog: Catalog) -> Router {
    Router::new()
        .route("/products", get(products))
        .route("/products/{id}", get(product))
        .route("/products/{id}/price", put(update_price))
        .route("/price-quotes", post(create_quote))
        .route("/price-quotes/{quote_id}", get(quote))
        .route("/subscribers", post(subscribe))
        .route("/readyz", get(readyz))
        .with_state(catalog)
        .merge(http::healthz())
}

async fn products(State(catalog): State<Catalog>) -> Result<Json<Vec<Product>>> {
    Ok(Json(catalog.store.products().await?))
}

async fn product(
    State(catalog): State<Catalog>,
    Path(id): Path<ProductId>,
) -> Result<Json<Product>> {
    catalog
        .store
        .product(id)
        .await?
        .map(Json)
        .ok_or(Error::UnknownProduct(id))
}

/// Commits the change, answers, and only then lets it propagate: the time
/// until a cache sees it is the staleness the load generator measures.
async fn update_price(
    State(catalog): State<Catalog>,
    Path(id): Path<ProductId>,
    Json(update): Json<PriceUpdate>,
) -> Result<Json<PriceChange>> {
    // Before start-up is done, a change could overtake the initial publish of
    // every product and be overwritten by an older price in the stream.
    if !catalog.ready.is_ready() {
        return Err(Error::NotReady("catalog is starting"));
    }
    if update.price_cents <= 0 {
        return Err(Error::InvalidRequest("price_cents must be positive".into()));
    }
    let product = catalog
        .store
        .update_price(id, update.price_cents)
        .await?
        .ok_or(Error::UnknownProduct(id))?;
    if let Some(subscribers) = catalog.subscribers.clone() {
        // Another catalog replica may have taken a registration: read the
        // list after the commit, so a subscriber that registered (and then
        // loaded its prices) before this change is sure to get it. Off the
        // request path, like the push itself.
        let (store, product) = (catalog.store.clone(), product.clone());
        tokio::spawn(async move {
            match store.subscribers().await {
                Ok(urls) => urls.iter().for_each(|url| {
                    subscribers.add(url);
                }),
                Err(error) => {
                    tracing::warn!(%error, "cannot refresh subscribers; pushing to the known ones");
                }
            }
            subscribers.publish(&product);
        });
    }
    if let Some(events) = &catalog.events {
        events.enqueue(product.clone());
    }
    Ok(Json(PriceChange {
        id: product.id,
        price_cents: product.price_cents,
        version: product.version,
    }))
}

async fn create_quote(
    State(catalog): State<Catalog>,
    Json(request): Json<QuoteRequest>,
) -> Response {
    let quote_id = catalog
        .quotes
        .create(catalog.store.clone(), request.product_id);
    let location = format!("/price-quotes/{quote_id}");
    (
        StatusCode::ACCEPTED,
        [(LOCATION, location)],
        Json(QuoteCreated { quote_id }),
    )
        .into_response()
}

async fn quote(State(catalog): State<Catalog>, Path(quote_id): Path<String>) -> Response {
    match catalog.quotes.status(&quote_id) {
        Some(status) => Json::<QuoteStatus>(status).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn subscribe(
    State(catalog): State<Catalog>,
    Json(subscriber): Json<Subscriber>,
) -> Result<StatusCode> {
    if !(subscriber.url.starts_with("http://") || subscriber.url.starts_with("https://")) {
        return Err(Error::InvalidRequest(format!(
            "`{}` is not an http(s) URL",
            subscriber.url
        )));
    }
    catalog.store.add_subscriber(&subscriber.url).await?;
    if let Some(subscribers) = &catalog.subscribers {
        subscribers.add(&subscriber.url);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Ready when start-up is done and the database answers now.
async fn readyz(State(catalog): State<Catalog>) -> StatusCode {
    http::status_of(catalog.ready.is_ready() && catalog.store.ping().await.is_ok())
}
