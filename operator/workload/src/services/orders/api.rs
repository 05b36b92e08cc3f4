//! orders' HTTP API (docs/protocol.md, "orders").

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post, put},
};

use crate::{
    error::{Error, Result},
    services::{
        http::{self, Readiness},
        orders::{book::OrderBook, cache::PriceCache, pricing::Checkout},
        protocol::{CheckoutRequest, Order, Product, ProductId},
    },
};

/// What orders' handlers share.
#[derive(Clone)]
pub struct Orders {
    pub checkout: Checkout,
    /// The cache patterns' price cache, the target of catalog's pushes.
    pub cache: Option<Arc<PriceCache>>,
    pub book: Arc<OrderBook>,
    pub ready: Readiness,
}

pub fn router(orders: Orders) -> Router {
    Router::new()
        .route("/checkout", post(checkout))
        .route("/cache/products/{id}", put(push_price))
        .route("/orders/{order_id}", get(order))
        .route("/readyz", get(readyz))
        .with_state(orders)
        .merge(http::healthz())
}

async fn checkout(
    State(orders): State<Orders>,
    Json(request): Json<CheckoutRequest>,
) -> Result<Response> {
    if !orders.ready.is_ready() {
        return Err(Error::NotReady("orders is starting"));
    }
    if request.quantity < 1 {
        return Err(Error::InvalidRequest("quantity must be at least 1".into()));
    }
    let answer = match &orders.checkout {
        Checkout::Priced(source) => {
            let price = source.price(request.product_id).await;
            let price = price.inspect_err(|error| {
                tracing::debug!(%error, category = error.category(), "checkout failed");
            })?;
            let order_id = uuid::Uuid::new_v4().to_string();
            let order = Order::priced(order_id, request.product_id, request.quantity, price);
            orders.book.record_priced(order.clone());
            (StatusCode::OK, Json(order)).into_response()
        }
        Checkout::Messaging(requests) => {
            let pending = requests.accept(&request).await.inspect_err(|error| {
                tracing::debug!(%error, category = error.category(), "checkout not accepted");
            })?;
            (StatusCode::ACCEPTED, Json(pending)).into_response()
        }
    };
    Ok(answer)
}

/// catalog's push of a price change (`CacheWithApiUpdates`).
async fn push_price(
    State(orders): State<Orders>,
    Path(id): Path<ProductId>,
    Json(product): Json<Product>,
) -> Result<StatusCode> {
    let Some(cache) = &orders.cache else {
        return Ok(StatusCode::NOT_FOUND);
    };
    if product.id != id {
        return Err(Error::InvalidRequest(format!(
            "product {} pushed to /cache/products/{id}",
            product.id
        )));
    }
    cache.upsert(&product);
    Ok(StatusCode::NO_CONTENT)
}

async fn order(State(orders): State<Orders>, Path(order_id): Path<String>) -> Response {
    match orders.book.get(&order_id) {
        Some(view) => Json(view).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Ready once start-up is done; never re-checks catalog (see the protocol).
async fn readyz(State(orders): State<Orders>) -> StatusCode {
    http::status_of(orders.ready.is_ready())
}
