//! `PatternComparison`: several patterns run one after another under one
//! shared workload and chaos plan, ranked on each axis.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Fault, Pattern, Phase, Slo, Workload, results::Claim, rules};

// Clippy reads the repeated `type_ = "string"` of the printer columns as
// duplicated attributes; they are separate columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "commlab.dev",
    version = "v1alpha1",
    kind = "PatternComparison",
    plural = "patterncomparisons",
    shortname = "pcmp",
    namespaced,
    doc = "Several communication patterns run one after another under one shared workload and chaos plan, ranked on each axis.",
    status = "PatternComparisonStatus",
    derive = "PartialEq",
    printcolumn(name = "Patterns", type_ = "string", json_path = ".status.patternList"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Best",
        type_ = "string",
        json_path = ".status.best",
        description = "best pattern on spec.rankBy"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = rules::faults_end_inside_the_run(),
)]
pub struct PatternComparisonSpec {
    /// The patterns to compare, each at most once, in the order they run;
    /// all six when empty or absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 6))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q == p))")
        .message("each pattern may be listed only once in spec.patterns"))]
    pub patterns: Vec<Pattern>,
    #[serde(default)]
    pub workload: Workload,
    /// Faults for every pattern, at most 16 with unique names; a `broker`
    /// fault is skipped for the patterns without a broker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = rules::unique_fault_names())]
    pub chaos: Vec<Fault>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<Slo>,
    /// The axis that picks the `best` pattern: `Performance` (the default),
    /// `Scalability`, `Isolation`, `Complexity` or `Consistency`.
    #[serde(default)]
    pub rank_by: Axis,
}

impl PatternComparisonSpec {
    /// The patterns to run, in the order they run.
    pub fn patterns(&self) -> Vec<Pattern> {
        if self.patterns.is_empty() {
            Pattern::ALL.to_vec()
        } else {
            self.patterns.clone()
        }
    }
}

/// The axes patterns are judged on. PascalCase like every other enum in the
/// API, as Kubernetes conventions ask.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Axis {
    #[default]
    Performance,
    Scalability,
    Isolation,
    Complexity,
    Consistency,
}

impl Axis {
    /// Every axis, in the order the rankings list them.
    pub const ALL: [Axis; 5] = [
        Axis::Performance,
        Axis::Scalability,
        Axis::Isolation,
        Axis::Complexity,
        Axis::Consistency,
    ];
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatternComparisonStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The compared patterns, comma-separated, for the printer column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern_list: Option<String>,
    /// Each pattern's own CommunicationPattern and how far it got.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<PatternRun>,
    /// Per axis, the patterns from best to worst.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rankings: Vec<AxisRanking>,
    /// The best pattern on `spec.rankBy`; a tie there goes to the higher
    /// mean score over every measured axis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<Pattern>,
    /// The article's cross-pattern claims with verdicts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<Claim>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatternRun {
    pub pattern: Pattern,
    /// Name of the owned CommunicationPattern.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AxisRanking {
    pub axis: Axis,
    /// Best first; patterns without a score on this axis are left out.
    pub order: Vec<Pattern>,
}
