//! The experiment engine: one experiment per pattern, on one timeline, as
//! DESIGN.md's "One experiment" describes, and comparisons of several.
//!
//! # Shape
//!
//! ```text
//!   Platform ──deploy(experiment)──▶ Deployment ──targets()────────▶ Targets (URLs)
//!   (shared servers)                 (one pattern) ─fault_backend()─▶ Arc<dyn FaultBackend>
//!                                                        │
//!   run_experiment(experiment, targets, backend, observer) ─▶ ExperimentOutcome (PatternReport)
//! ```
//!
//! - [`run_experiment`] is the experiment itself and knows nothing about
//!   where the pattern runs: it is given where orders, catalog and the
//!   broker answer ([`Targets`]) and how to break things
//!   ([`FaultBackend`]). It waits until every orders replica is ready, runs
//!   the warm-up and the measured run with price updates, injects and
//!   recovers each fault at its offset, cleans the backend up, measures
//!   (baseline, faults, recovery, timeline; see [`plan`] for the windows),
//!   runs the capacity probe when asked, and builds the [`PatternReport`].
//!   Only the faults the backend confirmed in force are measured; one it
//!   could not apply is reported as not applied, with its reason, and its
//!   window is not judged (see `faults.rs`).
//! - A [`Platform`] deploys one pattern at a time and gives its targets and
//!   fault backend; [`Deployment::teardown`] removes it. [`LocalPlatform`]
//!   runs everything as processes on this machine (`commlab compare`).
//!   In a cluster, the operator's experiment Job (`commlab experiment
//!   --in-cluster`) runs one pattern on a [`ClusterPlatform`]: the
//!   operator's Services, a Chaos Mesh backend, and the report written with
//!   [`Report::to_json_within`] into a ConfigMap (see [`cluster`]).
//! - [`run_comparison`] runs several experiments one after another on one
//!   platform and assembles the [`Report`].
//! - An [`Observer`] hears about every step ([`Event`]) for progress displays.
//!
//! # Stopping
//!
//! Every path out of an experiment (success, error) recovers the faults
//! still in force ([`FaultBackend::cleanup`]) and tears the deployment down;
//! the local platform stops its servers in [`LocalPlatform::shutdown`].
//! Dropping the future of a comparison (Ctrl-C) drops every handle: local
//! processes are killed, proxies closed and temporary directories removed
//! by their `Drop`s. In a cluster, the runner deletes its Chaos Mesh
//! objects on SIGTERM too, and they are owned by the CommunicationPattern
//! and end with their own `duration` in any case.
//!
//! [`Report::to_json_within`]: crate::report::Report::to_json_within

pub mod cluster;
mod faults;
pub mod local;
pub mod observe;
pub mod plan;
mod run;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use commlab_api::{
    CommunicationPatternSpec, Components, Fault, Pattern, PatternComparisonSpec, Workload,
};
use commlab_chaos::{ChaosError, FaultBackend};

pub use cluster::ClusterPlatform;
pub use local::{LocalOptions, LocalPlatform};
pub use observe::{Event, Logged, Observer, Silent};
pub use plan::{CapacityProbe, Stage, Timeline};
pub use run::{CapacityStep, ComparisonOutcome, ExperimentOutcome, run_comparison, run_experiment};

use crate::{
    load::LoadError,
    report::{PatternReport, Report, ReportError},
};

/// Where the pattern under test answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Targets {
    /// orders replicas' base URLs: checkouts go here, round-robin.
    pub orders: Vec<String>,
    /// catalog replicas' base URLs: price changes go here.
    pub catalog: Vec<String>,
    /// The broker, to follow `orders.completed` (patterns with a broker).
    pub broker: Option<String>,
}

/// One pattern, deployed and ready.
#[async_trait]
pub trait Deployment: Send + Sync {
    fn targets(&self) -> &Targets;
    /// What injects the chaos plan's faults into this deployment.
    fn fault_backend(&self) -> Arc<dyn FaultBackend>;
    /// Removes the deployment: stops its processes, closes its proxies.
    async fn teardown(self: Box<Self>) -> Result<(), EngineError>;
}

/// Where patterns are deployed, one at a time.
#[async_trait]
pub trait Platform: Send {
    /// A short name for messages: `local`, `cluster`.
    fn name(&self) -> &'static str;
    /// Deploys `experiment.pattern` with its components and waits until it is ready.
    async fn deploy(&mut self, experiment: &Experiment)
    -> Result<Box<dyn Deployment>, EngineError>;
}

/// One pattern's experiment: what to deploy, the load, and the faults.
#[derive(Clone, Debug, PartialEq)]
pub struct Experiment {
    pub pattern: Pattern,
    pub components: Components,
    pub workload: Workload,
    /// The faults that run against this pattern, in plan order.
    pub chaos: Vec<Fault>,
    /// Faults of a shared plan that do not apply to this pattern, and why.
    pub skipped: Vec<(String, String)>,
    pub capacity_probe: CapacityProbe,
    /// Seeds the load generator's choice of products.
    pub seed: u64,
}

impl Experiment {
    /// `pattern` under `workload` with the faults of a shared `plan` that
    /// apply to it (broker faults only for patterns with a broker).
    pub fn new(pattern: Pattern, workload: Workload, plan: &[Fault]) -> Self {
        let (chaos, skipped) = plan::faults_for(pattern, plan);
        Self {
            pattern,
            components: Components::default(),
            workload,
            chaos,
            skipped: skipped
                .into_iter()
                .map(|(fault, reason)| (fault.name, reason))
                .collect(),
            capacity_probe: CapacityProbe::default(),
            seed: 1,
        }
    }

    /// The experiment a CommunicationPattern describes.
    pub fn from_spec(spec: &CommunicationPatternSpec) -> Self {
        Self {
            components: spec.components.clone(),
            ..Self::new(spec.pattern, spec.workload.clone(), &spec.chaos)
        }
    }

    /// One experiment per pattern of a PatternComparison, in its order.
    pub fn from_comparison(spec: &PatternComparisonSpec) -> Vec<Self> {
        spec.patterns()
            .into_iter()
            .map(|pattern| Self::new(pattern, spec.workload.clone(), &spec.chaos))
            .collect()
    }

    /// The spec's schema and CEL rules (see [`CommunicationPatternSpec::validate`]).
    pub fn validate(&self) -> Result<(), EngineError> {
        let spec = CommunicationPatternSpec {
            pattern: self.pattern,
            components: self.components.clone(),
            workload: self.workload.clone(),
            chaos: self.chaos.clone(),
            slo: None,
        };
        spec.validate()
            .map_err(|invalid| EngineError::Invalid(invalid.to_string()))
    }

    /// How long the load runs: warm-up and measured run, plus the capacity
    /// probe's steps at most.
    pub fn planned_length(&self) -> Duration {
        let run = self.workload.warmup.as_std() + self.workload.duration.as_std();
        if self.workload.capacity_probe {
            let probe = &self.capacity_probe;
            run + probe.step * probe.max_steps_after(self.workload.rate) as u32
        } else {
            run
        }
    }
}

/// Everything that ends an experiment early.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A server or service did not start, or a tool is missing.
    #[error(transparent)]
    Infra(#[from] crate::error::Error),
    #[error("the load generator failed: {0}")]
    Load(#[from] LoadError),
    #[error("could not {action} fault `{fault}`: {source}")]
    Fault {
        fault: String,
        action: &'static str,
        #[source]
        source: Box<ChaosError>,
    },
    #[error("{what} was not ready after {after:?}: {detail}")]
    NotReady {
        what: String,
        after: Duration,
        detail: String,
    },
    /// The experiment asks for something invalid or unsupported here.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    /// A short, bounded label for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            EngineError::Infra(error) => error.category(),
            EngineError::Load(error) => error.category(),
            EngineError::Fault { source, .. } => source.category(),
            EngineError::NotReady { .. } => "not-ready",
            EngineError::Invalid(_) => "invalid",
            EngineError::Report(error) => error.category(),
            EngineError::Io { .. } => "io",
            EngineError::Internal(_) => "internal",
        }
    }
}

/// One line of headline figures for a measured pattern.
pub fn summary_line(report: &PatternReport) -> String {
    use crate::report::{format_ms, format_ratio};
    let baseline = &report.baseline;
    let mut line = format!(
        "p50 {} p99 {}",
        format_ms(baseline.response_ms.p50),
        format_ms(baseline.response_ms.p99)
    );
    if report.pattern.completes_asynchronously() {
        line.push_str(&format!(
            " (priced p50 {} p99 {})",
            format_ms(baseline.completion_ms.p50),
            format_ms(baseline.completion_ms.p99)
        ));
    }
    line.push_str(&format!(", ok {}", format_ratio(baseline.success_ratio)));
    for fault in &report.faults {
        line.push_str(&format!(
            ", {} {}",
            fault.name,
            format_ratio(fault.availability)
        ));
    }
    for fault in &report.faults_not_applied {
        line.push_str(&format!(", {} not applied", fault.name));
    }
    if let Some(capacity) = report.capacity_rps {
        line.push_str(&format!(", capacity {capacity:.0}/s"));
    }
    line
}

/// The report of a finished comparison (see [`Report::new`]).
pub fn assemble_report(
    started_at: &str,
    workload: &Workload,
    patterns: Vec<PatternReport>,
) -> Report {
    Report::new(
        started_at,
        crate::report::Machine::detect(),
        workload.clone(),
        patterns,
    )
}
