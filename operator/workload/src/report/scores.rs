//! Scores on the article's axes, 0 (worst) to 100 (best).
//!
//! Every formula is absolute: it reads one pattern's measurements and fixed
//! reference values, never the other patterns', so adding a pattern to a
//! comparison changes no other pattern's score. Every formula is monotonic
//! in what it measures. The reasons are in `docs/report.md`.

use std::collections::BTreeMap;

use commlab_api::{
    FaultKind, Pattern, Target, Workload,
    pattern_comparison::Axis,
    results::{FaultMeasurement, PhaseMeasurement, Scores},
};

use super::{PatternReport, Topology};

/// The p50 latency at which a latency term of the performance score is 50.
pub const PERFORMANCE_REFERENCE_P50_MS: f64 = 10.0;
/// The p99 latency at which a latency term of the performance score is 50.
pub const PERFORMANCE_REFERENCE_P99_MS: f64 = 50.0;
/// The capacity per service replica at which the scalability score is 50.
pub const SCALABILITY_REFERENCE_RPS_PER_REPLICA: f64 = 1000.0;
/// The staleness p99 that halves the consistency score.
pub const CONSISTENCY_REFERENCE_STALENESS_MS: f64 = 1000.0;
/// What each moving part of the topology takes off the complexity score.
pub const COMPLEXITY_POINTS_PER_UNIT: f64 = 5.0;

/// 100 at zero, 50 at `reference`, towards 0 as `value` grows; a value that
/// is not a number scores 0 rather than passing for zero.
fn falling(value: f64, reference: f64) -> f64 {
    if value.is_nan() {
        return 0.0;
    }
    100.0 * reference / (reference + value.max(0.0))
}

/// 0 at zero, 50 at `reference`, towards 100 as `value` grows.
fn rising(value: f64, reference: f64) -> f64 {
    if value.is_nan() {
        return 0.0;
    }
    if value == f64::INFINITY {
        return 100.0;
    }
    let value = value.max(0.0);
    100.0 * value / (reference + value)
}

/// Baseline latency, response and completion, p50 and p99, each term
/// `100 × ref / (ref + latency)`, averaged, times the baseline success ratio.
/// Absent when no baseline load was offered.
pub fn performance_score(baseline: &PhaseMeasurement) -> Option<f64> {
    if baseline.offered_rps.is_nan() || baseline.offered_rps <= 0.0 {
        return None;
    }
    let (p50, p99) = (PERFORMANCE_REFERENCE_P50_MS, PERFORMANCE_REFERENCE_P99_MS);
    let latency = (falling(baseline.response_ms.p50, p50)
        + falling(baseline.response_ms.p99, p99)
        + falling(baseline.completion_ms.p50, p50)
        + falling(baseline.completion_ms.p99, p99))
        / 4.0;
    Some(latency * baseline.success_ratio.clamp(0.0, 1.0))
}

/// Capacity per replica of orders and catalog, `100 × c / (c + ref)`.
/// Absent when the capacity probe did not run.
pub fn scalability_score(capacity_rps: Option<f64>, topology: &Topology) -> Option<f64> {
    let per_replica = capacity_rps? / f64::from(topology.service_replicas().max(1));
    Some(rising(per_replica, SCALABILITY_REFERENCE_RPS_PER_REPLICA))
}

/// The faults that test isolation: another component than orders is down
/// (`Outage`) or unreachable (`Partition`).
pub fn isolation_faults(faults: &[FaultMeasurement]) -> impl Iterator<Item = &FaultMeasurement> {
    faults.iter().filter(|f| {
        f.target != Target::Orders && matches!(f.fault, FaultKind::Outage | FaultKind::Partition)
    })
}

/// For each other component that was down or partitioned, the worst
/// availability of orders meanwhile; their mean, as a percentage. Absent when
/// no such fault ran.
pub fn isolation_score(faults: &[FaultMeasurement]) -> Option<f64> {
    let mut worst: BTreeMap<Target, f64> = BTreeMap::new();
    for fault in isolation_faults(faults) {
        let availability = if fault.availability.is_nan() {
            0.0
        } else {
            fault.availability.clamp(0.0, 1.0)
        };
        worst
            .entry(fault.target)
            .and_modify(|w| *w = w.min(availability))
            .or_insert(availability);
    }
    if worst.is_empty() {
        return None;
    }
    Some(100.0 * worst.values().sum::<f64>() / worst.len() as f64)
}

/// `100 − 5 × units`, floored at 0, where units counts the topology's
/// components, links, protocols and asynchronous links.
pub fn complexity_score(topology: &Topology) -> f64 {
    (100.0 - COMPLEXITY_POINTS_PER_UNIT * f64::from(topology.complexity_units())).clamp(0.0, 100.0)
}

/// `100 × (1 − stale ratio) × ref / (ref + staleness p99)` over the baseline.
/// Absent when no prices changed (`updateRate` 0) or no checkout was priced.
pub fn consistency_score(baseline: &PhaseMeasurement, update_rate: f64) -> Option<f64> {
    if update_rate.is_nan()
        || update_rate <= 0.0
        || baseline.success_ratio.is_nan()
        || baseline.success_ratio <= 0.0
    {
        return None;
    }
    let fresh = 1.0 - baseline.stale_ratio.clamp(0.0, 1.0);
    Some(
        fresh
            * falling(
                baseline.staleness_ms.p99,
                CONSISTENCY_REFERENCE_STALENESS_MS,
            ),
    )
}

fn tenth(score: f64) -> f64 {
    (score * 10.0).round() / 10.0
}

/// All five scores of one pattern, rounded to a tenth.
pub fn scores(
    topology: &Topology,
    baseline: &PhaseMeasurement,
    faults: &[FaultMeasurement],
    capacity_rps: Option<f64>,
    workload: &Workload,
) -> Scores {
    Scores {
        performance: performance_score(baseline).map(tenth),
        scalability: scalability_score(capacity_rps, topology).map(tenth),
        isolation: isolation_score(faults).map(tenth),
        complexity: Some(tenth(complexity_score(topology))),
        consistency: consistency_score(baseline, workload.update_rate).map(tenth),
    }
}

/// The score on one axis.
pub fn score_on(scores: &Scores, axis: Axis) -> Option<f64> {
    match axis {
        Axis::Performance => scores.performance,
        Axis::Scalability => scores.scalability,
        Axis::Isolation => scores.isolation,
        Axis::Complexity => scores.complexity,
        Axis::Consistency => scores.consistency,
    }
}

/// The mean of a pattern's scores over the axes it was measured on.
pub fn mean_score(scores: &Scores) -> Option<f64> {
    let measured: Vec<f64> = Axis::ALL
        .into_iter()
        .filter_map(|axis| score_on(scores, axis))
        .collect();
    (!measured.is_empty()).then(|| measured.iter().sum::<f64>() / measured.len() as f64)
}

/// The patterns measured on `axis`, best first. Patterns tie on an axis when
/// the plan did not separate them (every isolation score is 100 when no
/// fault reached a dependency); such a tie goes to the higher mean score over
/// every measured axis, and only then to report order, so the `best` pattern
/// is never just the one listed first.
pub fn rank_by(patterns: &[PatternReport], axis: Axis) -> Vec<(Pattern, f64)> {
    let mut ranked: Vec<_> = patterns
        .iter()
        .filter_map(|p| {
            score_on(&p.scores, axis).map(|score| (p.pattern, score, mean_score(&p.scores)))
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then_with(|| b.2.unwrap_or(0.0).total_cmp(&a.2.unwrap_or(0.0)))
    });
    ranked
        .into_iter()
        .map(|(pattern, score, _)| (pattern, score))
        .collect()
}

#[cfg(test)]
mod tests {
    use commlab_api::{Components, Replicas};

    use super::super::fixtures::{baseline, catalog_down, comparison, fault, run};
    use super::*;

    #[test]
    fn lower_latency_scores_higher_performance() {
        let fast = performance_score(&baseline(1.0, 5.0)).unwrap();
        let slower_p99 = performance_score(&baseline(1.0, 50.0)).unwrap();
        let slower_p50 = performance_score(&baseline(10.0, 50.0)).unwrap();
        assert!(
            fast > slower_p99 && slower_p99 > slower_p50,
            "{fast} {slower_p99} {slower_p50}"
        );
        assert_eq!(performance_score(&baseline(0.0, 0.0)), Some(100.0));
        // At the reference latencies every term is 50.
        assert!((performance_score(&baseline(10.0, 50.0)).unwrap() - 50.0).abs() < 1e-9);
    }

    #[test]
    fn slower_completion_lowers_performance() {
        let sync = baseline(2.0, 10.0);
        let mut asynchronous = sync.clone();
        asynchronous.completion_ms.p50 = 40.0;
        asynchronous.completion_ms.p99 = 200.0;
        assert!(performance_score(&asynchronous).unwrap() < performance_score(&sync).unwrap());
    }

    #[test]
    fn failed_checkouts_lower_performance_and_no_load_is_unmeasured() {
        let mut failing = baseline(1.0, 5.0);
        failing.success_ratio = 0.5;
        let ok = performance_score(&baseline(1.0, 5.0)).unwrap();
        assert!((performance_score(&failing).unwrap() - ok / 2.0).abs() < 1e-9);
        let mut idle = baseline(1.0, 5.0);
        idle.offered_rps = 0.0;
        assert_eq!(performance_score(&idle), None);
    }

    #[test]
    fn figures_that_are_not_numbers_score_worst() {
        let mut broken = baseline(1.0, 5.0);
        broken.response_ms.p99 = f64::NAN;
        assert!(
            performance_score(&broken).unwrap() < performance_score(&baseline(1.0, 5.0)).unwrap()
        );
        assert_eq!(isolation_score(&[catalog_down(f64::NAN)]), Some(0.0));
        let topology = Topology::of(Pattern::DirectApiCall, &Components::default());
        assert_eq!(scalability_score(Some(f64::NAN), &topology), Some(0.0));
    }

    #[test]
    fn more_capacity_per_replica_scores_higher_scalability() {
        let one = Topology::of(Pattern::DirectApiCall, &Components::default());
        let scaled = Topology::of(
            Pattern::DirectApiCall,
            &Components {
                replicas: Replicas {
                    orders: 4,
                    catalog: 4,
                },
                ..Components::default()
            },
        );
        assert_eq!(scalability_score(None, &one), None);
        let low = scalability_score(Some(500.0), &one).unwrap();
        let high = scalability_score(Some(4000.0), &one).unwrap();
        assert!(high > low);
        // Same total capacity from four times the replicas is less scalable.
        assert!(scalability_score(Some(4000.0), &scaled).unwrap() < high);
        // 1000/s per replica on two replicas is the reference: 50.
        assert!((scalability_score(Some(2000.0), &one).unwrap() - 50.0).abs() < 1e-9);
        assert_eq!(scalability_score(Some(0.0), &one), Some(0.0));
    }

    #[test]
    fn isolation_is_the_mean_worst_availability_per_other_component() {
        assert_eq!(isolation_score(&[]), None);
        // Faults on orders itself and Delay/Kill faults do not test isolation.
        let not_isolation = [
            fault("orders-down", FaultKind::Outage, Target::Orders, 0.0),
            fault("slow-catalog", FaultKind::Delay, Target::Catalog, 0.5),
            fault("kill-catalog", FaultKind::Kill, Target::Catalog, 0.5),
        ];
        assert_eq!(isolation_score(&not_isolation), None);
        assert_eq!(isolation_score(&[catalog_down(1.0)]), Some(100.0));
        assert!(
            isolation_score(&[catalog_down(0.9)]).unwrap()
                > isolation_score(&[catalog_down(0.1)]).unwrap()
        );
        let faults = [
            catalog_down(0.9),
            fault("catalog-cut", FaultKind::Partition, Target::Catalog, 0.5),
            fault("db-down", FaultKind::Outage, Target::Database, 1.0),
        ];
        // catalog: worst 0.5; database: 1.0.
        assert!((isolation_score(&faults).unwrap() - 75.0).abs() < 1e-9);
    }

    #[test]
    fn more_moving_parts_score_lower_complexity() {
        let score = |p| complexity_score(&Topology::of(p, &Components::default()));
        assert_eq!(score(Pattern::SharedData), 70.0);
        assert_eq!(score(Pattern::DirectApiCall), 65.0);
        assert!(score(Pattern::AsyncPolling) < score(Pattern::DirectApiCall));
        assert!(score(Pattern::AsyncMessaging) < score(Pattern::CacheWithApiUpdates));
        let mut bigger = Topology::of(Pattern::DirectApiCall, &Components::default());
        bigger.components.push(bigger.components[2].clone());
        assert!(complexity_score(&bigger) < score(Pattern::DirectApiCall));
    }

    #[test]
    fn staler_prices_score_lower_consistency() {
        let fresh = baseline(1.0, 5.0);
        assert_eq!(consistency_score(&fresh, 5.0), Some(100.0));
        assert_eq!(
            consistency_score(&fresh, 0.0),
            None,
            "nothing changed, nothing to be stale"
        );
        let mut few = fresh.clone();
        few.stale_ratio = 0.01;
        few.staleness_ms.p99 = 50.0;
        let mut many = few.clone();
        many.stale_ratio = 0.1;
        let mut long = few.clone();
        long.staleness_ms.p99 = 2000.0;
        let few_score = consistency_score(&few, 5.0).unwrap();
        assert!(few_score < 100.0);
        assert!(consistency_score(&many, 5.0).unwrap() < few_score);
        assert!(consistency_score(&long, 5.0).unwrap() < few_score);
        let mut nothing_priced = fresh;
        nothing_priced.success_ratio = 0.0;
        assert_eq!(consistency_score(&nothing_priced, 5.0), None);
    }

    #[test]
    fn scores_are_absolute_so_adding_a_pattern_changes_no_other() {
        let report = comparison();
        let fewer = super::super::Report::new(
            "t",
            report.machine.clone(),
            report.workload.clone(),
            report.patterns[..2].to_vec(),
        );
        assert_eq!(fewer.patterns[0].scores, report.patterns[0].scores);
        let direct = report.pattern(Pattern::DirectApiCall).unwrap();
        let rebuilt = scores(
            &direct.topology,
            &direct.baseline,
            &direct.faults,
            direct.capacity_rps,
            &report.workload,
        );
        assert_eq!(rebuilt, direct.scores);
    }

    #[test]
    fn a_tie_on_the_ranked_axis_goes_to_the_higher_mean_score_then_to_report_order() {
        let workload = Workload::default();
        // orders stayed fully available while catalog was down: the same
        // isolation score for a slow and a fast pattern.
        let measured = |pattern, p50| {
            PatternReport::new(pattern, run(p50, vec![catalog_down(1.0)]), &workload)
        };
        let slow = measured(Pattern::SharedData, 20.0);
        let fast = measured(Pattern::DirectApiCall, 1.0);
        assert_eq!(slow.scores.isolation, fast.scores.isolation);
        assert!(mean_score(&fast.scores) > mean_score(&slow.scores));

        let order = |reports: &[PatternReport]| {
            rank_by(reports, Axis::Isolation)
                .into_iter()
                .map(|(pattern, _)| pattern)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            order(&[slow, fast.clone()]),
            [Pattern::DirectApiCall, Pattern::SharedData],
            "the pattern listed first won a tie it should lose"
        );
        // Equal on every axis: report order.
        let mut twin = fast.clone();
        twin.pattern = Pattern::AsyncPolling;
        assert_eq!(
            order(&[twin, fast]),
            [Pattern::AsyncPolling, Pattern::DirectApiCall]
        );
    }

    #[test]
    fn ranking_orders_patterns_by_one_axis() {
        let report = comparison();
        let ranked = rank_by(&report.patterns, Axis::Isolation);
        assert_eq!(ranked.len(), 6);
        assert!(ranked.windows(2).all(|w| w[0].1 >= w[1].1));
        assert_eq!(ranked.last().unwrap().0, Pattern::AsyncPolling);
        assert_eq!(
            score_on(&report.patterns[0].scores, Axis::Complexity),
            Some(70.0)
        );
    }
}
