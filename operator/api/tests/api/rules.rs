//! One test per validation rule: a valid object passes, the bad one is
//! rejected at the expected field with the expected message. Schema rules
//! (enums, ranges, patterns, lengths) are checked by `support::admit`'s
//! schema pass, CEL rules by kube's client-side CEL; every CEL rule here,
//! `duration()` arithmetic, `exists_one` and `in` included, is evaluable
//! client-side.

use serde_json::{Value, json};

use crate::support::{Rejection, admit};

/// A valid CommunicationPattern with every field set.
fn pattern() -> Value {
    json!({
        "apiVersion": "commlab.dev/v1alpha1",
        "kind": "CommunicationPattern",
        "metadata": { "name": "cache-events", "namespace": "default" },
        "spec": {
            "pattern": "CacheWithUpdateEvents",
            "components": {
                "broker": { "kind": "Nats" },
                "cache": { "kind": "InProcess" },
                "replicas": { "orders": 2, "catalog": 1 }
            },
            "workload": {
                "rate": 200, "duration": "60s", "warmup": "10s", "products": 1000,
                "updateRate": 5, "requestTimeout": "2s", "capacityProbe": false
            },
            "chaos": [
                { "name": "catalog-down", "fault": "Outage", "target": "catalog", "at": "10s", "duration": "10s" },
                { "name": "slow-catalog", "fault": "Delay", "target": "catalog", "at": "25s", "duration": "10s",
                  "latency": "100ms", "jitter": "20ms" },
                { "name": "broker-down", "fault": "Outage", "target": "broker", "at": "40s", "duration": "10s" }
            ],
            "slo": { "p99": "50ms", "availability": "99.9%", "maxStaleness": "5s" }
        }
    })
}

/// A valid PatternComparison of three patterns.
fn comparison() -> Value {
    json!({
        "apiVersion": "commlab.dev/v1alpha1",
        "kind": "PatternComparison",
        "metadata": { "name": "three", "namespace": "default" },
        "spec": {
            "patterns": ["DirectApiCall", "AsyncPolling", "CacheWithUpdateEvents"],
            "workload": { "rate": 100, "duration": "60s" },
            "chaos": [
                { "name": "catalog-down", "fault": "Outage", "target": "catalog", "at": "20s", "duration": "15s" },
                { "name": "broker-down", "fault": "Outage", "target": "broker", "at": "40s", "duration": "10s" }
            ],
            "rankBy": "Isolation"
        }
    })
}

/// `object` with the value at JSON pointer `at` replaced (or added).
fn set(mut object: Value, at: &str, value: Value) -> Value {
    let (parent, key) = at.rsplit_once('/').unwrap();
    let parent = object
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no {parent}"));
    match parent {
        Value::Object(map) => {
            map.insert(key.to_owned(), value);
        }
        Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
        _ => panic!("{at} is inside a scalar"),
    }
    object
}

/// `object` without the field at JSON pointer `at`.
fn unset(mut object: Value, at: &str) -> Value {
    let (parent, key) = at.rsplit_once('/').unwrap();
    object
        .pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
    object
}

#[track_caller]
fn assert_admitted(object: &Value) {
    let rejections = admit(object);
    assert!(
        rejections.is_empty(),
        "expected {} to be admitted, got {rejections:#?}",
        object["spec"]
    );
}

/// Exactly one rejection, at `path`, whose message contains `message`.
#[track_caller]
fn assert_rejected(object: &Value, path: &str, message: &str) -> Rejection {
    let rejections = admit(object);
    assert_eq!(
        rejections.len(),
        1,
        "expected one rejection at {path}, got {rejections:#?}"
    );
    let rejection = rejections.into_iter().next().unwrap();
    assert_eq!(rejection.path, path, "{rejection}");
    assert!(
        rejection.message.contains(message),
        "expected {message:?} in {rejection}"
    );
    rejection
}

#[test]
fn the_reference_objects_are_admitted() {
    assert_admitted(&pattern());
    assert_admitted(&comparison());
}

#[test]
fn pattern_is_one_of_the_six() {
    for name in commlab_api::Pattern::ALL {
        // Without chaos, so the broker rule does not get in the way.
        let object = unset(
            set(pattern(), "/spec/pattern", json!(name.as_str())),
            "/spec/chaos",
        );
        assert_admitted(&object);
    }
    let unknown = set(pattern(), "/spec/pattern", json!("GraphQlFederation"));
    assert_rejected(&unknown, "spec.pattern", "Unsupported value");
    let missing = unset(pattern(), "/spec/pattern");
    assert_rejected(&missing, "spec.pattern", "Required value");
}

#[test]
fn rate_is_more_than_zero_and_at_most_20000() {
    for ok in [json!(0.5), json!(1), json!(20000)] {
        assert_admitted(&set(pattern(), "/spec/workload/rate", ok));
    }
    for bad in [json!(0), json!(-10), json!(20000.5), json!(50000)] {
        assert_rejected(
            &set(pattern(), "/spec/workload/rate", bad),
            "spec.workload.rate",
            "rate must be more than 0 and at most 20000 checkouts per second",
        );
    }
}

#[test]
fn run_duration_is_more_than_zero_and_at_most_an_hour() {
    // Without chaos: a shorter run would also cut the faults off.
    let base = unset(pattern(), "/spec/chaos");
    for ok in ["1s", "90s", "1h", "59m59s"] {
        assert_admitted(&set(base.clone(), "/spec/workload/duration", json!(ok)));
    }
    for bad in ["0s", "0m", "1h1s", "2h"] {
        assert_rejected(
            &set(base.clone(), "/spec/workload/duration", json!(bad)),
            "spec.workload.duration",
            "duration must be more than 0s and at most 1h",
        );
    }
}

#[test]
fn warmup_is_more_than_zero_and_at_most_ten_minutes() {
    for ok in ["1s", "500ms", "10m"] {
        assert_admitted(&set(pattern(), "/spec/workload/warmup", json!(ok)));
    }
    for bad in ["0s", "10m1s", "1h"] {
        assert_rejected(
            &set(pattern(), "/spec/workload/warmup", json!(bad)),
            "spec.workload.warmup",
            "warmup must be more than 0s and at most 10m",
        );
    }
}

#[test]
fn update_rate_is_between_0_and_1000() {
    for ok in [json!(0), json!(0.2), json!(1000)] {
        assert_admitted(&set(pattern(), "/spec/workload/updateRate", ok));
    }
    for bad in [json!(-1), json!(1000.5)] {
        assert_rejected(
            &set(pattern(), "/spec/workload/updateRate", bad),
            "spec.workload.updateRate",
            "updateRate must be between 0 and 1000 price changes per second",
        );
    }
}

#[test]
fn request_timeout_is_between_10ms_and_a_minute() {
    for ok in ["10ms", "2s", "1m"] {
        assert_admitted(&set(pattern(), "/spec/workload/requestTimeout", json!(ok)));
    }
    for bad in ["5ms", "61s"] {
        assert_rejected(
            &set(pattern(), "/spec/workload/requestTimeout", json!(bad)),
            "spec.workload.requestTimeout",
            "requestTimeout must be between 10ms and 1m",
        );
    }
}

#[test]
fn products_are_1_to_100000() {
    for ok in [1, 100_000] {
        assert_admitted(&set(pattern(), "/spec/workload/products", json!(ok)));
    }
    assert_rejected(
        &set(pattern(), "/spec/workload/products", json!(0)),
        "spec.workload.products",
        "greater than or equal to 1",
    );
    assert_rejected(
        &set(pattern(), "/spec/workload/products", json!(100_001)),
        "spec.workload.products",
        "less than or equal to 100000",
    );
}

#[test]
fn replicas_are_1_to_50() {
    for ok in [1, 50] {
        assert_admitted(&set(
            pattern(),
            "/spec/components/replicas/orders",
            json!(ok),
        ));
        assert_admitted(&set(
            pattern(),
            "/spec/components/replicas/catalog",
            json!(ok),
        ));
    }
    assert_rejected(
        &set(pattern(), "/spec/components/replicas/orders", json!(0)),
        "spec.components.replicas.orders",
        "greater than or equal to 1",
    );
    assert_rejected(
        &set(pattern(), "/spec/components/replicas/catalog", json!(51)),
        "spec.components.replicas.catalog",
        "less than or equal to 50",
    );
}

#[test]
fn durations_are_written_like_30s_or_1m30s() {
    for ok in ["30s", "1m30s", "1.5m", "250ms", "1h"] {
        assert_admitted(&set(pattern(), "/spec/slo/maxStaleness", json!(ok)));
    }
    for bad in ["30", "5 s", "-5s", "5us", "1d", "thirty seconds", ""] {
        assert_rejected(
            &set(pattern(), "/spec/slo/maxStaleness", json!(bad)),
            "spec.slo.maxStaleness",
            "should match",
        );
    }
}

#[test]
fn every_fault_ends_inside_the_run() {
    let message =
        "every fault must end inside the run: at + duration must be at most spec.workload.duration";
    // broker-down ends at 50s; exactly at the end of the 60s run is fine.
    assert_admitted(&set(pattern(), "/spec/chaos/2/duration", json!("20s")));
    // Units mix: 40s + 20000ms = 1m.
    let mixed = set(
        set(pattern(), "/spec/chaos/2/duration", json!("20000ms")),
        "/spec/workload/duration",
        json!("1m"),
    );
    assert_admitted(&mixed);
    let late = set(pattern(), "/spec/chaos/2/duration", json!("21s"));
    assert_rejected(&late, "spec.chaos", message);
    // A shorter run cuts the faults off too.
    let short_run = set(pattern(), "/spec/workload/duration", json!("45s"));
    assert_rejected(&short_run, "spec.chaos", message);
    // When the workload is omitted the API server defaults it (60s) before CEL runs.
    let defaulted = unset(pattern(), "/spec/workload");
    assert_admitted(&defaulted);
    assert_rejected(
        &set(defaulted, "/spec/chaos/2/at", json!("55s")),
        "spec.chaos",
        message,
    );
}

#[test]
fn fault_duration_is_more_than_zero() {
    assert_admitted(&set(pattern(), "/spec/chaos/0/duration", json!("1ms")));
    assert_rejected(
        &set(pattern(), "/spec/chaos/0/duration", json!("0s")),
        "spec.chaos[0].duration",
        "duration must be more than 0s",
    );
}

#[test]
fn fault_names_are_unique() {
    let duplicate = set(pattern(), "/spec/chaos/2/name", json!("catalog-down"));
    assert_rejected(
        &duplicate,
        "spec.chaos",
        "fault names (spec.chaos[].name) must be unique",
    );
}

#[test]
fn fault_names_are_dns_labels() {
    for bad in ["Catalog-Down", "catalog_down", "-down", ""] {
        let rejections = admit(&set(pattern(), "/spec/chaos/0/name", json!(bad)));
        assert!(
            !rejections.is_empty() && rejections.iter().all(|r| r.path == "spec.chaos[0].name"),
            "{bad:?}: {rejections:#?}"
        );
    }
    assert_rejected(
        &set(pattern(), "/spec/chaos/0/name", json!("a".repeat(41))),
        "spec.chaos[0].name",
        "Too long",
    );
}

#[test]
fn a_delay_needs_a_latency() {
    let without_latency = unset(
        unset(pattern(), "/spec/chaos/1/latency"),
        "/spec/chaos/1/jitter",
    );
    let rejection = assert_rejected(
        &without_latency,
        "spec.chaos[1].latency",
        "latency is required for a Delay fault",
    );
    assert_eq!(
        rejection.message,
        "latency is required for a Delay fault, e.g. latency: 100ms"
    );
}

#[test]
fn latency_and_jitter_only_for_a_delay() {
    let outage_with_latency = set(pattern(), "/spec/chaos/0/latency", json!("100ms"));
    assert_rejected(
        &outage_with_latency,
        "spec.chaos[0].latency",
        "latency is only allowed for a Delay fault",
    );
    let outage_with_jitter = set(pattern(), "/spec/chaos/0/jitter", json!("10ms"));
    assert_rejected(
        &outage_with_jitter,
        "spec.chaos[0].jitter",
        "jitter is only allowed for a Delay fault",
    );
}

#[test]
fn latency_is_more_than_zero_and_at_most_a_minute_and_jitter_at_most_a_minute() {
    assert_admitted(&set(pattern(), "/spec/chaos/1/latency", json!("1m")));
    for bad in ["0s", "61s"] {
        assert_rejected(
            &set(pattern(), "/spec/chaos/1/latency", json!(bad)),
            "spec.chaos[1].latency",
            "latency must be more than 0s and at most 1m",
        );
    }
    assert_admitted(&set(pattern(), "/spec/chaos/1/jitter", json!("0s")));
    assert_rejected(
        &set(pattern(), "/spec/chaos/1/jitter", json!("2m")),
        "spec.chaos[1].jitter",
        "jitter must be at most 1m",
    );
}

#[test]
fn fault_kinds_and_targets_are_known() {
    for kind in ["Outage", "Kill", "Partition"] {
        assert_admitted(&set(pattern(), "/spec/chaos/0/fault", json!(kind)));
    }
    assert_rejected(
        &set(pattern(), "/spec/chaos/0/fault", json!("Explode")),
        "spec.chaos[0].fault",
        "Unsupported value",
    );
    for target in ["orders", "catalog", "database", "broker"] {
        assert_admitted(&set(pattern(), "/spec/chaos/0/target", json!(target)));
    }
    assert_rejected(
        &set(pattern(), "/spec/chaos/0/target", json!("payments")),
        "spec.chaos[0].target",
        "Unsupported value",
    );
    assert_rejected(
        &set(pattern(), "/spec/chaos/0/target", json!("Catalog")),
        "spec.chaos[0].target",
        "Unsupported value",
    );
}

#[test]
fn a_broker_fault_needs_a_pattern_with_a_broker() {
    for name in commlab_api::Pattern::ALL {
        let object = set(pattern(), "/spec/pattern", json!(name.as_str()));
        if name.needs_broker() {
            assert_admitted(&object);
        } else {
            assert_rejected(
                &object,
                "spec.chaos",
                "target broker is only allowed for the patterns with a broker",
            );
            // The same plan without the broker fault is fine.
            let items = object["spec"]["chaos"].as_array().unwrap()[..2].to_vec();
            assert_admitted(&set(object, "/spec/chaos", Value::Array(items)));
        }
    }
}

#[test]
fn at_most_16_faults() {
    let fault = |i: usize| json!({ "name": format!("kill-{i}"), "fault": "Kill", "target": "orders", "at": format!("{i}s"), "duration": "1s" });
    let sixteen: Vec<_> = (0..16).map(fault).collect();
    assert_admitted(&set(pattern(), "/spec/chaos", Value::Array(sixteen)));
    let seventeen: Vec<_> = (0..17).map(fault).collect();
    assert_rejected(
        &set(pattern(), "/spec/chaos", Value::Array(seventeen)),
        "spec.chaos",
        "Too many",
    );
}

#[test]
fn availability_is_a_percentage_string() {
    for ok in ["99%", "99.9%", "99.99%", "0%", "100%", "100.0%"] {
        assert_admitted(&set(pattern(), "/spec/slo/availability", json!(ok)));
    }
    for bad in ["99", "0.99", "101%", "100.1%", "99.9 %", "high"] {
        assert_rejected(
            &set(pattern(), "/spec/slo/availability", json!(bad)),
            "spec.slo.availability",
            "should match",
        );
    }
    assert_rejected(
        &set(pattern(), "/spec/slo/availability", json!(99)),
        "spec.slo.availability",
        "must be of type string",
    );
}

#[test]
fn unknown_fields_are_rejected() {
    // `kubectl apply` validates fields strictly by default; a misspelt field
    // must not be dropped silently.
    assert_rejected(
        &set(pattern(), "/spec/workload/rps", json!(100)),
        "spec.workload.rps",
        "unknown field",
    );
}

#[test]
fn a_comparison_lists_each_pattern_once() {
    let all_six = set(
        comparison(),
        "/spec/patterns",
        json!(commlab_api::Pattern::ALL.map(|p| p.as_str())),
    );
    assert_admitted(&all_six);
    assert_admitted(&unset(comparison(), "/spec/patterns"));
    let twice = set(
        comparison(),
        "/spec/patterns",
        json!(["DirectApiCall", "AsyncPolling", "DirectApiCall"]),
    );
    assert_rejected(
        &twice,
        "spec.patterns",
        "each pattern may be listed only once in spec.patterns",
    );
    let unknown = set(comparison(), "/spec/patterns/1", json!("Carrier Pigeon"));
    assert_rejected(&unknown, "spec.patterns[1]", "Unsupported value");
}

#[test]
fn a_comparison_checks_its_chaos_plan_and_workload() {
    // A broker fault is fine in a comparison: it is skipped for the patterns without a broker.
    assert_admitted(&comparison());
    assert_rejected(
        &set(comparison(), "/spec/chaos/1/at", json!("55s")),
        "spec.chaos",
        "every fault must end inside the run",
    );
    assert_rejected(
        &set(comparison(), "/spec/chaos/1/name", json!("catalog-down")),
        "spec.chaos",
        "fault names (spec.chaos[].name) must be unique",
    );
    assert_rejected(
        &set(comparison(), "/spec/workload/rate", json!(0)),
        "spec.workload.rate",
        "rate must be more than 0",
    );
    assert_rejected(
        &set(comparison(), "/spec/rankBy", json!("performance")),
        "spec.rankBy",
        "Unsupported value",
    );
}
