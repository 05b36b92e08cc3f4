//! Chaos Mesh's own account of a fault: the `status` of a `PodChaos` or
//! `NetworkChaos`, read to confirm that a fault is in force, or why it is
//! not, instead of assuming that a created object acted. Pure, so every
//! shape below is unit-tested.
//!
//! # What Chaos Mesh writes (v2.x)
//!
//! Read in chaos-mesh/chaos-mesh `api/v1alpha1/common_types.go`,
//! `controllers/common/records/controller.go` (which applies and recovers
//! each target and records it), `controllers/common/condition/controller.go`
//! (which derives the conditions from the records),
//! `controllers/common/desiredphase/controller.go` and the `pod-kill`,
//! `pod-failure` and traffic-control implementations under
//! `controllers/chaosimpl/`:
//!
//! ```yaml
//! status:
//!   conditions:                      # each "True" or "False"
//!     - { type: Selected,     status: "True" }   # targets were found
//!     - { type: AllInjected,  status: "True" }   # every record is Injected
//!     - { type: AllRecovered, status: "False" }  # every record is Not Injected
//!     - { type: Paused,       status: "False" }
//!   experiment:
//!     desiredPhase: Run              # Stop once deleted, paused or past its duration
//!     containerRecords:              # one per selected pod (NetworkChaos: also its `target` pods)
//!       - id: team-a/shop-catalog-5d9f
//!         selectorKey: "."
//!         phase: Injected            # or "Not Injected"; "Not Injected/Wait" while
//!                                    # chaos-daemon has not confirmed a network change
//!         injectedCount: 1
//!         recoveredCount: 0
//!         events:                    # the last few, oldest first
//!           - { type: Failed,    operation: Apply, message: "...", timestamp: ... }
//!           - { type: Succeeded, operation: Apply, timestamp: ... }
//! ```
//!
//! - A target whose injection failed keeps its phase and gets a `Failed`
//!   `Apply` event whose message is the reason, e.g. chaos-daemon's
//!   `Error: Specified qdisc kind is unknown` on a kernel without netem;
//!   Chaos Mesh retries it later.
//! - When no pod matches, there are no records and `Selected` stays
//!   `False` (the reason goes to a Kubernetes Event only).
//! - `pod-kill` is one-shot: applying deletes the pod and marks the record
//!   `Injected` at once, `desiredPhase` stays `Run`, and recovering has
//!   nothing to undo (the record turns `Not Injected` as soon as the object
//!   is deleted). So `AllInjected` confirms a kill as it does any fault.
//! - The conditions are written by a second controller after the records,
//!   so the records are read too: all records `Injected` is in force even
//!   before `AllInjected` says so.
//! - Chaos Mesh's CRDs have no status subresource: it writes status with
//!   an update of the whole object.

use serde::Deserialize;
use serde_json::Value;

const INJECTED: &str = "Injected";
const NOT_INJECTED: &str = "Not Injected";
const ALL_INJECTED: &str = "AllInjected";
const ALL_RECOVERED: &str = "AllRecovered";
const PAUSED: &str = "Paused";
const APPLY: &str = "Apply";
const RECOVER: &str = "Recover";
const FAILED: &str = "Failed";

/// What a reading of the status says about the step commlab waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// The step is done: the fault is in force, or undone.
    Done,
    /// It cannot be done: Chaos Mesh's reason.
    Failed(String),
    /// Not yet: what the status shows instead, for a message if the wait
    /// runs out.
    Pending(String),
}

/// The `status` of a Chaos Mesh object.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ChaosStatus {
    #[serde(default)]
    conditions: Vec<Condition>,
    #[serde(default)]
    experiment: Experiment,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
struct Condition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
struct Experiment {
    #[serde(default, rename = "containerRecords")]
    records: Vec<Record>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
struct Record {
    id: String,
    #[serde(default)]
    phase: String,
    #[serde(default)]
    events: Vec<RecordEvent>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
struct RecordEvent {
    #[serde(rename = "type")]
    type_: String,
    operation: String,
    #[serde(default)]
    message: String,
}

impl Record {
    /// The message of this record's latest `operation` event when that
    /// event failed.
    fn last_failure(&self, operation: &str) -> Option<&str> {
        self.events
            .iter()
            .rev()
            .find(|event| event.operation == operation)
            .filter(|event| event.type_ == FAILED)
            .map(|event| event.message.as_str())
    }
}

impl ChaosStatus {
    /// The status of a chaos object (`object["status"]`); an object Chaos
    /// Mesh has not touched yet has none, which reads as an empty status.
    pub fn of(object: &Value) -> Result<Self, serde_json::Error> {
        match object.get("status") {
            None | Some(Value::Null) => Ok(Self::default()),
            Some(status) => Self::deserialize(status),
        }
    }

    fn condition(&self, type_: &str) -> bool {
        self.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    }

    fn every_record_is(&self, phase: &str) -> bool {
        !self.experiment.records.is_empty()
            && self.experiment.records.iter().all(|r| r.phase == phase)
    }

    /// `2 of 3 targets`.
    fn count(&self, phase: &str) -> String {
        let records = &self.experiment.records;
        let matching = records.iter().filter(|r| r.phase == phase).count();
        format!("{matching} of {} targets", records.len())
    }

    /// Whether the fault is in force: every target injected is `Done`; a
    /// target whose latest injection failed is `Failed` with Chaos Mesh's
    /// message (Chaos Mesh would retry, but a fault that failed once is not
    /// the fault the plan asked for); a paused object is `Failed`.
    pub fn injection(&self) -> Observed {
        if self.condition(PAUSED) {
            return Observed::Failed("Chaos Mesh reports it paused".into());
        }
        if self.condition(ALL_INJECTED) || self.every_record_is(INJECTED) {
            return Observed::Done;
        }
        let failed = self
            .experiment
            .records
            .iter()
            .filter(|r| r.phase != INJECTED)
            .find_map(|r| r.last_failure(APPLY).map(|message| (r, message)));
        if let Some((record, message)) = failed {
            return Observed::Failed(format!(
                "Chaos Mesh failed to inject it into {}: {message}",
                record.id
            ));
        }
        Observed::Pending(if self.experiment.records.is_empty() {
            if self.conditions.is_empty() {
                "Chaos Mesh has written no status for it (is its controller running?)".into()
            } else {
                "Chaos Mesh selected no pod for it (condition Selected is not True)".into()
            }
        } else {
            format!("Chaos Mesh reports {} injected", self.count(INJECTED))
        })
    }

    /// Whether the fault is undone: every target recovered, or none ever
    /// selected (no records), is `Done`. A failed recovery stays `Pending`
    /// with Chaos Mesh's message, since Chaos Mesh retries it.
    pub fn recovery(&self) -> Observed {
        if self.condition(ALL_RECOVERED)
            || self.experiment.records.is_empty()
            || self.every_record_is(NOT_INJECTED)
        {
            return Observed::Done;
        }
        let failed = self
            .experiment
            .records
            .iter()
            .filter(|r| r.phase != NOT_INJECTED)
            .find_map(|r| r.last_failure(RECOVER).map(|message| (r, message)));
        Observed::Pending(match failed {
            Some((record, message)) => {
                format!("Chaos Mesh failed to recover {}: {message}", record.id)
            }
            None => format!("Chaos Mesh reports {} recovered", self.count(NOT_INJECTED)),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn status(status: Value) -> ChaosStatus {
        ChaosStatus::of(&json!({ "spec": {}, "status": status })).expect("a Chaos Mesh status")
    }

    fn conditions(selected: bool, injected: bool, recovered: bool) -> Value {
        let flag = |on: bool| if on { "True" } else { "False" };
        json!([
            { "type": "Selected", "status": flag(selected) },
            { "type": "AllInjected", "status": flag(injected) },
            { "type": "AllRecovered", "status": flag(recovered) },
            { "type": "Paused", "status": "False" },
        ])
    }

    fn event(type_: &str, operation: &str, message: &str) -> Value {
        json!({
            "type": type_,
            "operation": operation,
            "message": message,
            "timestamp": "2026-01-01T00:00:05Z",
        })
    }

    fn record(id: &str, phase: &str, events: Vec<Value>) -> Value {
        json!({
            "id": id,
            "selectorKey": ".",
            "phase": phase,
            "injectedCount": 0,
            "recoveredCount": 0,
            "events": events,
        })
    }

    const QDISC: &str = "rpc error: code = Unknown desc = error code: 2, msg: Error: Specified qdisc kind is unknown.";

    #[test]
    fn an_object_chaos_mesh_has_not_touched_is_pending_on_its_controller() {
        let untouched = ChaosStatus::of(&json!({ "spec": {} })).unwrap();
        assert_eq!(
            untouched.injection(),
            Observed::Pending(
                "Chaos Mesh has written no status for it (is its controller running?)".into()
            )
        );
        // The desired phase comes before any record.
        let started = status(json!({ "experiment": { "desiredPhase": "Run" } }));
        assert!(matches!(started.injection(), Observed::Pending(_)));
    }

    #[test]
    fn every_target_injected_is_in_force() {
        let injected = status(json!({
            "conditions": conditions(true, true, false),
            "experiment": {
                "desiredPhase": "Run",
                "containerRecords": [
                    record("team-a/shop-catalog-1", "Injected", vec![event("Succeeded", "Apply", "")]),
                    record("team-a/shop-catalog-2", "Injected", vec![event("Succeeded", "Apply", "")]),
                ],
            },
        }));
        assert_eq!(injected.injection(), Observed::Done);
        // The records say so before the condition controller catches up.
        let records_first = status(json!({
            "conditions": conditions(true, false, false),
            "experiment": {
                "desiredPhase": "Run",
                "containerRecords": [record("team-a/shop-catalog-1", "Injected", vec![])],
            },
        }));
        assert_eq!(records_first.injection(), Observed::Done);
    }

    #[test]
    fn a_failed_apply_is_not_applied_with_chaos_mesh_s_message() {
        let failed = status(json!({
            "conditions": conditions(true, false, false),
            "experiment": {
                "desiredPhase": "Run",
                "containerRecords": [
                    record("team-a/shop-catalog-1", "Not Injected/Wait", vec![event("Failed", "Apply", QDISC)]),
                    record("team-a/shop-orders-1", "Injected", vec![event("Succeeded", "Apply", "")]),
                ],
            },
        }));
        assert_eq!(
            failed.injection(),
            Observed::Failed(format!(
                "Chaos Mesh failed to inject it into team-a/shop-catalog-1: {QDISC}"
            ))
        );
    }

    #[test]
    fn a_failure_followed_by_a_success_is_in_force_and_old_failures_of_injected_targets_do_not_count()
     {
        let retried = status(json!({
            "conditions": conditions(true, false, false),
            "experiment": {
                "desiredPhase": "Run",
                "containerRecords": [
                    record("team-a/shop-catalog-1", "Injected", vec![
                        event("Failed", "Apply", "connection refused"),
                        event("Succeeded", "Apply", ""),
                    ]),
                    record("team-a/shop-catalog-2", "Not Injected", vec![]),
                ],
            },
        }));
        assert_eq!(
            retried.injection(),
            Observed::Pending("Chaos Mesh reports 1 of 2 targets injected".into())
        );
    }

    #[test]
    fn no_pod_selected_and_paused_say_so() {
        let nothing_selected = status(json!({ "conditions": conditions(false, false, false) }));
        assert_eq!(
            nothing_selected.injection(),
            Observed::Pending(
                "Chaos Mesh selected no pod for it (condition Selected is not True)".into()
            )
        );
        let paused = status(json!({
            "conditions": [{ "type": "Paused", "status": "True" }, { "type": "AllInjected", "status": "True" }],
        }));
        assert_eq!(
            paused.injection(),
            Observed::Failed("Chaos Mesh reports it paused".into())
        );
    }

    #[test]
    fn a_pod_kill_is_in_force_once_applied_and_recovered_once_deleted() {
        // pod-kill deletes the pod on apply and marks it injected; its
        // desired phase stays Run, and recovering only resets the record.
        let killed = status(json!({
            "conditions": conditions(true, true, false),
            "experiment": {
                "desiredPhase": "Run",
                "containerRecords": [record("team-a/shop-orders-1", "Injected", vec![event("Succeeded", "Apply", "")])],
            },
        }));
        assert_eq!(killed.injection(), Observed::Done);
        assert!(matches!(killed.recovery(), Observed::Pending(_)));
        let deleted = status(json!({
            "conditions": conditions(true, false, true),
            "experiment": {
                "desiredPhase": "Stop",
                "containerRecords": [record("team-a/shop-orders-1", "Not Injected", vec![
                    event("Succeeded", "Apply", ""),
                    event("Succeeded", "Recover", ""),
                ])],
            },
        }));
        assert_eq!(deleted.recovery(), Observed::Done);
    }

    #[test]
    fn recovery_waits_for_every_target_and_quotes_a_failed_recover() {
        let halfway = status(json!({
            "conditions": conditions(true, false, false),
            "experiment": {
                "desiredPhase": "Stop",
                "containerRecords": [
                    record("team-a/shop-catalog-1", "Not Injected", vec![event("Succeeded", "Recover", "")]),
                    record("team-a/shop-catalog-2", "Injected", vec![]),
                ],
            },
        }));
        assert_eq!(
            halfway.recovery(),
            Observed::Pending("Chaos Mesh reports 1 of 2 targets recovered".into())
        );
        let stuck = status(json!({
            "conditions": conditions(true, false, false),
            "experiment": {
                "desiredPhase": "Stop",
                "containerRecords": [record("team-a/shop-catalog-1", "Injected/Wait", vec![
                    event("Succeeded", "Apply", ""),
                    event("Failed", "Recover", "daemon unavailable"),
                ])],
            },
        }));
        assert_eq!(
            stuck.recovery(),
            Observed::Pending(
                "Chaos Mesh failed to recover team-a/shop-catalog-1: daemon unavailable".into()
            )
        );
        let all = status(json!({ "conditions": conditions(true, false, true) }));
        assert_eq!(all.recovery(), Observed::Done);
    }

    #[test]
    fn what_was_never_selected_or_touched_has_nothing_to_recover() {
        assert_eq!(ChaosStatus::default().recovery(), Observed::Done);
        let nothing_selected = status(json!({ "conditions": conditions(false, false, false) }));
        assert_eq!(nothing_selected.recovery(), Observed::Done);
    }

    #[test]
    fn a_status_of_the_wrong_shape_is_an_error() {
        assert!(ChaosStatus::of(&json!({ "status": { "conditions": "all good" } })).is_err());
    }
}
