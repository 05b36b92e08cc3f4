//! Status step: the status computed from the spec's judgement and the
//! children as the API server reports them. Pure; the reconciler writes it
//! only when it differs from what is stored.

use commlab_api::{
    CommunicationPatternStatus, ComponentStatus, Phase, ReportRef, results::ExperimentResults,
};
use k8s_openapi::{
    api::apps::v1::{Deployment, StatefulSet},
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::ResourceExt;

use crate::{experiment::ExperimentState, labels, validate::Judgement};

pub const SPEC_VALID: &str = "SpecValid";
pub const READY: &str = "Ready";
pub const DEGRADED: &str = "Degraded";
pub const EXPERIMENT_COMPLETE: &str = "ExperimentComplete";

/// Children as observed after apply.
#[derive(Clone, Debug, Default)]
pub struct Observed<'a> {
    pub deployments: &'a [Deployment],
    pub stateful_sets: &'a [StatefulSet],
}

/// Ready counts of every component, in a stable order.
pub fn components(observed: &Observed) -> Vec<ComponentStatus> {
    let component = |labels: &std::collections::BTreeMap<String, String>| {
        labels.get(labels::COMPONENT).cloned().unwrap_or_default()
    };
    let mut out: Vec<ComponentStatus> = observed
        .stateful_sets
        .iter()
        .map(|s| {
            let desired = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let ready = s
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            ComponentStatus {
                name: component(s.labels()),
                kind: "StatefulSet".into(),
                ready: format!("{ready}/{desired}"),
            }
        })
        .chain(observed.deployments.iter().map(|d| {
            let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let ready = d
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            ComponentStatus {
                name: component(d.labels()),
                kind: "Deployment".into(),
                ready: format!("{ready}/{desired}"),
            }
        }))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn fully_ready(c: &ComponentStatus) -> bool {
    matches!(c.ready.split_once('/'), Some((ready, desired)) if ready == desired)
}

/// The status to store, given the previous one (for transition times and
/// for what the experiment already wrote).
pub fn compute(
    previous: Option<&CommunicationPatternStatus>,
    generation: Option<i64>,
    judgement: &Judgement,
    components: Vec<ComponentStatus>,
    now: Timestamp,
) -> CommunicationPatternStatus {
    let previous_conditions = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let was_ready = previous_conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == "True");
    let mut conditions = Vec::new();
    let mut set = |type_: &str, ok: bool, reason: &str, message: String| {
        conditions.push(condition(
            previous_conditions,
            generation,
            type_,
            ok,
            reason,
            message,
            now,
        ));
    };

    if !judgement.is_valid() {
        set(
            SPEC_VALID,
            false,
            "InvalidSpec",
            judgement.problems.join("; "),
        );
        return CommunicationPatternStatus {
            phase: Some(Phase::Failed),
            observed_generation: generation,
            conditions,
            components,
            ..previous.cloned().unwrap_or_default()
        };
    }
    let spec_message = if judgement.warnings.is_empty() {
        "the spec can be deployed".to_owned()
    } else {
        judgement.warnings.join("; ")
    };
    set(SPEC_VALID, true, "Valid", spec_message);

    let waiting: Vec<String> = components
        .iter()
        .filter(|c| !fully_ready(c))
        .map(|c| format!("{} {}", c.name, c.ready))
        .collect();
    let ready = waiting.is_empty() && !components.is_empty();
    let ready_message = if ready {
        "every component is ready".to_owned()
    } else {
        format!("waiting for {}", waiting.join(", "))
    };
    set(
        READY,
        ready,
        if ready {
            "ComponentsReady"
        } else {
            "ComponentsNotReady"
        },
        ready_message.clone(),
    );
    let degraded = was_ready && !ready;
    set(
        DEGRADED,
        degraded,
        if degraded {
            "ComponentLost"
        } else {
            "AsDesired"
        },
        if degraded {
            ready_message
        } else {
            "no component lost readiness".to_owned()
        },
    );

    let phase = if ready {
        Phase::Ready
    } else {
        Phase::Deploying
    };
    CommunicationPatternStatus {
        phase: Some(phase),
        observed_generation: generation,
        conditions,
        components,
        ..previous.cloned().unwrap_or_default()
    }
}

/// Adds the experiment's phase, condition and results to a computed status.
/// While an experiment runs its phase wins over the components': a fault
/// that takes pods down is the experiment working, not a deployment failing.
pub fn with_experiment(
    mut status: CommunicationPatternStatus,
    previous: Option<&CommunicationPatternStatus>,
    state: &ExperimentState,
    report_config_map: &str,
    now: Timestamp,
) -> CommunicationPatternStatus {
    let previous_conditions = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let generation = status.observed_generation;
    let (phase, ok, reason, message) = match state {
        ExperimentState::NotStarted => return status,
        ExperimentState::Running => (
            Phase::Running,
            false,
            "Running",
            "the runner Job is running the experiment".to_owned(),
        ),
        ExperimentState::Completed(results) => {
            status.results = Some((**results).clone());
            status.report = Some(ReportRef {
                config_map: report_config_map.to_owned(),
            });
            let message = format!(
                "verdict {:?}{}; the full report is in ConfigMap {report_config_map}",
                results.verdict,
                not_applied_summary(results)
            );
            (Phase::Completed, true, "Completed", message)
        }
        ExperimentState::Failed { reason, message } => {
            (Phase::Failed, false, *reason, message.clone())
        }
    };
    status.phase = Some(phase);
    status.conditions.retain(|c| c.type_ != EXPERIMENT_COMPLETE);
    status.conditions.push(condition(
        previous_conditions,
        generation,
        EXPERIMENT_COMPLETE,
        ok,
        reason,
        message,
        now,
    ));
    status
}

/// `; not applied: slow-catalog (<reason>)` for the faults of the plan that
/// were not in force, so that `kubectl describe` shows at once that part of
/// the plan was not measured, and why.
fn not_applied_summary(results: &ExperimentResults) -> String {
    if results.faults_not_applied.is_empty() {
        return String::new();
    }
    let faults: Vec<String> = results
        .faults_not_applied
        .iter()
        .map(|f| format!("{} ({})", f.name, f.reason))
        .collect();
    format!("; not applied, so not judged: {}", faults.join(", "))
}

/// A condition whose `lastTransitionTime` moves only when its status does.
fn condition(
    previous: &[Condition],
    generation: Option<i64>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(name: &str, ready: &str) -> ComponentStatus {
        ComponentStatus {
            name: name.into(),
            kind: "Deployment".into(),
            ready: ready.into(),
        }
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn get<'a>(s: &'a CommunicationPatternStatus, type_: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn ready_when_every_component_is() {
        let s = compute(
            None,
            Some(1),
            &Judgement::default(),
            vec![component("orders", "2/2"), component("catalog", "1/1")],
            t(0),
        );
        assert_eq!(s.phase, Some(Phase::Ready));
        assert_eq!(get(&s, READY).status, "True");
        assert_eq!(get(&s, DEGRADED).status, "False");
    }

    #[test]
    fn deploying_names_what_it_waits_for() {
        let s = compute(
            None,
            Some(1),
            &Judgement::default(),
            vec![component("orders", "1/2")],
            t(0),
        );
        assert_eq!(s.phase, Some(Phase::Deploying));
        assert_eq!(get(&s, READY).message, "waiting for orders 1/2");
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let first = compute(
            None,
            Some(1),
            &Judgement::default(),
            vec![component("orders", "1/1")],
            t(0),
        );
        let same = compute(
            Some(&first),
            Some(1),
            &Judgement::default(),
            vec![component("orders", "1/1")],
            t(60),
        );
        assert_eq!(first, same, "an unchanged world gives an identical status");
        let lost = compute(
            Some(&same),
            Some(1),
            &Judgement::default(),
            vec![component("orders", "0/1")],
            t(120),
        );
        assert_eq!(get(&lost, READY).last_transition_time, Time(t(120)));
        assert_eq!(get(&lost, DEGRADED).status, "True");
        assert_eq!(get(&lost, SPEC_VALID).last_transition_time, Time(t(0)));
    }

    #[test]
    fn a_completed_experiment_names_the_faults_that_were_not_applied() {
        use commlab_api::{
            FaultKind, Target,
            results::{DisplayColumns, FaultNotApplied, Verdict},
        };

        let results = ExperimentResults {
            baseline: Default::default(),
            faults: Vec::new(),
            faults_not_applied: vec![FaultNotApplied {
                name: "slow-catalog".into(),
                fault: FaultKind::Delay,
                target: Target::Catalog,
                reason: "Chaos Mesh failed to inject it into lab/shop-catalog-1: \
                         Error: Specified qdisc kind is unknown."
                    .into(),
            }],
            capacity_rps: None,
            scores: Default::default(),
            claims: Vec::new(),
            verdict: Verdict::Pass,
            violations: Vec::new(),
            display: DisplayColumns::default(),
        };
        let ready = compute(
            None,
            Some(1),
            &Judgement::default(),
            vec![component("orders", "1/1")],
            t(0),
        );
        let state = ExperimentState::Completed(Box::new(results.clone()));
        let s = with_experiment(ready.clone(), Some(&ready), &state, "shop-report", t(5));
        assert_eq!(s.results.as_ref(), Some(&results));
        assert_eq!(
            get(&s, EXPERIMENT_COMPLETE).message,
            "verdict Pass; not applied, so not judged: slow-catalog (Chaos Mesh failed to inject \
             it into lab/shop-catalog-1: Error: Specified qdisc kind is unknown.); the full \
             report is in ConfigMap shop-report"
        );
        let all_applied = ExperimentState::Completed(Box::new(ExperimentResults {
            faults_not_applied: Vec::new(),
            ..results
        }));
        let s = with_experiment(
            ready.clone(),
            Some(&ready),
            &all_applied,
            "shop-report",
            t(5),
        );
        assert_eq!(
            get(&s, EXPERIMENT_COMPLETE).message,
            "verdict Pass; the full report is in ConfigMap shop-report"
        );
    }

    #[test]
    fn an_invalid_spec_fails_with_the_message() {
        let judgement = Judgement {
            problems: vec!["spec.components.cache.kind: Redis is not supported yet".into()],
            warnings: vec![],
        };
        let s = compute(None, Some(3), &judgement, vec![], t(0));
        assert_eq!(s.phase, Some(Phase::Failed));
        let c = get(&s, SPEC_VALID);
        assert_eq!(
            (c.status.as_str(), c.observed_generation),
            ("False", Some(3))
        );
        assert!(c.message.contains("Redis"));
    }
}
