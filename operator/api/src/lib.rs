//! The `commlab.dev/v1alpha1` custom resources and the vocabulary shared by
//! the operator, the experiment engine and the CLI.

pub mod communication_pattern;
pub mod crd;
pub mod duration;
pub mod pattern;
pub mod pattern_comparison;
pub mod results;
mod rules;
pub mod validate;

pub use communication_pattern::{
    Broker, BrokerKind, Cache, CacheKind, CommunicationPattern, CommunicationPatternSpec,
    CommunicationPatternStatus, ComponentStatus, Components, Fault, Phase, Replicas, ReportRef,
    Slo, Workload,
};
pub use crd::{CrdFile, crd_files, crds, crds_yaml};
pub use duration::{Duration, DurationError};
pub use pattern::{FaultKind, Pattern, Target};
pub use pattern_comparison::{
    Axis, AxisRanking, PatternComparison, PatternComparisonSpec, PatternComparisonStatus,
    PatternRun,
};
pub use validate::{InvalidSpec, SpecProblem};
