//! Properties of the generated CRDs that the API server insists on: every CEL
//! rule compiles and stays within the cost budget, which needs every list and
//! string a rule can reach to be bounded; the limits in the rules match the
//! constants the operator uses.

use commlab_api::communication_pattern::{
    MAX_FAULTS, MAX_RATE, MAX_REPLICAS, MAX_RUN, MAX_UPDATE_RATE, MAX_WARMUP,
};
use commlab_api::crds;
use kube::core::cel::{CompiledSchema, compile_schema, estimate_rule_cost};
use serde_json::Value;

use crate::support::schema_of;

/// Every `(path, rule)` in a schema tree.
fn rules(schema: &Value, path: &str, out: &mut Vec<(String, String)>) {
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push((path.to_owned(), rule["rule"].as_str().unwrap().to_owned()));
    }
    for (name, sub) in schema["properties"].as_object().into_iter().flatten() {
        rules(sub, &format!("{path}.{name}"), out);
    }
    if schema.get("items").is_some() {
        rules(&schema["items"], &format!("{path}[]"), out);
    }
}

fn spec_rules() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for crd in crds() {
        rules(
            &schema_of(&crd)["properties"]["spec"],
            &format!("{}:spec", crd.spec.names.kind),
            &mut out,
        );
    }
    out
}

#[test]
fn every_rule_compiles_and_stays_within_the_cost_budget() {
    fn walk(node: &CompiledSchema, path: &str) {
        for compiled in &node.validations {
            let compiled = compiled
                .as_ref()
                .unwrap_or_else(|e| panic!("{path}: {e:?}"));
            // kube-cel's coarse estimate (unbounded lists, comprehension cost);
            // its scope check is left out: it mistakes the variables that
            // `all`/`exists_one` bind (`f`, `g`) for undeclared ones.
            let warnings = estimate_rule_cost(&compiled.rule.rule, node);
            assert!(
                warnings.is_empty(),
                "{path}: {}: {warnings:#?}",
                compiled.rule.rule
            );
        }
        for (name, child) in &node.properties {
            walk(child, &format!("{path}.{name}"));
        }
        if let Some(items) = &node.items {
            walk(items, &format!("{path}[]"));
        }
    }
    for crd in crds() {
        walk(&compile_schema(&schema_of(&crd)), &crd.spec.names.kind);
    }
}

#[test]
fn lists_and_strings_in_the_spec_are_bounded() {
    // The API server estimates a rule's worst-case cost from maxItems and
    // maxLength (or an enum's longest value); unbounded, the estimate assumes
    // a 3 MiB request and rejects the CRD.
    fn walk(schema: &Value, path: &str) {
        match schema["type"].as_str() {
            Some("array") => {
                assert!(schema["maxItems"].is_u64(), "{path} has no maxItems");
                walk(&schema["items"], &format!("{path}[]"));
            }
            Some("string") => {
                assert!(
                    schema["maxLength"].is_u64() || schema["enum"].is_array(),
                    "{path} has no maxLength"
                );
            }
            Some("object") => {
                for (name, sub) in schema["properties"].as_object().into_iter().flatten() {
                    walk(sub, &format!("{path}.{name}"));
                }
            }
            _ => {}
        }
    }
    for crd in crds() {
        walk(
            &schema_of(&crd)["properties"]["spec"],
            &format!("{}:spec", crd.spec.names.kind),
        );
    }
}

#[test]
fn defaults_sit_only_on_optional_fields() {
    // A default on a required field never applies; the API server would
    // reject neither, but it would mislead a reader of `kubectl explain`.
    fn walk(schema: &Value, path: &str) {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for (name, sub) in schema["properties"].as_object().into_iter().flatten() {
            assert!(
                !(required.contains(&name.as_str()) && sub.get("default").is_some()),
                "{path}.{name}"
            );
            walk(sub, &format!("{path}.{name}"));
        }
        if schema.get("items").is_some() {
            walk(&schema["items"], &format!("{path}[]"));
        }
    }
    for crd in crds() {
        walk(&schema_of(&crd), &crd.spec.names.kind);
    }
}

#[test]
fn the_limits_in_the_rules_are_the_published_constants() {
    let all: Vec<String> = spec_rules()
        .into_iter()
        .map(|(path, rule)| format!("{path}: {rule}"))
        .collect();
    let has = |needle: &str| all.iter().any(|r| r.contains(needle));
    assert!(has(&format!("self <= {MAX_RATE:?}")), "MAX_RATE {MAX_RATE}");
    assert!(
        has(&format!("self <= {MAX_UPDATE_RATE:?}")),
        "MAX_UPDATE_RATE {MAX_UPDATE_RATE}"
    );
    assert!(
        has(&format!("duration(self) <= duration('{MAX_RUN}')")),
        "MAX_RUN {MAX_RUN}"
    );
    assert!(
        has(&format!("duration(self) <= duration('{MAX_WARMUP}')")),
        "MAX_WARMUP {MAX_WARMUP}"
    );

    let schema = schema_of(&<commlab_api::CommunicationPattern as kube::CustomResourceExt>::crd());
    let spec = &schema["properties"]["spec"]["properties"];
    assert_eq!(spec["chaos"]["maxItems"].as_u64(), Some(MAX_FAULTS as u64));
    let replicas = &spec["components"]["properties"]["replicas"]["properties"];
    assert_eq!(
        replicas["orders"]["maximum"].as_f64(),
        Some(f64::from(MAX_REPLICAS))
    );
    assert_eq!(
        replicas["catalog"]["maximum"].as_f64(),
        Some(f64::from(MAX_REPLICAS))
    );
}
