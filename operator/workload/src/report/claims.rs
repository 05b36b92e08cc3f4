//! The article's claims, checked against the measurements.
//!
//! A claim about one pattern is judged from that pattern's run
//! ([`pattern_claims`]); a claim that compares patterns is judged across a
//! report ([`cross_pattern_claims`]). A claim whose fault or pattern did not
//! run is `NotMeasured`, and its evidence says what to run; a fault that
//! ran but was not applied judges nothing, and the evidence says why it was
//! not applied.

use commlab_api::{
    FaultKind, Pattern, Target, Workload,
    results::{Claim, ClaimVerdict, FaultMeasurement, FaultNotApplied, PhaseMeasurement},
};

use super::{
    PatternReport,
    format::{format_ms, format_ratio},
};

/// Below this availability under a fault, orders counts as down.
pub const DOWN_BELOW: f64 = 0.10;
/// At or above this availability under a fault, orders counts as available.
pub const AVAILABLE_AT_LEAST: f64 = 0.99;
/// At or above this fraction of accepted checkouts priced, they count as completed.
pub const COMPLETED_AT_LEAST: f64 = 0.99;

/// The stable identifiers of the claims, as in `Claim::id`.
pub mod ids {
    pub const DIRECT_CALL_DOWN_WITH_CATALOG: &str = "direct-call-down-with-catalog";
    pub const EVENTS_CACHE_UP_WITHOUT_CATALOG: &str = "events-cache-up-without-catalog";
    pub const MESSAGING_ACCEPTS_WITHOUT_CATALOG: &str = "messaging-accepts-without-catalog";
    pub const SHARED_DATABASE_DOWN_TAKES_EVERY_APP_DOWN: &str =
        "shared-database-down-takes-every-app-down";
    pub const CACHE_SERVES_STALE_PRICES: &str = "cache-serves-stale-prices";
    pub const POLLING_SLOWER_THAN_DIRECT: &str = "polling-slower-than-direct";
    pub const CACHE_FASTER_THAN_DIRECT_AND_MESSAGING: &str =
        "cache-faster-than-direct-and-messaging";
}

use ids::*;

fn claim(id: &str, statement: &str, verdict: ClaimVerdict, evidence: String) -> Claim {
    Claim {
        id: id.to_owned(),
        statement: statement.to_owned(),
        verdict,
        evidence,
    }
}

fn confirmed_if(condition: bool) -> ClaimVerdict {
    if condition {
        ClaimVerdict::Confirmed
    } else {
        ClaimVerdict::Contradicted
    }
}

/// The faults of one pattern's run, as the claims read them.
#[derive(Clone, Copy)]
struct Faults<'a> {
    measured: &'a [FaultMeasurement],
    not_applied: &'a [FaultNotApplied],
}

impl<'a> Faults<'a> {
    /// The measured faults of `kind` on `target`.
    fn of(&self, kind: FaultKind, target: Target) -> Vec<&'a FaultMeasurement> {
        self.measured
            .iter()
            .filter(|f| f.fault == kind && f.target == target)
            .collect()
    }

    /// Why a claim that needs a `kind` fault on `target` is not measured:
    /// such faults were not applied (with the reasons), or none ran and
    /// this is what to add to `spec.chaos`.
    fn unmeasured(&self, kind: FaultKind, target: Target) -> String {
        let not_applied: Vec<String> = self
            .not_applied
            .iter()
            .filter(|f| f.fault == kind && f.target == target)
            .map(|f| {
                format!(
                    "`{}` ({kind} of {target}) was not applied, so its window is not judged: {}",
                    f.name, f.reason
                )
            })
            .collect();
        if not_applied.is_empty() {
            format!(
                "no {kind} of {target} ran; add {{name: {target}-down, fault: {kind}, target: {target}, at: 20s, duration: 15s}} to spec.chaos"
            )
        } else {
            not_applied.join("; ")
        }
    }
}

/// `orders answered 2.1% of checkouts during catalog-down`, for each fault.
fn availability_during(faults: &[&FaultMeasurement]) -> String {
    faults
        .iter()
        .map(|f| {
            format!(
                "orders answered {} of checkouts during `{}` ({} of {})",
                format_ratio(f.availability),
                f.name,
                f.fault,
                f.target
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn lowest(faults: &[&FaultMeasurement], value: impl Fn(&FaultMeasurement) -> f64) -> f64 {
    faults
        .iter()
        .map(|f| value(f))
        .fold(f64::INFINITY, f64::min)
}

fn highest(faults: &[&FaultMeasurement], value: impl Fn(&FaultMeasurement) -> f64) -> f64 {
    faults
        .iter()
        .map(|f| value(f))
        .fold(f64::NEG_INFINITY, f64::max)
}

fn direct_call_down_with_catalog(faults: Faults) -> Claim {
    let statement = "With a direct API call, if catalog is down, orders is down too.";
    let outages = faults.of(FaultKind::Outage, Target::Catalog);
    if outages.is_empty() {
        let evidence = faults.unmeasured(FaultKind::Outage, Target::Catalog);
        return claim(
            DIRECT_CALL_DOWN_WITH_CATALOG,
            statement,
            ClaimVerdict::NotMeasured,
            evidence,
        );
    }
    let best = highest(&outages, |f| f.availability);
    let evidence = format!(
        "{}; orders counts as down below {}",
        availability_during(&outages),
        format_ratio(DOWN_BELOW)
    );
    claim(
        DIRECT_CALL_DOWN_WITH_CATALOG,
        statement,
        confirmed_if(best < DOWN_BELOW),
        evidence,
    )
}

fn events_cache_up_without_catalog(faults: Faults) -> Claim {
    let statement = "A cache fed by update events keeps orders available while catalog is down.";
    let outages = faults.of(FaultKind::Outage, Target::Catalog);
    if outages.is_empty() {
        let evidence = faults.unmeasured(FaultKind::Outage, Target::Catalog);
        return claim(
            EVENTS_CACHE_UP_WITHOUT_CATALOG,
            statement,
            ClaimVerdict::NotMeasured,
            evidence,
        );
    }
    let worst = lowest(&outages, |f| f.availability);
    let evidence = format!(
        "{}; available means at least {}",
        availability_during(&outages),
        format_ratio(AVAILABLE_AT_LEAST)
    );
    claim(
        EVENTS_CACHE_UP_WITHOUT_CATALOG,
        statement,
        confirmed_if(worst >= AVAILABLE_AT_LEAST),
        evidence,
    )
}

fn messaging_accepts_without_catalog(faults: Faults) -> Claim {
    let statement = "With async messaging, orders accepts checkouts while catalog is down and completes them later.";
    let outages = faults.of(FaultKind::Outage, Target::Catalog);
    if outages.is_empty() {
        let evidence = faults.unmeasured(FaultKind::Outage, Target::Catalog);
        return claim(
            MESSAGING_ACCEPTS_WITHOUT_CATALOG,
            statement,
            ClaimVerdict::NotMeasured,
            evidence,
        );
    }
    let accepted = lowest(&outages, |f| f.availability);
    let completed = lowest(&outages, |f| f.completed_ratio);
    let details = outages
        .iter()
        .map(|f| {
            format!(
                "during `{}` orders accepted {} of checkouts and {} of those were priced by the end of the run (completion p50 {})",
                f.name,
                format_ratio(f.availability),
                format_ratio(f.completed_ratio),
                format_ms(f.completion_ms.p50)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let evidence = format!(
        "{details}; the claim needs at least {} accepted and {} completed",
        format_ratio(AVAILABLE_AT_LEAST),
        format_ratio(COMPLETED_AT_LEAST)
    );
    let verdict = confirmed_if(accepted >= AVAILABLE_AT_LEAST && completed >= COMPLETED_AT_LEAST);
    claim(
        MESSAGING_ACCEPTS_WITHOUT_CATALOG,
        statement,
        verdict,
        evidence,
    )
}

fn shared_database_down_takes_every_app_down(faults: Faults) -> Claim {
    let statement = "When the shared database is down, every app is down.";
    let outages = faults.of(FaultKind::Outage, Target::Database);
    if outages.is_empty() {
        let evidence = faults.unmeasured(FaultKind::Outage, Target::Database);
        return claim(
            SHARED_DATABASE_DOWN_TAKES_EVERY_APP_DOWN,
            statement,
            ClaimVerdict::NotMeasured,
            evidence,
        );
    }
    let best = highest(&outages, |f| f.availability);
    let evidence = format!(
        "{}; orders counts as down below {} (catalog's own availability is not measured)",
        availability_during(&outages),
        format_ratio(DOWN_BELOW)
    );
    claim(
        SHARED_DATABASE_DOWN_TAKES_EVERY_APP_DOWN,
        statement,
        confirmed_if(best < DOWN_BELOW),
        evidence,
    )
}

fn cache_serves_stale_prices(
    pattern: Pattern,
    baseline: &PhaseMeasurement,
    faults: &[FaultMeasurement],
    workload: &Workload,
) -> Claim {
    let statement =
        "A cache can serve stale prices: orders may use a price catalog has already changed.";
    if workload.update_rate.is_nan() || workload.update_rate <= 0.0 {
        let evidence =
            "no prices changed during the run; set spec.workload.updateRate above 0".to_owned();
        return claim(
            CACHE_SERVES_STALE_PRICES,
            statement,
            ClaimVerdict::NotMeasured,
            evidence,
        );
    }
    if baseline.success_ratio.is_nan() || baseline.success_ratio <= 0.0 {
        let evidence = format!("{pattern} priced no checkout during the baseline");
        return claim(
            CACHE_SERVES_STALE_PRICES,
            statement,
            ClaimVerdict::NotMeasured,
            evidence,
        );
    }
    let stalest_fault = faults
        .iter()
        .max_by(|a, b| a.stale_ratio.total_cmp(&b.stale_ratio));
    let mut evidence = format!(
        "{} of priced checkouts used a superseded price during the baseline (staleness p50 {}, p99 {}, max {})",
        format_ratio(baseline.stale_ratio),
        format_ms(baseline.staleness_ms.p50),
        format_ms(baseline.staleness_ms.p99),
        format_ms(baseline.staleness_ms.max),
    );
    if let Some(fault) = stalest_fault.filter(|f| f.stale_ratio > 0.0) {
        evidence.push_str(&format!(
            "; {} during `{}`",
            format_ratio(fault.stale_ratio),
            fault.name
        ));
    }
    let any_stale =
        baseline.stale_ratio > 0.0 || stalest_fault.is_some_and(|f| f.stale_ratio > 0.0);
    if !any_stale {
        evidence.push_str(&format!(
            " at {} price changes/s over {} products; a higher updateRate or fewer products makes a stale read likelier",
            workload.update_rate, workload.products
        ));
    }
    claim(
        CACHE_SERVES_STALE_PRICES,
        statement,
        confirmed_if(any_stale),
        evidence,
    )
}

/// The article's claims about `pattern` alone, judged from its run: the
/// baseline and the faults that were in force (`faults`); the faults that
/// were not applied only explain a claim left unmeasured.
pub fn pattern_claims(
    pattern: Pattern,
    baseline: &PhaseMeasurement,
    faults: &[FaultMeasurement],
    not_applied: &[FaultNotApplied],
    workload: &Workload,
) -> Vec<Claim> {
    let run = Faults {
        measured: faults,
        not_applied,
    };
    match pattern {
        Pattern::SharedData => vec![shared_database_down_takes_every_app_down(run)],
        Pattern::DirectApiCall => vec![direct_call_down_with_catalog(run)],
        Pattern::AsyncPolling => vec![],
        Pattern::AsyncMessaging => vec![messaging_accepts_without_catalog(run)],
        Pattern::CacheWithApiUpdates => {
            vec![cache_serves_stale_prices(
                pattern, baseline, faults, workload,
            )]
        }
        Pattern::CacheWithUpdateEvents => vec![
            events_cache_up_without_catalog(run),
            cache_serves_stale_prices(pattern, baseline, faults, workload),
        ],
    }
}

fn find(patterns: &[PatternReport], pattern: Pattern) -> Option<&PatternReport> {
    patterns.iter().find(|p| p.pattern == pattern)
}

fn completion_p50(report: &PatternReport) -> String {
    format!(
        "{} completion p50 {}",
        report.pattern,
        format_ms(report.baseline.completion_ms.p50)
    )
}

fn polling_slower_than_direct(patterns: &[PatternReport]) -> Claim {
    let statement = "Async polling is slower than a direct call.";
    let (Some(polling), Some(direct)) = (
        find(patterns, Pattern::AsyncPolling),
        find(patterns, Pattern::DirectApiCall),
    ) else {
        let evidence = "run AsyncPolling and DirectApiCall in the same comparison".to_owned();
        return claim(
            POLLING_SLOWER_THAN_DIRECT,
            statement,
            ClaimVerdict::NotMeasured,
            evidence,
        );
    };
    let slower = polling.baseline.completion_ms.p50 > direct.baseline.completion_ms.p50;
    let evidence = format!(
        "baseline {} vs {}",
        completion_p50(polling),
        completion_p50(direct)
    );
    claim(
        POLLING_SLOWER_THAN_DIRECT,
        statement,
        confirmed_if(slower),
        evidence,
    )
}

fn cache_faster_than_direct_and_messaging(patterns: &[PatternReport]) -> Claim {
    let statement = "Cache patterns are faster than direct calls and messaging.";
    let caches: Vec<_> = patterns
        .iter()
        .filter(|p| p.pattern.caches_prices())
        .collect();
    let others: Vec<_> = [Pattern::DirectApiCall, Pattern::AsyncMessaging]
        .into_iter()
        .filter_map(|pattern| find(patterns, pattern))
        .collect();
    if caches.is_empty() || others.is_empty() {
        let evidence = "run CacheWithApiUpdates or CacheWithUpdateEvents together with DirectApiCall and AsyncMessaging in the same comparison".to_owned();
        return claim(
            CACHE_FASTER_THAN_DIRECT_AND_MESSAGING,
            statement,
            ClaimVerdict::NotMeasured,
            evidence,
        );
    }
    let slowest_cache = caches
        .iter()
        .map(|p| p.baseline.completion_ms.p50)
        .fold(f64::NEG_INFINITY, f64::max);
    let fastest_other = others
        .iter()
        .map(|p| p.baseline.completion_ms.p50)
        .fold(f64::INFINITY, f64::min);
    let figures = |reports: &[&PatternReport]| {
        reports
            .iter()
            .map(|p| completion_p50(p))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut evidence = format!("baseline {} vs {}", figures(&caches), figures(&others));
    if others.len() < 2 {
        let missing = if find(patterns, Pattern::DirectApiCall).is_none() {
            "DirectApiCall"
        } else {
            "AsyncMessaging"
        };
        evidence.push_str(&format!("; {missing} did not run, so it is not compared"));
    }
    claim(
        CACHE_FASTER_THAN_DIRECT_AND_MESSAGING,
        statement,
        confirmed_if(slowest_cache < fastest_other),
        evidence,
    )
}

/// The article's claims that compare patterns, judged across `patterns`
/// (which ran under one workload).
pub fn cross_pattern_claims(patterns: &[PatternReport]) -> Vec<Claim> {
    vec![
        polling_slower_than_direct(patterns),
        cache_faster_than_direct_and_messaging(patterns),
    ]
}

#[cfg(test)]
mod tests {
    use commlab_api::results::StalenessMs;

    use super::super::fixtures::{baseline, catalog_down, comparison, fault, not_applied};
    use super::*;

    fn verdicts(claims: &[Claim]) -> Vec<(&str, ClaimVerdict)> {
        claims.iter().map(|c| (c.id.as_str(), c.verdict)).collect()
    }

    fn only(pattern: Pattern, faults: &[FaultMeasurement]) -> Claim {
        let claims = pattern_claims(
            pattern,
            &baseline(1.0, 5.0),
            faults,
            &[],
            &Workload::default(),
        );
        claims.into_iter().next().unwrap()
    }

    #[test]
    fn direct_call_down_with_catalog_each_verdict() {
        let down = only(Pattern::DirectApiCall, &[catalog_down(0.021)]);
        assert_eq!(down.verdict, ClaimVerdict::Confirmed);
        assert_eq!(
            down.evidence,
            "orders answered 2.1% of checkouts during `catalog-down` (Outage of catalog); orders counts as down below 10%"
        );
        let up = only(Pattern::DirectApiCall, &[catalog_down(0.5)]);
        assert_eq!(up.verdict, ClaimVerdict::Contradicted);
        assert!(up.evidence.contains("50%"));
        let unmeasured = only(
            Pattern::DirectApiCall,
            &[fault("slow", FaultKind::Delay, Target::Catalog, 0.0)],
        );
        assert_eq!(unmeasured.verdict, ClaimVerdict::NotMeasured);
        assert!(
            unmeasured
                .evidence
                .contains("fault: Outage, target: catalog"),
            "{}",
            unmeasured.evidence
        );
        // Every catalog outage must take orders down.
        let mixed = only(
            Pattern::DirectApiCall,
            &[catalog_down(0.0), catalog_down(0.3)],
        );
        assert_eq!(mixed.verdict, ClaimVerdict::Contradicted);
    }

    #[test]
    fn a_fault_not_applied_judges_nothing_and_the_evidence_says_why() {
        let outage = not_applied("catalog-down", FaultKind::Outage, Target::Catalog);
        for pattern in [
            Pattern::DirectApiCall,
            Pattern::AsyncMessaging,
            Pattern::CacheWithUpdateEvents,
        ] {
            let claim = pattern_claims(
                pattern,
                &baseline(1.0, 5.0),
                &[],
                std::slice::from_ref(&outage),
                &Workload::default(),
            )
            .remove(0);
            assert_eq!(claim.verdict, ClaimVerdict::NotMeasured, "{pattern}");
            assert_eq!(
                claim.evidence,
                format!(
                    "`catalog-down` (Outage of catalog) was not applied, so its window is not judged: {}",
                    outage.reason
                )
            );
        }
        // A catalog outage that was applied still decides; one not applied beside it changes nothing.
        let decided = pattern_claims(
            Pattern::DirectApiCall,
            &baseline(1.0, 5.0),
            &[catalog_down(0.01)],
            std::slice::from_ref(&outage),
            &Workload::default(),
        )
        .remove(0);
        assert_eq!(decided.verdict, ClaimVerdict::Confirmed);
        assert!(
            !decided.evidence.contains("not applied"),
            "{}",
            decided.evidence
        );
        // A not-applied fault of another kind or target is no excuse.
        let other = not_applied("db-down", FaultKind::Outage, Target::Database);
        let unrelated = pattern_claims(
            Pattern::DirectApiCall,
            &baseline(1.0, 5.0),
            &[],
            &[other],
            &Workload::default(),
        )
        .remove(0);
        assert!(
            unrelated.evidence.starts_with("no Outage of catalog ran"),
            "{}",
            unrelated.evidence
        );
    }

    #[test]
    fn events_cache_up_without_catalog_each_verdict() {
        let claim = |faults: &[FaultMeasurement]| {
            let all = pattern_claims(
                Pattern::CacheWithUpdateEvents,
                &baseline(1.0, 5.0),
                faults,
                &[],
                &Workload::default(),
            );
            all.into_iter()
                .find(|c| c.id == EVENTS_CACHE_UP_WITHOUT_CATALOG)
                .unwrap()
        };
        assert_eq!(claim(&[catalog_down(1.0)]).verdict, ClaimVerdict::Confirmed);
        assert_eq!(
            claim(&[catalog_down(0.99)]).verdict,
            ClaimVerdict::Confirmed
        );
        let dipped = claim(&[catalog_down(0.95)]);
        assert_eq!(dipped.verdict, ClaimVerdict::Contradicted);
        assert!(dipped.evidence.contains("95%") && dipped.evidence.contains("at least 99%"));
        assert_eq!(claim(&[]).verdict, ClaimVerdict::NotMeasured);
    }

    #[test]
    fn messaging_accepts_without_catalog_each_verdict() {
        let mut accepted_and_completed = catalog_down(1.0);
        accepted_and_completed.completion_ms.p50 = 9000.0;
        let confirmed = only(Pattern::AsyncMessaging, &[accepted_and_completed.clone()]);
        assert_eq!(confirmed.verdict, ClaimVerdict::Confirmed);
        assert!(
            confirmed.evidence.contains("accepted 100%"),
            "{}",
            confirmed.evidence
        );
        assert!(
            confirmed.evidence.contains("completion p50 9.0s"),
            "{}",
            confirmed.evidence
        );
        let mut never_completed = accepted_and_completed.clone();
        never_completed.completed_ratio = 0.4;
        let contradicted = only(Pattern::AsyncMessaging, &[never_completed]);
        assert_eq!(contradicted.verdict, ClaimVerdict::Contradicted);
        assert!(contradicted.evidence.contains("40% of those were priced"));
        let mut refused = accepted_and_completed;
        refused.availability = 0.2;
        assert_eq!(
            only(Pattern::AsyncMessaging, &[refused]).verdict,
            ClaimVerdict::Contradicted
        );
        assert_eq!(
            only(Pattern::AsyncMessaging, &[]).verdict,
            ClaimVerdict::NotMeasured
        );
    }

    #[test]
    fn shared_database_down_takes_every_app_down_each_verdict() {
        let db = |availability| fault("db-down", FaultKind::Outage, Target::Database, availability);
        assert_eq!(
            only(Pattern::SharedData, &[db(0.0)]).verdict,
            ClaimVerdict::Confirmed
        );
        assert_eq!(
            only(Pattern::SharedData, &[db(0.8)]).verdict,
            ClaimVerdict::Contradicted
        );
        let unmeasured = only(Pattern::SharedData, &[catalog_down(1.0)]);
        assert_eq!(unmeasured.verdict, ClaimVerdict::NotMeasured);
        assert!(unmeasured.evidence.contains("target: database"));
    }

    #[test]
    fn cache_serves_stale_prices_each_verdict() {
        let claim =
            |baseline: PhaseMeasurement, faults: &[FaultMeasurement], workload: &Workload| {
                pattern_claims(
                    Pattern::CacheWithApiUpdates,
                    &baseline,
                    faults,
                    &[],
                    workload,
                )
                .remove(0)
            };
        let workload = Workload::default();
        let mut stale = baseline(0.4, 2.0);
        stale.stale_ratio = 0.002;
        stale.staleness_ms = StalenessMs {
            p50: 3.0,
            p99: 40.0,
            max: 90.0,
        };
        let confirmed = claim(stale.clone(), &[], &workload);
        assert_eq!(confirmed.verdict, ClaimVerdict::Confirmed);
        assert!(
            confirmed.evidence.starts_with("0.2% of priced checkouts"),
            "{}",
            confirmed.evidence
        );
        assert!(confirmed.evidence.contains("p99 40.0ms"));
        // Stale reads seen only during a fault also confirm it.
        let mut stale_in_fault = catalog_down(1.0);
        stale_in_fault.stale_ratio = 0.05;
        let during_fault = claim(baseline(0.4, 2.0), &[stale_in_fault], &workload);
        assert_eq!(during_fault.verdict, ClaimVerdict::Confirmed);
        assert!(during_fault.evidence.contains("5% during `catalog-down`"));
        let fresh = claim(baseline(0.4, 2.0), &[], &workload);
        assert_eq!(fresh.verdict, ClaimVerdict::Contradicted);
        assert!(fresh.evidence.contains("higher updateRate"));
        let frozen = Workload {
            update_rate: 0.0,
            ..Workload::default()
        };
        assert_eq!(
            claim(stale.clone(), &[], &frozen).verdict,
            ClaimVerdict::NotMeasured
        );
        let mut nothing_priced = stale;
        nothing_priced.success_ratio = 0.0;
        assert_eq!(
            claim(nothing_priced, &[], &workload).verdict,
            ClaimVerdict::NotMeasured
        );
    }

    #[test]
    fn each_pattern_gets_its_own_claims() {
        let ids = |pattern| {
            pattern_claims(pattern, &baseline(1.0, 5.0), &[], &[], &Workload::default())
                .into_iter()
                .map(|c| c.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(Pattern::DirectApiCall), [DIRECT_CALL_DOWN_WITH_CATALOG]);
        assert_eq!(
            ids(Pattern::SharedData),
            [SHARED_DATABASE_DOWN_TAKES_EVERY_APP_DOWN]
        );
        assert_eq!(
            ids(Pattern::AsyncMessaging),
            [MESSAGING_ACCEPTS_WITHOUT_CATALOG]
        );
        assert_eq!(
            ids(Pattern::CacheWithApiUpdates),
            [CACHE_SERVES_STALE_PRICES]
        );
        assert_eq!(
            ids(Pattern::CacheWithUpdateEvents),
            [EVENTS_CACHE_UP_WITHOUT_CATALOG, CACHE_SERVES_STALE_PRICES]
        );
        assert!(ids(Pattern::AsyncPolling).is_empty());
    }

    #[test]
    fn cross_claims_confirmed_on_the_articles_shape() {
        let report = comparison();
        assert_eq!(
            verdicts(&report.claims),
            [
                (POLLING_SLOWER_THAN_DIRECT, ClaimVerdict::Confirmed),
                (
                    CACHE_FASTER_THAN_DIRECT_AND_MESSAGING,
                    ClaimVerdict::Confirmed
                ),
            ]
        );
        assert_eq!(
            report.claims[0].evidence,
            "baseline AsyncPolling completion p50 12.0ms vs DirectApiCall completion p50 1.5ms"
        );
        assert!(
            report.claims[1]
                .evidence
                .contains("CacheWithUpdateEvents completion p50 0.4ms")
        );
        assert!(
            report.claims[1]
                .evidence
                .contains("AsyncMessaging completion p50 4.0ms")
        );
    }

    #[test]
    fn cross_claims_contradicted_when_figures_say_otherwise() {
        let mut report = comparison();
        for pattern in &mut report.patterns {
            if pattern.pattern == Pattern::AsyncPolling {
                pattern.baseline.completion_ms.p50 = 1.0;
            }
            if pattern.pattern == Pattern::CacheWithApiUpdates {
                pattern.baseline.completion_ms.p50 = 2.0;
            }
        }
        assert_eq!(
            verdicts(&cross_pattern_claims(&report.patterns)),
            [
                (POLLING_SLOWER_THAN_DIRECT, ClaimVerdict::Contradicted),
                (
                    CACHE_FASTER_THAN_DIRECT_AND_MESSAGING,
                    ClaimVerdict::Contradicted
                ),
            ]
        );
    }

    #[test]
    fn cross_claims_not_measured_without_their_patterns() {
        let report = comparison();
        let keep = |patterns: &[Pattern]| {
            report
                .patterns
                .iter()
                .filter(|p| patterns.contains(&p.pattern))
                .cloned()
                .collect::<Vec<_>>()
        };
        let none = cross_pattern_claims(&keep(&[Pattern::SharedData]));
        assert!(none.iter().all(|c| c.verdict == ClaimVerdict::NotMeasured));
        assert!(
            none[0]
                .evidence
                .contains("run AsyncPolling and DirectApiCall")
        );
        assert!(
            none[1]
                .evidence
                .contains("run CacheWithApiUpdates or CacheWithUpdateEvents")
        );
        // One comparator is enough to judge, and the evidence says which is missing.
        let partial = cross_pattern_claims(&keep(&[
            Pattern::CacheWithUpdateEvents,
            Pattern::DirectApiCall,
        ]));
        assert_eq!(partial[1].verdict, ClaimVerdict::Confirmed);
        assert!(
            partial[1].evidence.contains("AsyncMessaging did not run"),
            "{}",
            partial[1].evidence
        );
        assert_eq!(partial[0].verdict, ClaimVerdict::NotMeasured);
    }
}
