//! Local processes the local backend stops, kills and starts.

use std::{fmt, time::Duration};

use async_trait::async_trait;
use nix::{
    errno::Errno,
    sys::signal::{self, Signal},
    unistd::Pid,
};
use tokio::{
    process::{Child, Command},
    sync::Mutex,
};
use tracing::{debug, warn};

use crate::ChaosError;

/// Controls one component running as local processes: what the local
/// backend needs for `Outage` and `Kill`.
///
/// [`ManagedProcess`] implements it for a plain command; components with
/// their own lifecycle (a PostgreSQL cluster, a NATS server, several service
/// replicas) implement it on their handles.
#[async_trait]
pub trait LocalProcess: Send + Sync {
    /// Stops the component gracefully and returns once it no longer serves.
    /// `Ok` when it is not running.
    async fn stop(&self) -> Result<(), ChaosError>;

    /// Kills the component abruptly, as a crash or `SIGKILL` would, and
    /// returns once it is gone. `Ok` when it is not running.
    async fn kill(&self) -> Result<(), ChaosError>;

    /// Starts the component again the way it was first started. Returns once
    /// it is started, not necessarily ready: how long it takes to be ready is
    /// part of what an experiment measures. `Ok` when it is already running.
    async fn start(&self) -> Result<(), ChaosError>;
}

/// How long [`ManagedProcess::stop`](LocalProcess::stop) waits after
/// `SIGTERM` before it sends `SIGKILL`, unless set with
/// [`ManagedProcess::with_grace`].
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// How long a process may take to be reaped after `SIGKILL`.
const EXIT_AFTER_SIGKILL: Duration = Duration::from_secs(5);

/// A process started from a command, which can be stopped (`SIGTERM`, then
/// `SIGKILL` after a grace period), killed (`SIGKILL`) and started again with
/// the same command.
///
/// Signals go to the process itself, so the command should be the server
/// (or `exec` it), not a shell that forks it. The process is killed when the
/// `ManagedProcess` is dropped.
pub struct ManagedProcess {
    name: String,
    command: Box<dyn Fn() -> Command + Send + Sync>,
    grace: Duration,
    child: Mutex<Option<Child>>,
}

impl fmt::Debug for ManagedProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedProcess")
            .field("name", &self.name)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl ManagedProcess {
    /// A process called `name` (for logs and errors), not yet started:
    /// call [`start`](LocalProcess::start). `command` builds the command for
    /// every start, with its arguments, environment and standard streams.
    pub fn new(
        name: impl Into<String>,
        command: impl Fn() -> Command + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            command: Box::new(command),
            grace: DEFAULT_GRACE,
            child: Mutex::new(None),
        }
    }

    /// How long `stop` waits for the process to exit after `SIGTERM`.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id while it runs.
    pub async fn id(&self) -> Option<u32> {
        let mut child = self.child.lock().await;
        let child = child.as_mut()?;
        match child.try_wait() {
            Ok(None) => child.id(),
            _ => None,
        }
    }

    /// Whether the process has been started and has not exited.
    pub async fn is_running(&self) -> bool {
        self.id().await.is_some()
    }

    fn error(&self, action: &'static str, source: impl Into<crate::error::BoxError>) -> ChaosError {
        ChaosError::process(self.name.clone(), action, source)
    }

    /// Sends `SIGKILL` and waits, bounded, until the process is reaped.
    async fn kill_and_reap(
        &self,
        child: &mut Child,
        action: &'static str,
    ) -> Result<(), ChaosError> {
        // Fails only when the process was already reaped, which is what we want.
        let _ = child.start_kill();
        match tokio::time::timeout(EXIT_AFTER_SIGKILL, child.wait()).await {
            Ok(status) => status.map(drop).map_err(|err| self.error(action, err)),
            Err(_) => Err(self.error(
                action,
                format!("still running {EXIT_AFTER_SIGKILL:?} after SIGKILL"),
            )),
        }
    }
}

#[async_trait]
impl LocalProcess for ManagedProcess {
    async fn stop(&self) -> Result<(), ChaosError> {
        let mut slot = self.child.lock().await;
        let Some(child) = slot.as_mut() else {
            return Ok(());
        };
        if child
            .try_wait()
            .map_err(|err| self.error("stop", err))?
            .is_some()
        {
            *slot = None;
            return Ok(());
        }
        if let Some(pid) = child.id() {
            let pid = i32::try_from(pid).map_err(|err| self.error("stop", err))?;
            match signal::kill(Pid::from_raw(pid), Signal::SIGTERM) {
                // ESRCH: it exited on its own in the meantime.
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(errno) => return Err(self.error("stop", errno)),
            }
        }
        match tokio::time::timeout(self.grace, child.wait()).await {
            Ok(status) => {
                status.map_err(|err| self.error("stop", err))?;
            }
            Err(_) => {
                warn!(process = %self.name, grace = ?self.grace, "no exit after SIGTERM, sending SIGKILL");
                self.kill_and_reap(child, "stop").await?;
            }
        }
        debug!(process = %self.name, "stopped");
        *slot = None;
        Ok(())
    }

    async fn kill(&self) -> Result<(), ChaosError> {
        let mut slot = self.child.lock().await;
        let Some(child) = slot.as_mut() else {
            return Ok(());
        };
        self.kill_and_reap(child, "kill").await?;
        debug!(process = %self.name, "killed");
        *slot = None;
        Ok(())
    }

    async fn start(&self) -> Result<(), ChaosError> {
        let mut slot = self.child.lock().await;
        if let Some(child) = slot.as_mut()
            && child
                .try_wait()
                .map_err(|err| self.error("start", err))?
                .is_none()
        {
            return Ok(());
        }
        let mut command = (self.command)();
        command.kill_on_drop(true);
        let child = command.spawn().map_err(|err| self.error("start", err))?;
        debug!(process = %self.name, pid = ?child.id(), "started");
        *slot = Some(child);
        Ok(())
    }
}
