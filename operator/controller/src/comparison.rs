//! PatternComparison: one CommunicationPattern per listed pattern, run one
//! after another (they share the cluster's capacity; running them together
//! would distort the comparison), then a ranked table in status.
//!
//! The plan (which child to apply next, what the comparison shows) is pure;
//! the reconciler only reads children and reports, applies, and writes status.

use std::sync::Arc;

use commlab_api::{
    Axis, AxisRanking, CommunicationPattern, CommunicationPatternSpec, Components, Pattern,
    PatternComparison, PatternComparisonStatus, Phase, Target, pattern_comparison::PatternRun,
};
use commlab_workload::report::{PatternReport, Report, cross_pattern_claims, rank_by};
use k8s_openapi::{
    api::core::v1::ConfigMap,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    core::DeserializeGuard,
    runtime::controller::Action,
};
use tracing::{instrument, warn};

use crate::{
    apply::FIELD_MANAGER,
    children::Names,
    context::Context,
    error::{Error, Result},
    experiment::REPORT_KEY,
    labels,
};

/// Annotation on each child: the comparison generation its spec came from.
pub const SOURCE_GENERATION: &str = "commlab.dev/comparison-generation";
pub const COMPLETE: &str = "Complete";

/// The child's name suffix for a pattern; short so comparison names can be long.
pub fn suffix(pattern: Pattern) -> &'static str {
    match pattern {
        Pattern::SharedData => "shared-data",
        Pattern::DirectApiCall => "direct-call",
        Pattern::AsyncPolling => "polling",
        Pattern::AsyncMessaging => "messaging",
        Pattern::CacheWithApiUpdates => "cache-api",
        Pattern::CacheWithUpdateEvents => "cache-events",
    }
}

pub fn child_name(comparison: &str, pattern: Pattern) -> String {
    format!("{comparison}-{}", suffix(pattern))
}

/// The spec of one pattern's CommunicationPattern: the shared workload, SLOs
/// and chaos plan, less the broker faults a pattern without a broker cannot have.
pub fn child_spec(pc: &PatternComparison, pattern: Pattern) -> CommunicationPatternSpec {
    let chaos = pc
        .spec
        .chaos
        .iter()
        .filter(|f| pattern.needs_broker() || f.target != Target::Broker)
        .cloned()
        .collect();
    CommunicationPatternSpec {
        pattern,
        components: Components::default(),
        workload: pc.spec.workload.clone(),
        chaos,
        slo: pc.spec.slo.clone(),
    }
}

/// What to do next, given the children as they are.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Apply (create or update) this pattern's child; it is the next to run.
    Apply(Pattern),
    /// A child's experiment is under way: wait.
    Wait(Pattern),
    /// Every child's experiment has ended.
    Done,
}

/// A child as the plan sees it.
#[derive(Clone, Debug)]
pub struct ChildState {
    pub pattern: Pattern,
    /// The comparison generation its spec came from.
    pub source_generation: Option<i64>,
    pub phase: Option<Phase>,
    /// Whether its status is about its current spec.
    pub current: bool,
}

pub fn next_step(patterns: &[Pattern], generation: i64, children: &[ChildState]) -> Step {
    for &pattern in patterns {
        let child = children
            .iter()
            .find(|c| c.pattern == pattern && c.source_generation == Some(generation));
        match child {
            None => return Step::Apply(pattern),
            Some(c) if c.current && matches!(c.phase, Some(Phase::Completed | Phase::Failed)) => {
                continue;
            }
            Some(_) => return Step::Wait(pattern),
        }
    }
    Step::Done
}

/// Rankings on every axis, best first, from the children's reports.
pub fn rankings(reports: &[PatternReport]) -> Vec<AxisRanking> {
    Axis::ALL
        .into_iter()
        .map(|axis| AxisRanking {
            axis,
            order: rank_by(reports, axis).into_iter().map(|(p, _)| p).collect(),
        })
        .collect()
}

pub async fn reconcile(
    guard: Arc<DeserializeGuard<PatternComparison>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    match &guard.0 {
        Ok(pc) => reconcile_one(pc, &ctx).await,
        Err(invalid) => {
            warn!(name = ?invalid.metadata.name, error = %invalid.error, "skipping a PatternComparison that cannot be read");
            Ok(Action::await_change())
        }
    }
}

#[instrument(skip_all, fields(namespace = pc.namespace().unwrap_or_default(), name = pc.name_any()))]
async fn reconcile_one(pc: &PatternComparison, ctx: &Context) -> Result<Action> {
    let ns = pc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = pc.name_any();
    let generation = pc.metadata.generation.unwrap_or_default();
    let patterns = pc.spec.patterns();
    let api: Api<CommunicationPattern> = Api::namespaced(ctx.client.clone(), &ns);
    let owned = api
        .list(&ListParams::default().labels(&labels::owned_by(&name)))
        .await?;
    let children: Vec<ChildState> = owned
        .items
        .iter()
        .map(|cp| ChildState {
            pattern: cp.spec.pattern,
            source_generation: cp
                .annotations()
                .get(SOURCE_GENERATION)
                .and_then(|g| g.parse().ok()),
            phase: cp.status.as_ref().and_then(|s| s.phase),
            current: cp.status.as_ref().and_then(|s| s.observed_generation)
                == cp.metadata.generation,
        })
        .collect();

    let step = next_step(&patterns, generation, &children);
    if let Step::Apply(pattern) = step {
        apply_child(ctx, pc, &ns, pattern, generation).await?;
    }

    // Reports of the children that completed, in the order they were listed.
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let mut reports = Vec::new();
    if step == Step::Done {
        for &pattern in &patterns {
            let report_name = Names {
                instance: child_name(&name, pattern),
            }
            .report();
            let text = config_maps
                .get_opt(&report_name)
                .await?
                .and_then(|cm| cm.data)
                .and_then(|d| d.get(REPORT_KEY).cloned());
            match text.map(|t| Report::from_json(&t)) {
                Some(Ok(report)) => {
                    reports.extend(report.patterns.into_iter().filter(|p| p.pattern == pattern))
                }
                Some(Err(error)) => warn!(%pattern, %error, "ignoring a malformed report"),
                None => {}
            }
        }
    }
    let status = comparison_status(
        pc,
        &patterns,
        &owned.items,
        &step,
        &reports,
        Timestamp::now(),
    );
    if pc.status.as_ref() != Some(&status) {
        let body = serde_json::json!({
            "apiVersion": PatternComparison::api_version(&()),
            "kind": PatternComparison::kind(&()),
            "status": status,
        });
        let pcs: Api<PatternComparison> = Api::namespaced(ctx.client.clone(), &ns);
        pcs.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
    }
    Ok(Action::requeue(std::time::Duration::from_secs(300)))
}

async fn apply_child(
    ctx: &Context,
    pc: &PatternComparison,
    ns: &str,
    pattern: Pattern,
    generation: i64,
) -> Result<()> {
    let comparison = pc.name_any();
    let name = child_name(&comparison, pattern);
    let owner = pc
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    let mut child = CommunicationPattern::new(&name, child_spec(pc, pattern));
    child.metadata.labels = Some(labels::child(&comparison, suffix(pattern)));
    child.metadata.annotations =
        Some([(SOURCE_GENERATION.to_owned(), generation.to_string())].into());
    child.metadata.owner_references = Some(vec![owner]);
    let mut body = serde_json::to_value(&child).map_err(|source| Error::Serialize {
        what: "CommunicationPattern",
        source,
    })?;
    body["apiVersion"] = CommunicationPattern::api_version(&()).as_ref().into();
    body["kind"] = CommunicationPattern::kind(&()).as_ref().into();
    let api: Api<CommunicationPattern> = Api::namespaced(ctx.client.clone(), ns);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

/// The status from the children and their reports. Pure.
pub fn comparison_status(
    pc: &PatternComparison,
    patterns: &[Pattern],
    children: &[CommunicationPattern],
    step: &Step,
    reports: &[PatternReport],
    now: Timestamp,
) -> PatternComparisonStatus {
    let comparison = pc.name_any();
    let runs = patterns
        .iter()
        .map(|&pattern| {
            let name = child_name(&comparison, pattern);
            let phase = children
                .iter()
                .find(|c| c.name_any() == name)
                .and_then(|c| c.status.as_ref())
                .and_then(|s| s.phase);
            PatternRun {
                pattern,
                name,
                phase,
            }
        })
        .collect();
    let done = *step == Step::Done;
    let rankings = if done { rankings(reports) } else { Vec::new() };
    let best = rankings
        .iter()
        .find(|r| r.axis == pc.spec.rank_by)
        .and_then(|r| r.order.first().copied());
    let (phase, reason, message) = match step {
        Step::Done => (
            Phase::Completed,
            "Completed",
            format!(
                "{} of {} patterns reported results",
                reports.len(),
                patterns.len()
            ),
        ),
        Step::Apply(p) | Step::Wait(p) => (Phase::Running, "Running", format!("running {p}")),
    };
    let previous = pc
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == COMPLETE));
    let status_text = if done { "True" } else { "False" };
    let last_transition_time = previous
        .filter(|c| c.status == status_text)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    PatternComparisonStatus {
        phase: Some(phase),
        observed_generation: pc.metadata.generation,
        conditions: vec![Condition {
            type_: COMPLETE.into(),
            status: status_text.into(),
            reason: reason.into(),
            message,
            observed_generation: pc.metadata.generation,
            last_transition_time,
        }],
        pattern_list: Some(
            patterns
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(","),
        ),
        runs,
        rankings,
        best,
        claims: if done {
            cross_pattern_claims(reports)
        } else {
            Vec::new()
        },
    }
}

pub fn error_policy(
    _guard: Arc<DeserializeGuard<PatternComparison>>,
    error: &Error,
    _ctx: Arc<Context>,
) -> Action {
    warn!(%error, category = error.category(), "comparison reconcile failed");
    Action::requeue(std::time::Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(pattern: Pattern, generation: i64, phase: Option<Phase>) -> ChildState {
        ChildState {
            pattern,
            source_generation: Some(generation),
            phase,
            current: true,
        }
    }

    const THREE: [Pattern; 3] = [
        Pattern::DirectApiCall,
        Pattern::AsyncPolling,
        Pattern::CacheWithUpdateEvents,
    ];

    #[test]
    fn patterns_run_one_after_another() {
        assert_eq!(
            next_step(&THREE, 1, &[]),
            Step::Apply(Pattern::DirectApiCall)
        );
        let running = [child(Pattern::DirectApiCall, 1, Some(Phase::Running))];
        assert_eq!(
            next_step(&THREE, 1, &running),
            Step::Wait(Pattern::DirectApiCall)
        );
        let first_done = [child(Pattern::DirectApiCall, 1, Some(Phase::Completed))];
        assert_eq!(
            next_step(&THREE, 1, &first_done),
            Step::Apply(Pattern::AsyncPolling)
        );
        let all = THREE.map(|p| child(p, 1, Some(Phase::Failed)));
        assert_eq!(next_step(&THREE, 1, &all), Step::Done);
    }

    #[test]
    fn a_new_comparison_generation_reruns_every_pattern() {
        let all = THREE.map(|p| child(p, 1, Some(Phase::Completed)));
        assert_eq!(
            next_step(&THREE, 2, &all),
            Step::Apply(Pattern::DirectApiCall)
        );
    }

    #[test]
    fn a_child_whose_status_is_stale_is_still_running() {
        let mut c = child(Pattern::DirectApiCall, 1, Some(Phase::Completed));
        c.current = false;
        assert_eq!(
            next_step(&THREE, 1, &[c]),
            Step::Wait(Pattern::DirectApiCall)
        );
    }

    #[test]
    fn broker_faults_only_reach_patterns_with_a_broker() {
        let pc: PatternComparison = serde_json::from_value(serde_json::json!({
            "apiVersion": "commlab.dev/v1alpha1", "kind": "PatternComparison", "metadata": { "name": "cmp" },
            "spec": { "chaos": [
                { "name": "broker-down", "fault": "Outage", "target": "broker", "at": "5s", "duration": "5s" },
                { "name": "catalog-down", "fault": "Outage", "target": "catalog", "at": "20s", "duration": "5s" },
            ] }
        }))
        .unwrap();
        assert_eq!(child_spec(&pc, Pattern::DirectApiCall).chaos.len(), 1);
        assert_eq!(child_spec(&pc, Pattern::AsyncMessaging).chaos.len(), 2);
    }

    #[test]
    fn child_names_fit_the_operators_limit() {
        let longest = Pattern::ALL.iter().map(|&p| suffix(p).len()).max().unwrap();
        assert!(
            crate::validate::MAX_NAME_LEN - longest > 20,
            "comparison names of 20 characters must fit"
        );
    }
}
