//! orders' HTTP client of catalog's API (`DirectApiCall`, `AsyncPolling`,
//! `CacheWithApiUpdates`). Every call is bounded by the upstream timeout; a
//! refused or failed call is "catalog unavailable" (`503`), a slow one a
//! timeout (`504`).

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::{
    error::{Dependency, Error, Result},
    services::{
        http,
        protocol::{Product, ProductId, QuoteCreated, QuoteRequest, QuoteStatus, Subscriber},
    },
};

#[derive(Clone)]
pub struct CatalogClient {
    client: reqwest::Client,
    base_url: String,
    timeout: Duration,
}

impl CatalogClient {
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self> {
        Ok(CatalogClient {
            client: http::client(timeout)?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout,
        })
    }

    pub async fn product(&self, id: ProductId) -> Result<Product> {
        let response = self
            .send(self.client.get(self.url(&format!("/products/{id}"))))
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(Error::UnknownProduct(id));
        }
        self.json(response).await
    }

    pub async fn products(&self) -> Result<Vec<Product>> {
        let response = self.send(self.client.get(self.url("/products"))).await?;
        self.json(response).await
    }

    /// Asks for a quote; returns the URL to poll (the answer's `Location`).
    pub async fn create_quote(&self, product_id: ProductId) -> Result<String> {
        let request = self
            .client
            .post(self.url("/price-quotes"))
            .json(&QuoteRequest { product_id });
        let response = self.send(request).await?;
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let created: QuoteCreated = self.json(response).await?;
        let location = location.unwrap_or_else(|| format!("/price-quotes/{}", created.quote_id));
        Ok(if location.starts_with('/') {
            self.url(&location)
        } else {
            location
        })
    }

    /// One poll of a quote; a quote catalog no longer knows (it restarted) is
    /// catalog being unavailable.
    pub async fn quote(&self, location: &str) -> Result<QuoteStatus> {
        let response = self.send(self.client.get(location)).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(Error::unavailable(Dependency::Catalog, "the quote is gone"));
        }
        self.json(response).await
    }

    /// Registers `url` as a push subscriber (`CacheWithApiUpdates`).
    pub async fn register(&self, url: &str) -> Result<()> {
        let request = self
            .client
            .post(self.url("/subscribers"))
            .json(&Subscriber { url: url.into() });
        let response = self.send(request).await?;
        self.check(response).await.map(drop)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response> {
        request.send().await.map_err(|e| self.request_error(e))
    }

    /// Turns a non-2xx answer into the error it stands for.
    async fn check(&self, response: Response) -> Result<Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::GATEWAY_TIMEOUT {
            return Err(Error::Timeout {
                dependency: Dependency::Catalog,
                timeout: self.timeout,
            });
        }
        let body = response.text().await.unwrap_or_default();
        Err(Error::unavailable(
            Dependency::Catalog,
            format!("catalog answered {status}: {body}"),
        ))
    }

    async fn json<T: DeserializeOwned>(&self, response: Response) -> Result<T> {
        self.check(response)
            .await?
            .json()
            .await
            .map_err(|e| self.request_error(e))
    }

    fn request_error(&self, error: reqwest::Error) -> Error {
        if error.is_timeout() {
            Error::Timeout {
                dependency: Dependency::Catalog,
                timeout: self.timeout,
            }
        } else {
            Error::unavailable(Dependency::Catalog, error_chain(&error))
        }
    }
}

/// reqwest's message alone hides the cause ("error sending request"): add the sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
