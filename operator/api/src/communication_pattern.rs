//! `CommunicationPattern`: one pattern, its components, workload, chaos plan
//! and SLOs; its status carries the measured results.
//!
//! Everything the API server can check is written here as schema bounds or
//! CEL rules, so a bad manifest is rejected at `kubectl apply` with a message
//! that names the field. What only the operator can judge is reported as the
//! `SpecValid` condition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Duration, FaultKind, Pattern, Target, results::ExperimentResults, rules};

/// Longest measured run a manifest may ask for (`spec.workload.duration`);
/// longer experiments belong in a soak tool, not in a comparison.
pub const MAX_RUN: &str = "1h";
/// Longest warm-up (`spec.workload.warmup`).
pub const MAX_WARMUP: &str = "10m";
/// Highest arrival rate the load generator is asked for, in checkouts per second.
pub const MAX_RATE: f64 = 20_000.0;
/// Highest price-change rate, in changes per second.
pub const MAX_UPDATE_RATE: f64 = 1_000.0;
/// Most faults in one chaos plan; bounds the cost of the CEL rules over the list.
pub const MAX_FAULTS: usize = 16;
/// Most replicas of orders or catalog.
pub const MAX_REPLICAS: i32 = 50;

// The CEL rules below repeat these limits as literals (a rule is a string the
// API server compiles); `tests/api/crd.rs` checks that the two agree.

// Clippy reads the repeated `type_ = "string"` of the printer columns as
// duplicated attributes; they are separate columns.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "commlab.dev",
    version = "v1alpha1",
    kind = "CommunicationPattern",
    plural = "communicationpatterns",
    shortname = "cpat",
    namespaced,
    doc = "One communication pattern between orders and catalog: its components, workload, chaos plan and SLOs; the status carries the measured results.",
    status = "CommunicationPatternStatus",
    derive = "PartialEq",
    printcolumn(name = "Pattern", type_ = "string", json_path = ".spec.pattern"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "P99",
        type_ = "string",
        json_path = ".status.results.display.p99",
        description = "baseline response p99"
    ),
    printcolumn(
        name = "Availability",
        type_ = "string",
        json_path = ".status.results.display.availability",
        description = "worst availability of orders under a fault"
    ),
    printcolumn(
        name = "Staleness",
        type_ = "string",
        json_path = ".status.results.display.staleness",
        description = "baseline staleness p99"
    ),
    printcolumn(
        name = "Verdict",
        type_ = "string",
        json_path = ".status.results.verdict"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = rules::faults_end_inside_the_run(),
    validation = Rule::new("!has(self.chaos) || self.pattern in ['AsyncMessaging', 'CacheWithUpdateEvents'] || self.chaos.all(f, f.target != 'broker')")
        .message("target broker is only allowed for the patterns with a broker (AsyncMessaging, CacheWithUpdateEvents)")
        .field_path(".chaos")
        .reason(Reason::FieldValueForbidden),
)]
pub struct CommunicationPatternSpec {
    /// How orders gets the price: one of the six patterns.
    pub pattern: Pattern,
    /// The components to deploy beside orders and catalog.
    #[serde(default)]
    pub components: Components,
    /// The load driven through the pattern.
    #[serde(default)]
    pub workload: Workload,
    /// Faults injected during the run, each at its offset for its duration.
    /// At most 16; names are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = rules::unique_fault_names())]
    pub chaos: Vec<Fault>,
    /// Objectives the verdict is judged against; without them the verdict is `Pass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<Slo>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Components {
    /// The message broker, for the patterns that use one (AsyncMessaging,
    /// CacheWithUpdateEvents); ignored, with a warning, for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<Broker>,
    /// Where orders keeps prices, for the cache patterns (CacheWithApiUpdates,
    /// CacheWithUpdateEvents); ignored, with a warning, for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Cache>,
    /// Replicas of the two services, each 1 to 50.
    #[serde(default)]
    pub replicas: Replicas,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct Broker {
    /// `Nats` (the default) or `RabbitMq`.
    #[serde(default)]
    pub kind: BrokerKind,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BrokerKind {
    /// NATS with JetStream: durable streams, so messages survive a catalog outage.
    #[default]
    Nats,
    RabbitMq,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct Cache {
    /// `InProcess` (the default) or `Redis`.
    #[serde(default)]
    pub kind: CacheKind,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CacheKind {
    /// A map inside each orders replica.
    #[default]
    InProcess,
    /// One Redis shared by all orders replicas.
    Redis,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct Replicas {
    /// Replicas of orders, 1 to 50.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 50))]
    pub orders: i32,
    /// Replicas of catalog, 1 to 50.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 50))]
    pub catalog: i32,
}

fn one() -> i32 {
    1
}

impl Default for Replicas {
    fn default() -> Self {
        Self {
            orders: 1,
            catalog: 1,
        }
    }
}

/// The load: checkouts at a constant arrival rate while prices change.
/// Durations are written like `30s`, `1m30s` or `250ms`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// Checkouts per second, scheduled at a constant arrival rate: more than 0, at most 20000.
    #[serde(default = "default_rate")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 20000.0")
        .message("rate must be more than 0 and at most 20000 checkouts per second"))]
    pub rate: f64,
    /// How long the measured run lasts, after warm-up: more than 0s, at most 1h.
    /// Every fault happens inside it.
    #[serde(default = "default_duration")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s') && duration(self) <= duration('1h')")
        .message("duration must be more than 0s and at most 1h"))]
    pub duration: Duration,
    /// Load before measuring starts, not counted: more than 0s, at most 10m.
    #[serde(default = "default_warmup")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s') && duration(self) <= duration('10m')")
        .message("warmup must be more than 0s and at most 10m"))]
    pub warmup: Duration,
    /// Number of products in the catalog, 1 to 100000; checkouts pick one uniformly.
    #[serde(default = "default_products")]
    #[schemars(range(min = 1, max = 100000))]
    pub products: u32,
    /// Price changes per second made through catalog's API during the run, 0 to 1000.
    #[serde(default = "default_update_rate")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1000.0")
        .message("updateRate must be between 0 and 1000 price changes per second"))]
    pub update_rate: f64,
    /// How long a client waits for orders before counting the checkout as
    /// failed: 10ms to 1m.
    #[serde(default = "default_request_timeout")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10ms') && duration(self) <= duration('1m')")
        .message("requestTimeout must be between 10ms and 1m"))]
    pub request_timeout: Duration,
    /// After the run, step the rate up to find the highest rate orders sustains.
    #[serde(default)]
    pub capacity_probe: bool,
}

fn default_rate() -> f64 {
    200.0
}
fn default_duration() -> Duration {
    Duration::from_secs(60)
}
fn default_warmup() -> Duration {
    Duration::from_secs(10)
}
fn default_products() -> u32 {
    1000
}
fn default_update_rate() -> f64 {
    5.0
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(2)
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            rate: default_rate(),
            duration: default_duration(),
            warmup: default_warmup(),
            products: default_products(),
            update_rate: default_update_rate(),
            request_timeout: default_request_timeout(),
            capacity_probe: false,
        }
    }
}

/// One fault in the chaos plan. It starts `at` after the measured run
/// begins, lasts `duration`, and must end inside the run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.fault != 'Delay' || has(self.latency)")
        .message("latency is required for a Delay fault, e.g. latency: 100ms")
        .field_path(".latency")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("self.fault == 'Delay' || !has(self.latency)")
        .message("latency is only allowed for a Delay fault")
        .field_path(".latency")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.fault == 'Delay' || !has(self.jitter)")
        .message("jitter is only allowed for a Delay fault")
        .field_path(".jitter")
        .reason(Reason::FieldValueForbidden),
)]
pub struct Fault {
    /// Unique within the plan, a DNS label of at most 40 characters; used in
    /// reports and in the chaos objects' names.
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// `Outage`, `Kill`, `Delay` or `Partition`.
    pub fault: FaultKind,
    /// `orders`, `catalog`, `database`, or `broker` (only for the patterns with a broker).
    pub target: Target,
    /// Offset from the start of the measured run (after warm-up), e.g. `20s`.
    pub at: Duration,
    /// How long the fault lasts, more than 0s; for `Kill`, how long
    /// availability is watched after it.
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')")
        .message("duration must be more than 0s"))]
    pub duration: Duration,
    /// Added latency, required for `Delay` and only allowed there: more than 0s, at most 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s') && duration(self) <= duration('1m')")
        .message("latency must be more than 0s and at most 1m"))]
    pub latency: Option<Duration>,
    /// Random variation around `latency`, for `Delay`: at most 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('1m')")
        .message("jitter must be at most 1m"))]
    pub jitter: Option<Duration>,
}

/// Service level objectives, all optional.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Slo {
    /// Highest acceptable baseline response p99, e.g. `50ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<Duration>,
    /// Lowest acceptable availability of orders under every fault, as a
    /// percentage string from `0%` to `100%`, e.g. `"99%"` or `"99.9%"`
    /// (quote it in YAML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)%$"),
        length(max = 12)
    )]
    pub availability: Option<String>,
    /// Highest acceptable staleness p99 of the prices orders used, e.g. `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_staleness: Option<Duration>,
}

impl Slo {
    /// The availability objective as a fraction in `0.0..=1.0`, e.g. `0.999`
    /// for `"99.9%"`; `None` when unset or not a percentage.
    pub fn availability_fraction(&self) -> Option<f64> {
        let text = self.availability.as_deref()?;
        let percent = text.strip_suffix('%')?.parse::<f64>().ok()?;
        (0.0..=100.0).contains(&percent).then_some(percent / 100.0)
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Deploying,
    Ready,
    Running,
    Completed,
    Failed,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommunicationPatternStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `ExperimentComplete`, `SpecValid` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<ExperimentResults>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// `orders`, `catalog`, `database` or `broker`.
    pub name: String,
    /// What runs it, e.g. `Deployment` or `StatefulSet`.
    pub kind: String,
    /// Ready replicas over desired, e.g. `2/2`.
    pub ready: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportRef {
    /// The ConfigMap holding the full JSON report, with timelines.
    pub config_map: String,
}
