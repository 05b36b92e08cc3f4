//! The `commlab compare` and `commlab run` commands: arguments, checks,
//! the local platform, progress, and the report files. `main.rs` parses the
//! command line and calls [`compare`] or [`run`].
//!
//! Both commands check everything they can before starting a server
//! (patterns, durations, the chaos plan against the CRD's rules), run the
//! patterns one after another on one [`LocalPlatform`], print the
//! comparison table and the article's claims on stdout, and write
//! `report.json`, `report.html` and `report.txt` into the output directory.
//! Progress goes to stderr. Ctrl-C stops every process and removes every
//! temporary directory before exiting.

pub mod experiment;
pub mod manifest;
pub mod progress;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use commlab_api::{Duration as SpecDuration, Fault, Pattern, PatternComparisonSpec, Slo, Workload};

use crate::{
    engine::{
        EngineError, Experiment, LocalOptions, LocalPlatform, local::check_supported, plan,
        run_comparison,
    },
    report::{Report, render_html, render_table},
};
pub use experiment::{ExperimentArgs, experiment};
pub use manifest::{Manifest, ManifestError, read_chaos, read_manifest};
pub use progress::{LogWriter, ProgressView, Style};

/// `commlab compare`: the six patterns, one after another, on this machine.
#[derive(Clone, Debug, clap::Args)]
pub struct CompareArgs {
    /// Patterns to compare, comma-separated, in order (default: all six),
    /// e.g. `DirectApiCall,CacheWithUpdateEvents` or `direct-api-call`.
    #[arg(long, value_delimiter = ',', value_parser = parse_pattern)]
    pub patterns: Vec<Pattern>,
    /// A short run: 2 s warm-up and 10 s measured per pattern, with one
    /// catalog Outage and one catalog Delay of 100 ms (about 90 s for all six).
    #[arg(long)]
    pub quick: bool,
    /// Checkouts per second (default 200).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measured run per pattern, e.g. `60s` (default 36s, quick 10s); the
    /// built-in chaos plans scale with it.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<SpecDuration>,
    /// Warm-up per pattern, not measured (default 3s, quick 2s).
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<SpecDuration>,
    /// The faults: `default` (catalog Outage, catalog Delay, broker Outage,
    /// database Outage), `none`, or a YAML file with a list of faults as in
    /// `spec.chaos` (or a manifest whose `spec.chaos` is used).
    #[arg(long, default_value = "default", value_name = "default|none|FILE")]
    pub chaos: String,
    /// After each run, step the rate up to find the highest rate it sustains.
    #[arg(long)]
    pub capacity_probe: bool,
    /// Where report.json, report.html and report.txt go.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Keep the services' logs in OUT/logs/.
    #[arg(long)]
    pub keep_logs: bool,
}

/// `commlab run`: one manifest, locally.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// A CommunicationPattern manifest, the same YAML you would apply to a
    /// cluster (a PatternComparison runs each of its patterns).
    pub file: PathBuf,
    /// Where report.json, report.html and report.txt go.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Keep the services' logs in OUT/logs/.
    #[arg(long)]
    pub keep_logs: bool,
}

/// Why a command failed; [`CliError::exit_code`] is what the process returns.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The input is wrong: nothing was started.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Some patterns failed; the report of the others was written.
    #[error("{}", failed_message(.0))]
    PatternsFailed(Vec<(Pattern, String)>),
    /// The run ended, and a pattern missed an objective of `spec.slo`.
    #[error("{} missed the SLOs in spec.slo (the verdicts are above)", .0.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "))]
    SloMissed(Vec<Pattern>),
    /// A signal stopped the command; `code` is 128 + the signal's number.
    #[error("{signal}: every process was stopped before the end")]
    Interrupted { signal: &'static str, code: u8 },
}

fn failed_message(failures: &[(Pattern, String)]) -> String {
    let mut message = String::from("some patterns failed:");
    for (pattern, error) in failures {
        message.push_str(&format!("\n  {pattern}: {error}"));
    }
    message
}

impl CliError {
    /// 2 for invalid input, 3 for a missed SLO, 128 + the signal for a
    /// signal (130 for Ctrl-C), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Invalid(_) | CliError::Manifest(_) => 2,
            CliError::Engine(EngineError::Invalid(_)) => 2,
            CliError::Interrupted { code, .. } => *code,
            CliError::SloMissed(_) => 3,
            _ => 1,
        }
    }
}

/// Reads a pattern as written in the CRD (`DirectApiCall`), in any case,
/// or in kebab or snake case (`direct-api-call`).
pub fn parse_pattern(text: &str) -> Result<Pattern, String> {
    let wanted: String = text
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | ' '))
        .collect::<String>()
        .to_ascii_lowercase();
    Pattern::ALL
        .into_iter()
        .find(|p| p.as_str().to_ascii_lowercase() == wanted)
        .ok_or_else(|| {
            let names: Vec<_> = Pattern::ALL.iter().map(|p| p.as_str()).collect();
            format!(
                "unknown pattern `{text}`: expected one of {}",
                names.join(", ")
            )
        })
}

fn parse_duration(text: &str) -> Result<SpecDuration, String> {
    text.parse()
        .map_err(|error: commlab_api::DurationError| error.to_string())
}

/// The experiments `commlab compare` would run for `args`, checked.
pub fn plan_comparison(args: &CompareArgs) -> Result<Vec<Experiment>, CliError> {
    let mut workload = if args.quick {
        plan::quick_workload()
    } else {
        plan::default_workload()
    };
    if let Some(rate) = args.rate {
        workload.rate = rate;
    }
    if let Some(duration) = &args.duration {
        workload.duration = duration.clone();
    }
    if let Some(warmup) = &args.warmup {
        workload.warmup = warmup.clone();
    }
    workload.capacity_probe = args.capacity_probe;
    let run = workload.duration.as_std();
    let chaos: Vec<Fault> = match args.chaos.as_str() {
        "default" if args.quick => plan::quick_chaos(run),
        "default" => plan::default_chaos(run),
        "none" => Vec::new(),
        file => read_chaos(Path::new(file))?,
    };
    let patterns = if args.patterns.is_empty() {
        Pattern::ALL.to_vec()
    } else {
        args.patterns.clone()
    };
    let spec = PatternComparisonSpec {
        patterns,
        workload,
        chaos,
        slo: None,
        rank_by: Default::default(),
    };
    spec.validate().map_err(|invalid| {
        // The options, named as on the command line where they map to one.
        let lines: Vec<String> = invalid
            .problems
            .iter()
            .map(|p| {
                let option = match p.field.as_str() {
                    "spec.workload.rate" => "--rate",
                    "spec.workload.duration" => "--duration",
                    "spec.workload.warmup" => "--warmup",
                    "spec.patterns" => "--patterns",
                    _ => "--chaos",
                };
                format!("{option}: {p}")
            })
            .collect();
        CliError::Invalid(lines.join("\n"))
    })?;
    Ok(Experiment::from_comparison(&spec))
}

/// Runs `commlab compare`.
pub async fn compare(args: CompareArgs) -> Result<(), CliError> {
    let experiments = plan_comparison(&args)?;
    interruptible(execute(experiments, &args.out, args.keep_logs, None)).await
}

/// Runs `commlab run FILE`.
pub async fn run(args: RunArgs) -> Result<(), CliError> {
    let (experiments, slo) = match read_manifest(&args.file)? {
        Manifest::Pattern { spec, .. } => (vec![Experiment::from_spec(&spec)], spec.slo),
        Manifest::Comparison { spec, .. } => (Experiment::from_comparison(&spec), spec.slo),
    };
    interruptible(execute(
        experiments,
        &args.out,
        args.keep_logs,
        slo.as_ref(),
    ))
    .await
}

/// Runs `work` until it ends or the process is asked to stop (Ctrl-C,
/// SIGTERM, SIGHUP); then `work` is dropped, which stops its processes and
/// removes its temporary directories, and the command fails with
/// [`CliError::Interrupted`].
async fn interruptible(work: impl Future<Output = Result<(), CliError>>) -> Result<(), CliError> {
    tokio::select! {
        result = work => result,
        (signal, code) = stop_requested() => {
            eprintln!("\n{signal}: stopping every process …");
            Err(CliError::Interrupted { signal, code })
        }
    }
}

/// Completes when SIGINT, SIGTERM or SIGHUP arrives, with what happened and
/// the exit code a shell expects (128 + the signal's number).
async fn stop_requested() -> (&'static str, u8) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut hangup = signal(SignalKind::hangup()).ok();
    let terminate = async {
        match terminate.as_mut() {
            Some(stream) => stream.recv().await,
            None => std::future::pending().await,
        }
    };
    let hangup = async {
        match hangup.as_mut() {
            Some(stream) => stream.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => ("interrupted", 130),
        _ = terminate => ("terminated", 143),
        _ = hangup => ("hung up", 129),
    }
}

async fn execute(
    experiments: Vec<Experiment>,
    out: &Path,
    keep_logs: bool,
    slo: Option<&Slo>,
) -> Result<(), CliError> {
    for experiment in &experiments {
        experiment.validate()?;
        check_supported(experiment)?;
    }
    std::fs::create_dir_all(out).map_err(|source| CliError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let started = Instant::now();
    let view = Arc::new(ProgressView::new(Style::detect(), &experiments));
    view.println(&plan_line(&experiments));

    let mut options = LocalOptions::current_exe()?;
    options.broker = experiments.iter().any(|e| e.pattern.needs_broker());
    options.log_dir = keep_logs.then(|| out.join("logs"));
    let mut platform = LocalPlatform::start(options, view.clone()).await?;
    let outcome = run_comparison(&mut platform, &experiments, view.clone()).await;
    if let Err(error) = platform.shutdown().await {
        view.println(&format!("warning: stopping the servers: {error}"));
    }
    view.finish();

    let mut missed = Vec::new();
    if let Some(report) = &outcome.report {
        print!("{}", render_table(report));
        if let Some(slo) = slo {
            missed = print_verdicts(report, slo);
        }
        let written = write_report(report, out)?;
        println!();
        println!(
            "{} in {:.0}s; report: {}",
            count(report.patterns.len(), "pattern"),
            started.elapsed().as_secs_f64(),
            written
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if outcome.failures.is_empty() {
        if missed.is_empty() {
            Ok(())
        } else {
            Err(CliError::SloMissed(missed))
        }
    } else {
        Err(CliError::PatternsFailed(
            outcome
                .failures
                .into_iter()
                .map(|(pattern, error)| (pattern, error.to_string()))
                .collect(),
        ))
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// What is about to run, and for about how long.
fn plan_line(experiments: &[Experiment]) -> String {
    let Some(first) = experiments.first() else {
        return "nothing to run".into();
    };
    let load: Duration = experiments.iter().map(Experiment::planned_length).sum();
    let faults: Vec<String> = first
        .chaos
        .iter()
        .chain(experiments.iter().flat_map(|e| &e.chaos))
        .map(describe_fault)
        .fold(Vec::new(), |mut seen, fault| {
            if !seen.contains(&fault) {
                seen.push(fault);
            }
            seen
        });
    let workload: &Workload = &first.workload;
    format!(
        "{} at {}/s: warm-up {}, measured {}{}; about {:.0}s of load\n{}",
        count(experiments.len(), "pattern"),
        workload.rate,
        workload.warmup,
        workload.duration,
        if workload.capacity_probe {
            ", then a capacity probe"
        } else {
            ""
        },
        load.as_secs_f64(),
        if faults.is_empty() {
            "no faults".to_owned()
        } else {
            format!("faults: {}", faults.join("; "))
        }
    )
}

fn describe_fault(fault: &Fault) -> String {
    let seconds = |d: std::time::Duration| {
        let text = format!("{:.1}", d.as_secs_f64());
        text.strip_suffix(".0").map_or(text.clone(), str::to_owned)
    };
    let from = fault.at.as_std();
    let latency = fault
        .latency
        .as_ref()
        .map(|l| format!(" {l}"))
        .unwrap_or_default();
    format!(
        "{} ({}{} of {}, {}–{}s)",
        fault.name,
        fault.fault,
        latency,
        fault.target,
        seconds(from),
        seconds(from + fault.duration.as_std()),
    )
}

/// Prints each pattern's verdict against `slo`; returns the patterns that failed.
fn print_verdicts(report: &Report, slo: &Slo) -> Vec<Pattern> {
    println!();
    let mut failed = Vec::new();
    for pattern in &report.patterns {
        let (verdict, violations) = crate::report::judge(pattern, Some(slo));
        println!("SLO verdict for {}: {verdict:?}", pattern.pattern);
        for violation in &violations {
            println!("  - {violation}");
        }
        if !violations.is_empty() {
            failed.push(pattern.pattern);
        }
    }
    failed
}

/// Writes report.json, report.html and report.txt into `out`.
pub fn write_report(report: &Report, out: &Path) -> Result<Vec<PathBuf>, CliError> {
    let html = render_html(report).map_err(EngineError::from)?;
    let files = [
        ("report.json", report.to_json_pretty()),
        ("report.html", html),
        ("report.txt", render_table(report)),
    ];
    let mut written = Vec::new();
    for (name, content) in files {
        let path = out.join(name);
        std::fs::write(&path, content).map_err(|source| CliError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        compare: CompareArgs,
    }

    fn args(line: &[&str]) -> CompareArgs {
        Cli::try_parse_from(std::iter::once("compare").chain(line.iter().copied()))
            .unwrap()
            .compare
    }

    #[test]
    fn patterns_are_read_in_any_spelling() {
        assert_eq!(parse_pattern("DirectApiCall"), Ok(Pattern::DirectApiCall));
        assert_eq!(parse_pattern("direct-api-call"), Ok(Pattern::DirectApiCall));
        assert_eq!(
            parse_pattern("cache_with_update_events"),
            Ok(Pattern::CacheWithUpdateEvents)
        );
        assert!(
            parse_pattern("graphql")
                .unwrap_err()
                .contains("expected one of SharedData")
        );
        let parsed = args(&["--patterns", "SharedData,async-polling"]);
        assert_eq!(
            parsed.patterns,
            vec![Pattern::SharedData, Pattern::AsyncPolling]
        );
    }

    #[test]
    fn quick_runs_all_six_with_two_catalog_faults() {
        let experiments = plan_comparison(&args(&["--quick"])).unwrap();
        assert_eq!(experiments.len(), 6);
        for experiment in &experiments {
            assert_eq!(experiment.chaos.len(), 2);
            assert_eq!(experiment.planned_length(), Duration::from_secs(12));
        }
    }

    #[test]
    fn the_default_plan_skips_broker_faults_without_a_broker() {
        let experiments = plan_comparison(&args(&[])).unwrap();
        let direct = experiments
            .iter()
            .find(|e| e.pattern == Pattern::DirectApiCall)
            .unwrap();
        assert_eq!(direct.chaos.len(), 3);
        assert_eq!(direct.skipped[0].0, "broker-down");
        let total: Duration = experiments.iter().map(Experiment::planned_length).sum();
        assert!(total <= Duration::from_secs(240), "{total:?}");
    }

    #[test]
    fn options_that_break_the_rules_name_the_option() {
        let error = plan_comparison(&args(&["--rate", "0"])).unwrap_err();
        assert!(
            error.to_string().starts_with("--rate: spec.workload.rate"),
            "{error}"
        );
        assert_eq!(error.exit_code(), 2);
        let error = plan_comparison(&args(&["--chaos", "/no/such/plan.yaml"])).unwrap_err();
        assert!(error.to_string().contains("/no/such/plan.yaml"), "{error}");
        let none = plan_comparison(&args(&["--chaos", "none", "--duration", "5s"])).unwrap();
        assert!(none[0].chaos.is_empty());
        let scaled = plan_comparison(&args(&["--quick", "--duration", "20s"])).unwrap();
        assert_eq!(scaled[0].chaos[0].at.as_std(), Duration::from_secs(6));
    }

    #[test]
    fn a_chaos_file_that_does_not_fit_the_run_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plan.yaml");
        std::fs::write(
            &file,
            "- {name: late, fault: Outage, target: catalog, at: 8s, duration: 5s}\n",
        )
        .unwrap();
        let error = plan_comparison(&args(&[
            "--duration",
            "10s",
            "--chaos",
            file.to_str().unwrap(),
        ]))
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("every fault must end inside the run"),
            "{error}"
        );
    }
}
