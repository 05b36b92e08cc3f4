//! The manifests in `examples/`: every valid one reads into its type, writes
//! back unchanged and is admitted; every one in `examples/invalid/` is
//! rejected, for the reason its `# expect:` line names.

use std::path::Path;

use commlab_api::{CommunicationPattern, Pattern, PatternComparison};
use serde_json::Value;

use kube::core::cel::apply_defaults;

use crate::support::{admit, examples_dir, read_manifest, schema_for_kind, yaml_files};

/// The example for each pattern, as the README and DESIGN.md name them.
const PATTERN_EXAMPLES: [(Pattern, &str); 6] = [
    (Pattern::SharedData, "shared-data.yaml"),
    (Pattern::DirectApiCall, "direct-api-call.yaml"),
    (Pattern::AsyncPolling, "async-polling.yaml"),
    (Pattern::AsyncMessaging, "async-messaging.yaml"),
    (Pattern::CacheWithApiUpdates, "cache-with-api-updates.yaml"),
    (
        Pattern::CacheWithUpdateEvents,
        "cache-with-update-events.yaml",
    ),
];

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// `value` with every number as a float: `rate: 200` and `rate: 200.0` are
/// the same to the API server and to serde, not to `Value`'s `==`.
fn numbers_as_floats(value: Value) -> Value {
    match value {
        Value::Number(n) => Value::from(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_floats).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, numbers_as_floats(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Reads `value` into its typed resource and writes it back; the result must
/// be the object the API server stores: the same document with the schema's
/// defaults filled in.
fn round_trip(path: &Path, value: &Value) {
    let written = match value["kind"].as_str() {
        Some("CommunicationPattern") => {
            let cp: CommunicationPattern = serde_json::from_value(value.clone())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            kube::core::cel::validate_cel(&cp)
                .unwrap_or_else(|e| panic!("{}: typed object fails CEL: {e}", path.display()));
            serde_json::to_value(&cp).unwrap()
        }
        Some("PatternComparison") => {
            let pc: PatternComparison = serde_json::from_value(value.clone())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            kube::core::cel::validate_cel(&pc)
                .unwrap_or_else(|e| panic!("{}: typed object fails CEL: {e}", path.display()));
            serde_json::to_value(&pc).unwrap()
        }
        other => panic!("{}: unexpected kind {other:?}", path.display()),
    };
    let stored = apply_defaults(&schema_for_kind(value["kind"].as_str().unwrap()), value);
    assert_eq!(
        numbers_as_floats(written),
        numbers_as_floats(stored),
        "{} changes when read and written back",
        path.display()
    );
}

#[test]
fn every_valid_example_is_admitted_and_round_trips() {
    let files = yaml_files(&examples_dir());
    assert!(files.len() >= 7, "{files:?}");
    for path in &files {
        let (text, value) = read_manifest(path);
        assert!(
            text.starts_with('#'),
            "{} should open with a comment saying what it shows",
            path.display()
        );
        let rejections = admit(&value);
        assert!(rejections.is_empty(), "{}: {rejections:#?}", path.display());
        round_trip(path, &value);
    }
}

#[test]
fn there_is_one_example_per_pattern_and_a_comparison_of_all_six() {
    let dir = examples_dir();
    for (pattern, file) in PATTERN_EXAMPLES {
        let (_, value) = read_manifest(&dir.join(file));
        let cp: CommunicationPattern = serde_json::from_value(value).unwrap();
        assert_eq!(cp.spec.pattern, pattern, "{file}");
        assert!(!cp.spec.chaos.is_empty(), "{file} has no chaos plan");
        let targets: Vec<_> = cp.spec.chaos.iter().map(|f| (f.fault, f.target)).collect();
        use commlab_api::{FaultKind::*, Target::*};
        assert!(
            targets.contains(&(Outage, Catalog)) && targets.contains(&(Delay, Catalog)),
            "{file}: {targets:?}"
        );
        if pattern.needs_broker() {
            assert!(
                targets.iter().any(|(_, t)| *t == Broker),
                "{file} has no broker fault"
            );
            assert!(
                cp.spec.components.broker.is_some(),
                "{file} names no broker"
            );
        }
        if pattern == Pattern::SharedData {
            assert!(
                targets.contains(&(Outage, Database)),
                "{file} has no database outage"
            );
        }
    }
    let (_, value) = read_manifest(&dir.join("compare-all.yaml"));
    let pc: PatternComparison = serde_json::from_value(value).unwrap();
    let mut patterns = pc.spec.patterns();
    patterns.sort();
    assert_eq!(patterns, Pattern::ALL.to_vec());
}

#[test]
fn every_invalid_example_is_rejected_for_its_stated_reason() {
    let dir = examples_dir().join("invalid");
    let files = yaml_files(&dir);
    assert!(files.len() >= 12, "{files:?}");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for path in &files {
        let file = name(path);
        let (text, value) = read_manifest(path);
        let expect = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{file} must start with `# expect: <substring>`"))
            .trim();
        assert!(!expect.is_empty(), "{file}: empty expectation");
        assert!(
            readme.contains(&format!("`{file}`")),
            "examples/invalid/README.md does not list {file}"
        );

        let rejections = admit(&value);
        assert!(
            !rejections.is_empty(),
            "{file} is admitted but should fail with {expect:?}"
        );
        // One broken rule per file: every rejection is about the same thing.
        for rejection in &rejections {
            assert!(
                rejection.to_string().contains(expect),
                "{file}: {rejection} does not contain {expect:?}; all: {rejections:#?}"
            );
        }
    }
}

#[test]
fn invalid_examples_break_only_their_own_rule() {
    // Each invalid example is a valid manifest with one thing changed; the
    // names must not collide with the valid examples' objects.
    let valid: Vec<String> = yaml_files(&examples_dir())
        .iter()
        .map(|p| {
            read_manifest(p).1["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for path in yaml_files(&examples_dir().join("invalid")) {
        let (_, value) = read_manifest(&path);
        let object_name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no name", path.display()));
        assert!(
            object_name.starts_with("invalid-"),
            "{}: name it invalid-…",
            path.display()
        );
        assert!(!valid.contains(&object_name.to_owned()));
    }
}
