//! Fault backends for commlab experiments.
//!
//! The experiment engine drives a [`FaultBackend`]: it injects each fault of
//! the chaos plan at its offset and recovers it when its duration is over.
//!
//! - [`LocalBackend`] applies faults to components running as local
//!   processes ([`LocalProcess`], [`ManagedProcess`]) and to the traffic
//!   through a TCP fault proxy in front of each one ([`FaultProxy`]).
//! - [`ChaosMeshBackend`] creates Chaos Mesh's `PodChaos` and `NetworkChaos`
//!   objects through the Kubernetes API, for experiments in a cluster.
//! - [`DashboardBackend`] creates the same objects through the Chaos Mesh
//!   dashboard's HTTP API.
//!
//!   Both build their objects with the pure functions of [`chaos_mesh`] and
//!   work for one experiment, a [`ChaosScope`]. Neither assumes that a
//!   created object acted: each confirms the fault in force, or learns why
//!   not, from Chaos Mesh's own status ([`chaos_mesh_status`]), and says so
//!   in the [`Injection`] it returns. [`ClusterBackendArgs`] chooses between
//!   them, with the same flags and environment variables for the operator
//!   and its runner.
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
pub mod chaos_mesh;
pub mod chaos_mesh_status;
pub mod cluster_backend;
mod confirm;
pub mod dashboard;
mod error;
pub mod kube_backend;
mod local;
mod process;
pub mod proxy;

pub use backend::{ActiveFault, FaultBackend, FaultHandle, Injection, Recovery};
pub use chaos_mesh::ChaosScope;
pub use cluster_backend::{BearerToken, ClusterBackendArgs, ClusterBackendKind};
pub use confirm::DEFAULT_CONFIRM_TIMEOUT;
pub use dashboard::{DashboardBackend, DashboardConfig};
pub use error::{BoxError, ChaosError};
pub use kube_backend::ChaosMeshBackend;
pub use local::LocalBackend;
pub use process::{DEFAULT_GRACE, LocalProcess, ManagedProcess};
pub use proxy::{FaultProxy, ProxyHandle, Toxic};
