//! The verdict against the SLOs and the summary a CommunicationPattern's
//! status carries.

use commlab_api::{
    Slo,
    results::{DisplayColumns, ExperimentResults, Verdict},
};

use super::{
    PatternReport,
    format::{format_ms, format_ratio},
};

fn millis(duration: &commlab_api::Duration) -> f64 {
    duration.as_std().as_secs_f64() * 1000.0
}

/// Judges one pattern against its SLOs: `Pass` when every objective is met
/// (or there are none), else `Fail` with one line per missed objective.
///
/// - `p99`: the baseline response p99;
/// - `availability`: the baseline success ratio and orders' availability
///   during every fault that was applied (one that was not is not judged);
/// - `maxStaleness`: the baseline staleness p99.
pub fn judge(report: &PatternReport, slo: Option<&Slo>) -> (Verdict, Vec<String>) {
    let mut violations = Vec::new();
    let Some(slo) = slo else {
        return (Verdict::Pass, violations);
    };
    let baseline = &report.baseline;
    if let Some(objective) = &slo.p99 {
        let p99 = baseline.response_ms.p99;
        if p99 > millis(objective) {
            violations.push(format!(
                "baseline response p99 {} is above the objective {objective}",
                format_ms(p99)
            ));
        }
    }
    if let Some(text) = &slo.availability {
        match slo.availability_fraction() {
            Some(objective) => {
                if baseline.success_ratio < objective {
                    violations.push(format!(
                        "baseline availability {} is below the objective {text}",
                        format_ratio(baseline.success_ratio)
                    ));
                }
                for fault in report.faults.iter().filter(|f| f.availability < objective) {
                    violations.push(format!(
                        "availability {} during `{}` ({} of {}) is below the objective {text}",
                        format_ratio(fault.availability),
                        fault.name,
                        fault.fault,
                        fault.target
                    ));
                }
            }
            None => violations.push(format!(
                "the availability objective `{text}` is not a percentage such as 99.9%"
            )),
        }
    }
    if let Some(objective) = &slo.max_staleness {
        let p99 = baseline.staleness_ms.p99;
        if p99 > millis(objective) {
            violations.push(format!(
                "baseline staleness p99 {} is above the objective {objective}",
                format_ms(p99)
            ));
        }
    }
    let verdict = if violations.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    (verdict, violations)
}

/// The printer columns: baseline response p99, worst availability under a
/// fault (`-` without a fault that was applied), baseline staleness p99.
pub fn display_columns(report: &PatternReport) -> DisplayColumns {
    DisplayColumns {
        p99: format_ms(report.baseline.response_ms.p99),
        availability: report
            .worst_availability()
            .map_or_else(|| "-".to_owned(), |f| format_ratio(f.availability)),
        staleness: format_ms(report.baseline.staleness_ms.p99),
    }
}

/// What the operator writes into `status.results` for one pattern.
pub fn experiment_results(report: &PatternReport, slo: Option<&Slo>) -> ExperimentResults {
    let (verdict, violations) = judge(report, slo);
    ExperimentResults {
        baseline: report.baseline.clone(),
        faults: report.faults.clone(),
        faults_not_applied: report.faults_not_applied.clone(),
        capacity_rps: report.capacity_rps,
        scores: report.scores.clone(),
        claims: report.claims.clone(),
        verdict,
        violations,
        display: display_columns(report),
    }
}

#[cfg(test)]
mod tests {
    use commlab_api::{FaultKind, Pattern, Target};

    use super::super::fixtures::{catalog_down, comparison, fault, not_applied};
    use super::*;

    fn slo(json: &str) -> Slo {
        serde_json::from_str(json).unwrap()
    }

    fn direct() -> PatternReport {
        comparison()
            .pattern(Pattern::DirectApiCall)
            .unwrap()
            .clone()
    }

    #[test]
    fn no_slo_passes() {
        assert_eq!(judge(&direct(), None), (Verdict::Pass, vec![]));
        assert_eq!(judge(&direct(), Some(&slo("{}"))), (Verdict::Pass, vec![]));
    }

    #[test]
    fn p99_objective() {
        let mut report = direct();
        report.baseline.response_ms.p99 = 12.4;
        assert_eq!(
            judge(&report, Some(&slo(r#"{"p99": "50ms"}"#))).0,
            Verdict::Pass
        );
        assert_eq!(
            judge(&report, Some(&slo(r#"{"p99": "10ms"}"#))),
            (
                Verdict::Fail,
                vec!["baseline response p99 12.4ms is above the objective 10ms".to_owned()]
            )
        );
    }

    #[test]
    fn availability_objective_covers_baseline_and_every_fault() {
        let mut report = direct();
        report.faults = vec![
            catalog_down(0.975),
            fault("db-down", FaultKind::Outage, Target::Database, 1.0),
        ];
        assert_eq!(
            judge(&report, Some(&slo(r#"{"availability": "97%"}"#))).0,
            Verdict::Pass
        );
        let (verdict, violations) = judge(&report, Some(&slo(r#"{"availability": "99.9%"}"#)));
        assert_eq!(verdict, Verdict::Fail);
        assert_eq!(
            violations,
            [
                "availability 97.5% during `catalog-down` (Outage of catalog) is below the objective 99.9%"
            ]
        );
        report.baseline.success_ratio = 0.95;
        let (_, violations) = judge(&report, Some(&slo(r#"{"availability": "99%"}"#)));
        assert_eq!(
            violations[0],
            "baseline availability 95% is below the objective 99%"
        );
        assert_eq!(violations.len(), 2);
    }

    #[test]
    fn malformed_availability_objective_fails_with_a_reason() {
        let bad = Slo {
            p99: None,
            availability: Some("most".into()),
            max_staleness: None,
        };
        let (verdict, violations) = judge(&direct(), Some(&bad));
        assert_eq!(verdict, Verdict::Fail);
        assert!(violations[0].contains("`most` is not a percentage"));
    }

    #[test]
    fn staleness_objective() {
        let mut report = direct();
        report.baseline.staleness_ms.p99 = 1200.0;
        assert_eq!(
            judge(&report, Some(&slo(r#"{"maxStaleness": "5s"}"#))).0,
            Verdict::Pass
        );
        assert_eq!(
            judge(&report, Some(&slo(r#"{"maxStaleness": "1s"}"#))).1,
            ["baseline staleness p99 1.2s is above the objective 1s"]
        );
    }

    #[test]
    fn display_columns_read_like_the_printer_columns() {
        let mut report = direct();
        report.baseline.response_ms.p99 = 12.44;
        report.baseline.staleness_ms.p99 = 1234.0;
        report.faults = vec![catalog_down(0.975), catalog_down(0.99)];
        assert_eq!(
            display_columns(&report),
            DisplayColumns {
                p99: "12.4ms".into(),
                availability: "97.5%".into(),
                staleness: "1.2s".into()
            }
        );
        report.faults.clear();
        assert_eq!(display_columns(&report).availability, "-");
    }

    #[test]
    fn a_fault_not_applied_is_in_the_results_with_its_reason_and_judged_by_no_objective() {
        let mut report = direct();
        report.faults.clear();
        report.faults_not_applied = vec![not_applied(
            "catalog-down",
            FaultKind::Outage,
            Target::Catalog,
        )];
        let results = experiment_results(&report, Some(&slo(r#"{"availability": "99%"}"#)));
        assert_eq!(results.verdict, Verdict::Pass, "{:?}", results.violations);
        assert_eq!(results.display.availability, "-");
        assert_eq!(results.faults_not_applied, report.faults_not_applied);
        let json = serde_json::to_value(&results).unwrap();
        assert_eq!(json["faultsNotApplied"][0]["name"], "catalog-down");
        assert!(
            json["faultsNotApplied"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("Specified qdisc kind is unknown")
        );
        assert!(json.get("faults").is_none(), "no measured fault: {json}");
    }

    #[test]
    fn experiment_results_summarise_the_pattern() {
        let report = direct();
        let results = experiment_results(&report, Some(&slo(r#"{"availability": "99%"}"#)));
        assert_eq!(results.baseline, report.baseline);
        assert_eq!(results.faults, report.faults);
        assert_eq!(results.scores, report.scores);
        assert_eq!(results.claims, report.claims);
        assert_eq!(results.capacity_rps, Some(1500.0));
        assert_eq!(results.verdict, Verdict::Fail);
        assert_eq!(results.violations.len(), 1);
        assert_eq!(results.display.availability, "2%");
        let json = serde_json::to_value(&results).unwrap();
        assert_eq!(json["verdict"], "Fail");
        assert_eq!(json["display"]["p99"], "7.5ms");
    }
}
