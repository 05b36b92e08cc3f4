//! The staleness judge (docs/protocol.md, "The load generator's judgement of
//! staleness").
//!
//! The price updater logs every change catalog acknowledged as
//! `(product_id, version, acked_at)`. A checkout that sent its request at `s`
//! and was priced at `t` with version `v` of product `p` is **stale** when a
//! change of `p` to a version above `v` was acknowledged strictly before `s`;
//! its **staleness** is `t − acked_at(first version above v)`.
//!
//! "First version above `v`" is read as "the earliest acknowledgement of any
//! version above `v`". With one change in flight per product the two are the
//! same; when two changes of one product overlap and their acknowledgements
//! arrive out of order, the earliest acknowledgement is the earliest moment
//! the load generator knew `v` was superseded (catalog commits versions in
//! order, so version `v + 1` was committed no later than that moment).

use std::collections::HashMap;
use std::time::Duration;

/// One price change catalog acknowledged (`PUT /products/{id}/price` → `200`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriceChange {
    pub product_id: u32,
    /// The version catalog answered with.
    pub version: u64,
    /// When the load generator received the acknowledgement, as an offset
    /// from the run's origin.
    pub acked: Duration,
}

/// Whether a priced checkout used the current price.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// The price had been superseded for this long when the checkout was priced.
    Stale(Duration),
}

impl Freshness {
    pub fn is_stale(self) -> bool {
        matches!(self, Freshness::Stale(_))
    }
}

/// Every acknowledged change, indexed for the judge.
#[derive(Clone, Debug, Default)]
pub struct PriceLog {
    /// Per product: versions ascending, each with the earliest acknowledgement
    /// of that version *or any later one* (a suffix minimum).
    by_product: HashMap<u32, Vec<(u64, Duration)>>,
    changes: usize,
}

impl PriceLog {
    pub fn new(changes: impl IntoIterator<Item = PriceChange>) -> Self {
        let mut by_product: HashMap<u32, Vec<(u64, Duration)>> = HashMap::new();
        let mut count = 0;
        for change in changes {
            count += 1;
            by_product
                .entry(change.product_id)
                .or_default()
                .push((change.version, change.acked));
        }
        for versions in by_product.values_mut() {
            versions.sort_unstable();
            // The same version acknowledged twice keeps its earliest acknowledgement.
            versions.dedup_by_key(|(version, _)| *version);
            let mut earliest = Duration::MAX;
            for (_, acked) in versions.iter_mut().rev() {
                earliest = earliest.min(*acked);
                *acked = earliest;
            }
        }
        Self {
            by_product,
            changes: count,
        }
    }

    /// How many acknowledged changes the log holds.
    pub fn len(&self) -> usize {
        self.changes
    }

    pub fn is_empty(&self) -> bool {
        self.changes == 0
    }

    /// When the load generator first knew that `version` of `product_id` had
    /// been superseded: the earliest acknowledgement of a higher version.
    pub fn superseded_at(&self, product_id: u32, version: u64) -> Option<Duration> {
        let versions = self.by_product.get(&product_id)?;
        let first_above = versions.partition_point(|(v, _)| *v <= version);
        versions.get(first_above).map(|(_, acked)| *acked)
    }

    /// Judges a checkout of `product_id` whose request was sent at `sent` and
    /// that was priced with `version` at `priced` (all offsets from the origin).
    pub fn judge(
        &self,
        product_id: u32,
        version: u64,
        sent: Duration,
        priced: Duration,
    ) -> Freshness {
        match self.superseded_at(product_id, version) {
            Some(superseded) if superseded < sent => {
                Freshness::Stale(priced.saturating_sub(superseded))
            }
            _ => Freshness::Fresh,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn change(product_id: u32, version: u64, acked_ms: u64) -> PriceChange {
        PriceChange {
            product_id,
            version,
            acked: ms(acked_ms),
        }
    }

    #[test]
    fn no_change_means_fresh() {
        let log = PriceLog::new([]);
        assert_eq!(log.judge(1, 1, ms(10), ms(12)), Freshness::Fresh);
        assert!(log.is_empty());
    }

    #[test]
    fn change_acked_before_send_makes_the_older_version_stale() {
        let log = PriceLog::new([change(1, 2, 100)]);
        // Sent at 150 ms, priced at 160 ms with version 1: superseded since 100 ms.
        assert_eq!(log.judge(1, 1, ms(150), ms(160)), Freshness::Stale(ms(60)));
        // The new version itself is fresh.
        assert_eq!(log.judge(1, 2, ms(150), ms(160)), Freshness::Fresh);
    }

    #[test]
    fn change_acked_exactly_at_send_is_not_yet_known() {
        let log = PriceLog::new([change(1, 2, 100)]);
        assert_eq!(log.judge(1, 1, ms(100), ms(105)), Freshness::Fresh);
        assert_eq!(
            log.judge(1, 1, ms(100) + Duration::from_micros(1), ms(105)),
            Freshness::Stale(ms(5))
        );
    }

    #[test]
    fn change_acked_after_send_is_fresh_even_if_priced_later() {
        let log = PriceLog::new([change(1, 2, 100)]);
        assert_eq!(log.judge(1, 1, ms(90), ms(300)), Freshness::Fresh);
    }

    #[test]
    fn staleness_counts_from_the_first_version_above() {
        let log = PriceLog::new([change(1, 2, 100), change(1, 3, 200), change(1, 4, 300)]);
        assert_eq!(log.judge(1, 1, ms(350), ms(400)), Freshness::Stale(ms(300)));
        assert_eq!(log.judge(1, 2, ms(350), ms(400)), Freshness::Stale(ms(200)));
        assert_eq!(log.judge(1, 3, ms(350), ms(400)), Freshness::Stale(ms(100)));
        assert_eq!(log.judge(1, 4, ms(350), ms(400)), Freshness::Fresh);
        // Between acknowledgements: version 2 known superseded only after 200 ms.
        assert_eq!(log.judge(1, 2, ms(150), ms(160)), Freshness::Fresh);
    }

    #[test]
    fn version_newer_than_any_logged_change_is_fresh() {
        // Someone else changed the price, or the seed started above our changes.
        let log = PriceLog::new([change(1, 2, 100)]);
        assert_eq!(log.judge(1, 7, ms(500), ms(510)), Freshness::Fresh);
    }

    #[test]
    fn version_gaps_use_the_next_logged_version() {
        // Versions 3 and 4 were made by someone else; 5 is ours.
        let log = PriceLog::new([change(1, 2, 100), change(1, 5, 400)]);
        assert_eq!(log.superseded_at(1, 3), Some(ms(400)));
        assert_eq!(log.judge(1, 3, ms(450), ms(460)), Freshness::Stale(ms(60)));
    }

    #[test]
    fn out_of_order_acknowledgements_use_the_earliest() {
        // Two overlapping changes: version 3 acknowledged before version 2.
        let log = PriceLog::new([change(1, 3, 100), change(1, 2, 120)]);
        assert_eq!(log.superseded_at(1, 1), Some(ms(100)));
        assert_eq!(log.superseded_at(1, 2), Some(ms(100)));
        assert_eq!(log.judge(1, 1, ms(110), ms(130)), Freshness::Stale(ms(30)));
    }

    #[test]
    fn duplicate_acknowledgements_keep_the_earliest() {
        let log = PriceLog::new([change(1, 2, 150), change(1, 2, 100)]);
        assert_eq!(log.superseded_at(1, 1), Some(ms(100)));
        assert_eq!(log.len(), 2);
    }

    #[test]
    fn other_products_changes_do_not_count() {
        let log = PriceLog::new([change(2, 9, 100)]);
        assert_eq!(log.judge(1, 1, ms(200), ms(210)), Freshness::Fresh);
    }
}
