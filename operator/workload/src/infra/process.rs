//! A local server process that can be stopped, killed and started again
//! with the same command line, port and data.
//!
//! Each process runs in its own process group, and signals go to the whole
//! group: PostgreSQL's backends die with their postmaster on `kill()`, as
//! they would with a pod, and no helper process is left behind.

use std::{
    ffi::OsString,
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};

use crate::error::{Error, Result};

/// How to start a process; kept so it can be started again.
#[derive(Clone, Debug)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub current_dir: Option<PathBuf>,
    /// `(uid, gid)` to run as, e.g. PostgreSQL's server, which refuses root.
    pub user: Option<(u32, u32)>,
}

impl Launch {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Launch {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
            user: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    pub fn user(mut self, user: Option<(u32, u32)>) -> Self {
        self.user = user;
        self
    }

    /// The command, without its output redirection.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command
    }
}

/// One server process (PostgreSQL, NATS, or a service), logging to a file.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    launch: Launch,
    log_path: PathBuf,
    /// The signal that asks it to shut down cleanly.
    stop_signal: Signal,
    child: Option<Child>,
}

/// How long a clean shutdown may take before the process is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

impl ManagedProcess {
    pub fn new(
        name: impl Into<String>,
        launch: Launch,
        log_path: PathBuf,
        stop_signal: Signal,
    ) -> Self {
        ManagedProcess {
            name: name.into(),
            launch,
            log_path,
            stop_signal,
            child: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Starts the process; its output is appended to the log file.
    pub fn spawn(&mut self) -> Result<()> {
        if self.is_running() {
            return Err(Error::process(&self.name, "is already running"));
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| Error::io(format!("opening {}", self.log_path.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::io("duplicating the log file", e))?;
        let child = self
            .launch
            .command()
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                Error::io(
                    format!("starting {} ({})", self.name, self.launch.program.display()),
                    e,
                )
            })?;
        tracing::debug!(process = %self.name, pid = child.id(), "started");
        self.child = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none() && self.child.is_some()
    }

    /// The exit status once the process has ended.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// Asks the process to shut down cleanly and waits; kills it after [`STOP_GRACE`].
    pub async fn stop(&mut self) -> Result<()> {
        self.signal(self.stop_signal);
        let deadline = Instant::now() + STOP_GRACE;
        while self.child.is_some() && self.exit_status().is_none() && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        self.kill().await
    }

    /// SIGKILL to the whole process group, and waits for the process to end.
    pub async fn kill(&mut self) -> Result<()> {
        self.signal(Signal::SIGKILL);
        let deadline = Instant::now() + STOP_GRACE;
        while self.child.is_some() && self.exit_status().is_none() {
            if Instant::now() > deadline {
                return Err(Error::process(&self.name, "did not end after SIGKILL"));
            }
            tokio::time::sleep(POLL).await;
        }
        self.reap();
        Ok(())
    }

    /// Polls `ready` until it answers true. Fails with the log's tail when
    /// the process exits first or `timeout` passes.
    pub async fn wait_ready<F, Fut>(&mut self, timeout: Duration, mut ready: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                let tail = self.log_tail(20);
                return Err(Error::process(
                    &self.name,
                    format!("exited ({status}) while starting:\n{tail}"),
                ));
            }
            if ready().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                let tail = self.log_tail(20);
                return Err(Error::process(
                    &self.name,
                    format!("not ready after {timeout:?}:\n{tail}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    fn signal(&mut self, signal: Signal) {
        if let Some(child) = &self.child {
            // The group outlives its leader while a member lives: signal it
            // even when the leader has already ended. ESRCH means all are gone.
            let _ = killpg(Pid::from_raw(child.id() as i32), signal);
        }
    }

    fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
            tracing::debug!(process = %self.name, "stopped");
        }
    }

    /// The same as [`ManagedProcess::stop`], blocking the thread (for `Drop`).
    fn stop_blocking(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.signal(self.stop_signal);
        let deadline = Instant::now() + STOP_GRACE;
        while self.exit_status().is_none() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        self.signal(Signal::SIGKILL);
        self.reap();
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop_blocking();
    }
}

pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    // Only the end matters; don't read a long log whole.
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(64 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
