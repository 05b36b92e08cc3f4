//! The local backend: faults on processes running on this machine.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    sync::Arc,
};

use async_trait::async_trait;
use commlab_api::{Fault, FaultKind, Target};
use tokio::sync::Mutex;
use tracing::info;

use crate::{
    ActiveFault, ChaosError, FaultBackend, FaultHandle, Injection, LocalProcess, ProxyHandle,
    Recovery, Toxic, backend::latency_and_jitter,
};

/// Applies faults to components running as local processes, for
/// `commlab compare`:
///
/// | fault | needs | inject | recover |
/// |---|---|---|---|
/// | `Outage` | a process | [`stop`](LocalProcess::stop) | [`start`](LocalProcess::start) |
/// | `Kill` | a process | [`kill`](LocalProcess::kill), then `start` at once | nothing |
/// | `Delay` | a fault proxy | [`Toxic::Delay`] | no toxic |
/// | `Partition` | a fault proxy | [`Toxic::Partition`] | no toxic |
///
/// Each target is registered with what it has: its process controllers, the
/// [`FaultProxy`](crate::FaultProxy) its clients connect through, or both. A
/// target with several replicas may have several of each; a fault acts on
/// all of them. A fault on a target without what it needs is
/// [`ChaosError::Unsupported`].
///
/// The backend does each step itself, so a fault is in force once `inject`
/// returns `Ok` and undone once `recover` does: both are confirmed at that
/// moment, and no fault is ever "not applied".
///
/// Overlapping faults on one target combine: the target stays down until
/// its last `Outage` is recovered (a `Kill` during an outage does not start
/// it), and a `Partition` takes precedence over a `Delay`; otherwise the
/// latest `Delay` applies.
pub struct LocalBackend {
    targets: HashMap<Target, LocalTarget>,
    state: Mutex<State>,
}

#[derive(Default)]
struct LocalTarget {
    processes: Vec<Arc<dyn LocalProcess>>,
    proxies: Vec<ProxyHandle>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Faults in force, in the order they were injected. `Kill` has nothing
    /// to undo and is never here.
    active: Vec<Injected>,
}

struct Injected {
    id: u64,
    kind: FaultKind,
    target: Target,
    toxic: Option<Toxic>,
}

impl State {
    fn outage_on(&self, target: Target, except: Option<u64>) -> bool {
        self.active.iter().any(|injected| {
            injected.target == target
                && injected.kind == FaultKind::Outage
                && Some(injected.id) != except
        })
    }

    /// The toxic the target's proxy should have for the faults in force.
    fn toxic_for(&self, target: Target) -> Toxic {
        let toxics = || {
            self.active
                .iter()
                .filter(move |injected| injected.target == target)
                .filter_map(|injected| injected.toxic.as_ref())
        };
        if toxics().any(|toxic| *toxic == Toxic::Partition) {
            Toxic::Partition
        } else {
            toxics().next_back().cloned().unwrap_or_default()
        }
    }
}

impl fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut targets: Vec<_> = self
            .targets
            .iter()
            .map(|(target, t)| {
                (
                    *target,
                    t.processes.len(),
                    t.proxies.iter().map(|p| p.local_addr()).collect::<Vec<_>>(),
                )
            })
            .collect();
        targets.sort_by_key(|(target, ..)| *target);
        f.debug_struct("LocalBackend")
            .field("targets (process, proxy)", &targets)
            .finish()
    }
}

impl Default for LocalBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalBackend {
    /// A backend with no targets registered yet.
    pub fn new() -> Self {
        Self {
            targets: HashMap::new(),
            state: Mutex::new(State::default()),
        }
    }

    /// Registers a process controller of `target`, for `Outage` and `Kill`;
    /// once per replica, or once for a controller of them all.
    pub fn with_process(mut self, target: Target, process: Arc<dyn LocalProcess>) -> Self {
        self.targets
            .entry(target)
            .or_default()
            .processes
            .push(process);
        self
    }

    /// Registers a fault proxy in front of `target`, for `Delay` and
    /// `Partition`; once per replica when each has its own.
    pub fn with_proxy(mut self, target: Target, proxy: ProxyHandle) -> Self {
        self.targets.entry(target).or_default().proxies.push(proxy);
        self
    }

    fn processes(
        &self,
        kind: FaultKind,
        target: Target,
    ) -> Result<&[Arc<dyn LocalProcess>], ChaosError> {
        match self.targets.get(&target) {
            Some(t) if !t.processes.is_empty() => Ok(&t.processes),
            _ => Err(ChaosError::Unsupported {
                fault: kind,
                target,
                missing: "process controller",
            }),
        }
    }

    fn proxies(&self, kind: FaultKind, target: Target) -> Result<&[ProxyHandle], ChaosError> {
        match self.targets.get(&target) {
            Some(t) if !t.proxies.is_empty() => Ok(&t.proxies),
            _ => Err(ChaosError::Unsupported {
                fault: kind,
                target,
                missing: "fault proxy",
            }),
        }
    }

    fn set_toxic(&self, state: &State, target: Target) {
        let toxic = state.toxic_for(target);
        for proxy in self.targets.get(&target).map_or(&[][..], |t| &t.proxies) {
            proxy.set_toxic(toxic.clone());
        }
    }
}

/// Starts every process, even when one fails; returns the first error.
async fn start_all(processes: &[Arc<dyn LocalProcess>]) -> Result<(), ChaosError> {
    let mut first_error = None;
    for process in processes {
        if let Err(err) = process.start().await {
            first_error.get_or_insert(err);
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[async_trait]
impl FaultBackend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn inject(&self, fault: &Fault) -> Result<ActiveFault, ChaosError> {
        let (kind, target) = (fault.fault, fault.target);
        let mut state = self.state.lock().await;
        let id = state.next_id;
        match kind {
            FaultKind::Outage => {
                let processes = self.processes(kind, target)?;
                if !state.outage_on(target, None) {
                    for process in processes {
                        process.stop().await?;
                    }
                }
                state.active.push(Injected {
                    id,
                    kind,
                    target,
                    toxic: None,
                });
            }
            FaultKind::Kill => {
                let processes = self.processes(kind, target)?;
                for process in processes {
                    process.kill().await?;
                }
                // Restarted at once, as a Deployment would, unless an outage keeps it down.
                if !state.outage_on(target, None) {
                    start_all(processes).await?;
                }
            }
            FaultKind::Delay | FaultKind::Partition => {
                self.proxies(kind, target)?;
                let toxic = toxic(fault)?;
                state.active.push(Injected {
                    id,
                    kind,
                    target,
                    toxic: Some(toxic),
                });
                self.set_toxic(&state, target);
            }
        }
        state.next_id += 1;
        info!(fault = %fault.name, %kind, %target, "fault injected");
        let in_force = Injection::InForce {
            since: tokio::time::Instant::now(),
        };
        Ok(ActiveFault::new(fault, FaultHandle::Local(id), in_force))
    }

    async fn recover(&self, active: ActiveFault) -> Result<Recovery, ChaosError> {
        let FaultHandle::Local(id) = active.handle else {
            return Err(ChaosError::ForeignFault {
                name: active.name,
                backend: self.name(),
            });
        };
        let mut state = self.state.lock().await;
        let undone = || Recovery::Confirmed {
            at: tokio::time::Instant::now(),
        };
        // A `Kill`, or a fault already recovered or cleaned up: nothing to undo.
        let Some(position) = state.active.iter().position(|injected| injected.id == id) else {
            return Ok(undone());
        };
        let (kind, target) = (state.active[position].kind, state.active[position].target);
        if kind == FaultKind::Outage && !state.outage_on(target, Some(id)) {
            // Stays in force if starting fails, so that cleanup tries again.
            start_all(self.processes(kind, target)?).await?;
        }
        state.active.remove(position);
        if matches!(kind, FaultKind::Delay | FaultKind::Partition) {
            self.set_toxic(&state, target);
        }
        info!(fault = %active.name, %kind, %target, "fault recovered");
        Ok(undone())
    }

    async fn cleanup(&self) -> Result<(), ChaosError> {
        let mut state = self.state.lock().await;
        let injected = std::mem::take(&mut state.active);
        let proxied: BTreeSet<Target> = injected
            .iter()
            .filter(|i| i.toxic.is_some())
            .map(|i| i.target)
            .collect();
        for target in proxied {
            self.set_toxic(&state, target);
        }
        let mut first_error = None;
        // One start per target, however many outages it had.
        let mut outages = BTreeMap::new();
        for outage in injected.into_iter().filter(|i| i.kind == FaultKind::Outage) {
            outages.entry(outage.target).or_insert(outage);
        }
        for outage in outages.into_values() {
            let started = match self.processes(outage.kind, outage.target) {
                Ok(processes) => start_all(processes).await,
                Err(err) => Err(err),
            };
            if let Err(err) = started {
                // Kept, so that another cleanup tries again.
                state.active.push(outage);
                first_error.get_or_insert(err);
            }
        }
        info!("local faults cleaned up");
        first_error.map_or(Ok(()), Err)
    }
}

/// The proxy toxic for a `Delay` or `Partition` fault.
fn toxic(fault: &Fault) -> Result<Toxic, ChaosError> {
    match fault.fault {
        FaultKind::Partition => Ok(Toxic::Partition),
        _ => {
            let (latency, jitter) = latency_and_jitter(fault)?;
            Ok(Toxic::Delay { latency, jitter })
        }
    }
}
