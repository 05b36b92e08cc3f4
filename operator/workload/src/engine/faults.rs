//! Each fault of the chaos plan on the run's timeline: injected at its
//! offset, recovered after its duration, and what its backend confirmed
//! about it. Only a fault confirmed in force is measured; one that was not
//! applied is reported with the backend's reason and its window is judged
//! by nothing (no availability, no claim, no isolation score).

use std::{sync::Arc, time::Duration};

use commlab_api::{
    Fault, Pattern,
    results::{FaultMeasurement, FaultNotApplied, InForce, PhaseMeasurement},
};
use commlab_chaos::{FaultBackend, Injection, Recovery};
use tokio::time::Instant;

use super::{EngineError, Event, Observer};
use crate::{measure::Recording, report::FaultWindow};

/// What became of one fault, on the load generator's clock (offsets from
/// its origin, like every window of a [`Recording`]).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum FaultOutcome {
    /// Confirmed in force at `from`, and undone at `to` when that was
    /// confirmed too.
    InForce {
        from: Duration,
        to: Result<Duration, String>,
    },
    /// Not in force: the backend's reason.
    NotApplied { reason: String },
}

/// Where a fault ran on the load generator's clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    /// The load generator's time zero.
    pub origin: Instant,
    /// Where the measured run starts, after the warm-up.
    pub measured_from: Duration,
}

impl Clock {
    fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.origin)
    }
}

/// Injects `fault` at its offset into the measured run and recovers it
/// after its duration; a fault that was not applied is recovered at once,
/// to undo whatever part of it took effect.
pub(crate) async fn drive_fault(
    backend: Arc<dyn FaultBackend>,
    fault: Fault,
    clock: Clock,
    pattern: Pattern,
    observer: Arc<dyn Observer>,
) -> Result<FaultOutcome, EngineError> {
    let failed = |action: &'static str| {
        let name = fault.name.clone();
        move |source| EngineError::Fault {
            fault: name,
            action,
            source: Box::new(source),
        }
    };
    let warn = |message: String| {
        observer.event(Event::Warning {
            pattern: Some(pattern),
            message: format!("fault `{}` {message}", fault.name),
        })
    };
    let inject_at = clock.origin + clock.measured_from + fault.at.as_std();
    tokio::time::sleep_until(inject_at).await;
    let active = backend.inject(&fault).await.map_err(failed("inject"))?;
    let since = match &active.injection {
        Injection::InForce { since } => *since,
        Injection::NotApplied { reason } => {
            let reason = reason.clone();
            warn(format!(
                "was not applied, so its window is not judged: {reason}"
            ));
            // Part of it may have taken effect (one pod of several), which
            // would spill into the windows after it.
            if let Recovery::Unconfirmed { reason } =
                backend.recover(active).await.map_err(failed("recover"))?
            {
                warn(format!(
                    "was not applied, and undoing what part of it took effect is not confirmed: {reason}"
                ));
            }
            return Ok(FaultOutcome::NotApplied { reason });
        }
    };
    observer.event(Event::FaultInjected {
        pattern,
        name: fault.name.clone(),
        kind: fault.fault,
        target: fault.target,
        late: since.saturating_duration_since(inject_at),
    });
    let recover_at = inject_at + fault.duration.as_std();
    tokio::time::sleep_until(recover_at).await;
    let to = match backend.recover(active).await.map_err(failed("recover"))? {
        Recovery::Confirmed { at } => {
            observer.event(Event::FaultRecovered {
                pattern,
                name: fault.name.clone(),
                late: at.saturating_duration_since(recover_at),
            });
            Ok(clock.offset(at))
        }
        Recovery::Unconfirmed { reason } => {
            warn(format!("was recovered but that is not confirmed: {reason}"));
            Err(reason)
        }
    };
    Ok(FaultOutcome::InForce {
        from: clock.offset(since),
        to,
    })
}

/// What the report says about each fault of `plan`, given what became of
/// it (`outcomes`, in plan order).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct JudgedFaults {
    /// The faults in force, measured over their planned windows.
    pub measured: Vec<FaultMeasurement>,
    pub not_applied: Vec<FaultNotApplied>,
    /// The planned windows of the measured faults, for the charts.
    pub windows: Vec<FaultWindow>,
}

/// Measures the faults that were in force and sets aside those that were
/// not, so that nothing downstream can judge a window in which no fault
/// acted.
pub(crate) fn judge_faults(
    plan: &[Fault],
    outcomes: Vec<FaultOutcome>,
    recording: &Recording,
    measured_from: Duration,
    baseline: &PhaseMeasurement,
) -> JudgedFaults {
    let seconds = |offset: Duration| offset.saturating_sub(measured_from).as_secs_f64();
    let mut judged = JudgedFaults::default();
    for (fault, outcome) in plan.iter().zip(outcomes) {
        match outcome {
            FaultOutcome::InForce { from, to } => {
                let mut measured = recording.fault(fault, measured_from, baseline);
                let (to_s, recovery_unconfirmed) = match to {
                    Ok(to) => (Some(seconds(to)), None),
                    Err(reason) => (None, Some(reason)),
                };
                measured.in_force = Some(InForce {
                    from_s: seconds(from),
                    to_s,
                    recovery_unconfirmed,
                });
                judged.measured.push(measured);
                judged.windows.push(FaultWindow::of(fault));
            }
            FaultOutcome::NotApplied { reason } => judged.not_applied.push(FaultNotApplied {
                name: fault.name.clone(),
                fault: fault.fault,
                target: fault.target,
                reason,
            }),
        }
    }
    judged
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use commlab_api::{
        Duration as SpecDuration, FaultKind, Target, Workload, results::ClaimVerdict,
    };
    use commlab_chaos::{ActiveFault, ChaosError, FaultHandle};

    use super::*;
    use crate::{
        measure::{CheckoutRecord, Outcome, RecordingInput},
        report::{PatternReport, PatternRun, claim_ids},
    };

    /// A backend whose faults never take: each comes back not applied, and
    /// undoing it is not confirmed either. Remembers when it was asked to.
    #[derive(Default)]
    struct NothingTakes {
        recovered_at: Mutex<Vec<Instant>>,
    }

    #[async_trait]
    impl FaultBackend for NothingTakes {
        fn name(&self) -> &'static str {
            "nothing-takes"
        }

        async fn inject(&self, fault: &Fault) -> Result<ActiveFault, ChaosError> {
            Ok(ActiveFault {
                name: fault.name.clone(),
                kind: fault.fault,
                target: fault.target,
                handle: FaultHandle::Local(0),
                injection: Injection::NotApplied {
                    reason: "Specified qdisc kind is unknown".into(),
                },
            })
        }

        async fn recover(&self, _: ActiveFault) -> Result<Recovery, ChaosError> {
            self.recovered_at.lock().unwrap().push(Instant::now());
            Ok(Recovery::Unconfirmed {
                reason: "chaos-daemon unavailable".into(),
            })
        }

        async fn cleanup(&self) -> Result<(), ChaosError> {
            Ok(())
        }
    }

    /// Keeps every event.
    #[derive(Default)]
    struct Heard(Mutex<Vec<Event>>);

    impl Observer for Heard {
        fn event(&self, event: Event) {
            self.0.lock().unwrap().push(event);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fault_not_applied_is_undone_at_once_and_said_so() {
        let backend = Arc::new(NothingTakes::default());
        let heard = Arc::new(Heard::default());
        let clock = Clock {
            origin: Instant::now(),
            measured_from: S(1),
        };
        let mut delay = outage("slow-catalog", Target::Catalog, 2);
        delay.fault = FaultKind::Delay;
        let outcome = drive_fault(
            backend.clone(),
            delay,
            clock,
            Pattern::DirectApiCall,
            heard.clone(),
        )
        .await
        .unwrap();
        assert_eq!(
            outcome,
            FaultOutcome::NotApplied {
                reason: "Specified qdisc kind is unknown".into()
            }
        );
        // At its start (1 s + 2 s), not at the end of its window.
        assert_eq!(*backend.recovered_at.lock().unwrap(), [clock.origin + S(3)]);
        let heard = heard.0.lock().unwrap();
        let warnings: Vec<&str> = heard
            .iter()
            .filter_map(|event| match event {
                Event::Warning { message, .. } => Some(message.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            warnings,
            [
                "fault `slow-catalog` was not applied, so its window is not judged: \
                 Specified qdisc kind is unknown",
                "fault `slow-catalog` was not applied, and undoing what part of it took effect \
                 is not confirmed: chaos-daemon unavailable",
            ]
        );
        assert!(
            !heard
                .iter()
                .any(|event| matches!(event, Event::FaultInjected { .. })),
            "never reported injected"
        );
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn outage(name: &str, target: Target, at: u64) -> Fault {
        Fault {
            name: name.into(),
            fault: FaultKind::Outage,
            target,
            at: SpecDuration::from_secs(at),
            duration: SpecDuration::from_secs(2),
            latency: None,
            jitter: None,
        }
    }

    /// 10 checkouts/s for 10 s, all failing from 3 s to 5 s.
    fn catalog_down_from_3_to_5() -> Recording {
        let checkouts = (0..100)
            .map(|i| {
                let at = Duration::from_millis(i * 100);
                let down = (S(3)..S(5)).contains(&at);
                CheckoutRecord {
                    scheduled: at,
                    sent: Some(at),
                    ended: Some(at + Duration::from_millis(2)),
                    product_id: 1,
                    outcome: if down {
                        Outcome::Failed
                    } else {
                        Outcome::Priced { version: 1 }
                    },
                }
            })
            .collect();
        Recording::new(RecordingInput {
            checkouts,
            schedule_end: S(10),
            ..RecordingInput::default()
        })
    }

    #[test]
    fn a_fault_in_force_is_measured_with_its_confirmed_window() {
        let recording = catalog_down_from_3_to_5();
        let baseline = recording.phase(S(1)..S(3));
        let plan = [outage("catalog-down", Target::Catalog, 2)];
        let outcomes = vec![FaultOutcome::InForce {
            from: Duration::from_millis(3_250),
            to: Ok(Duration::from_millis(5_500)),
        }];
        let judged = judge_faults(&plan, outcomes, &recording, S(1), &baseline);
        assert!(judged.not_applied.is_empty());
        let [measured] = judged.measured.as_slice() else {
            panic!("one measured fault: {judged:?}");
        };
        assert_eq!(measured.availability, 0.0);
        assert_eq!(
            measured.in_force,
            Some(InForce {
                from_s: 2.25,
                to_s: Some(4.5),
                recovery_unconfirmed: None
            })
        );
        assert_eq!(judged.windows, [FaultWindow::of(&plan[0])]);
    }

    #[test]
    fn an_unconfirmed_recovery_keeps_the_reason_instead_of_an_end() {
        let recording = catalog_down_from_3_to_5();
        let baseline = recording.phase(S(1)..S(3));
        let plan = [outage("catalog-down", Target::Catalog, 2)];
        let outcomes = vec![FaultOutcome::InForce {
            from: S(3),
            to: Err("Chaos Mesh failed to recover it".into()),
        }];
        let judged = judge_faults(&plan, outcomes, &recording, S(1), &baseline);
        let in_force = judged.measured[0].in_force.clone().unwrap();
        assert_eq!(in_force.to_s, None);
        assert_eq!(
            in_force.recovery_unconfirmed.as_deref(),
            Some("Chaos Mesh failed to recover it")
        );
    }

    #[test]
    fn a_fault_not_applied_is_not_judged_by_availability_claims_or_isolation() {
        // orders failed during the planned window for its own reasons; the
        // outage itself never acted, so none of it may be blamed on catalog.
        let recording = catalog_down_from_3_to_5();
        let baseline = recording.phase(S(1)..S(3));
        let plan = [outage("catalog-down", Target::Catalog, 2)];
        let reason = "Chaos Mesh failed to inject it into lab/shop-catalog-1: \
                      Error: Specified qdisc kind is unknown.";
        let outcomes = vec![FaultOutcome::NotApplied {
            reason: reason.into(),
        }];
        let judged = judge_faults(&plan, outcomes, &recording, S(1), &baseline);
        assert!(judged.measured.is_empty() && judged.windows.is_empty());
        assert_eq!(
            judged.not_applied,
            [FaultNotApplied {
                name: "catalog-down".into(),
                fault: FaultKind::Outage,
                target: Target::Catalog,
                reason: reason.into(),
            }]
        );

        let run = PatternRun {
            baseline,
            faults: judged.measured,
            faults_not_applied: judged.not_applied,
            fault_windows: judged.windows,
            ..PatternRun::default()
        };
        let report = PatternReport::new(Pattern::DirectApiCall, run, &Workload::default());
        assert_eq!(report.scores.isolation, None, "no isolation score from it");
        assert!(report.worst_availability().is_none());
        let claim = report
            .claims
            .iter()
            .find(|c| c.id == claim_ids::DIRECT_CALL_DOWN_WITH_CATALOG)
            .unwrap();
        assert_eq!(claim.verdict, ClaimVerdict::NotMeasured);
        assert!(
            claim
                .evidence
                .contains("`catalog-down` (Outage of catalog) was not applied")
                && claim.evidence.contains("qdisc kind is unknown"),
            "{}",
            claim.evidence
        );
    }
}
