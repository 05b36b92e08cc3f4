//! The experiment report, schema `commlab.dev/report/v1`.
//!
//! Everything here is pure: the engine hands over what it measured
//! ([`PatternRun`]), and this module derives the topology, the scores, the
//! article's claims, the verdict against the SLOs and the renderings (a
//! terminal table and a self-contained `report.html`). The operator reads the
//! same JSON back from a ConfigMap with [`Report::from_json`] and summarises
//! it into status with [`experiment_results`].
//!
//! The schema, the score formulas and how each claim is judged are
//! documented in `docs/report.md`.

mod claims;
mod format;
mod html;
mod scores;
mod table;
mod topology;
mod verdict;

use commlab_api::{
    Components, Fault, Pattern, Workload,
    results::{Claim, FaultMeasurement, FaultNotApplied, PhaseMeasurement, Scores, TimelineRow},
};
use serde::{Deserialize, Serialize};

pub use claims::{
    AVAILABLE_AT_LEAST, COMPLETED_AT_LEAST, DOWN_BELOW, cross_pattern_claims, ids as claim_ids,
    pattern_claims,
};
pub use format::{format_ms, format_ratio};
pub use html::render_html;
pub use scores::{
    COMPLEXITY_POINTS_PER_UNIT, CONSISTENCY_REFERENCE_STALENESS_MS, PERFORMANCE_REFERENCE_P50_MS,
    PERFORMANCE_REFERENCE_P99_MS, SCALABILITY_REFERENCE_RPS_PER_REPLICA, complexity_score,
    consistency_score, isolation_score, mean_score, performance_score, rank_by, scalability_score,
    score_on, scores,
};
pub use table::render_table;
pub use topology::{Component, DeployedComponent, Link, LinkPath, Protocol, Topology};
pub use verdict::{display_columns, experiment_results, judge};

/// The schema string every report carries; a reader refuses any other.
pub const SCHEMA: &str = "commlab.dev/report/v1";

/// Largest serialized report the operator accepts: a ConfigMap holds at most
/// 1 MiB in total, and this leaves room for its metadata.
pub const MAX_REPORT_BYTES: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "the report is {size} bytes, more than the {limit}-byte limit; shorten spec.workload.duration or run fewer patterns per report"
    )]
    TooLarge { size: usize, limit: usize },
    #[error("the report has schema `{found}`, but this commlab reads `{SCHEMA}` only")]
    WrongSchema { found: String },
    #[error("the document has no `schema` string, so it is not a commlab report")]
    MissingSchema,
    #[error("the report is not valid `{SCHEMA}` JSON: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("could not draw the {chart} chart of {pattern}: {message}")]
    Chart {
        pattern: Pattern,
        chart: &'static str,
        message: String,
    },
}

impl ReportError {
    /// A bounded label for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            ReportError::TooLarge { .. } => "report_too_large",
            ReportError::WrongSchema { .. } | ReportError::MissingSchema => "report_wrong_schema",
            ReportError::Malformed(_) => "report_malformed",
            ReportError::Chart { .. } => "report_chart",
        }
    }
}

/// Refuses a serialized report longer than `limit` bytes.
pub fn check_size(size: usize, limit: usize) -> Result<(), ReportError> {
    if size > limit {
        Err(ReportError::TooLarge { size, limit })
    } else {
        Ok(())
    }
}

/// The whole report of one `commlab compare` run or one experiment Job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// When the first pattern's measured run started, RFC 3339.
    pub started_at: String,
    pub machine: Machine,
    /// The workload every pattern in this report ran under.
    pub workload: Workload,
    pub patterns: Vec<PatternReport>,
    /// Claims that compare patterns, judged across `patterns`.
    #[serde(default)]
    pub claims: Vec<Claim>,
}

/// Where the experiment ran; figures only compare on the same machine.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub cores: u32,
    pub memory_mib: u64,
    /// `linux`, `macos`, ...
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

impl Machine {
    /// ` (hostname)` for a report's header line, or nothing when unknown.
    fn hostname_suffix(&self) -> String {
        self.hostname
            .as_deref()
            .map(|h| format!(" ({h})"))
            .unwrap_or_default()
    }

    /// This machine, as far as the standard library and `/proc` tell.
    pub fn detect() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| memory_mib_from_meminfo(&text))
            .unwrap_or(0);
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty());
        Self {
            cores,
            memory_mib,
            os: std::env::consts::OS.to_owned(),
            hostname,
        }
    }
}

fn memory_mib_from_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// When a fault of the chaos plan was planned to be active, in seconds
/// since the measured run started: the window its figures cover. The charts
/// shade these windows, for the faults that were applied.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultWindow {
    pub name: String,
    pub from_s: f64,
    pub to_s: f64,
}

impl FaultWindow {
    /// The window a fault of the plan occupies, from its offset and duration.
    pub fn of(fault: &Fault) -> Self {
        let from_s = fault.at.as_std().as_secs_f64();
        Self {
            name: fault.name.clone(),
            from_s,
            to_s: from_s + fault.duration.as_std().as_secs_f64(),
        }
    }
}

/// What the engine measured for one pattern: the input of [`PatternReport::new`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PatternRun {
    /// What was deployed beside orders and catalog (`spec.components`).
    pub components: Components,
    pub baseline: PhaseMeasurement,
    /// The faults that were in force.
    pub faults: Vec<FaultMeasurement>,
    /// The faults that were not applied; nothing is judged from them.
    pub faults_not_applied: Vec<FaultNotApplied>,
    /// The last good rate of the capacity probe, when it ran.
    pub capacity_rps: Option<f64>,
    pub timeline: Vec<TimelineRow>,
    pub fault_windows: Vec<FaultWindow>,
}

/// One pattern's part of the report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PatternReport {
    pub pattern: Pattern,
    pub topology: Topology,
    pub baseline: PhaseMeasurement,
    /// The faults that were in force, measured.
    #[serde(default)]
    pub faults: Vec<FaultMeasurement>,
    /// The faults that were not applied, with the reason; not judged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults_not_applied: Vec<FaultNotApplied>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_rps: Option<f64>,
    pub scores: Scores,
    /// The article's claims about this pattern alone.
    #[serde(default)]
    pub claims: Vec<Claim>,
    /// One row per second of the measured run.
    #[serde(default)]
    pub timeline: Vec<TimelineRow>,
    #[serde(default)]
    pub fault_windows: Vec<FaultWindow>,
}

impl PatternReport {
    /// Derives the topology, scores and claims from what was measured.
    pub fn new(pattern: Pattern, run: PatternRun, workload: &Workload) -> Self {
        let topology = Topology::of(pattern, &run.components);
        let scores = scores(
            &topology,
            &run.baseline,
            &run.faults,
            run.capacity_rps,
            workload,
        );
        let claims = pattern_claims(
            pattern,
            &run.baseline,
            &run.faults,
            &run.faults_not_applied,
            workload,
        );
        Self {
            pattern,
            topology,
            baseline: run.baseline,
            faults: run.faults,
            faults_not_applied: run.faults_not_applied,
            capacity_rps: run.capacity_rps,
            scores,
            claims,
            timeline: run.timeline,
            fault_windows: run.fault_windows,
        }
    }

    /// The worst availability of orders under any fault, if a fault was applied.
    pub fn worst_availability(&self) -> Option<&FaultMeasurement> {
        self.faults
            .iter()
            .min_by(|a, b| a.availability.total_cmp(&b.availability))
    }
}

impl Report {
    /// Assembles a report and judges the cross-pattern claims.
    pub fn new(
        started_at: impl Into<String>,
        machine: Machine,
        workload: Workload,
        patterns: Vec<PatternReport>,
    ) -> Self {
        let claims = cross_pattern_claims(&patterns);
        Self {
            schema: SCHEMA.to_owned(),
            started_at: started_at.into(),
            machine,
            workload,
            patterns,
            claims,
        }
    }

    /// The part of the report about one pattern.
    pub fn pattern(&self, pattern: Pattern) -> Option<&PatternReport> {
        self.patterns.iter().find(|p| p.pattern == pattern)
    }

    /// Compact JSON, the form stored in a ConfigMap.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }

    /// Indented JSON, the form written to `report.json` for people.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// Compact JSON, refused when longer than `limit` bytes.
    pub fn to_json_within(&self, limit: usize) -> Result<String, ReportError> {
        let json = self.to_json();
        check_size(json.len(), limit)?;
        Ok(json)
    }

    /// Reads a report, refusing one over [`MAX_REPORT_BYTES`] or written for
    /// another schema with a message that says so.
    pub fn from_json(text: &str) -> Result<Self, ReportError> {
        Self::from_json_within(text, MAX_REPORT_BYTES)
    }

    /// [`Report::from_json`] with an explicit size limit.
    pub fn from_json_within(text: &str, limit: usize) -> Result<Self, ReportError> {
        check_size(text.len(), limit)?;
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(ReportError::Malformed)?;
        match value.get("schema").and_then(serde_json::Value::as_str) {
            Some(SCHEMA) => {}
            Some(other) => {
                return Err(ReportError::WrongSchema {
                    found: other.to_owned(),
                });
            }
            None => return Err(ReportError::MissingSchema),
        }
        serde_json::from_value(value).map_err(ReportError::Malformed)
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Measurements shaped like real runs, for the tests of every submodule.

    use commlab_api::{
        FaultKind, Target,
        results::{LatencyMs, StalenessMs},
    };

    use super::*;

    pub fn latency(p50: f64, p99: f64) -> LatencyMs {
        LatencyMs {
            p50,
            p90: (p50 + p99) / 2.0,
            p99,
            p999: p99 * 1.5,
            max: p99 * 2.0,
        }
    }

    pub fn baseline(p50: f64, p99: f64) -> PhaseMeasurement {
        PhaseMeasurement {
            offered_rps: 200.0,
            achieved_rps: 200.0,
            success_ratio: 1.0,
            behind_schedule_ms: 0.5,
            response_ms: latency(p50, p99),
            completion_ms: latency(p50, p99),
            stale_ratio: 0.0,
            staleness_ms: StalenessMs::default(),
        }
    }

    pub fn fault(
        name: &str,
        fault: FaultKind,
        target: Target,
        availability: f64,
    ) -> FaultMeasurement {
        FaultMeasurement {
            name: name.to_owned(),
            fault,
            target,
            availability,
            completed_ratio: availability,
            in_force: None,
            response_ms: latency(2.0, 20.0),
            completion_ms: latency(2.0, 20.0),
            recovery_s: Some(1.5),
            stale_ratio: 0.0,
        }
    }

    /// A fault Chaos Mesh could not inject, with its message.
    pub fn not_applied(name: &str, fault: FaultKind, target: Target) -> FaultNotApplied {
        FaultNotApplied {
            name: name.to_owned(),
            fault,
            target,
            reason: "Chaos Mesh failed to inject it into lab/shop-catalog-1: \
                     Error: Specified qdisc kind is unknown."
                .to_owned(),
        }
    }

    pub fn catalog_down(availability: f64) -> FaultMeasurement {
        fault(
            "catalog-down",
            FaultKind::Outage,
            Target::Catalog,
            availability,
        )
    }

    pub fn timeline(seconds: u32) -> Vec<TimelineRow> {
        (0..seconds)
            .map(|second| {
                let down = (20..35).contains(&second);
                TimelineRow {
                    second,
                    offered: 200,
                    ok: if down { 4 } else { 200 },
                    errors: if down { 196 } else { 0 },
                    p50_ms: if down { 1000.0 } else { 1.2 },
                    p99_ms: if down { 2000.0 } else { 8.5 },
                    stale: 0,
                }
            })
            .collect()
    }

    pub fn run(p50: f64, faults: Vec<FaultMeasurement>) -> PatternRun {
        PatternRun {
            components: Components::default(),
            baseline: baseline(p50, p50 * 5.0),
            faults,
            faults_not_applied: Vec::new(),
            capacity_rps: Some(1500.0),
            timeline: timeline(60),
            fault_windows: vec![FaultWindow {
                name: "catalog-down".into(),
                from_s: 20.0,
                to_s: 35.0,
            }],
        }
    }

    /// A comparison of all six patterns shaped like the article predicts.
    pub fn comparison() -> Report {
        let workload = Workload::default();
        let runs = [
            (Pattern::SharedData, 1.0, 1.0),
            (Pattern::DirectApiCall, 1.5, 0.02),
            (Pattern::AsyncPolling, 12.0, 0.01),
            (Pattern::AsyncMessaging, 4.0, 1.0),
            (Pattern::CacheWithApiUpdates, 0.4, 1.0),
            (Pattern::CacheWithUpdateEvents, 0.4, 1.0),
        ];
        let patterns = runs
            .into_iter()
            .map(|(pattern, p50, availability)| {
                let mut run = run(p50, vec![catalog_down(availability)]);
                if pattern.caches_prices() {
                    run.baseline.stale_ratio = 0.002;
                    run.baseline.staleness_ms = StalenessMs {
                        p50: 3.0,
                        p99: 40.0,
                        max: 90.0,
                    };
                }
                PatternReport::new(pattern, run, &workload)
            })
            .collect();
        Report::new(
            "2026-01-01T00:00:00Z",
            Machine::default(),
            workload,
            patterns,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips_through_json() {
        let report = fixtures::comparison();
        let json = report.to_json();
        assert!(json.contains(r#""schema":"commlab.dev/report/v1""#));
        assert!(
            json.contains(r#""faultWindows":[{"name":"catalog-down","fromS":20.0,"toS":35.0}]"#)
        );
        assert!(json.contains(r#""capacityRps":1500.0"#));
        assert!(json.contains(r#""startedAt""#));
        assert_eq!(Report::from_json(&json).unwrap(), report);
        assert_eq!(Report::from_json(&report.to_json_pretty()).unwrap(), report);
    }

    #[test]
    fn each_fault_says_when_it_was_in_force_or_why_it_was_not_applied() {
        use commlab_api::{FaultKind, Target, results::InForce};

        let mut report = fixtures::comparison();
        let quiet = report.to_json();
        assert!(
            !quiet.contains("faultsNotApplied") && !quiet.contains("inForce"),
            "nothing new in a report whose faults all applied and were not confirmed"
        );
        let direct = &mut report.patterns[1];
        direct.faults[0].in_force = Some(InForce {
            from_s: 20.25,
            to_s: None,
            recovery_unconfirmed: Some("not confirmed undone within 10s".into()),
        });
        direct.faults_not_applied = vec![fixtures::not_applied(
            "slow-catalog",
            FaultKind::Delay,
            Target::Catalog,
        )];
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        let direct = &json["patterns"][1];
        assert_eq!(
            direct["faults"][0]["inForce"],
            serde_json::json!({
                "fromS": 20.25,
                "recoveryUnconfirmed": "not confirmed undone within 10s",
            })
        );
        assert_eq!(direct["faultsNotApplied"][0]["name"], "slow-catalog");
        assert_eq!(direct["faultsNotApplied"][0]["fault"], "Delay");
        assert!(
            direct["faultsNotApplied"][0]["reason"]
                .as_str()
                .unwrap()
                .ends_with("Specified qdisc kind is unknown.")
        );
        assert_eq!(Report::from_json(&report.to_json()).unwrap(), report);
    }

    #[test]
    fn wrong_schema_is_refused_with_a_clear_message() {
        let text = r#"{"schema": "commlab.dev/report/v2", "whatever": 1}"#;
        let error = Report::from_json(text).unwrap_err();
        assert!(
            matches!(error, ReportError::WrongSchema { ref found } if found == "commlab.dev/report/v2")
        );
        assert_eq!(
            error.to_string(),
            "the report has schema `commlab.dev/report/v2`, but this commlab reads `commlab.dev/report/v1` only"
        );
        assert!(matches!(
            Report::from_json(r#"{"patterns": []}"#),
            Err(ReportError::MissingSchema)
        ));
        assert!(matches!(
            Report::from_json("not json"),
            Err(ReportError::Malformed(_))
        ));
        let missing_fields = r#"{"schema": "commlab.dev/report/v1"}"#;
        assert!(matches!(
            Report::from_json(missing_fields),
            Err(ReportError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_reports_are_refused() {
        let report = fixtures::comparison();
        let json = report.to_json();
        let error = Report::from_json_within(&json, json.len() - 1).unwrap_err();
        assert!(matches!(error, ReportError::TooLarge { size, .. } if size == json.len()));
        assert_eq!(error.category(), "report_too_large");
        assert!(report.to_json_within(json.len()).is_ok());
        assert!(report.to_json_within(100).is_err());
        assert!(check_size(MAX_REPORT_BYTES, MAX_REPORT_BYTES).is_ok());
        assert!(check_size(MAX_REPORT_BYTES + 1, MAX_REPORT_BYTES).is_err());
        // An hour-long run of one pattern fits in a ConfigMap.
        let mut one = report.patterns[0].clone();
        one.timeline = fixtures::timeline(3600);
        let hour = Report::new("t", Machine::default(), Workload::default(), vec![one]);
        assert!(
            hour.to_json_within(MAX_REPORT_BYTES).is_ok(),
            "{} bytes",
            hour.to_json().len()
        );
    }

    #[test]
    fn fault_windows_come_from_the_chaos_plan() {
        let fault: Fault = serde_json::from_str(
            r#"{"name": "catalog-down", "fault": "Outage", "target": "catalog", "at": "20s", "duration": "15s"}"#,
        )
        .unwrap();
        assert_eq!(
            FaultWindow::of(&fault),
            FaultWindow {
                name: "catalog-down".into(),
                from_s: 20.0,
                to_s: 35.0
            }
        );
    }

    #[test]
    fn machine_memory_is_read_from_meminfo() {
        let meminfo = "MemTotal:        8388608 kB\nMemFree:  1 kB\n";
        assert_eq!(memory_mib_from_meminfo(meminfo), Some(8192));
        assert_eq!(memory_mib_from_meminfo("nothing"), None);
        assert!(Machine::detect().cores >= 1);
    }

    #[test]
    fn pattern_report_derives_topology_scores_and_claims() {
        let report = fixtures::comparison();
        let direct = report.pattern(Pattern::DirectApiCall).unwrap();
        assert_eq!(
            direct.topology,
            Topology::of(Pattern::DirectApiCall, &Components::default())
        );
        assert!(direct.scores.performance.is_some());
        assert!(direct.scores.complexity.is_some());
        assert_eq!(direct.claims.len(), 1);
        assert_eq!(direct.worst_availability().unwrap().availability, 0.02);
        assert!(!report.claims.is_empty());
    }
}
