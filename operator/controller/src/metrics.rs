//! Prometheus metrics: reconciles, failures by bounded error category,
//! reconcile duration, and failed watches (a watch the operator's RBAC does
//! not allow fails before any reconcile runs).

use std::time::Duration;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub category: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub failures: Family<FailureLabels, Counter>,
    pub duration: Histogram,
    pub watch_failures: Family<FailureLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("commlab_operator");
        let reconciles = Counter::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]);
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by error category",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            duration.clone(),
        );
        let watch_failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "watch_failures",
            "Failed watches of the operator's children, by error category",
            watch_failures.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            watch_failures,
        }
    }
}

impl Metrics {
    pub fn observe(&self, took: Duration, failure: Option<&'static str>) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(category) = failure {
            self.failures
                .get_or_create(&FailureLabels { category })
                .inc();
        }
    }

    pub fn watch_failed(&self, category: &'static str) {
        self.watch_failures
            .get_or_create(&FailureLabels { category })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_labelled_by_category() {
        let m = Metrics::default();
        m.observe(Duration::from_millis(3), None);
        m.observe(Duration::from_millis(3), Some("conflict"));
        m.watch_failed("forbidden");
        let text = m.render();
        assert!(
            text.contains("commlab_operator_reconciles_total 2"),
            "{text}"
        );
        assert!(
            text.contains(r#"commlab_operator_reconcile_failures_total{category="conflict"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"commlab_operator_watch_failures_total{category="forbidden"} 1"#),
            "{text}"
        );
    }
}
