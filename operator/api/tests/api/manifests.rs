//! Manifests as users write them: YAML → typed object → YAML keeps every
//! field, omitted fields get the same defaults in Rust as in the CRD schema,
//! and the generated CRDs are what the API server can accept.

use commlab_api::{
    Axis, BrokerKind, CacheKind, CommunicationPattern, Duration, FaultKind, Pattern,
    PatternComparison, Replicas, Slo, Target, Workload, crd_files, crds, crds_yaml,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

use crate::support::{admit, schema_of};

const FULL: &str = r#"
apiVersion: commlab.dev/v1alpha1
kind: CommunicationPattern
metadata:
  name: cache-events
  namespace: demo
spec:
  pattern: CacheWithUpdateEvents
  components:
    broker: { kind: Nats }
    cache: { kind: InProcess }
    replicas: { orders: 2, catalog: 1 }
  workload:
    rate: 200.0
    duration: 1m30s
    warmup: 10s
    products: 1000
    updateRate: 5.0
    requestTimeout: 1500ms
    capacityProbe: true
  chaos:
    - { name: catalog-down, fault: Outage, target: catalog, at: 20s, duration: 15s }
    - { name: slow-catalog, fault: Delay, target: catalog, at: 45s, duration: 10s, latency: 100ms, jitter: 10ms }
    - { name: broker-down, fault: Outage, target: broker, at: 1m, duration: 20s }
  slo: { p99: 50ms, availability: "99.9%", maxStaleness: 5s }
"#;

#[test]
fn a_full_manifest_round_trips_unchanged() {
    let cp: CommunicationPattern = serde_yaml::from_str(FULL).unwrap();
    let spec = &cp.spec;
    assert_eq!(spec.pattern, Pattern::CacheWithUpdateEvents);
    assert_eq!(
        spec.components.broker.as_ref().unwrap().kind,
        BrokerKind::Nats
    );
    assert_eq!(
        spec.components.cache.as_ref().unwrap().kind,
        CacheKind::InProcess
    );
    assert_eq!(
        spec.components.replicas,
        Replicas {
            orders: 2,
            catalog: 1
        }
    );
    assert_eq!(
        spec.workload.duration.as_std(),
        std::time::Duration::from_secs(90)
    );
    assert_eq!(
        spec.workload.request_timeout.as_std(),
        std::time::Duration::from_millis(1500)
    );
    assert!(spec.workload.capacity_probe);
    assert_eq!(spec.chaos.len(), 3);
    assert_eq!(spec.chaos[1].fault, FaultKind::Delay);
    assert_eq!(spec.chaos[1].latency, Some(Duration::from_millis(100)));
    assert_eq!(spec.chaos[2].target, Target::Broker);
    let availability = spec.slo.as_ref().unwrap().availability_fraction().unwrap();
    assert!((availability - 0.999).abs() < 1e-12, "{availability}");

    // Written back, the manifest is the same document, durations spelt as the user wrote them.
    let written = serde_yaml::to_string(&cp).unwrap();
    let original: Value = serde_yaml::from_str(FULL).unwrap();
    let again: Value = serde_yaml::from_str(&written).unwrap();
    assert_eq!(again, original, "written back as:\n{written}");
    assert!(
        written.contains("duration: 1m30s") && written.contains("requestTimeout: 1500ms"),
        "{written}"
    );
    assert_eq!(
        serde_yaml::from_str::<CommunicationPattern>(&written).unwrap(),
        cp
    );
    assert_eq!(admit(&original), vec![]);
}

#[test]
fn omitted_fields_get_their_defaults() {
    let cp: CommunicationPattern = serde_yaml::from_str(
        "apiVersion: commlab.dev/v1alpha1\nkind: CommunicationPattern\nmetadata: { name: direct }\nspec: { pattern: DirectApiCall }\n",
    )
    .unwrap();
    let spec = &cp.spec;
    assert_eq!(spec.components.broker, None);
    assert_eq!(spec.components.cache, None);
    assert_eq!(
        spec.components.replicas,
        Replicas {
            orders: 1,
            catalog: 1
        }
    );
    assert_eq!(spec.workload, Workload::default());
    assert_eq!(spec.workload.rate, 200.0);
    assert_eq!(spec.workload.duration, Duration::from_secs(60));
    assert_eq!(spec.workload.warmup, Duration::from_secs(10));
    assert_eq!(spec.workload.products, 1000);
    assert_eq!(spec.workload.update_rate, 5.0);
    assert_eq!(spec.workload.request_timeout, Duration::from_secs(2));
    assert!(!spec.workload.capacity_probe);
    assert!(spec.chaos.is_empty());
    assert_eq!(spec.slo, None);
}

#[test]
fn partly_written_objects_default_the_rest() {
    let cp: CommunicationPattern = serde_yaml::from_str(
        "apiVersion: commlab.dev/v1alpha1\nkind: CommunicationPattern\nmetadata: { name: events }\nspec:\n  pattern: AsyncMessaging\n  components: { broker: {}, replicas: { orders: 3 } }\n  workload: { rate: 50 }\n",
    )
    .unwrap();
    assert_eq!(cp.spec.components.broker.unwrap().kind, BrokerKind::Nats);
    assert_eq!(
        cp.spec.components.replicas,
        Replicas {
            orders: 3,
            catalog: 1
        }
    );
    assert_eq!(
        cp.spec.workload,
        Workload {
            rate: 50.0,
            ..Workload::default()
        }
    );
}

#[test]
fn the_schema_defaults_are_the_rust_defaults() {
    // The API server fills omitted fields from the schema, the operator from
    // serde; both must arrive at the same object.
    let schema = schema_of(&CommunicationPattern::crd());
    let spec = &schema["properties"]["spec"]["properties"];
    assert_eq!(
        spec["workload"]["default"],
        serde_json::to_value(Workload::default()).unwrap()
    );
    assert_eq!(
        spec["components"]["default"],
        json!({ "replicas": { "orders": 1, "catalog": 1 } })
    );
    assert_eq!(
        spec["components"]["properties"]["replicas"]["default"],
        serde_json::to_value(Replicas::default()).unwrap()
    );

    // And an object the API server defaulted reads back as the Rust default.
    let minimal = json!({
        "apiVersion": "commlab.dev/v1alpha1", "kind": "CommunicationPattern",
        "metadata": { "name": "x" }, "spec": { "pattern": "SharedData", "workload": { "rate": 10 } }
    });
    let defaulted = kube::core::cel::apply_defaults(&schema, &minimal);
    let cp: CommunicationPattern = serde_json::from_value(defaulted).unwrap();
    let plain: CommunicationPattern = serde_json::from_value(minimal).unwrap();
    assert_eq!(cp, plain);

    let comparison = schema_of(&PatternComparison::crd());
    assert_eq!(
        comparison["properties"]["spec"]["properties"]["rankBy"]["default"],
        json!("Performance")
    );
}

#[test]
fn typed_objects_pass_client_side_cel() {
    let cp: CommunicationPattern = serde_yaml::from_str(FULL).unwrap();
    kube::core::cel::validate_cel(&cp).unwrap();

    let mut late = cp.clone();
    late.spec.chaos[2].duration = Duration::from_secs(31);
    let errors = kube::core::cel::validate_cel(&late).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    assert_eq!(errors[0].field_path, "spec.chaos");
}

#[test]
fn a_comparison_without_patterns_runs_all_six() {
    let pc: PatternComparison = serde_yaml::from_str(
        "apiVersion: commlab.dev/v1alpha1\nkind: PatternComparison\nmetadata: { name: all }\nspec: {}\n",
    )
    .unwrap();
    assert_eq!(pc.spec.patterns(), Pattern::ALL.to_vec());
    assert_eq!(pc.spec.rank_by, Axis::Performance);
    assert_eq!(pc.spec.workload, Workload::default());
    let written = serde_yaml::to_string(&pc.spec).unwrap();
    assert!(
        !written.contains("patterns"),
        "an empty list is left out: {written}"
    );
}

#[test]
fn availability_reads_as_a_fraction() {
    let slo = |a: &str| Slo {
        availability: Some(a.into()),
        ..Slo::default()
    };
    assert_eq!(slo("99%").availability_fraction(), Some(0.99));
    assert_eq!(slo("100%").availability_fraction(), Some(1.0));
    assert_eq!(slo("99").availability_fraction(), None);
    assert_eq!(slo("120%").availability_fraction(), None);
    assert_eq!(Slo::default().availability_fraction(), None);
}

#[test]
fn crd_files_are_named_after_the_crds() {
    let files = crd_files().unwrap();
    let names: Vec<_> = files.iter().map(|f| f.file_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "communicationpatterns.commlab.dev.yaml",
            "patterncomparisons.commlab.dev.yaml"
        ]
    );
    for (file, crd) in files.iter().zip(crds()) {
        assert!(
            file.yaml.starts_with("# Generated by"),
            "{}",
            file.file_name
        );
        let parsed: CustomResourceDefinition = serde_yaml::from_str(&file.yaml).unwrap();
        assert_eq!(parsed, crd);
    }
    // `commlab-operator crd` prints both as one stream for `kubectl apply -f -`.
    let stream = crds_yaml().unwrap();
    let documents: Vec<CustomResourceDefinition> = serde_yaml::Deserializer::from_str(&stream)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .collect();
    assert_eq!(documents, crds());
}
