//! What the engine tells whoever watches it: the CLI's progress bars or
//! plain lines, a Job's logs, a test's silence.

use std::time::Duration;

use commlab_api::{FaultKind, Pattern, Target};

/// One thing that happened during a comparison, in the order it happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Starting what the patterns share (locally: PostgreSQL, NATS).
    PlatformStarting {
        what: String,
    },
    PlatformReady {
        took: Duration,
    },
    /// Deploying one pattern's components.
    Deploying {
        pattern: Pattern,
    },
    Deployed {
        pattern: Pattern,
        took: Duration,
    },
    /// The load started: `warmup` unmeasured, then `duration` measured.
    Running {
        pattern: Pattern,
        warmup: Duration,
        duration: Duration,
    },
    /// About every 250 ms while the load runs.
    Progress {
        pattern: Pattern,
        /// Since the load started (warm-up included).
        elapsed: Duration,
        /// `warm-up`, `baseline`, the faults in force, `recovery`.
        stage: String,
        ok: u64,
        errors: u64,
    },
    FaultInjected {
        pattern: Pattern,
        name: String,
        kind: FaultKind,
        target: Target,
        /// How long after its planned time the fault was in force.
        late: Duration,
    },
    FaultRecovered {
        pattern: Pattern,
        name: String,
        late: Duration,
    },
    /// A fault of the plan that does not apply to this pattern.
    FaultSkipped {
        pattern: Pattern,
        name: String,
        reason: String,
    },
    /// One step of the capacity probe.
    CapacityStep {
        pattern: Pattern,
        rate: f64,
        good: bool,
        detail: String,
    },
    /// The pattern is measured; `summary` is one line of headline figures.
    Measured {
        pattern: Pattern,
        summary: String,
    },
    /// Something the user should know: the figures may be off, a step was skipped.
    Warning {
        pattern: Option<Pattern>,
        message: String,
    },
}

/// Receives the engine's [`Event`]s. Called from the engine's tasks: keep
/// it quick and never block on I/O that may stall.
pub trait Observer: Send + Sync {
    fn event(&self, event: Event);
}

/// Ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Observer for Silent {
    fn event(&self, _: Event) {}
}

/// Logs every event with `tracing` (an experiment Job's output).
#[derive(Clone, Copy, Debug, Default)]
pub struct Logged;

impl Observer for Logged {
    fn event(&self, event: Event) {
        match event {
            Event::Progress { .. } => tracing::debug!(?event, "experiment"),
            Event::Warning { pattern, message } => {
                tracing::warn!(pattern = ?pattern, "{message}")
            }
            event => tracing::info!(?event, "experiment"),
        }
    }
}
