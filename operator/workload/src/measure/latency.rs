//! Latency percentiles from an HdrHistogram with microsecond resolution.

use commlab_api::results::{LatencyMs, StalenessMs};
use hdrhistogram::Histogram;

/// The highest value a histogram tracks: two hours in microseconds. Larger
/// values are recorded as this value (an experiment lasts at most 1 h 10 min).
pub const HISTOGRAM_MAX_US: u64 = 2 * 3600 * 1_000_000;

/// Three significant digits: a recorded value is off by at most 0.1 %.
pub const HISTOGRAM_SIGFIG: u8 = 3;

/// An HdrHistogram of microseconds that also keeps the exact maximum (the
/// histogram's own maximum is rounded up to its bucket's upper edge).
#[derive(Clone, Debug)]
pub struct Micros {
    histogram: Histogram<u64>,
    max: u64,
}

impl Default for Micros {
    fn default() -> Self {
        Self::new()
    }
}

impl Micros {
    pub fn new() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, HISTOGRAM_SIGFIG)
                .expect("constant histogram bounds are valid"),
            max: 0,
        }
    }

    pub fn record(&mut self, micros: u64) {
        let micros = micros.min(HISTOGRAM_MAX_US);
        self.histogram.saturating_record(micros);
        self.max = self.max.max(micros);
    }

    pub fn reset(&mut self) {
        self.histogram.reset();
        self.max = 0;
    }

    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// The value at `quantile` (`0.0..=1.0`) in milliseconds, never above the
    /// exact maximum; `0.0` when nothing was recorded.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        if self.is_empty() {
            return 0.0;
        }
        to_ms(self.histogram.value_at_quantile(quantile).min(self.max))
    }

    pub fn max_ms(&self) -> f64 {
        to_ms(self.max)
    }

    pub fn latency(&self) -> LatencyMs {
        LatencyMs {
            p50: self.quantile_ms(0.50),
            p90: self.quantile_ms(0.90),
            p99: self.quantile_ms(0.99),
            p999: self.quantile_ms(0.999),
            max: self.max_ms(),
        }
    }

    pub fn staleness(&self) -> StalenessMs {
        StalenessMs {
            p50: self.quantile_ms(0.50),
            p99: self.quantile_ms(0.99),
            max: self.max_ms(),
        }
    }
}

impl FromIterator<u64> for Micros {
    fn from_iter<I: IntoIterator<Item = u64>>(values: I) -> Self {
        let mut micros = Micros::new();
        for value in values {
            micros.record(value);
        }
        micros
    }
}

pub fn to_ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_histogram_reads_zero() {
        let micros = Micros::new();
        assert_eq!(micros.latency(), LatencyMs::default());
        assert_eq!(micros.staleness(), StalenessMs::default());
    }

    #[test]
    fn percentiles_of_one_to_ten_thousand_microseconds() {
        let micros: Micros = (1..=10_000).collect();
        let latency = micros.latency();
        // Three significant digits: within 0.1 % of the exact rank.
        assert!((latency.p50 - 5.0).abs() <= 0.005 + 1e-9, "{latency:?}");
        assert!((latency.p90 - 9.0).abs() <= 0.009 + 1e-9, "{latency:?}");
        assert!((latency.p99 - 9.9).abs() <= 0.01 + 1e-9, "{latency:?}");
        assert!((latency.p999 - 9.99).abs() <= 0.01 + 1e-9, "{latency:?}");
        assert_eq!(latency.max, 10.0);
    }

    #[test]
    fn maximum_is_exact_and_bounds_every_percentile() {
        let micros: Micros = [1_234_567].into_iter().collect();
        let latency = micros.latency();
        assert_eq!(latency.max, 1234.567);
        assert_eq!(latency.p50, 1234.567);
        assert_eq!(latency.p999, 1234.567);
    }

    #[test]
    fn values_beyond_the_range_saturate() {
        let micros: Micros = [u64::MAX].into_iter().collect();
        assert_eq!(micros.max_ms(), to_ms(HISTOGRAM_MAX_US));
    }

    #[test]
    fn reset_forgets_everything() {
        let mut micros: Micros = [5, 6, 7].into_iter().collect();
        micros.reset();
        assert!(micros.is_empty());
        assert_eq!(micros.max_ms(), 0.0);
    }
}
