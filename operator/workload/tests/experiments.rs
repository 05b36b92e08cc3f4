//! Whole experiments through the engine and the `commlab` CLI, against real
//! PostgreSQL and NATS servers and the real services on loopback: the
//! article's claims, measured for a few seconds at 150 checkouts/s.
//!
//! A custom harness (libtest-mimic) runs the trials one at a time (figures
//! taken side by side on a small machine would be noise) on one local
//! platform, whose servers are stopped when the run ends. The experiments
//! a trial needs run once and are shared by the trials that judge them.
//! Every wait is bounded.

mod support;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use commlab_api::{
    Duration as SpecDuration, Fault, FaultKind, Pattern, Target, Workload,
    results::{Claim, ClaimVerdict, FaultMeasurement},
};
use commlab_workload::{
    engine::{
        CapacityProbe, Experiment, ExperimentOutcome, LocalOptions, LocalPlatform, Silent,
        assemble_report, run_comparison,
    },
    report::{Report, claim_ids},
};
use libtest_mimic::Arguments;
use support::{Trials, add_trials, commlab_binary};
use tokio::{io::AsyncReadExt, sync::Mutex};

/// Longest a trial may take, whatever it waits for.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(180);
const RATE: f64 = 150.0;

fn main() {
    let mut arguments = Arguments::from_args();
    // One at a time: see the module documentation.
    arguments.test_threads = Some(1);
    let runtime = support::runtime();
    let suite = Arc::new(Suite::default());

    let mut trials = Trials::new(&runtime, &suite, TRIAL_TIMEOUT);
    add_trials!(
        trials,
        catalog_outage_takes_direct_api_call_down_but_not_the_caches,
        async_messaging_accepts_during_the_outage_and_completes_after,
        a_catalog_delay_slows_direct_api_call_by_about_its_latency_and_not_the_caches,
        a_partitioned_broker_leaves_the_events_cache_serving_stale_prices,
        the_capacity_probe_steps_the_rate_up_and_scores_scalability,
        the_report_covers_the_run_and_round_trips_through_json,
        cli_run_refuses_an_invalid_manifest_naming_the_field,
        cli_compare_refuses_bad_options_before_starting_anything,
        cli_run_measures_a_manifest_and_writes_the_report,
        cli_compare_stops_every_process_on_ctrl_c,
        cli_compare_stops_every_process_on_sigterm,
    );

    let conclusion = trials.run(&arguments);
    // Stop the servers before exiting: exit() would skip every drop.
    let platform = runtime.block_on(suite.platform.lock()).take();
    if let Some(platform) = platform
        && let Err(error) = runtime.block_on(platform.shutdown())
    {
        eprintln!("stopping the servers: {error}");
    }
    drop(suite);
    conclusion.exit();
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[derive(Default)]
struct Suite {
    platform: Mutex<Option<LocalPlatform>>,
    /// Outcomes of the shared catalog scenario, by pattern.
    catalog_scenario: Mutex<HashMap<Pattern, ExperimentOutcome>>,
}

impl Suite {
    /// Runs `experiments` on the shared platform (started on first use).
    async fn run(&self, experiments: &[Experiment]) -> Result<Vec<ExperimentOutcome>> {
        let mut platform = self.platform.lock().await;
        if platform.is_none() {
            *platform = Some(
                LocalPlatform::start(LocalOptions::new(commlab_binary()), Arc::new(Silent)).await?,
            );
        }
        let platform = platform.as_mut().expect("started above");
        let outcome = run_comparison(platform, experiments, Arc::new(Silent)).await;
        if let Some((pattern, error)) = outcome.failures.first() {
            bail!("{pattern} failed: {error}");
        }
        Ok(outcome.outcomes)
    }

    async fn run_one(&self, experiment: Experiment) -> Result<ExperimentOutcome> {
        Ok(self.run(&[experiment]).await?.remove(0))
    }

    /// The catalog scenario for `pattern`, run once: an Outage of catalog,
    /// then a Delay of 100 ms.
    async fn catalog_scenario(&self, pattern: Pattern) -> Result<ExperimentOutcome> {
        if let Some(outcome) = self.catalog_scenario.lock().await.get(&pattern) {
            return Ok(outcome.clone());
        }
        let experiment = Experiment::new(pattern, catalog_workload(), &catalog_plan());
        let outcome = self.run_one(experiment).await?;
        self.catalog_scenario
            .lock()
            .await
            .insert(pattern, outcome.clone());
        Ok(outcome)
    }
}

fn seconds(s: f64) -> SpecDuration {
    SpecDuration::from(Duration::from_secs_f64(s))
}

/// `rate` checkouts a second for 1 s of warm-up and `duration` s measured.
fn workload(rate: f64, duration: f64) -> Workload {
    Workload {
        rate,
        warmup: seconds(1.0),
        duration: seconds(duration),
        ..Workload::default()
    }
}

/// 8 s measured: baseline 0–2 s, catalog down 2–4 s, catalog 100 ms slower
/// 5–7 s, then 1 s.
fn catalog_workload() -> Workload {
    workload(RATE, 8.0)
}

fn fault(name: &str, kind: FaultKind, target: Target, at: f64, duration: f64) -> Fault {
    Fault {
        name: name.into(),
        fault: kind,
        target,
        at: seconds(at),
        duration: seconds(duration),
        latency: (kind == FaultKind::Delay).then(|| SpecDuration::from_millis(100)),
        jitter: None,
    }
}

fn catalog_plan() -> Vec<Fault> {
    vec![
        fault("catalog-down", FaultKind::Outage, Target::Catalog, 2.0, 2.0),
        fault("slow-catalog", FaultKind::Delay, Target::Catalog, 5.0, 2.0),
    ]
}

fn fault_named<'a>(outcome: &'a ExperimentOutcome, name: &str) -> Result<&'a FaultMeasurement> {
    outcome
        .report
        .faults
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| anyhow!("no measurement of {name}"))
}

fn ensure_confirmed(claims: &[Claim], id: &str) -> Result<()> {
    let claim = claims
        .iter()
        .find(|c| c.id == id)
        .with_context(|| format!("no claim {id}"))?;
    ensure!(claim.verdict == ClaimVerdict::Confirmed, "{claim:?}");
    Ok(())
}

async fn catalog_outage_takes_direct_api_call_down_but_not_the_caches(
    suite: Arc<Suite>,
) -> Result<()> {
    let direct = suite.catalog_scenario(Pattern::DirectApiCall).await?;
    ensure!(
        direct.report.baseline.success_ratio >= 0.99,
        "baseline: {:?}",
        direct.report.baseline
    );
    let down = fault_named(&direct, "catalog-down")?;
    ensure!(
        down.availability < 0.10,
        "DirectApiCall availability during the outage: {}",
        down.availability
    );
    // Back once catalog is: the second after the outage is served again
    // (recovery time itself is judged against the baseline p99, too
    // strict a test on a busy machine).
    let after = &direct.report.timeline[4];
    ensure!(
        after.ok as f64 >= 0.9 * after.offered as f64,
        "DirectApiCall after the outage: {after:?}"
    );
    for pattern in [Pattern::CacheWithUpdateEvents, Pattern::CacheWithApiUpdates] {
        let cache = suite.catalog_scenario(pattern).await?;
        let down = fault_named(&cache, "catalog-down")?;
        ensure!(
            down.availability >= 0.99,
            "{pattern} availability during the outage: {}",
            down.availability
        );
    }
    Ok(())
}

async fn async_messaging_accepts_during_the_outage_and_completes_after(
    suite: Arc<Suite>,
) -> Result<()> {
    let messaging = suite.catalog_scenario(Pattern::AsyncMessaging).await?;
    let down = fault_named(&messaging, "catalog-down")?;
    ensure!(
        down.availability >= 0.99,
        "accepted during the outage: {}",
        down.availability
    );
    ensure!(
        down.completed_ratio >= 0.99,
        "completed after the outage: {}",
        down.completed_ratio
    );
    // Priced only once catalog was back: well after orders answered.
    ensure!(
        down.completion_ms.p50 > down.response_ms.p50 + 300.0,
        "completion p50 {} ms vs response p50 {} ms",
        down.completion_ms.p50,
        down.response_ms.p50
    );
    ensure_confirmed(
        &messaging.report.claims,
        claim_ids::MESSAGING_ACCEPTS_WITHOUT_CATALOG,
    )
}

async fn a_catalog_delay_slows_direct_api_call_by_about_its_latency_and_not_the_caches(
    suite: Arc<Suite>,
) -> Result<()> {
    let direct = suite.catalog_scenario(Pattern::DirectApiCall).await?;
    let slow = fault_named(&direct, "slow-catalog")?;
    let added = slow.response_ms.p50 - direct.report.baseline.response_ms.p50;
    ensure!(
        (70.0..=250.0).contains(&added),
        "DirectApiCall p50 rose by {added:.1} ms"
    );
    for pattern in [Pattern::CacheWithUpdateEvents, Pattern::CacheWithApiUpdates] {
        let cache = suite.catalog_scenario(pattern).await?;
        let slow = fault_named(&cache, "slow-catalog")?;
        let added = slow.response_ms.p50 - cache.report.baseline.response_ms.p50;
        ensure!(
            added.abs() < 5.0,
            "{pattern} p50 moved by {added:.1} ms under the catalog delay"
        );
    }
    Ok(())
}

async fn a_partitioned_broker_leaves_the_events_cache_serving_stale_prices(
    suite: Arc<Suite>,
) -> Result<()> {
    // Few products changing often, and the broker cut off for 3 s: catalog
    // commits the changes, orders does not hear of them.
    let workload = Workload {
        products: 20,
        update_rate: 40.0,
        ..workload(RATE, 6.0)
    };
    let plan = [fault(
        "broker-cut",
        FaultKind::Partition,
        Target::Broker,
        2.0,
        3.0,
    )];
    let experiment = Experiment::new(Pattern::CacheWithUpdateEvents, workload, &plan);
    let outcome = suite.run_one(experiment).await?;
    let cut = fault_named(&outcome, "broker-cut")?;
    ensure!(
        cut.availability >= 0.99,
        "the cache stopped serving: {cut:?}"
    );
    ensure!(
        cut.stale_ratio > 0.0,
        "no stale price during the partition: {cut:?}"
    );
    let window = outcome.timeline.fault(&plan[0]);
    let during = outcome.recording.phase(window);
    ensure!(
        during.staleness_ms.p99 > 100.0 && during.staleness_ms.max <= 3_500.0,
        "staleness during the partition: {:?}",
        during.staleness_ms
    );
    ensure!(
        outcome.report.timeline.iter().any(|row| row.stale > 0),
        "no stale second in the timeline"
    );
    Ok(())
}

async fn the_capacity_probe_steps_the_rate_up_and_scores_scalability(
    suite: Arc<Suite>,
) -> Result<()> {
    let workload = Workload {
        capacity_probe: true,
        ..workload(100.0, 2.0)
    };
    let mut experiment = Experiment::new(Pattern::SharedData, workload, &[]);
    experiment.capacity_probe = CapacityProbe {
        max_steps: 2,
        refinements: 1,
        step: Duration::from_millis(1500),
        ..CapacityProbe::default()
    };
    let outcome = suite.run_one(experiment).await?;
    let rates: Vec<f64> = outcome.capacity_steps.iter().map(|s| s.rate).collect();
    ensure!(
        rates.len() >= 2 && rates[..2] == [200.0, 400.0],
        "steps: {rates:?}"
    );
    let capacity = outcome.report.capacity_rps.context("no capacity")?;
    ensure!(
        capacity >= 200.0,
        "capacity {capacity}, steps {:?}",
        outcome.capacity_steps
    );
    ensure!(
        outcome.report.scores.scalability.is_some(),
        "{:?}",
        outcome.report.scores
    );
    Ok(())
}

async fn the_report_covers_the_run_and_round_trips_through_json(suite: Arc<Suite>) -> Result<()> {
    let mut patterns = Vec::new();
    for pattern in [Pattern::DirectApiCall, Pattern::CacheWithUpdateEvents] {
        patterns.push(suite.catalog_scenario(pattern).await?.report);
    }
    for pattern in &patterns {
        ensure!(
            pattern.timeline.len() == 8,
            "{} timeline rows",
            pattern.timeline.len()
        );
        let offered: u32 = pattern.timeline.iter().map(|row| row.offered).sum();
        ensure!(
            (offered as f64 - 8.0 * RATE).abs() <= 2.0,
            "offered {offered}"
        );
        ensure!(
            pattern.fault_windows.len() == 2 && pattern.fault_windows[0].from_s == 2.0,
            "{:?}",
            pattern.fault_windows
        );
    }
    let report = assemble_report("2026-01-01T00:00:00Z", &catalog_workload(), patterns);
    ensure!(
        report
            .claims
            .iter()
            .any(|c| c.id == claim_ids::CACHE_FASTER_THAN_DIRECT_AND_MESSAGING)
    );
    let json = report.to_json();
    let read = Report::from_json(&json)?;
    ensure!(read.to_json() == json, "the report changed when read back");
    ensure!(read == report, "the report read back differs");
    let pretty = Report::from_json(&report.to_json_pretty())?;
    ensure!(pretty.to_json() == json);
    Ok(())
}

fn commlab(args: &[&str]) -> Result<Output> {
    Command::new(commlab_binary())
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .output()
        .context("running commlab")
}

/// `commlab args`, which must be refused as a usage error (exit 2) with
/// nothing on stdout, where a report would go. Its stderr.
fn refused(args: &[&str]) -> Result<String> {
    let output = commlab(args)?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ensure!(
        output.status.code() == Some(2),
        "{args:?}: exit {:?}, {stderr}",
        output.status
    );
    ensure!(
        output.stdout.is_empty(),
        "{args:?} printed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(stderr)
}

async fn cli_run_refuses_an_invalid_manifest_naming_the_field(_: Arc<Suite>) -> Result<()> {
    for (file, field) in [
        ("delay-without-latency.yaml", "spec.chaos[0].latency"),
        ("unknown-pattern.yaml", "spec.pattern"),
        (
            "fault-after-run.yaml",
            "at + duration must be at most spec.workload.duration",
        ),
        ("bad-duration-string.yaml", "spec.workload.duration"),
    ] {
        let path = format!("examples/invalid/{file}");
        let stderr = refused(&["run", &path])?;
        ensure!(
            stderr.contains(field) && stderr.contains(&path),
            "{file}: {stderr}"
        );
    }
    let stderr = refused(&["run", "examples/no-such-file.yaml"])?;
    ensure!(stderr.contains("cannot read it"), "{stderr}");
    Ok(())
}

async fn cli_compare_refuses_bad_options_before_starting_anything(_: Arc<Suite>) -> Result<()> {
    for (args, expected) in [
        (
            vec!["compare", "--patterns", "GraphQl"],
            "unknown pattern `GraphQl`",
        ),
        (vec!["compare", "--rate", "0"], "--rate: spec.workload.rate"),
        (vec!["compare", "--duration", "soon"], "is not a duration"),
        (
            vec![
                "compare",
                "--quick",
                "--duration",
                "2s",
                "--chaos",
                "examples/direct-api-call.yaml",
            ],
            "every fault must end inside the run",
        ),
    ] {
        let started = Instant::now();
        let stderr = refused(&args)?;
        ensure!(stderr.contains(expected), "{args:?}: {stderr}");
        ensure!(
            started.elapsed() < Duration::from_secs(5),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
    Ok(())
}

async fn cli_run_measures_a_manifest_and_writes_the_report(_: Arc<Suite>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let manifest = dir.path().join("shared-data.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: commlab.dev/v1alpha1\nkind: CommunicationPattern\nmetadata: {name: shared}\n\
         spec:\n  pattern: SharedData\n  workload: {rate: 100, warmup: 1s, duration: 5s}\n\
         \x20 chaos:\n  - {name: database-down, fault: Outage, target: database, at: 2s, duration: 1500ms}\n\
         \x20 slo: {availability: \"99%\"}\n",
    )?;
    let out = dir.path().join("out");
    let output = tokio::task::spawn_blocking({
        let (manifest, out) = (manifest.clone(), out.clone());
        move || {
            commlab(&[
                "run",
                manifest.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
        }
    })
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The manifest's SLO cannot hold with the database down: exit 3.
    ensure!(
        output.status.code() == Some(3),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );
    ensure!(stderr.contains("SharedData missed the SLOs"), "{stderr}");
    ensure!(
        stdout.contains("SharedData") && stdout.contains("database-down"),
        "{stdout}"
    );
    ensure!(
        stdout.contains("SLO verdict for SharedData: Fail"),
        "{stdout}"
    );
    // Plain progress lines, since stderr is not a terminal.
    ensure!(
        stderr.contains("SharedData: database-down: Outage of database injected"),
        "{stderr}"
    );
    let report = Report::from_json(&std::fs::read_to_string(out.join("report.json"))?)?;
    let shared = report
        .pattern(Pattern::SharedData)
        .context("SharedData in the report")?;
    ensure!(
        shared.faults[0].availability < 0.10,
        "{:?}",
        shared.faults[0]
    );
    ensure_confirmed(
        &shared.claims,
        claim_ids::SHARED_DATABASE_DOWN_TAKES_EVERY_APP_DOWN,
    )?;
    let html = std::fs::read_to_string(out.join("report.html"))?;
    ensure!(html.contains("<svg") && html.contains("database-down"));
    ensure!(out.join("report.txt").exists());
    Ok(())
}

/// Processes whose environment holds `marker`: the ones a run started.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if String::from_utf8_lossy(&environ).contains(marker) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    found
}

async fn cli_compare_stops_every_process_on_ctrl_c(_: Arc<Suite>) -> Result<()> {
    stop_compare_with(nix::sys::signal::Signal::SIGINT, Pattern::AsyncMessaging).await
}

async fn cli_compare_stops_every_process_on_sigterm(_: Arc<Suite>) -> Result<()> {
    stop_compare_with(nix::sys::signal::Signal::SIGTERM, Pattern::SharedData).await
}

/// Sends `signal` to `commlab compare` in the middle of `pattern`'s
/// measured run; every server and service must be gone when it exits.
async fn stop_compare_with(signal: nix::sys::signal::Signal, pattern: Pattern) -> Result<()> {
    // Every server, service and temporary directory of the run lives under
    // this TMPDIR and inherits it, which is how they are found afterwards.
    let tmp = tempfile::tempdir()?;
    let marker = tmp.path().to_str().unwrap().to_owned();
    let mut child = tokio::process::Command::new(commlab_binary())
        .args([
            "compare",
            "--quick",
            "--patterns",
            pattern.as_str(),
            "--out",
        ])
        .arg(tmp.path().join("out"))
        .env("TMPDIR", &marker)
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    // Interrupt in the middle of the measured run.
    let mut stderr = child.stderr.take().context("stderr")?;
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.contains("catalog-down: Outage of catalog injected") {
        let mut buffer = [0u8; 4096];
        let read = tokio::time::timeout_at(deadline.into(), stderr.read(&mut buffer)).await??;
        ensure!(read > 0, "commlab ended early:\n{seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    let running = processes_with(&marker);
    ensure!(
        running.iter().any(|p| p.contains("serve orders"))
            && running.iter().any(|p| p.contains("postgres")),
        "expected the servers and services to run: {running:?}"
    );
    let pid = child.id().context("pid")? as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)?;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await??;
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).await?;
    let expected = 128 + signal as i32;
    ensure!(
        status.code() == Some(expected),
        "exit {status:?}\n{seen}{rest}"
    );
    ensure!(rest.contains("stopping every process"), "{rest}");
    let left = processes_with(&marker);
    ensure!(left.is_empty(), "still running after Ctrl-C: {left:?}");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("commlab-"))
        .collect();
    ensure!(
        leftovers.is_empty(),
        "temporary directories left: {leftovers:?}"
    );
    Ok(())
}
