//! The fault backend trait the experiment engine drives.

use std::time::Duration;

use async_trait::async_trait;
use commlab_api::{Fault, FaultKind, Target};

use crate::ChaosError;

/// Applies the faults of a chaos plan to a running deployment of a pattern.
///
/// # How the experiment engine uses it
///
/// For each [`Fault`] of `spec.chaos`, on the run's timeline:
///
/// 1. at `fault.at`, [`inject`](FaultBackend::inject) it and keep the
///    returned [`ActiveFault`];
/// 2. at `fault.at + fault.duration`, [`recover`](FaultBackend::recover) it,
///    for every kind of fault, `Kill` included (see below);
/// 3. once the run ends, whether it succeeded, failed or was cancelled,
///    [`cleanup`](FaultBackend::cleanup), which undoes whatever is still
///    injected.
///
/// Faults may overlap, on the same target or on different ones; a backend
/// keeps each one in force until its own `recover`.
///
/// # What each fault means
///
/// | [`FaultKind`] | after `inject` | at `recover` |
/// |---|---|---|
/// | `Outage` | the target is down (not serving, not accepting connections) | it is started again; being ready may take a while, which the engine measures as recovery |
/// | `Kill` | the target was killed abruptly and is restarting at once, as a Deployment would | nothing to undo; a backend may release what it created |
/// | `Delay` | traffic through the target gets `latency` ± `jitter` more per round trip | latency is back to normal |
/// | `Partition` | the target is unreachable: packets are dropped, connections stall | traffic flows again |
///
/// # Backends
///
/// - [`LocalBackend`](crate::LocalBackend): processes on this machine and a
///   TCP fault proxy in front of each target (the `commlab compare` CLI).
/// - [`ChaosMeshBackend`](crate::ChaosMeshBackend), with kube's dynamic
///   API: `inject` creates a `PodChaos` (`pod-failure` for `Outage`,
///   `pod-kill` for `Kill`) or a `NetworkChaos` (`delay` with latency and
///   jitter, `partition`) whose `duration` is the fault's, selecting the
///   target's pods by their `app.kubernetes.io/*` labels, named after the
///   experiment and `fault.name`, labelled as managed by commlab (see
///   [`chaos_mesh`](crate::chaos_mesh)). It returns
///   [`FaultHandle::ChaosMeshObject`]; `recover` deletes that object (Chaos
///   Mesh then undoes the fault if its duration has not already run out)
///   and `cleanup` deletes every object with the experiment's labels.
/// - [`DashboardBackend`](crate::DashboardBackend), over the Chaos Mesh
///   dashboard's HTTP API: `inject` is `POST /api/experiments` with the
///   same object, returning [`FaultHandle::DashboardExperiment`] with the
///   experiment's `uid`; `recover` is `DELETE /api/experiments/{uid}`;
///   `cleanup` deletes what it injected and the namespace's experiments
///   labelled as this experiment's.
///
/// Both cluster backends return errors as [`ChaosError`] variants of their
/// own, each with a bounded [`ChaosError::category`].
///
/// # Contract
///
/// - `inject` either applies the fault and returns `Ok`, or returns an error
///   and leaves the target as it was as far as it can. A fault the backend
///   cannot apply to that target is [`ChaosError::Unsupported`], returned
///   before anything is changed.
/// - `recover` is idempotent: recovering a fault that was already recovered,
///   or already undone by `cleanup`, is `Ok`.
/// - `cleanup` is idempotent and tries to undo everything still injected
///   even when undoing one of them fails; it returns the first error.
/// - Implementations are shared as `Arc<dyn FaultBackend>` across tasks.
#[async_trait]
pub trait FaultBackend: Send + Sync {
    /// A short name for logs and reports, e.g. `local` or `chaos-mesh`.
    fn name(&self) -> &'static str;

    /// Applies `fault` now; it stays in force until [`recover`](Self::recover).
    async fn inject(&self, fault: &Fault) -> Result<ActiveFault, ChaosError>;

    /// Undoes a fault returned by [`inject`](Self::inject).
    async fn recover(&self, active: ActiveFault) -> Result<(), ChaosError>;

    /// Undoes every fault this backend injected and has not recovered yet.
    async fn cleanup(&self) -> Result<(), ChaosError>;
}

/// A fault that is in force: what `inject` returns and `recover` takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveFault {
    /// The fault's name in the chaos plan.
    pub name: String,
    pub kind: FaultKind,
    pub target: Target,
    /// What the backend needs to undo it.
    pub handle: FaultHandle,
}

impl ActiveFault {
    pub(crate) fn new(fault: &Fault, handle: FaultHandle) -> Self {
        Self {
            name: fault.name.clone(),
            kind: fault.fault,
            target: fault.target,
            handle,
        }
    }
}

/// How a backend finds an injected fault again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultHandle {
    /// Injected by [`LocalBackend`](crate::LocalBackend); the number is unique
    /// within that backend.
    Local(u64),
    /// A Chaos Mesh object created through the Kubernetes API, deleted at recover.
    ChaosMeshObject {
        /// `PodChaos` or `NetworkChaos`.
        kind: String,
        namespace: String,
        name: String,
    },
    /// An experiment created through the Chaos Mesh dashboard's HTTP API.
    DashboardExperiment { uid: String },
}

/// The latency and jitter of a `Delay` fault, the same for every backend: a
/// plan without a jitter means none, one without a latency is
/// [`ChaosError::InvalidFault`].
pub(crate) fn latency_and_jitter(fault: &Fault) -> Result<(Duration, Duration), ChaosError> {
    let latency = fault
        .latency
        .as_ref()
        .ok_or_else(|| ChaosError::InvalidFault {
            name: fault.name.clone(),
            reason: "a Delay fault needs a latency".into(),
        })?;
    let jitter = fault
        .jitter
        .as_ref()
        .map(|jitter| jitter.as_std())
        .unwrap_or_default();
    Ok((latency.as_std(), jitter))
}
