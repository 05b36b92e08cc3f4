//! The experiment's timeline and the built-in plans: pure functions of the
//! workload and the chaos plan, so they are unit-tested without a clock.
//!
//! # Clocks
//!
//! The load generator's schedule starts at its origin and covers the warm-up
//! and then the measured run. Every window here is an offset from that
//! origin (the clock of [`crate::measure::Recording`]); a fault's `at` counts
//! from the start of the measured run, so it happens at `warmup + at`.
//!
//! # Baseline
//!
//! The baseline is the measured run **before the first fault** of the plan
//! (the faults that apply to the pattern): `warmup .. warmup + first at`, or
//! the whole measured run when the plan has no fault. When the first fault
//! starts less than [`MIN_BASELINE`] into the run, there is no quiet part of
//! the measured run to speak of, and the baseline is the second half of the
//! warm-up instead (load under normal conditions, after the first half has
//! warmed connections and caches).

use std::{ops::Range, time::Duration};

use commlab_api::{Duration as SpecDuration, Fault, FaultKind, Pattern, Target, Workload};

/// Shortest stretch of the measured run before the first fault that is used
/// as the baseline; shorter, and the second half of the warm-up is.
pub const MIN_BASELINE: Duration = Duration::from_secs(1);

/// Where the phases of one experiment lie on the load generator's clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    warmup: Duration,
    duration: Duration,
    /// `(name, from, to)` of each fault, on the measured run's clock.
    faults: Vec<(String, Duration, Duration)>,
}

/// What is happening at a moment of the run, for progress displays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    WarmUp,
    Baseline,
    /// Faults in force, by name, in plan order.
    Fault(Vec<String>),
    /// After a fault, before the next one or the end.
    Recovery,
    Done,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stage::WarmUp => f.write_str("warm-up"),
            Stage::Baseline => f.write_str("baseline"),
            Stage::Fault(names) => f.write_str(&names.join(" + ")),
            Stage::Recovery => f.write_str("recovery"),
            Stage::Done => f.write_str("draining"),
        }
    }
}

impl Timeline {
    pub fn new(workload: &Workload, faults: &[Fault]) -> Self {
        Self {
            warmup: workload.warmup.as_std(),
            duration: workload.duration.as_std(),
            faults: faults
                .iter()
                .map(|f| {
                    let from = f.at.as_std();
                    (f.name.clone(), from, from + f.duration.as_std())
                })
                .collect(),
        }
    }

    /// Where the measured run starts: the end of the warm-up.
    pub fn measured_from(&self) -> Duration {
        self.warmup
    }

    /// Where the schedule ends: warm-up plus measured run.
    pub fn end(&self) -> Duration {
        self.warmup + self.duration
    }

    /// The baseline window (see the module documentation).
    pub fn baseline(&self) -> Range<Duration> {
        let quiet = self
            .faults
            .iter()
            .map(|(_, from, _)| *from)
            .min()
            .unwrap_or(self.duration)
            .min(self.duration);
        if quiet >= MIN_BASELINE || quiet == self.duration {
            self.warmup..self.warmup + quiet
        } else {
            self.warmup / 2..self.warmup
        }
    }

    /// When `fault` is in force, on the load generator's clock.
    pub fn fault(&self, fault: &Fault) -> Range<Duration> {
        let from = self.warmup + fault.at.as_std();
        from..from + fault.duration.as_std()
    }

    /// What is happening `elapsed` after the origin.
    pub fn stage_at(&self, elapsed: Duration) -> Stage {
        if elapsed < self.warmup {
            return Stage::WarmUp;
        }
        if elapsed >= self.end() {
            return Stage::Done;
        }
        let run = elapsed - self.warmup;
        let active: Vec<String> = self
            .faults
            .iter()
            .filter(|(_, from, to)| *from <= run && run < *to)
            .map(|(name, ..)| name.clone())
            .collect();
        if !active.is_empty() {
            Stage::Fault(active)
        } else if self.faults.iter().any(|(_, from, _)| *from <= run) {
            Stage::Recovery
        } else {
            Stage::Baseline
        }
    }
}

/// The faults of `plan` that can run against `pattern`, and those skipped
/// with the reason: a `broker` fault for a pattern without a broker (the
/// rule of a PatternComparison's shared plan).
pub fn faults_for(pattern: Pattern, plan: &[Fault]) -> (Vec<Fault>, Vec<(Fault, String)>) {
    let mut applicable = Vec::new();
    let mut skipped = Vec::new();
    for fault in plan {
        if fault.target == Target::Broker && !pattern.needs_broker() {
            skipped.push((fault.clone(), format!("{pattern} has no broker")));
        } else {
            applicable.push(fault.clone());
        }
    }
    (applicable, skipped)
}

/// A fault of a built-in plan, placed as fractions of the measured run so
/// that the plan scales with `--duration`.
struct Placed {
    name: &'static str,
    fault: FaultKind,
    target: Target,
    /// Start, as a fraction of the run.
    at: f64,
    /// Length, as a fraction of the run.
    length: f64,
    latency: Option<Duration>,
}

fn place(faults: &[Placed], run: Duration) -> Vec<Fault> {
    // Offsets are rounded to 100 ms, so plans read well in reports.
    let tenths = |fraction: f64| {
        let tenths = (run.as_secs_f64() * fraction * 10.0).round() as u64;
        // `6.5s` rather than `6500ms`: both parse, one reads better.
        let text = match tenths % 10 {
            0 => format!("{}s", tenths / 10),
            tenth => format!("{}.{tenth}s", tenths / 10),
        };
        text.parse::<SpecDuration>().expect("a valid duration")
    };
    faults
        .iter()
        .map(|p| Fault {
            name: p.name.to_owned(),
            fault: p.fault,
            target: p.target,
            at: tenths(p.at),
            duration: tenths(p.length).max("0.1s".parse().expect("a valid duration")),
            latency: p.latency.map(SpecDuration::from),
            jitter: None,
        })
        .collect()
}

/// The delay `commlab compare` adds to catalog: what the article's "every
/// checkout waits for catalog" costs.
pub const CATALOG_DELAY: Duration = Duration::from_millis(100);

/// The chaos plan of `commlab compare`, for a measured run of `run`:
///
/// | fault | target | when (of a 36 s run) |
/// |---|---|---|
/// | `catalog-down` Outage | catalog | 5 – 10 s |
/// | `slow-catalog` Delay 100 ms | catalog | 13 – 17 s |
/// | `broker-down` Outage | broker (skipped without one) | 20 – 24 s |
/// | `database-down` Outage | database | 27 – 31 s |
///
/// The last 5 s measure recovery from the database outage.
pub fn default_chaos(run: Duration) -> Vec<Fault> {
    let of_36 = |seconds: f64| seconds / 36.0;
    place(
        &[
            Placed {
                name: "catalog-down",
                fault: FaultKind::Outage,
                target: Target::Catalog,
                at: of_36(5.0),
                length: of_36(5.0),
                latency: None,
            },
            Placed {
                name: "slow-catalog",
                fault: FaultKind::Delay,
                target: Target::Catalog,
                at: of_36(13.0),
                length: of_36(4.0),
                latency: Some(CATALOG_DELAY),
            },
            Placed {
                name: "broker-down",
                fault: FaultKind::Outage,
                target: Target::Broker,
                at: of_36(20.0),
                length: of_36(4.0),
                latency: None,
            },
            Placed {
                name: "database-down",
                fault: FaultKind::Outage,
                target: Target::Database,
                at: of_36(27.0),
                length: of_36(4.0),
                latency: None,
            },
        ],
        run,
    )
}

/// The chaos plan of `commlab compare --quick`: one catalog Outage and one
/// catalog Delay of 100 ms. Of a 10 s run: baseline 0 – 3 s, Outage
/// 3 – 5.5 s, Delay 6.5 – 8.5 s, then 1.5 s to measure recovery.
pub fn quick_chaos(run: Duration) -> Vec<Fault> {
    place(
        &[
            Placed {
                name: "catalog-down",
                fault: FaultKind::Outage,
                target: Target::Catalog,
                at: 0.30,
                length: 0.25,
                latency: None,
            },
            Placed {
                name: "slow-catalog",
                fault: FaultKind::Delay,
                target: Target::Catalog,
                at: 0.65,
                length: 0.20,
                latency: Some(CATALOG_DELAY),
            },
        ],
        run,
    )
}

/// The workload of `commlab compare`: the API's defaults (200 checkouts/s,
/// 1000 products, 5 price changes/s, 2 s timeout) with a 36 s measured run
/// after a 3 s warm-up, so all six patterns fit in five minutes.
pub fn default_workload() -> Workload {
    Workload {
        duration: SpecDuration::from_secs(36),
        warmup: SpecDuration::from_secs(3),
        ..Workload::default()
    }
}

/// The workload of `commlab compare --quick`: a 10 s run after a 2 s warm-up.
pub fn quick_workload() -> Workload {
    Workload {
        duration: SpecDuration::from_secs(10),
        warmup: SpecDuration::from_secs(2),
        ..Workload::default()
    }
}

/// How the capacity probe steps the rate up.
///
/// After the measured run, still deployed, the probe offers `rate × factor`,
/// then `× factor` again, each for `step` (the first `settle` of a step is
/// not judged), for at most `max_steps` steps and never above
/// [`commlab_api::communication_pattern::MAX_RATE`], until a step fails.
/// Then it narrows the gap between the last good and the failing rate by
/// offering their midpoint, `refinements` times. A step is good when at
/// least 99 % of its checkouts succeeded (and, for an asynchronous pattern,
/// were priced) and its completion p99 is at most
/// `max(10 × baseline completion p99, CAPACITY_P99_FLOOR_MS)`. The capacity
/// is the highest good rate, the baseline's own rate when every step
/// failed, and 0 when the baseline itself was not good. With the defaults
/// (× 2, 8 steps, 2 refinements) it is found within 25 % in at most 9
/// steps of 3 s.
#[derive(Clone, Debug, PartialEq)]
pub struct CapacityProbe {
    pub factor: f64,
    pub max_steps: usize,
    pub refinements: usize,
    pub step: Duration,
    pub settle: Duration,
}

/// Success ratio a capacity step must reach.
pub const CAPACITY_SUCCESS_RATIO: f64 = 0.99;
/// A step's p99 may be this many times the baseline's ...
pub const CAPACITY_P99_FACTOR: f64 = 10.0;
/// ... or this many milliseconds, whichever is larger: a loopback baseline
/// p99 of a fraction of a millisecond would otherwise fail on scheduling noise.
pub const CAPACITY_P99_FLOOR_MS: f64 = 5.0;

impl Default for CapacityProbe {
    fn default() -> Self {
        Self {
            factor: 2.0,
            max_steps: 8,
            refinements: 2,
            step: Duration::from_secs(3),
            settle: Duration::from_millis(500),
        }
    }
}

impl CapacityProbe {
    /// The rates the probe offers after a run at `base`, in order.
    pub fn rates(&self, base: f64) -> Vec<f64> {
        let max = commlab_api::communication_pattern::MAX_RATE;
        let mut rates = Vec::new();
        let mut rate = base;
        for _ in 0..self.max_steps {
            rate = (rate * self.factor).round().min(max);
            if rates.last() == Some(&rate) {
                break;
            }
            rates.push(rate);
            if rate >= max {
                break;
            }
        }
        rates
    }

    /// Most steps the probe may run after a run at `base`.
    pub fn max_steps_after(&self, base: f64) -> usize {
        self.rates(base).len() + self.refinements
    }

    /// The rate between the last good and the first failing rate to try
    /// next, or `None` when they are too close to tell apart (within 5 %).
    pub fn midpoint(good: f64, failed: f64) -> Option<f64> {
        let mid = ((good + failed) / 2.0).round();
        (failed - good > 0.05 * good && mid > good && mid < failed).then_some(mid)
    }

    /// The p99 a step may reach, from the baseline's completion p99.
    pub fn p99_limit_ms(baseline_p99_ms: f64) -> f64 {
        (baseline_p99_ms * CAPACITY_P99_FACTOR).max(CAPACITY_P99_FLOOR_MS)
    }

    /// Whether a step (or the baseline) is good: `success_ratio` of checkouts
    /// answered (for asynchronous patterns: priced) and its p99.
    pub fn good(success_ratio: f64, p99_ms: f64, limit_ms: f64) -> bool {
        success_ratio >= CAPACITY_SUCCESS_RATIO && p99_ms <= limit_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(name: &str, target: Target, at: u64, duration: u64) -> Fault {
        Fault {
            name: name.into(),
            fault: FaultKind::Outage,
            target,
            at: SpecDuration::from_secs(at),
            duration: SpecDuration::from_secs(duration),
            latency: None,
            jitter: None,
        }
    }

    fn workload(warmup: u64, duration: u64) -> Workload {
        Workload {
            warmup: SpecDuration::from_secs(warmup),
            duration: SpecDuration::from_secs(duration),
            ..Workload::default()
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_baseline_is_the_run_before_the_first_fault() {
        let faults = [
            fault("b", Target::Catalog, 20, 5),
            fault("a", Target::Catalog, 8, 2),
        ];
        let timeline = Timeline::new(&workload(10, 60), &faults);
        assert_eq!(timeline.baseline(), S(10)..S(18));
        assert_eq!(timeline.fault(&faults[0]), S(30)..S(35));
        assert_eq!(timeline.end(), S(70));
    }

    #[test]
    fn without_faults_the_baseline_is_the_whole_run() {
        assert_eq!(Timeline::new(&workload(2, 9), &[]).baseline(), S(2)..S(11));
    }

    #[test]
    fn a_fault_at_the_start_moves_the_baseline_into_the_warmup() {
        let timeline = Timeline::new(&workload(4, 10), &[fault("a", Target::Catalog, 0, 2)]);
        assert_eq!(timeline.baseline(), S(2)..S(4));
    }

    #[test]
    fn stages_follow_the_plan() {
        let faults = [
            fault("a", Target::Catalog, 2, 2),
            fault("b", Target::Database, 3, 2),
        ];
        let timeline = Timeline::new(&workload(1, 8), &faults);
        assert_eq!(timeline.stage_at(Duration::from_millis(500)), Stage::WarmUp);
        assert_eq!(timeline.stage_at(S(2)), Stage::Baseline);
        assert_eq!(timeline.stage_at(S(3)), Stage::Fault(vec!["a".into()]));
        assert_eq!(
            timeline.stage_at(S(4)),
            Stage::Fault(vec!["a".into(), "b".into()])
        );
        assert_eq!(timeline.stage_at(S(7)), Stage::Recovery);
        assert_eq!(timeline.stage_at(S(9)), Stage::Done);
        assert_eq!(
            Stage::Fault(vec!["a".into(), "b".into()]).to_string(),
            "a + b"
        );
    }

    #[test]
    fn broker_faults_are_skipped_for_patterns_without_a_broker() {
        let plan = default_chaos(S(36));
        let (applicable, skipped) = faults_for(Pattern::DirectApiCall, &plan);
        assert_eq!(applicable.len(), 3);
        assert_eq!(skipped[0].0.name, "broker-down");
        assert!(skipped[0].1.contains("no broker"));
        assert_eq!(faults_for(Pattern::AsyncMessaging, &plan).0.len(), 4);
    }

    #[test]
    fn the_built_in_plans_fit_their_runs_and_validate() {
        for (workload, chaos) in [
            (
                default_workload(),
                default_chaos(default_workload().duration.as_std()),
            ),
            (
                quick_workload(),
                quick_chaos(quick_workload().duration.as_std()),
            ),
            (default_workload(), default_chaos(S(600))),
            (quick_workload(), quick_chaos(S(3))),
        ] {
            let mut workload = workload;
            let run = chaos
                .iter()
                .map(|f| f.at.as_std() + f.duration.as_std())
                .max()
                .unwrap();
            workload.duration = workload.duration.max(SpecDuration::from(run));
            let spec = commlab_api::PatternComparisonSpec {
                patterns: Vec::new(),
                workload,
                chaos,
                slo: None,
                rank_by: Default::default(),
            };
            spec.validate().unwrap();
        }
        let quick = quick_chaos(S(10));
        assert_eq!(quick[0].at.as_std(), S(3));
        assert_eq!(quick[0].duration.as_std(), Duration::from_millis(2500));
        assert_eq!(quick[1].at.as_std(), Duration::from_millis(6500));
        assert_eq!(quick[1].latency.as_ref().unwrap().as_std(), CATALOG_DELAY);
        let default = default_chaos(S(36));
        assert_eq!(default[3].at.as_std() + default[3].duration.as_std(), S(31));
    }

    #[test]
    fn plans_scale_with_the_run() {
        let long = default_chaos(S(72));
        assert_eq!(long[0].at.as_std(), S(10));
        assert_eq!(long[0].duration.as_std(), S(10));
    }

    #[test]
    fn capacity_rates_grow_and_stop_at_the_limit() {
        let probe = CapacityProbe::default();
        assert_eq!(
            probe.rates(200.0),
            [400.0, 800.0, 1600.0, 3200.0, 6400.0, 12_800.0, 20_000.0]
        );
        assert_eq!(probe.max_steps_after(200.0), 9);
        let near_max = probe.rates(15_000.0);
        assert_eq!(near_max, vec![20_000.0]);
        assert_eq!(CapacityProbe::midpoint(1600.0, 3200.0), Some(2400.0));
        assert_eq!(CapacityProbe::midpoint(2400.0, 3200.0), Some(2800.0));
        assert_eq!(CapacityProbe::midpoint(1000.0, 1040.0), None);
        assert_eq!(CapacityProbe::p99_limit_ms(0.4), CAPACITY_P99_FLOOR_MS);
        assert!(CapacityProbe::good(
            0.995,
            4.0,
            CapacityProbe::p99_limit_ms(0.4)
        ));
        assert!(!CapacityProbe::good(
            1.0,
            9.0,
            CapacityProbe::p99_limit_ms(0.4)
        ));
        assert!(!CapacityProbe::good(0.98, 1.0, 10.0));
        assert!(!CapacityProbe::good(
            1.0,
            60.0,
            CapacityProbe::p99_limit_ms(5.0)
        ));
    }
}
