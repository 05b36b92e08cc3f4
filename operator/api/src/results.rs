//! Measured results. The same types appear in the experiment report
//! (`commlab.dev/report/v1`) and, summarised, in a CommunicationPattern's
//! status, so the engine, the CLI and the operator cannot drift apart.
//! Latencies are in milliseconds, ratios are fractions in `0.0..=1.0`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{FaultKind, Target};

/// Latency percentiles in milliseconds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, JsonSchema)]
pub struct LatencyMs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// How long the price orders used had already been superseded, in milliseconds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, JsonSchema)]
pub struct StalenessMs {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// What one measured phase (the baseline, or a capacity step) showed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhaseMeasurement {
    /// Checkouts per second the schedule asked for.
    pub offered_rps: f64,
    /// Checkouts per second orders answered successfully.
    pub achieved_rps: f64,
    /// Successful answers over scheduled checkouts.
    pub success_ratio: f64,
    /// How far the load generator's sends fell behind their schedule, at most.
    pub behind_schedule_ms: f64,
    /// From each checkout's scheduled send time until orders answered.
    pub response_ms: LatencyMs,
    /// From each checkout's scheduled send time until it was priced; equals
    /// `responseMs` for synchronous patterns.
    pub completion_ms: LatencyMs,
    /// Fraction of priced checkouts that used a superseded price.
    pub stale_ratio: f64,
    pub staleness_ms: StalenessMs,
}

/// What happened while one fault of the chaos plan was active. Only a fault
/// its backend confirmed in force is measured; the others are listed as
/// not applied (`faultsNotApplied`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaultMeasurement {
    pub name: String,
    pub fault: FaultKind,
    pub target: Target,
    /// When the fault backend confirmed the fault in force and undone. The
    /// other figures cover the planned window (`at` for `duration`); this
    /// says when the fault really was in force. Absent in reports written
    /// before commlab confirmed faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_force: Option<InForce>,
    /// Checkouts scheduled during the fault that orders answered with 2xx in time.
    pub availability: f64,
    /// Of the checkouts accepted during the fault, the fraction that were
    /// eventually priced (before the run ended).
    pub completed_ratio: f64,
    pub response_ms: LatencyMs,
    pub completion_ms: LatencyMs,
    /// Seconds from the fault's end until a one-second window is back to
    /// at least 99 % success with p99 within twice the baseline p99;
    /// absent when that never happened before the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_s: Option<f64>,
    pub stale_ratio: f64,
}

/// When a fault was really in force, in seconds since the measured run
/// started, as its backend confirmed it (Chaos Mesh's status, or the local
/// backend having done it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InForce {
    /// When the backend confirmed the fault in force.
    pub from_s: f64,
    /// When the backend confirmed it undone; absent when it did not, and
    /// then `recoveryUnconfirmed` says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_s: Option<f64>,
    /// Why the end of the fault is not confirmed, in the backend's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_unconfirmed: Option<String>,
}

/// A fault of the chaos plan that its backend could not put in force, e.g.
/// a NetworkChaos `delay` Chaos Mesh failed to apply. Its window is not
/// judged: no availability, no claim and no score come from it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaultNotApplied {
    pub name: String,
    pub fault: FaultKind,
    pub target: Target,
    /// Why, in the backend's words (for Chaos Mesh, its own message).
    pub reason: String,
}

/// Scores on the article's four axes and on consistency, each 0 (worst) to
/// 100 (best), derived from measurements by the formulas documented in
/// docs/report.md. An axis that was not measured is absent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct Scores {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalability: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complexity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<f64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ClaimVerdict {
    Confirmed,
    Contradicted,
    NotMeasured,
}

/// One of the article's claims, checked against the measurements.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct Claim {
    /// Stable identifier, e.g. `direct-call-down-with-catalog`.
    pub id: String,
    /// The claim in the article's words.
    pub statement: String,
    pub verdict: ClaimVerdict,
    /// The figures the verdict rests on, or why it could not be judged.
    pub evidence: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Verdict {
    Pass,
    Fail,
}

/// The summary of one experiment that a CommunicationPattern's status carries.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentResults {
    pub baseline: PhaseMeasurement,
    /// The faults that were in force, measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultMeasurement>,
    /// The faults that were not applied, with the reason; not judged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults_not_applied: Vec<FaultNotApplied>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_rps: Option<f64>,
    pub scores: Scores,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<Claim>,
    pub verdict: Verdict,
    /// Why the verdict is `Fail`, one line per missed objective.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<String>,
    pub display: DisplayColumns,
}

/// Human-readable figures for `kubectl get` printer columns.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct DisplayColumns {
    /// Baseline response p99, e.g. `12.4ms`.
    pub p99: String,
    /// Worst availability under a fault, e.g. `97.5%`, or `-` without a
    /// fault that was applied.
    pub availability: String,
    /// Baseline staleness p99, e.g. `1.2s`.
    pub staleness: String,
}

/// One second of an experiment's timeline, for the report's charts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelineRow {
    /// Seconds since the measured run started (after warm-up).
    pub second: u32,
    /// Checkouts scheduled in this second.
    pub offered: u32,
    /// Answered with 2xx within the timeout.
    pub ok: u32,
    pub errors: u32,
    /// Response latency percentiles of this second's checkouts, in milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Priced checkouts that used a superseded price.
    pub stale: u32,
}
