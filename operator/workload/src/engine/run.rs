//! Running an experiment against deployed targets, and a comparison of
//! several on one platform.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use commlab_api::{Pattern, results::PhaseMeasurement};
use commlab_chaos::FaultBackend;
use tokio::{task::JoinSet, time::Instant};

use super::{
    EngineError, Event, Experiment, Observer, Platform, Targets,
    faults::{Clock, FaultOutcome, drive_fault, judge_faults},
    plan::{CapacityProbe, Timeline},
    summary_line,
};
use crate::{
    load::{LoadConfig, LoadRun, Progress, default_max_in_flight},
    measure::Recording,
    report::{PatternReport, PatternRun, Report},
};

/// How long every orders replica may take to answer `/readyz` with `200`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the recoveries still running when the load ends may take.
const RECOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often progress is reported while the load runs.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Sends this far behind schedule (p99) mean the machine is too busy.
const LAG_WARNING_MS: f64 = 20.0;
/// How long a capacity step waits for completions after its last answer.
const CAPACITY_COMPLETION_GRACE: Duration = Duration::from_secs(2);

/// What one experiment produced.
#[derive(Clone, Debug)]
pub struct ExperimentOutcome {
    pub report: PatternReport,
    /// Every checkout, price change and completion of the measured run
    /// (warm-up included), to cut into other windows.
    pub recording: Recording,
    pub timeline: Timeline,
    /// When the load started.
    pub started_at: DateTime<Utc>,
    pub capacity_steps: Vec<CapacityStep>,
}

/// One step of the capacity probe.
#[derive(Clone, Debug, PartialEq)]
pub struct CapacityStep {
    pub rate: f64,
    /// The step after its settling time.
    pub measured: PhaseMeasurement,
    /// Priced over scheduled checkouts (differs from the success ratio for
    /// asynchronous patterns).
    pub priced_ratio: f64,
    pub good: bool,
}

/// Runs `experiment` against a deployment that is already up: waits until
/// every orders replica is ready, runs the load with the chaos plan,
/// measures and builds the report. Faults still in force are cleaned up on
/// every way out.
pub async fn run_experiment(
    experiment: &Experiment,
    targets: &Targets,
    backend: Arc<dyn FaultBackend>,
    observer: Arc<dyn Observer>,
) -> Result<ExperimentOutcome, EngineError> {
    experiment.validate()?;
    let result = measure(experiment, targets, backend.clone(), observer.clone()).await;
    if let Err(error) = backend.cleanup().await {
        observer.event(Event::Warning {
            pattern: Some(experiment.pattern),
            message: format!("undoing the faults still in force failed: {error}"),
        });
    }
    result
}

async fn measure(
    experiment: &Experiment,
    targets: &Targets,
    backend: Arc<dyn FaultBackend>,
    observer: Arc<dyn Observer>,
) -> Result<ExperimentOutcome, EngineError> {
    let pattern = experiment.pattern;
    let workload = &experiment.workload;
    wait_ready(&targets.orders, READY_TIMEOUT).await?;
    for (name, reason) in &experiment.skipped {
        observer.event(Event::FaultSkipped {
            pattern,
            name: name.clone(),
            reason: reason.clone(),
        });
    }

    let timeline = Timeline::new(workload, &experiment.chaos);
    let config = load_config(experiment, targets)?;
    let started_at = Utc::now();
    let load = LoadRun::start(config).await?;
    let origin = Instant::from_std(load.origin());
    observer.event(Event::Running {
        pattern,
        warmup: workload.warmup.as_std(),
        duration: workload.duration.as_std(),
    });
    let _progress = AbortOnDrop(tokio::spawn(report_progress(
        load.progress(),
        timeline.clone(),
        pattern,
        observer.clone(),
    )));

    let clock = Clock {
        origin,
        measured_from: timeline.measured_from(),
    };
    let mut faults = JoinSet::new();
    for (index, fault) in experiment.chaos.iter().enumerate() {
        let driven = drive_fault(
            backend.clone(),
            fault.clone(),
            clock,
            pattern,
            observer.clone(),
        );
        faults.spawn(async move { (index, driven.await) });
    }
    let mut outcomes: Vec<Option<FaultOutcome>> = vec![None; experiment.chaos.len()];

    // A fault that cannot be injected or recovered ends the experiment:
    // dropping `finish` drops the load handle, which stops the schedule,
    // and dropping `faults` aborts the other faults' tasks.
    let finish = load.finish();
    tokio::pin!(finish);
    let recording = loop {
        tokio::select! {
            recording = &mut finish => break recording?,
            Some(joined) = faults.join_next() => keep_outcome(&mut outcomes, joined)?,
        }
    };
    let deadline = Instant::now() + RECOVER_TIMEOUT;
    while !faults.is_empty() {
        match tokio::time::timeout_at(deadline, faults.join_next()).await {
            Ok(Some(joined)) => keep_outcome(&mut outcomes, joined)?,
            Ok(None) => break,
            Err(_) => {
                return Err(EngineError::NotReady {
                    what: format!("{pattern}'s faults"),
                    after: RECOVER_TIMEOUT,
                    detail: "recovering the faults did not finish after the load ended".into(),
                });
            }
        }
    }
    let outcomes = outcomes
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| EngineError::Internal("a fault's task ended without an outcome".into()))?;

    let baseline = recording.phase(timeline.baseline());
    warn_about_the_load(&recording, &timeline, pattern, observer.as_ref());
    let judged = judge_faults(
        &experiment.chaos,
        outcomes,
        &recording,
        timeline.measured_from(),
        &baseline,
    );

    let (capacity_rps, capacity_steps) = if workload.capacity_probe {
        probe_capacity(experiment, targets, &baseline, observer.as_ref()).await?
    } else {
        (None, Vec::new())
    };

    let run = PatternRun {
        components: experiment.components.clone(),
        baseline,
        faults: judged.measured,
        faults_not_applied: judged.not_applied,
        capacity_rps,
        timeline: recording.timeline(timeline.measured_from()),
        fault_windows: judged.windows,
    };
    let report = PatternReport::new(pattern, run, workload);
    observer.event(Event::Measured {
        pattern,
        summary: summary_line(&report),
    });
    Ok(ExperimentOutcome {
        report,
        recording,
        timeline,
        started_at,
        capacity_steps,
    })
}

fn load_config(experiment: &Experiment, targets: &Targets) -> Result<LoadConfig, EngineError> {
    let mut config = LoadConfig::from_workload(
        &experiment.workload,
        targets.orders.clone(),
        targets.catalog.clone(),
    );
    if experiment.pattern.completes_asynchronously() {
        config.broker = Some(targets.broker.clone().ok_or_else(|| {
            EngineError::Invalid(format!(
                "{} completes checkouts through the broker, but no broker URL was given",
                experiment.pattern
            ))
        })?);
    }
    config.seed = experiment.seed;
    Ok(config)
}

/// Keeps what became of the fault a task drove, in plan order.
fn keep_outcome(
    outcomes: &mut [Option<FaultOutcome>],
    joined: Result<(usize, Result<FaultOutcome, EngineError>), tokio::task::JoinError>,
) -> Result<(), EngineError> {
    let (index, outcome) =
        joined.map_err(|error| EngineError::Internal(format!("a fault's task failed: {error}")))?;
    outcomes[index] = Some(outcome?);
    Ok(())
}

async fn report_progress(
    mut progress: tokio::sync::watch::Receiver<Progress>,
    timeline: Timeline,
    pattern: Pattern,
    observer: Arc<dyn Observer>,
) {
    let mut ticks = tokio::time::interval(PROGRESS_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = progress.borrow_and_update().clone();
        observer.event(Event::Progress {
            pattern,
            elapsed: now.elapsed,
            stage: timeline.stage_at(now.elapsed).to_string(),
            ok: now.ok,
            errors: now.errors + now.dropped,
        });
        if now.schedule_done {
            return;
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Says when the load generator itself may have distorted the figures.
fn warn_about_the_load(
    recording: &Recording,
    timeline: &Timeline,
    pattern: Pattern,
    observer: &dyn Observer,
) {
    let warn = |message: String| {
        observer.event(Event::Warning {
            pattern: Some(pattern),
            message,
        })
    };
    let summary = recording.summary();
    if summary.dropped > 0 {
        warn(format!(
            "{} checkouts were not sent because too many were outstanding; they count as failures",
            summary.dropped
        ));
    }
    let lag = recording.schedule_lag(timeline.measured_from()..timeline.end());
    if lag.p99_ms > LAG_WARNING_MS {
        warn(format!(
            "the load generator fell behind its schedule (p99 {:.0}ms, max {:.0}ms): \
             this machine is busy, and latencies include the lag",
            lag.p99_ms, lag.max_ms
        ));
    }
    if summary.price_changes_failed > 0 && summary.price_changes_acked == 0 {
        warn("no price change was acknowledged: staleness is not measured".into());
    }
}

/// Steps the rate up after the measured run (see [`CapacityProbe`]).
async fn probe_capacity(
    experiment: &Experiment,
    targets: &Targets,
    baseline: &PhaseMeasurement,
    observer: &dyn Observer,
) -> Result<(Option<f64>, Vec<CapacityStep>), EngineError> {
    let probe = &experiment.capacity_probe;
    let pattern = experiment.pattern;
    let limit_ms = CapacityProbe::p99_limit_ms(baseline.completion_ms.p99);
    if !CapacityProbe::good(baseline.success_ratio, baseline.completion_ms.p99, limit_ms) {
        observer.event(Event::Warning {
            pattern: Some(pattern),
            message: "the baseline itself had errors: capacity 0, no probe".into(),
        });
        return Ok((Some(0.0), Vec::new()));
    }
    let mut good_rate = experiment.workload.rate;
    let mut failed_rate = None;
    let mut steps = Vec::new();
    for rate in probe.rates(experiment.workload.rate) {
        let step =
            capacity_step(experiment, targets, rate, limit_ms, steps.len(), observer).await?;
        let good = step.good;
        steps.push(step);
        if !good {
            failed_rate = Some(rate);
            break;
        }
        good_rate = rate;
    }
    match failed_rate {
        Some(mut failed) => {
            for _ in 0..probe.refinements {
                let Some(rate) = CapacityProbe::midpoint(good_rate, failed) else {
                    break;
                };
                let step =
                    capacity_step(experiment, targets, rate, limit_ms, steps.len(), observer)
                        .await?;
                if step.good {
                    good_rate = rate;
                } else {
                    failed = rate;
                }
                steps.push(step);
            }
        }
        None => observer.event(Event::Warning {
            pattern: Some(pattern),
            message: format!(
                "every step of the capacity probe held: the capacity is at least {good_rate:.0}/s"
            ),
        }),
    }
    let capacity = good_rate;
    Ok((Some(capacity), steps))
}

/// One step of the capacity probe at `rate`, judged against `limit_ms`.
async fn capacity_step(
    experiment: &Experiment,
    targets: &Targets,
    rate: f64,
    limit_ms: f64,
    index: usize,
    observer: &dyn Observer,
) -> Result<CapacityStep, EngineError> {
    let probe = &experiment.capacity_probe;
    let mut config = load_config(experiment, targets)?;
    config.rate = rate;
    config.duration = probe.step;
    config.max_in_flight = default_max_in_flight(rate, config.request_timeout);
    config.completion_grace = CAPACITY_COMPLETION_GRACE;
    config.seed = experiment.seed.wrapping_add(1 + index as u64);
    let recording = LoadRun::start(config).await?.finish().await?;
    let measured = recording.phase(probe.settle..probe.step);
    let summary = recording.summary();
    let priced_ratio = if summary.scheduled == 0 {
        0.0
    } else {
        summary.priced as f64 / summary.scheduled as f64
    };
    let success = measured.success_ratio.min(priced_ratio);
    let good = CapacityProbe::good(success, measured.completion_ms.p99, limit_ms);
    observer.event(Event::CapacityStep {
        pattern: experiment.pattern,
        rate,
        good,
        detail: format!(
            "ok {}, priced {}, p99 {} (limit {}), behind schedule up to {}",
            crate::report::format_ratio(measured.success_ratio),
            crate::report::format_ratio(priced_ratio),
            crate::report::format_ms(measured.completion_ms.p99),
            crate::report::format_ms(limit_ms),
            crate::report::format_ms(measured.behind_schedule_ms),
        ),
    });
    Ok(CapacityStep {
        rate,
        measured,
        priced_ratio,
        good,
    })
}

/// Waits until every URL's `/readyz` answers `200`.
pub(crate) async fn wait_ready(urls: &[String], timeout: Duration) -> Result<(), EngineError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1))
        .build()
        .map_err(|e| EngineError::Internal(format!("building an HTTP client: {e}")))?;
    let deadline = Instant::now() + timeout;
    for url in urls {
        let readyz = format!("{}/readyz", url.trim_end_matches('/'));
        loop {
            let last = match client.get(&readyz).send().await {
                Ok(response) if response.status().is_success() => break,
                Ok(response) => format!("answered {}", response.status()),
                Err(error) => error.to_string(),
            };
            if Instant::now() > deadline {
                return Err(EngineError::NotReady {
                    what: readyz,
                    after: timeout,
                    detail: last,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// What a comparison produced: the report of the patterns that ran, and the
/// patterns that failed.
#[derive(Debug)]
pub struct ComparisonOutcome {
    /// `None` when no pattern ran to the end.
    pub report: Option<Report>,
    pub outcomes: Vec<ExperimentOutcome>,
    pub failures: Vec<(Pattern, EngineError)>,
}

/// Runs `experiments` one after another on `platform`: deploy, run, tear
/// down. A pattern that fails is reported in `failures` and the next one
/// runs; an error of the platform itself ends the comparison.
pub async fn run_comparison(
    platform: &mut dyn Platform,
    experiments: &[Experiment],
    observer: Arc<dyn Observer>,
) -> ComparisonOutcome {
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for experiment in experiments {
        let pattern = experiment.pattern;
        match deploy_and_run(platform, experiment, observer.clone()).await {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) => {
                observer.event(Event::Warning {
                    pattern: Some(pattern),
                    message: format!("failed: {error}"),
                });
                failures.push((pattern, error));
            }
        }
    }
    // Every experiment of a comparison shares one workload.
    let report = match (outcomes.first(), experiments.first()) {
        (Some(first), Some(experiment)) => Some(super::assemble_report(
            &first.started_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            &experiment.workload,
            outcomes.iter().map(|o| o.report.clone()).collect(),
        )),
        _ => None,
    };
    ComparisonOutcome {
        report,
        outcomes,
        failures,
    }
}

async fn deploy_and_run(
    platform: &mut dyn Platform,
    experiment: &Experiment,
    observer: Arc<dyn Observer>,
) -> Result<ExperimentOutcome, EngineError> {
    let pattern = experiment.pattern;
    observer.event(Event::Deploying { pattern });
    let started = Instant::now();
    let deployment = platform.deploy(experiment).await?;
    observer.event(Event::Deployed {
        pattern,
        took: started.elapsed(),
    });
    let result = run_experiment(
        experiment,
        deployment.targets(),
        deployment.fault_backend(),
        observer.clone(),
    )
    .await;
    let teardown = deployment.teardown().await;
    let outcome = result?;
    if let Err(error) = teardown {
        observer.event(Event::Warning {
            pattern: Some(pattern),
            message: format!("tearing down failed: {error}"),
        });
    }
    Ok(outcome)
}
