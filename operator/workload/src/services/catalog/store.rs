//! catalog's PostgreSQL database: the products (the source of truth for
//! prices) and the subscribers that catalog pushes changes to.

use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio_postgres::Row;

use crate::{
    error::{Dependency, Result, within},
    services::{
        database::{pool_error, query_error},
        protocol::{Product, ProductId},
    },
};

/// Serialises schema creation and seeding between catalog replicas that
/// start together (`CREATE TABLE IF NOT EXISTS` alone can race).
const SCHEMA_LOCK: i64 = 0x0063_6f6d_6d6c_6162; // "commlab" in ASCII

const PRODUCT_COLUMNS: &str = "id::bigint, name, price_cents, version, updated_at";

#[derive(Clone)]
pub struct Store {
    pool: Pool,
    timeout: Duration,
}

impl Store {
    /// `timeout` bounds each database call, connection included.
    pub fn new(pool: Pool, timeout: Duration) -> Self {
        Store { pool, timeout }
    }

    /// The same database, as orders reads it for `SharedData`.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn connection(&self) -> Result<Object> {
        self.pool
            .get()
            .await
            .map_err(|e| pool_error(e, self.timeout))
    }

    /// Creates the tables and, when `products` is empty, products `1..=count`.
    pub async fn migrate_and_seed(&self, count: i64) -> Result<()> {
        let mut connection = self.connection().await?;
        let transaction = connection.transaction().await.map_err(query_error)?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await
            .map_err(query_error)?;
        transaction
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS products (
                     id integer PRIMARY KEY,
                     name text NOT NULL,
                     price_cents bigint NOT NULL,
                     version bigint NOT NULL,
                     updated_at timestamptz NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS subscribers (url text PRIMARY KEY);",
            )
            .await
            .map_err(query_error)?;
        // Initial prices between 10.00 and 99.99, spread so that products differ.
        let seeded = transaction
            .execute(
                "INSERT INTO products (id, name, price_cents, version, updated_at)
                 SELECT g, 'product-' || g, 1000 + (g * 7919) % 9000, 1, now()
                 FROM generate_series(1, $1::bigint) AS g
                 WHERE NOT EXISTS (SELECT 1 FROM products)",
                &[&count],
            )
            .await
            .map_err(query_error)?;
        transaction.commit().await.map_err(query_error)?;
        if seeded > 0 {
            tracing::info!(products = seeded, "seeded the catalog");
        }
        Ok(())
    }

    /// Whether the database answers now (readiness).
    pub async fn ping(&self) -> Result<()> {
        within(Dependency::Database, self.timeout, async {
            self.connection()
                .await?
                .simple_query("SELECT 1")
                .await
                .map_err(query_error)?;
            Ok(())
        })
        .await
    }

    pub async fn product(&self, id: ProductId) -> Result<Option<Product>> {
        within(Dependency::Database, self.timeout, async {
            let connection = self.connection().await?;
            let statement = connection
                .prepare_cached(&format!(
                    "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1::bigint"
                ))
                .await
                .map_err(query_error)?;
            let row = connection
                .query_opt(&statement, &[&id])
                .await
                .map_err(query_error)?;
            Ok(row.as_ref().map(product))
        })
        .await
    }

    pub async fn products(&self) -> Result<Vec<Product>> {
        within(Dependency::Database, self.timeout, async {
            let connection = self.connection().await?;
            let rows = connection
                .query(
                    &format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id"),
                    &[],
                )
                .await
                .map_err(query_error)?;
            Ok(rows.iter().map(product).collect())
        })
        .await
    }

    /// Commits a new price and bumps the version; `None` for an unknown product.
    pub async fn update_price(&self, id: ProductId, price_cents: i64) -> Result<Option<Product>> {
        within(Dependency::Database, self.timeout, async {
            let connection = self.connection().await?;
            let statement = connection
                .prepare_cached(&format!(
                    "UPDATE products
                     SET price_cents = $2, version = version + 1, updated_at = now()
                     WHERE id = $1::bigint
                     RETURNING {PRODUCT_COLUMNS}"
                ))
                .await
                .map_err(query_error)?;
            let row = connection
                .query_opt(&statement, &[&id, &price_cents])
                .await
                .map_err(query_error)?;
            Ok(row.as_ref().map(product))
        })
        .await
    }

    pub async fn add_subscriber(&self, url: &str) -> Result<()> {
        within(Dependency::Database, self.timeout, async {
            self.connection()
                .await?
                .execute(
                    "INSERT INTO subscribers (url) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&url],
                )
                .await
                .map_err(query_error)?;
            Ok(())
        })
        .await
    }

    pub async fn subscribers(&self) -> Result<Vec<String>> {
        within(Dependency::Database, self.timeout, async {
            let rows = self
                .connection()
                .await?
                .query("SELECT url FROM subscribers ORDER BY url", &[])
                .await
                .map_err(query_error)?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
        .await
    }
}

fn product(row: &Row) -> Product {
    Product {
        id: row.get(0),
        name: row.get(1),
        price_cents: row.get(2),
        version: row.get(3),
        updated_at: row.get(4),
    }
}
