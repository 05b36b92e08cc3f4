//! PostgreSQL connection pools. deadpool opens connections lazily and drops
//! broken ones, so a pool made while the database is down starts working as
//! soon as it is back: nothing here has to reconnect by hand.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::error::{Dependency, Error, Result};

/// A pool of up to `max_size` connections to `url`, where waiting for a
/// connection, opening one and checking one are each bounded by `timeout`.
pub fn pool(url: &str, timeout: Duration, max_size: usize) -> Result<Pool> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| Error::Config(format!("database URL `{url}`: {e}")))?;
    config.connect_timeout(timeout);
    // Fast recycling only checks that the connection is not closed: a
    // connection broken by a database restart is closed, and gets replaced.
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()
        .map_err(|e| Error::Config(format!("database pool: {e}")))
}

/// How a failure to get a pooled connection looks to a client.
pub fn pool_error(error: PoolError, timeout: Duration) -> Error {
    match error {
        PoolError::Timeout(_) => Error::Timeout {
            dependency: Dependency::Database,
            timeout,
        },
        other => Error::unavailable(Dependency::Database, other),
    }
}

pub fn query_error(error: tokio_postgres::Error) -> Error {
    Error::unavailable(Dependency::Database, error)
}
