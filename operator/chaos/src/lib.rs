//! Fault backends for commlab experiments.
//!
//! The experiment engine drives a [`FaultBackend`]: it injects each fault of
//! the chaos plan at its offset and recovers it when its duration is over.
//!
//! - [`LocalBackend`] applies faults to components running as local
//!   processes ([`LocalProcess`], [`ManagedProcess`]) and to the traffic
//!   through a TCP fault proxy in front of each one ([`FaultProxy`]).
//! - Chaos Mesh backends, for experiments in a cluster, fit the same trait;
//!   see [`FaultBackend`] for how.
//!
//! Wiring the local backend for catalog, which orders reaches through a
//! fault proxy:
//!
//! ```no_run
//! use std::{net::SocketAddr, sync::Arc};
//!
//! use commlab_api::Target;
//! use commlab_chaos::{
//!     ChaosError, FaultBackend, FaultProxy, LocalBackend, LocalProcess, ManagedProcess,
//! };
//!
//! # async fn wire(catalog_addr: SocketAddr) -> Result<(), ChaosError> {
//! let catalog = Arc::new(ManagedProcess::new("catalog", || {
//!     let mut command = tokio::process::Command::new("commlab");
//!     command.args(["serve", "catalog"]);
//!     command
//! }));
//! catalog.start().await?;
//! // orders is given the proxy's address as catalog's.
//! let proxy = FaultProxy::bind(SocketAddr::from(([127, 0, 0, 1], 0)), catalog_addr).await?;
//! let orders_sees_catalog_at = proxy.local_addr();
//! let backend: Arc<dyn FaultBackend> = Arc::new(
//!     LocalBackend::new()
//!         .with_process(Target::Catalog, catalog.clone())
//!         .with_proxy(Target::Catalog, proxy.handle()),
//! );
//! # let _ = (orders_sees_catalog_at, backend);
//! # Ok(())
//! # }
//! ```

mod backend;
mod error;
mod local;
mod process;
pub mod proxy;

pub use backend::{ActiveFault, FaultBackend, FaultHandle};
pub use error::{BoxError, ChaosError};
pub use local::LocalBackend;
pub use process::{DEFAULT_GRACE, LocalProcess, ManagedProcess};
pub use proxy::{FaultProxy, ProxyHandle, Toxic};
