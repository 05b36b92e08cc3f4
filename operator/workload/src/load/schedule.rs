//! The open-model schedule and the seeded choice of products: pure maths.

use std::time::Duration;

/// A constant arrival rate: the `i`-th event is due at `i / rate` seconds
/// after the origin, for every `i` with `i / rate < duration`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    rate: f64,
    duration: Duration,
    len: u64,
}

impl Schedule {
    /// `rate` events per second for `duration`. A rate that is not positive
    /// and finite gives an empty schedule.
    pub fn new(rate: f64, duration: Duration) -> Self {
        let len = if rate.is_finite() && rate > 0.0 {
            // ceil(duration × rate) with a tolerance for floating-point noise:
            // 3 s at 500/s is exactly 1500 events (0 .. 1499).
            let exact = duration.as_secs_f64() * rate;
            (exact - 1e-9).ceil().max(0.0) as u64
        } else {
            0
        };
        Self {
            rate,
            duration,
            len,
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// How many events the schedule holds.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// When the `i`-th event is due, as an offset from the origin.
    pub fn offset(&self, i: u64) -> Duration {
        if self.len == 0 {
            return Duration::ZERO;
        }
        // Whole seconds and the remainder separately keep nanosecond
        // precision for long runs at high rates.
        let per_second = self.rate;
        let whole = (i as f64 / per_second).floor();
        let rest = i as f64 - whole * per_second;
        let nanos = (rest / per_second * 1e9).round().max(0.0) as u64;
        Duration::from_secs(whole as u64) + Duration::from_nanos(nanos)
    }

    /// How many events are due by `elapsed` (those with `offset(i) <= elapsed`),
    /// never more than [`Schedule::len`].
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        if self.len == 0 {
            return 0;
        }
        let due = (elapsed.as_secs_f64() * self.rate).floor() as u64 + 1;
        // Correct a floating-point off-by-one at the boundary.
        let due = if due > 0 && self.offset(due - 1) > elapsed {
            due - 1
        } else {
            due
        };
        let due = if self.offset(due) <= elapsed {
            due + 1
        } else {
            due
        };
        due.min(self.len)
    }
}

/// SplitMix64: a fast, seedable generator whose `n`-th output depends only on
/// the seed and `n`, so the `i`-th checkout picks the same product whatever
/// the timing.
pub fn splitmix64(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A value uniform in `1..=upper` (Lemire's multiply-shift; the bias for
/// `upper` up to 2³² is below 2⁻³²). `upper` 0 is treated as 1.
pub fn uniform_1_to(random: u64, upper: u32) -> u32 {
    let upper = u64::from(upper.max(1));
    (((u128::from(random) * u128::from(upper)) >> 64) as u64 + 1) as u32
}

/// The product the `i`-th event picks, uniform in `1..=products`.
pub fn product_for(seed: u64, i: u64, products: u32) -> u32 {
    uniform_1_to(splitmix64(seed, i), products)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ith_event_is_due_at_i_over_rate() {
        let schedule = Schedule::new(500.0, Duration::from_secs(3));
        assert_eq!(schedule.len(), 1500);
        assert_eq!(schedule.offset(0), Duration::ZERO);
        assert_eq!(schedule.offset(1), Duration::from_millis(2));
        assert_eq!(schedule.offset(500), Duration::from_secs(1));
        assert_eq!(schedule.offset(1499), Duration::from_millis(2998));
    }

    #[test]
    fn fractional_rates_and_durations() {
        let schedule = Schedule::new(3.0, Duration::from_millis(1000));
        assert_eq!(schedule.len(), 3);
        assert_eq!(schedule.offset(1).as_nanos(), 333_333_333);
        // 2.5 per second for 1 s: events at 0 and 0.4 s (0.8 s too).
        assert_eq!(Schedule::new(2.5, Duration::from_secs(1)).len(), 3);
        assert_eq!(Schedule::new(2.5, Duration::from_millis(800)).len(), 2);
        // 333.33/s for 3 s: ceil(999.99) = 1000.
        assert_eq!(Schedule::new(333.33, Duration::from_secs(3)).len(), 1000);
    }

    #[test]
    fn precision_holds_over_an_hour_at_twenty_thousand_per_second() {
        let schedule = Schedule::new(20_000.0, Duration::from_secs(3600));
        assert_eq!(schedule.len(), 72_000_000);
        assert_eq!(
            schedule.offset(71_999_999),
            Duration::from_nanos(3_599_999_950_000)
        );
        let schedule = Schedule::new(7.0, Duration::from_secs(3600));
        let nanos = schedule.offset(25_199).as_nanos() as f64;
        assert!((nanos - 25_199.0 / 7.0 * 1e9).abs() < 2.0);
    }

    #[test]
    fn nothing_is_scheduled_at_a_zero_or_invalid_rate() {
        assert!(Schedule::new(0.0, Duration::from_secs(10)).is_empty());
        assert!(Schedule::new(-5.0, Duration::from_secs(10)).is_empty());
        assert!(Schedule::new(f64::NAN, Duration::from_secs(10)).is_empty());
        assert!(Schedule::new(100.0, Duration::ZERO).is_empty());
        assert_eq!(
            Schedule::new(0.0, Duration::from_secs(1)).due_by(Duration::from_secs(5)),
            0
        );
    }

    #[test]
    fn due_by_counts_events_whose_time_has_come() {
        let schedule = Schedule::new(1000.0, Duration::from_secs(1));
        assert_eq!(schedule.due_by(Duration::ZERO), 1);
        assert_eq!(schedule.due_by(Duration::from_micros(999)), 1);
        assert_eq!(schedule.due_by(Duration::from_millis(1)), 2);
        assert_eq!(schedule.due_by(Duration::from_micros(2500)), 3);
        assert_eq!(schedule.due_by(Duration::from_secs(60)), 1000);
        for i in 0..1000 {
            let at = schedule.offset(i);
            assert_eq!(schedule.due_by(at), i + 1, "at {at:?}");
            if i > 0 {
                assert_eq!(schedule.due_by(at - Duration::from_nanos(1)), i);
            }
        }
    }

    #[test]
    fn due_by_agrees_with_offset_at_awkward_rates() {
        for rate in [3.0, 7.0, 333.33, 999.9, 12_345.6] {
            let schedule = Schedule::new(rate, Duration::from_secs(2));
            for i in 0..schedule.len() {
                assert_eq!(
                    schedule.due_by(schedule.offset(i)),
                    i + 1,
                    "rate {rate}, i {i}"
                );
            }
        }
    }

    #[test]
    fn products_are_uniform_and_deterministic() {
        let products = 10;
        let mut counts = [0u32; 10];
        for i in 0..100_000 {
            let product = product_for(42, i, products);
            assert!((1..=products).contains(&product));
            counts[product as usize - 1] += 1;
        }
        for count in counts {
            // 10 000 expected; 5 sigma is about 475.
            assert!((9_500..=10_500).contains(&count), "{counts:?}");
        }
        assert_eq!(product_for(42, 7, 1000), product_for(42, 7, 1000));
        assert_ne!(
            (0..10).map(|i| product_for(1, i, 1000)).collect::<Vec<_>>(),
            (0..10).map(|i| product_for(2, i, 1000)).collect::<Vec<_>>()
        );
        assert_eq!(product_for(9, 9, 1), 1);
        assert_eq!(uniform_1_to(u64::MAX, u32::MAX), u32::MAX);
        assert_eq!(uniform_1_to(0, 0), 1);
    }
}
