//! The fault backend trait the experiment engine drives.

use std::time::Duration;

use async_trait::async_trait;
use commlab_api::{Fault, FaultKind, Target};
use tokio::time::Instant;

use crate::ChaosError;

/// Applies the faults of a chaos plan to a running deployment of a pattern.
///
/// # How the experiment engine uses it
///
/// For each [`Fault`] of `spec.chaos`, on the run's timeline:
///
/// 1. at `fault.at`, [`inject`](FaultBackend::inject) it and keep the
///    returned [`ActiveFault`], whose [`Injection`] says whether the
///    backend confirmed it in force, and since when, or why it was not
///    applied;
/// 2. at `fault.at + fault.duration`, [`recover`](FaultBackend::recover) it,
///    for every kind of fault, `Kill` included (see below); a fault that
///    was not applied is recovered at once instead, to undo whatever part
///    of it took effect, and its window is not judged;
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
///   [`chaos_mesh`](crate::chaos_mesh)), then reads Chaos Mesh's status of
///   it until Chaos Mesh reports every selected pod injected or an
///   injection failed (see [`chaos_mesh_status`](crate::chaos_mesh_status)).
///   It returns [`FaultHandle::ChaosMeshObject`]; `recover` deletes that
///   object (Chaos Mesh then undoes the fault if its duration has not
///   already run out) and waits until Chaos Mesh reports it undone or lets
///   the object go; `cleanup` deletes every object with the experiment's
///   labels.
/// - [`DashboardBackend`](crate::DashboardBackend), over the Chaos Mesh
///   dashboard's HTTP API: `inject` is `POST /api/experiments` with the
///   same object, then the dashboard's summary of its status (`running`)
///   and its events for the reason of a failure, returning
///   [`FaultHandle::DashboardExperiment`] with the experiment's `uid`;
///   `recover` is `DELETE /api/experiments/{uid}`, then waits until the
///   dashboard no longer lists it; `cleanup` deletes what it injected and
///   the namespace's experiments labelled as this experiment's.
///
/// Both cluster backends return errors as [`ChaosError`] variants of their
/// own, each with a bounded [`ChaosError::category`].
///
/// # Contract
///
/// - `inject` returns `Ok` once the backend knows what became of the fault:
///   [`Injection::InForce`] when it confirmed the fault in force (a cluster
///   backend from Chaos Mesh's own status), [`Injection::NotApplied`] with
///   the reason when it could not be applied or was not confirmed in time.
///   The wait is bounded by the backend's confirmation timeout and never
///   outlasts the fault's duration: a fault not in force by the end of its
///   window was not in force in it. An error means the backend could not
///   even ask (the API refused the object, the dashboard is down); the
///   target is left as it was as far as it can. A fault the backend cannot
///   apply to that target at all is [`ChaosError::Unsupported`], returned
///   before anything is changed.
/// - `recover` undoes whatever the fault's `inject` left, applied or not,
///   and says whether the backend confirmed it undone ([`Recovery`]).
///   It is idempotent: recovering a fault that was already recovered, or
///   already undone by `cleanup`, is `Ok`.
/// - `cleanup` is idempotent and tries to undo everything still injected
///   even when undoing one of them fails; it returns the first error.
/// - Implementations are shared as `Arc<dyn FaultBackend>` across tasks.
#[async_trait]
pub trait FaultBackend: Send + Sync {
    /// A short name for logs and reports, e.g. `local` or `chaos-mesh`.
    fn name(&self) -> &'static str;

    /// Applies `fault` now and confirms it in force; it stays in force
    /// until [`recover`](Self::recover).
    async fn inject(&self, fault: &Fault) -> Result<ActiveFault, ChaosError>;

    /// Undoes a fault returned by [`inject`](Self::inject).
    async fn recover(&self, active: ActiveFault) -> Result<Recovery, ChaosError>;

    /// Undoes every fault this backend injected and has not recovered yet.
    async fn cleanup(&self) -> Result<(), ChaosError>;
}

/// An injected fault: what `inject` returns and `recover` takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveFault {
    /// The fault's name in the chaos plan.
    pub name: String,
    pub kind: FaultKind,
    pub target: Target,
    /// What the backend needs to undo it.
    pub handle: FaultHandle,
    /// Whether it is in force.
    pub injection: Injection,
}

impl ActiveFault {
    pub(crate) fn new(fault: &Fault, handle: FaultHandle, injection: Injection) -> Self {
        Self {
            name: fault.name.clone(),
            kind: fault.fault,
            target: fault.target,
            handle,
            injection,
        }
    }
}

/// What became of a fault at `inject`, as its backend confirmed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Injection {
    /// In force since `since`: when the backend saw it confirmed (for Chaos
    /// Mesh, within one poll of its status saying so).
    InForce { since: Instant },
    /// Not in force: the backend could not apply it, or did not confirm it
    /// in time. `reason` is in the backend's words, Chaos Mesh's message
    /// where it gave one.
    NotApplied { reason: String },
}

/// What became of a fault at `recover`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Confirmed undone at `at` (for Chaos Mesh: it reported every pod
    /// recovered, or let the deleted object go, which it does once it has).
    Confirmed { at: Instant },
    /// Asked to undo it, but not confirmed in time: why, in the backend's words.
    Unconfirmed { reason: String },
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
