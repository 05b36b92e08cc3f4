//! The measurement maths: plain data in, numbers out.
//!
//! The load generator ([`crate::load`]) records every scheduled checkout with
//! its *scheduled* send time, what became of it ([`CheckoutRecord`]), every
//! acknowledged price change ([`PriceChange`]) and every completion seen on
//! `orders.completed` ([`Completion`]). [`Recording::new`] matches and judges
//! them once; afterwards the engine cuts the same recording into as many
//! phases and windows as it likes:
//!
//! - [`Recording::phase`] → [`PhaseMeasurement`] for any window (baseline,
//!   recovery, a capacity step);
//! - [`Recording::fault`] → [`FaultMeasurement`] for one fault of the chaos
//!   plan, including its recovery time ([`Recording::recovery_s`]);
//! - [`Recording::timeline`] → one [`TimelineRow`] per second;
//! - [`Recording::schedule_lag`] and [`Recording::summary`] for the load
//!   generator's own health (how far it fell behind, what it dropped).
//!
//! All times are offsets from the run's origin (the schedule's time zero);
//! a window `a..b` holds the checkouts *scheduled* in `[a, b)`.
//!
//! # Definitions
//!
//! - **ok**: orders answered 2xx within the request timeout (`200` priced or
//!   `202` accepted). Availability and success ratio are ok over *scheduled*
//!   checkouts: a checkout dropped because the in-flight bound was reached,
//!   or that failed to connect, counts against them.
//! - **response latency**: from the scheduled send time until the answer
//!   (any status) or until the request timed out or failed, so a stalled
//!   server shows up in full (no coordinated omission). Dropped checkouts were
//!   never sent and have no latency.
//! - **service time** ([`Recording::service_time`]): from the actual send
//!   until the answer; it leaves out the load generator's own lag.
//! - **completion latency**: from the scheduled send time until the checkout
//!   was priced: the `200` answer for synchronous patterns, the completion
//!   seen on `orders.completed` for `AsyncMessaging`.
//! - **stale ratio**: stale over priced checkouts; **staleness** percentiles
//!   are over the stale ones only (see [`staleness`]).

mod latency;
pub mod staleness;

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

pub use commlab_api::results::{
    FaultMeasurement, LatencyMs, PhaseMeasurement, StalenessMs, TimelineRow,
};
use commlab_api::{Fault, FaultKind, Target};
use serde::{Deserialize, Serialize};

pub use latency::{HISTOGRAM_MAX_US, HISTOGRAM_SIGFIG, Micros};
pub use staleness::{Freshness, PriceChange, PriceLog};

/// A one-second window is recovered at this success ratio or above.
pub const RECOVERY_SUCCESS_RATIO: f64 = 0.99;
/// ... and when its p99 is within this factor of the baseline p99 ...
pub const RECOVERY_P99_FACTOR: f64 = 2.0;
/// ... or within this many milliseconds, whichever is larger: on loopback a
/// baseline p99 can be a fraction of a millisecond, where twice it is noise.
pub const RECOVERY_P99_FLOOR_MS: f64 = 1.0;
/// The window judged for recovery is one second long ...
pub const RECOVERY_WINDOW: Duration = Duration::from_secs(1);
/// ... and slides in steps this long from the fault's end.
pub const RECOVERY_STEP: Duration = Duration::from_millis(100);

/// What became of one scheduled checkout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `200`: orders priced it with this version of the product's price.
    Priced { version: u64 },
    /// `202`: orders accepted it; it completes when `orders.completed`
    /// carries this order id.
    Accepted { order_id: String },
    /// A 2xx answer whose body breaks the protocol (no version, no order id):
    /// ok for availability, never priced.
    Malformed { status: u16 },
    /// An answer outside 2xx.
    Rejected { status: u16 },
    /// No answer within the request timeout.
    TimedOut,
    /// The request failed without an answer (connection refused or reset).
    Failed,
    /// Never sent: the bound on checkouts in flight was reached.
    Dropped,
}

impl Outcome {
    /// Answered 2xx within the timeout.
    pub fn is_ok(&self) -> bool {
        matches!(
            self,
            Outcome::Priced { .. } | Outcome::Accepted { .. } | Outcome::Malformed { .. }
        )
    }
}

/// One scheduled checkout. Offsets are from the run's origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckoutRecord {
    /// When the schedule said to send it.
    pub scheduled: Duration,
    /// When it was actually sent; `None` when dropped.
    pub sent: Option<Duration>,
    /// When the answer came, or the request timed out or failed; `None` when dropped.
    pub ended: Option<Duration>,
    pub product_id: u32,
    pub outcome: Outcome,
}

/// A completion seen on `orders.completed` (`AsyncMessaging`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    pub order_id: String,
    pub product_id: u32,
    pub version: u64,
    /// When the load generator received it.
    pub received: Duration,
}

/// Everything a run produced, as plain data.
#[derive(Clone, Debug, Default)]
pub struct RecordingInput {
    pub checkouts: Vec<CheckoutRecord>,
    pub price_changes: Vec<PriceChange>,
    /// Price changes catalog did not acknowledge (error or timeout).
    pub price_changes_failed: u64,
    pub completions: Vec<Completion>,
    /// Where the schedule ended: the run's duration, or when it was stopped.
    pub schedule_end: Duration,
}

/// How far sends fell behind their schedule.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleLag {
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Counts over the whole run, for the load generator's own report.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoadSummary {
    /// Checkouts the schedule asked for.
    pub scheduled: u64,
    /// Checkouts actually sent.
    pub sent: u64,
    /// Checkouts not sent because the in-flight bound was reached (like k6's
    /// dropped iterations).
    pub dropped: u64,
    /// Answered 2xx within the timeout.
    pub ok: u64,
    /// Answered outside 2xx.
    pub rejected: u64,
    pub timed_out: u64,
    /// Failed without an answer (connection refused or reset).
    pub failed: u64,
    /// Priced: `200`, or `202` followed by a matching completion.
    pub priced: u64,
    /// Completions whose order id no checkout of this run was given.
    pub completions_unmatched: u64,
    pub price_changes_acked: u64,
    pub price_changes_failed: u64,
    pub behind_schedule: ScheduleLag,
}

/// One checkout after matching and judging, in microseconds since the origin.
#[derive(Clone, Copy, Debug)]
struct Judged {
    scheduled_us: u64,
    /// Sent minus scheduled; `None` when dropped.
    lag_us: Option<u64>,
    /// Ended minus scheduled; `None` when dropped.
    response_us: Option<u64>,
    /// Ended minus sent (the service time); `None` when dropped.
    service_us: Option<u64>,
    ok: bool,
    /// Priced minus scheduled; `None` when never priced.
    completion_us: Option<u64>,
    /// `Some` when priced with a superseded price.
    staleness_us: Option<u64>,
}

/// The counts and latencies that a phase and a fault window both report.
struct Tally {
    scheduled: u64,
    ok: u64,
    priced: u64,
    response_ms: LatencyMs,
    completion_ms: LatencyMs,
}

impl Tally {
    fn of(checkouts: &[Judged]) -> Self {
        let count = |keep: fn(&Judged) -> bool| checkouts.iter().filter(|c| keep(c)).count() as u64;
        let latency = |figure: fn(&Judged) -> Option<u64>| {
            checkouts
                .iter()
                .filter_map(figure)
                .collect::<Micros>()
                .latency()
        };
        Tally {
            scheduled: checkouts.len() as u64,
            ok: count(|c| c.ok),
            priced: count(|c| c.completion_us.is_some()),
            response_ms: latency(|c| c.response_us),
            completion_ms: latency(|c| c.completion_us),
        }
    }
}

/// A judged run, ready to be cut into phases and windows.
#[derive(Clone, Debug)]
pub struct Recording {
    /// Sorted by scheduled time.
    checkouts: Vec<Judged>,
    schedule_end: Duration,
    summary: LoadSummary,
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

impl Recording {
    /// Matches completions to accepted checkouts by order id (the earliest
    /// completion of an order counts) and judges every priced checkout's
    /// staleness against the price log.
    pub fn new(input: RecordingInput) -> Self {
        let RecordingInput {
            checkouts,
            price_changes,
            price_changes_failed,
            completions,
            schedule_end,
        } = input;
        let prices = PriceLog::new(price_changes);

        let mut completed: HashMap<String, (Duration, u64)> =
            HashMap::with_capacity(completions.len());
        for completion in completions {
            completed
                .entry(completion.order_id)
                .and_modify(|(received, version)| {
                    if completion.received < *received {
                        *received = completion.received;
                        *version = completion.version;
                    }
                })
                .or_insert((completion.received, completion.version));
        }
        let mut matched = 0u64;

        let mut summary = LoadSummary {
            scheduled: checkouts.len() as u64,
            price_changes_acked: prices.len() as u64,
            price_changes_failed,
            ..LoadSummary::default()
        };
        let mut judged = Vec::with_capacity(checkouts.len());
        for record in checkouts {
            let scheduled_us = micros(record.scheduled);
            let since_scheduled = |at: Duration| micros(at.saturating_sub(record.scheduled));
            let priced = match &record.outcome {
                Outcome::Priced { version } => record.ended.map(|ended| (ended, *version)),
                Outcome::Accepted { order_id } => {
                    let completion = completed.get(order_id).copied();
                    matched += u64::from(completion.is_some());
                    completion
                }
                _ => None,
            };
            let staleness_us = match (priced, record.sent) {
                (Some((at, version)), Some(sent)) => {
                    match prices.judge(record.product_id, version, sent, at) {
                        Freshness::Stale(staleness) => Some(micros(staleness)),
                        Freshness::Fresh => None,
                    }
                }
                _ => None,
            };
            let ok = record.outcome.is_ok();
            summary.sent += u64::from(record.sent.is_some());
            summary.ok += u64::from(ok);
            summary.priced += u64::from(priced.is_some());
            match record.outcome {
                Outcome::Dropped => summary.dropped += 1,
                Outcome::Rejected { .. } => summary.rejected += 1,
                Outcome::TimedOut => summary.timed_out += 1,
                Outcome::Failed => summary.failed += 1,
                _ => {}
            }
            judged.push(Judged {
                scheduled_us,
                lag_us: record.sent.map(since_scheduled),
                response_us: record.ended.map(since_scheduled),
                service_us: match (record.sent, record.ended) {
                    (Some(sent), Some(ended)) => Some(micros(ended.saturating_sub(sent))),
                    _ => None,
                },
                ok,
                completion_us: priced.map(|(at, _)| since_scheduled(at)),
                staleness_us,
            });
        }
        judged.sort_by_key(|checkout| checkout.scheduled_us);
        summary.completions_unmatched =
            completed.len() as u64 - matched.min(completed.len() as u64);

        let mut recording = Self {
            checkouts: judged,
            schedule_end,
            summary,
        };
        recording.summary.behind_schedule = recording.schedule_lag(Duration::ZERO..schedule_end);
        recording
    }

    /// Where the schedule ended.
    pub fn schedule_end(&self) -> Duration {
        self.schedule_end
    }

    /// Counts over the whole run.
    pub fn summary(&self) -> &LoadSummary {
        &self.summary
    }

    /// The checkouts scheduled in `[window.start, window.end)`.
    fn slice(&self, window: Range<Duration>) -> &[Judged] {
        let (start, end) = (micros(window.start), micros(window.end));
        let from = self.checkouts.partition_point(|c| c.scheduled_us < start);
        let to = self.checkouts.partition_point(|c| c.scheduled_us < end);
        &self.checkouts[from..to.max(from)]
    }

    /// The window's length in seconds once clipped to the schedule.
    fn span_s(&self, window: &Range<Duration>) -> f64 {
        window
            .end
            .min(self.schedule_end)
            .saturating_sub(window.start)
            .as_secs_f64()
    }

    /// What the checkouts scheduled in `window` showed.
    pub fn phase(&self, window: Range<Duration>) -> PhaseMeasurement {
        let span = self.span_s(&window);
        let checkouts = self.slice(window);
        let tally = Tally::of(checkouts);
        let stale: Micros = checkouts.iter().filter_map(|c| c.staleness_us).collect();
        let per_second = |count: u64| if span > 0.0 { count as f64 / span } else { 0.0 };
        PhaseMeasurement {
            offered_rps: per_second(tally.scheduled),
            achieved_rps: per_second(tally.ok),
            success_ratio: ratio(tally.ok, tally.scheduled),
            behind_schedule_ms: latency::to_ms(
                checkouts.iter().filter_map(|c| c.lag_us).max().unwrap_or(0),
            ),
            response_ms: tally.response_ms,
            completion_ms: tally.completion_ms,
            stale_ratio: ratio(stale.len(), tally.priced),
            staleness_ms: stale.staleness(),
        }
    }

    /// What happened while `fault` was active. Its window is
    /// `measured_from + at .. measured_from + at + duration`, where
    /// `measured_from` is where the measured run starts on this recording's
    /// clock (after warm-up). Recovery is judged against `baseline`'s p99.
    pub fn fault(
        &self,
        fault: &Fault,
        measured_from: Duration,
        baseline: &PhaseMeasurement,
    ) -> FaultMeasurement {
        let start = measured_from + fault.at.as_std();
        let end = start + fault.duration.as_std();
        self.fault_window(
            &fault.name,
            fault.fault,
            fault.target,
            start..end,
            baseline.response_ms.p99,
        )
    }

    /// [`Recording::fault`] for an explicit window.
    pub fn fault_window(
        &self,
        name: &str,
        fault: FaultKind,
        target: Target,
        window: Range<Duration>,
        baseline_p99_ms: f64,
    ) -> FaultMeasurement {
        let end = window.end;
        let checkouts = self.slice(window);
        let tally = Tally::of(checkouts);
        let stale = checkouts
            .iter()
            .filter(|c| c.staleness_us.is_some())
            .count() as u64;
        FaultMeasurement {
            name: name.to_owned(),
            fault,
            target,
            // What the backend confirmed is the engine's to say, not the recording's.
            in_force: None,
            availability: ratio(tally.ok, tally.scheduled),
            completed_ratio: ratio(tally.priced, tally.ok),
            response_ms: tally.response_ms,
            completion_ms: tally.completion_ms,
            recovery_s: self.recovery_s(end, baseline_p99_ms),
            stale_ratio: ratio(stale, tally.priced),
        }
    }

    /// Seconds from `after` (a fault's end) until a one-second window of
    /// scheduled checkouts has at least 99 % ok and a response p99 within
    /// `max(2 × baseline_p99_ms, 1 ms)`. Windows start at `after` and slide by
    /// 100 ms; a window with no checkouts is not judged. `None` when no
    /// window that fits before the schedule's end qualifies.
    pub fn recovery_s(&self, after: Duration, baseline_p99_ms: f64) -> Option<f64> {
        let limit_us = (baseline_p99_ms * RECOVERY_P99_FACTOR).max(RECOVERY_P99_FLOOR_MS) * 1000.0;
        let mut histogram = Micros::new();
        let mut start = after;
        while start + RECOVERY_WINDOW <= self.schedule_end {
            let checkouts = self.slice(start..start + RECOVERY_WINDOW);
            let ok = checkouts.iter().filter(|c| c.ok).count();
            if !checkouts.is_empty() && ok as f64 >= RECOVERY_SUCCESS_RATIO * checkouts.len() as f64
            {
                histogram.reset();
                for response in checkouts.iter().filter_map(|c| c.response_us) {
                    histogram.record(response);
                }
                if histogram.quantile_ms(0.99) * 1000.0 <= limit_us {
                    return Some((start - after).as_secs_f64());
                }
            }
            start += RECOVERY_STEP;
        }
        None
    }

    /// One row per second from `from` (where the measured run starts) to the
    /// schedule's end; a last partial second gets a row of its own.
    pub fn timeline(&self, from: Duration) -> Vec<TimelineRow> {
        let seconds = self.schedule_end.saturating_sub(from).as_secs_f64().ceil() as u32;
        let mut histogram = Micros::new();
        (0..seconds)
            .map(|second| {
                let start = from + Duration::from_secs(u64::from(second));
                let checkouts = self.slice(start..start + Duration::from_secs(1));
                histogram.reset();
                for response in checkouts.iter().filter_map(|c| c.response_us) {
                    histogram.record(response);
                }
                let offered = checkouts.len() as u32;
                let ok = checkouts.iter().filter(|c| c.ok).count() as u32;
                TimelineRow {
                    second,
                    offered,
                    ok,
                    errors: offered - ok,
                    p50_ms: histogram.quantile_ms(0.50),
                    p99_ms: histogram.quantile_ms(0.99),
                    stale: checkouts
                        .iter()
                        .filter(|c| c.staleness_us.is_some())
                        .count() as u32,
                }
            })
            .collect()
    }

    /// 2xx answers *received* in `window` per second, whenever they were
    /// scheduled: what an observer of orders' output sees (a load tool's
    /// "requests per second"). [`PhaseMeasurement::achieved_rps`] instead
    /// counts the checkouts *scheduled* in the window that were answered ok.
    pub fn throughput(&self, window: Range<Duration>) -> f64 {
        let span = window.end.saturating_sub(window.start).as_secs_f64();
        if span <= 0.0 {
            return 0.0;
        }
        let (start, end) = (micros(window.start), micros(window.end));
        let received = self
            .checkouts
            .iter()
            .filter(|c| c.ok)
            .filter_map(|c| c.response_us.map(|response| c.scheduled_us + response))
            .filter(|ended| (start..end).contains(ended))
            .count();
        received as f64 / span
    }

    /// The raw service time of checkouts scheduled in `window`: from the
    /// actual send until the answer. Beside the latency from the scheduled
    /// time, it tells the load generator's lag apart from orders' slowness.
    pub fn service_time(&self, window: Range<Duration>) -> LatencyMs {
        self.slice(window)
            .iter()
            .filter_map(|c| c.service_us)
            .collect::<Micros>()
            .latency()
    }

    /// How far the sends of checkouts scheduled in `window` fell behind.
    pub fn schedule_lag(&self, window: Range<Duration>) -> ScheduleLag {
        let lag: Micros = self.slice(window).iter().filter_map(|c| c.lag_us).collect();
        ScheduleLag {
            p99_ms: lag.quantile_ms(0.99),
            max_ms: lag.max_ms(),
        }
    }
}

#[cfg(test)]
mod tests;
