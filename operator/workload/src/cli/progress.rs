//! Progress for people: one bar per pattern on a terminal, plain lines
//! otherwise (CI logs, pipes), always on stderr so stdout keeps the table.

use std::{
    collections::HashMap,
    io::Write,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use commlab_api::Pattern;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Event, Experiment, Observer};

/// The bars being drawn, if any: log lines are printed above them.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Bars that redraw in place (a terminal).
    Bars,
    /// One line per step (anything else).
    Lines,
}

impl Style {
    /// Bars when stderr is a terminal, lines otherwise.
    pub fn detect() -> Self {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            Style::Bars
        } else {
            Style::Lines
        }
    }
}

/// Shows the engine's [`Event`]s.
pub struct ProgressView {
    style: Style,
    bars: Option<MultiProgress>,
    /// Per pattern: its bar, and how long its load runs.
    patterns: Mutex<HashMap<Pattern, (Option<ProgressBar>, Duration)>>,
    width: usize,
}

impl ProgressView {
    pub fn new(style: Style, experiments: &[Experiment]) -> Self {
        let bars = (style == Style::Bars).then(|| {
            let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let _ = BARS.set(bars.clone());
            bars
        });
        let patterns = experiments
            .iter()
            .map(|e| (e.pattern, (None, e.planned_length())))
            .collect();
        let width = experiments
            .iter()
            .map(|e| e.pattern.as_str().len())
            .max()
            .unwrap_or(10);
        Self {
            style,
            bars,
            patterns: Mutex::new(patterns),
            width,
        }
    }

    /// A line above the bars, or on its own.
    pub fn println(&self, line: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(line);
            }
            None => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }

    fn bar(&self, pattern: Pattern) -> Option<ProgressBar> {
        let bars = self.bars.as_ref()?;
        let mut patterns = self.patterns.lock().ok()?;
        let (bar, length) = patterns.entry(pattern).or_insert((None, Duration::ZERO));
        let bar = bar.get_or_insert_with(|| {
            let bar = bars.add(ProgressBar::new(length.as_millis().max(1) as u64));
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:28.cyan/blue}] {msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("{:>width$}", pattern.as_str(), width = self.width));
            bar
        });
        Some(bar.clone())
    }

    fn length(&self, pattern: Pattern) -> Duration {
        self.patterns
            .lock()
            .ok()
            .and_then(|p| p.get(&pattern).map(|(_, length)| *length))
            .unwrap_or_default()
    }

    fn line(&self, pattern: Pattern, text: &str) {
        self.println(&format!(
            "{:>width$}: {text}",
            pattern.as_str(),
            width = self.width
        ));
    }

    /// Ends every bar still drawn (a pattern that never ran); finished bars
    /// stay on screen above what is printed next.
    pub fn finish(&self) {
        if let Ok(patterns) = self.patterns.lock() {
            for bar in patterns.values().filter_map(|(bar, _)| bar.as_ref()) {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
        }
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

impl Observer for ProgressView {
    fn event(&self, event: Event) {
        match (self.style, event) {
            (_, Event::PlatformStarting { what }) => self.println(&format!("starting {what} …")),
            (_, Event::PlatformReady { took }) => {
                self.println(&format!("servers ready in {}", seconds(took)))
            }
            (Style::Bars, Event::Deploying { pattern }) => {
                if let Some(bar) = self.bar(pattern) {
                    bar.set_message("deploying");
                }
            }
            (Style::Lines, Event::Deploying { pattern }) => self.line(pattern, "deploying"),
            (Style::Bars, Event::Deployed { pattern, took }) => {
                if let Some(bar) = self.bar(pattern) {
                    bar.set_message(format!("ready in {}", seconds(took)));
                }
            }
            (Style::Lines, Event::Deployed { pattern, took }) => {
                self.line(pattern, &format!("ready in {}", seconds(took)))
            }
            (
                Style::Lines,
                Event::Running {
                    pattern,
                    warmup,
                    duration,
                },
            ) => self.line(
                pattern,
                &format!(
                    "warm-up {}, then measuring {}",
                    seconds(warmup),
                    seconds(duration)
                ),
            ),
            (
                Style::Bars,
                Event::Progress {
                    pattern,
                    elapsed,
                    stage,
                    ok,
                    errors,
                },
            ) => {
                if let Some(bar) = self.bar(pattern) {
                    bar.set_position(elapsed.as_millis() as u64);
                    bar.set_message(format!(
                        "{:>5}/{}  {stage}  ok {ok}  errors {errors}",
                        seconds(elapsed),
                        seconds(self.length(pattern)),
                    ));
                }
            }
            (
                Style::Lines,
                Event::FaultInjected {
                    pattern,
                    name,
                    kind,
                    target,
                    late,
                },
            ) => self.line(
                pattern,
                &format!(
                    "{name}: {kind} of {target} injected ({}ms after its time)",
                    late.as_millis()
                ),
            ),
            (
                Style::Lines,
                Event::FaultRecovered {
                    pattern,
                    name,
                    late,
                },
            ) => self.line(
                pattern,
                &format!("{name}: recovered ({}ms after its time)", late.as_millis()),
            ),
            (
                Style::Lines,
                Event::FaultSkipped {
                    pattern,
                    name,
                    reason,
                },
            ) => self.line(pattern, &format!("{name}: skipped, {reason}")),
            (
                Style::Bars,
                Event::CapacityStep {
                    pattern,
                    rate,
                    good,
                    ..
                },
            ) => {
                if let Some(bar) = self.bar(pattern) {
                    let verdict = if good { "holds" } else { "too much" };
                    bar.set_message(format!("capacity probe: {rate:.0}/s {verdict}"));
                }
            }
            (
                Style::Lines,
                Event::CapacityStep {
                    pattern,
                    rate,
                    good,
                    detail,
                },
            ) => {
                let verdict = if good { "holds" } else { "too much" };
                self.line(
                    pattern,
                    &format!("capacity probe {rate:.0}/s {verdict}: {detail}"),
                );
            }
            (Style::Bars, Event::Measured { pattern, summary }) => match self.bar(pattern) {
                Some(bar) => {
                    bar.set_position(bar.length().unwrap_or(0));
                    bar.finish_with_message(summary);
                }
                None => self.line(pattern, &summary),
            },
            (Style::Lines, Event::Measured { pattern, summary }) => {
                self.line(pattern, &format!("done: {summary}"))
            }
            (_, Event::Warning { pattern, message }) => match pattern {
                Some(pattern) => {
                    if let (Some(bar), true) = (self.bar(pattern), message.starts_with("failed")) {
                        bar.abandon_with_message(message.clone());
                    }
                    self.line(pattern, &format!("warning: {message}"));
                }
                None => self.println(&format!("warning: {message}")),
            },
            _ => {}
        }
    }
}

/// A `tracing` writer that prints each log line above the progress bars
/// while they are drawn, and straight to stderr otherwise.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

/// One log event, written when dropped.
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let write = || {
            let _ = std::io::stderr().write_all(&self.0);
        };
        match BARS.get() {
            Some(bars) => bars.suspend(write),
            None => write(),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine(Vec::new())
    }
}
