//! Client-side validation: the checks the CRD's schema and CEL rules make at
//! `kubectl apply`, for specs that never pass through an API server
//! (`commlab run FILE.yaml`, `commlab compare --chaos FILE`) and for the
//! operator to judge a spec it reads.
//!
//! Each [`SpecProblem`] names the field the way the API server does
//! (`spec.chaos[0].latency`) and, where a CEL rule exists, repeats the rule's
//! message, so a problem reads the same whichever side found it.
//!
//! What serde already refuses (an unknown pattern, a malformed duration, a
//! missing field) never reaches these functions: read manifests with a
//! deserializer that reports the path of the field it failed on.

use std::{collections::HashMap, fmt, time};

use crate::{
    CommunicationPatternSpec, Components, Fault, FaultKind, Pattern, PatternComparisonSpec, Slo,
    Target, Workload,
    communication_pattern::{MAX_FAULTS, MAX_RATE, MAX_REPLICAS, MAX_UPDATE_RATE},
};

/// Longest fault name (a DNS label used in chaos objects' names).
pub const MAX_FAULT_NAME_LEN: usize = 40;

/// One thing wrong with a spec: the field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    /// The field, e.g. `spec.chaos[0].latency`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A spec with at least one problem; displays one problem per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct InvalidSpec {
    pub problems: Vec<SpecProblem>,
}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl InvalidSpec {
    /// Whether any problem is about `field` or a field inside it.
    pub fn mentions(&self, field: &str) -> bool {
        self.problems.iter().any(|p| p.field.starts_with(field))
    }
}

#[derive(Default)]
struct Problems(Vec<SpecProblem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(SpecProblem {
            field: field.into(),
            message: message.into(),
        });
    }

    fn into_result(self) -> Result<(), InvalidSpec> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(InvalidSpec { problems: self.0 })
        }
    }
}

impl CommunicationPatternSpec {
    /// The schema bounds and CEL rules of a CommunicationPattern, checked
    /// client-side. `Ok` for every spec the API server would admit.
    pub fn validate(&self) -> Result<(), InvalidSpec> {
        let mut problems = Problems::default();
        check_components(&self.components, &mut problems);
        check_workload(&self.workload, &mut problems);
        check_chaos(
            &self.chaos,
            &self.workload,
            Some(self.pattern),
            &mut problems,
        );
        check_slo(self.slo.as_ref(), &mut problems);
        problems.into_result()
    }
}

impl PatternComparisonSpec {
    /// The schema bounds and CEL rules of a PatternComparison, checked
    /// client-side. A `broker` fault is allowed: it is skipped for the
    /// patterns without a broker.
    pub fn validate(&self) -> Result<(), InvalidSpec> {
        let mut problems = Problems::default();
        if self.patterns.len() > Pattern::ALL.len() {
            problems.add(
                "spec.patterns",
                format!("must have at most {} items", Pattern::ALL.len()),
            );
        }
        for (i, pattern) in self.patterns.iter().enumerate() {
            if self.patterns[..i].contains(pattern) {
                problems.add(
                    "spec.patterns",
                    format!("each pattern may be listed only once in spec.patterns: {pattern} is listed twice"),
                );
            }
        }
        check_workload(&self.workload, &mut problems);
        check_chaos(&self.chaos, &self.workload, None, &mut problems);
        check_slo(self.slo.as_ref(), &mut problems);
        problems.into_result()
    }
}

fn check_components(components: &Components, problems: &mut Problems) {
    let replicas = &components.replicas;
    for (name, value) in [("orders", replicas.orders), ("catalog", replicas.catalog)] {
        if !(1..=MAX_REPLICAS).contains(&value) {
            problems.add(
                format!("spec.components.replicas.{name}"),
                format!("must be 1 to {MAX_REPLICAS}, not {value}"),
            );
        }
    }
}

fn parse(text: &str) -> time::Duration {
    text.parse::<crate::Duration>()
        .expect("the limits are valid durations")
        .as_std()
}

fn check_workload(workload: &Workload, problems: &mut Problems) {
    let field = |name: &str| format!("spec.workload.{name}");
    if !(workload.rate.is_finite() && workload.rate > 0.0 && workload.rate <= MAX_RATE) {
        problems.add(
            field("rate"),
            "rate must be more than 0 and at most 20000 checkouts per second",
        );
    }
    let duration = workload.duration.as_std();
    if duration.is_zero() || duration > parse(crate::communication_pattern::MAX_RUN) {
        problems.add(
            field("duration"),
            "duration must be more than 0s and at most 1h",
        );
    }
    let warmup = workload.warmup.as_std();
    if warmup.is_zero() || warmup > parse(crate::communication_pattern::MAX_WARMUP) {
        problems.add(
            field("warmup"),
            "warmup must be more than 0s and at most 10m",
        );
    }
    if !(1..=100_000).contains(&workload.products) {
        problems.add(field("products"), "products must be 1 to 100000");
    }
    if !(workload.update_rate.is_finite()
        && workload.update_rate >= 0.0
        && workload.update_rate <= MAX_UPDATE_RATE)
    {
        problems.add(
            field("updateRate"),
            "updateRate must be between 0 and 1000 price changes per second",
        );
    }
    let timeout = workload.request_timeout.as_std();
    if timeout < time::Duration::from_millis(10) || timeout > time::Duration::from_secs(60) {
        problems.add(
            field("requestTimeout"),
            "requestTimeout must be between 10ms and 1m",
        );
    }
}

/// `pattern` is `None` for a comparison, where broker faults are allowed.
fn check_chaos(
    chaos: &[Fault],
    workload: &Workload,
    pattern: Option<Pattern>,
    problems: &mut Problems,
) {
    if chaos.len() > MAX_FAULTS {
        problems.add(
            "spec.chaos",
            format!("must have at most {MAX_FAULTS} items, not {}", chaos.len()),
        );
    }
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    for (i, fault) in chaos.iter().enumerate() {
        let field = |name: &str| format!("spec.chaos[{i}].{name}");
        if !is_dns_label(&fault.name, MAX_FAULT_NAME_LEN) {
            problems.add(
                field("name"),
                format!(
                    "`{}` is not a valid fault name: use lower-case letters, digits and '-', \
                     starting and ending with a letter or digit, at most {MAX_FAULT_NAME_LEN} characters",
                    fault.name
                ),
            );
        }
        match first_index.get(fault.name.as_str()) {
            Some(first) => problems.add(
                field("name"),
                format!(
                    "fault names (spec.chaos[].name) must be unique: `{}` is also spec.chaos[{first}].name",
                    fault.name
                ),
            ),
            None => {
                first_index.insert(&fault.name, i);
            }
        }
        if fault.duration.as_std().is_zero() {
            problems.add(field("duration"), "duration must be more than 0s");
        }
        match (&fault.latency, fault.fault) {
            (None, FaultKind::Delay) => problems.add(
                field("latency"),
                "latency is required for a Delay fault, e.g. latency: 100ms",
            ),
            (Some(_), kind) if kind != FaultKind::Delay => problems.add(
                field("latency"),
                "latency is only allowed for a Delay fault",
            ),
            (Some(latency), _) => {
                let latency = latency.as_std();
                if latency.is_zero() || latency > time::Duration::from_secs(60) {
                    problems.add(
                        field("latency"),
                        "latency must be more than 0s and at most 1m",
                    );
                }
            }
            (None, _) => {}
        }
        if let Some(jitter) = &fault.jitter {
            if fault.fault != FaultKind::Delay {
                problems.add(field("jitter"), "jitter is only allowed for a Delay fault");
            } else if jitter.as_std() > time::Duration::from_secs(60) {
                problems.add(field("jitter"), "jitter must be at most 1m");
            }
        }
        let end = fault.at.as_std() + fault.duration.as_std();
        if end > workload.duration.as_std() {
            problems.add(
                "spec.chaos",
                format!(
                    "every fault must end inside the run: at + duration must be at most \
                     spec.workload.duration (`{}` ends at {:?}, the run lasts {})",
                    fault.name, end, workload.duration
                ),
            );
        }
        if let Some(pattern) = pattern
            && fault.target == Target::Broker
            && !pattern.needs_broker()
        {
            problems.add(
                "spec.chaos",
                format!(
                    "target broker is only allowed for the patterns with a broker \
                     (AsyncMessaging, CacheWithUpdateEvents): `{}` targets the broker of {pattern}",
                    fault.name
                ),
            );
        }
    }
}

fn check_slo(slo: Option<&Slo>, problems: &mut Problems) {
    let Some(availability) = slo.and_then(|slo| slo.availability.as_deref()) else {
        return;
    };
    if availability.len() > 12 || !is_percentage(availability) {
        problems.add(
            "spec.slo.availability",
            format!(
                "`{availability}` is not a percentage: write it as a quoted string such as \"99%\" or \"99.9%\""
            ),
        );
    }
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, at most `max` characters.
fn is_dns_label(name: &str, max: usize) -> bool {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= max
        && name.chars().all(|c| allowed(c) || c == '-')
        && name.starts_with(allowed)
        && name.ends_with(allowed)
}

/// `^(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)%$`
fn is_percentage(text: &str) -> bool {
    let Some(number) = text.strip_suffix('%') else {
        return false;
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (number, None),
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if let Some(fraction) = fraction
        && !digits(fraction)
    {
        return false;
    }
    match whole {
        "100" => fraction.is_none_or(|f| f.chars().all(|c| c == '0')),
        _ => digits(whole) && whole.len() <= 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> CommunicationPatternSpec {
        serde_json::from_value(value).unwrap()
    }

    fn problems(spec: &CommunicationPatternSpec) -> Vec<String> {
        match spec.validate() {
            Ok(()) => Vec::new(),
            Err(invalid) => invalid.problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_default_spec_is_valid() {
        for pattern in Pattern::ALL {
            assert_eq!(
                problems(&spec(json!({ "pattern": pattern }))),
                Vec::<String>::new()
            );
        }
    }

    #[test]
    fn faults_must_end_inside_the_run() {
        let s = spec(json!({
            "pattern": "DirectApiCall",
            "workload": { "duration": "60s" },
            "chaos": [{ "name": "late", "fault": "Outage", "target": "catalog", "at": "50s", "duration": "20s" }]
        }));
        let found = problems(&s);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("spec.chaos: every fault must end inside the run"),
            "{found:?}"
        );
        assert!(found[0].contains("at + duration must be at most spec.workload.duration"));
    }

    #[test]
    fn delay_needs_latency_and_only_delay_has_one() {
        let s = spec(json!({
            "pattern": "DirectApiCall",
            "chaos": [
                { "name": "slow", "fault": "Delay", "target": "catalog", "at": "1s", "duration": "1s" },
                { "name": "down", "fault": "Outage", "target": "catalog", "at": "1s", "duration": "1s",
                  "latency": "10ms", "jitter": "1ms" }
            ]
        }));
        let found = problems(&s);
        assert!(
            found[0].starts_with("spec.chaos[0].latency: latency is required"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("spec.chaos[1].latency: latency is only allowed"),
            "{found:?}"
        );
        assert!(found[2].starts_with("spec.chaos[1].jitter:"), "{found:?}");
    }

    #[test]
    fn broker_faults_only_for_broker_patterns_but_allowed_in_comparisons() {
        let fault = json!([{ "name": "b", "fault": "Outage", "target": "broker", "at": "1s", "duration": "1s" }]);
        let direct = spec(json!({ "pattern": "DirectApiCall", "chaos": fault }));
        assert!(problems(&direct)[0].contains("target broker is only allowed"));
        let events = spec(json!({ "pattern": "CacheWithUpdateEvents", "chaos": fault }));
        assert!(problems(&events).is_empty());
        let comparison: PatternComparisonSpec =
            serde_json::from_value(json!({ "chaos": fault })).unwrap();
        assert!(comparison.validate().is_ok());
    }

    #[test]
    fn names_are_unique_dns_labels() {
        let s = spec(json!({
            "pattern": "SharedData",
            "chaos": [
                { "name": "db", "fault": "Outage", "target": "database", "at": "1s", "duration": "1s" },
                { "name": "db", "fault": "Kill", "target": "database", "at": "3s", "duration": "1s" },
                { "name": "Bad_Name", "fault": "Kill", "target": "orders", "at": "5s", "duration": "1s" }
            ]
        }));
        let found = problems(&s);
        assert!(
            found[0]
                .starts_with("spec.chaos[1].name: fault names (spec.chaos[].name) must be unique"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("spec.chaos[2].name: `Bad_Name`"),
            "{found:?}"
        );
    }

    #[test]
    fn workload_bounds_name_their_field() {
        let s = spec(json!({
            "pattern": "SharedData",
            "components": { "replicas": { "orders": 0, "catalog": 51 } },
            "workload": { "rate": -1, "duration": "0s", "warmup": "11m", "products": 0,
                          "updateRate": 2000, "requestTimeout": "5ms" },
            "slo": { "availability": "0.99" }
        }));
        let fields: Vec<String> = s
            .validate()
            .unwrap_err()
            .problems
            .into_iter()
            .map(|p| p.field)
            .collect();
        for field in [
            "spec.components.replicas.orders",
            "spec.components.replicas.catalog",
            "spec.workload.rate",
            "spec.workload.duration",
            "spec.workload.warmup",
            "spec.workload.products",
            "spec.workload.updateRate",
            "spec.workload.requestTimeout",
            "spec.slo.availability",
        ] {
            assert!(
                fields.iter().any(|f| f == field),
                "{field} missing from {fields:?}"
            );
        }
    }

    #[test]
    fn percentages_follow_the_schema_pattern() {
        for good in ["99%", "99.9%", "0%", "100%", "100.0%", "5.25%"] {
            assert!(is_percentage(good), "{good}");
        }
        for bad in ["0.99", "101%", "100.1%", "999%", "%", "99.%", ".5%", "99 %"] {
            assert!(!is_percentage(bad), "{bad}");
        }
    }

    #[test]
    fn comparisons_list_each_pattern_once() {
        let comparison: PatternComparisonSpec = serde_json::from_value(json!({
            "patterns": ["DirectApiCall", "SharedData", "DirectApiCall"]
        }))
        .unwrap();
        let invalid = comparison.validate().unwrap_err();
        assert!(invalid.mentions("spec.patterns"), "{invalid}");
        assert!(
            invalid
                .to_string()
                .contains("DirectApiCall is listed twice")
        );
    }
}
