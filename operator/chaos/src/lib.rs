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
