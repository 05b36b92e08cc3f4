//! What the API server does to a manifest before storing it, reproduced
//! client-side: apply schema defaults, check the OpenAPI schema (the subset our
//! CRDs use), then evaluate the CEL rules with kube's client-side CEL.
//!
//! Errors are rendered as `<field path>: <message>`, with paths written the
//! way the API server writes them (`spec.chaos[0].latency`), so a test can
//! look for the same substring the e2e test looks for in the server's answer.

use std::path::{Path, PathBuf};

use commlab_api::{CommunicationPattern, PatternComparison};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::core::cel::{Validator, apply_defaults};
use serde_json::Value;

/// One rejection, as the API server would report it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub path: String,
    pub message: String,
    /// The API server skips CEL when the schema check found one of these
    /// (a missing field, an unsupported enum value, a value of the wrong type,
    /// a string or list that is too long); pattern and range errors do not block.
    pub blocks_cel: bool,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The root `openAPIV3Schema` of a CRD, as JSON.
pub fn schema_of(crd: &CustomResourceDefinition) -> Value {
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("derived CRD has a schema");
    serde_json::to_value(schema).unwrap()
}

/// The schema for a manifest's `kind`.
pub fn schema_for_kind(kind: &str) -> Value {
    match kind {
        "CommunicationPattern" => schema_of(&CommunicationPattern::crd()),
        "PatternComparison" => schema_of(&PatternComparison::crd()),
        other => panic!("unexpected kind {other:?}"),
    }
}

/// Everything the API server would reject in `object` (a whole manifest).
pub fn admit(object: &Value) -> Vec<Rejection> {
    let kind = object["kind"].as_str().expect("manifest has a kind");
    let schema = schema_for_kind(kind);
    let defaulted = apply_defaults(&schema, object);
    let mut rejections = Vec::new();
    check_schema(&schema, &defaulted, "", true, &mut rejections);
    if rejections.iter().any(|r| r.blocks_cel) {
        return rejections;
    }
    rejections.extend(cel_rejections(&schema, object));
    rejections
}

/// Only the CEL rules, as kube's client-side validator evaluates them
/// (it applies the schema defaults first, as the API server does).
pub fn cel_rejections(schema: &Value, object: &Value) -> Vec<Rejection> {
    match Validator::new().validate(schema, object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|e| Rejection {
                path: e.field_path.clone(),
                message: e.message.clone(),
                blocks_cel: false,
            })
            .collect(),
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn reject(out: &mut Vec<Rejection>, path: &str, message: String, blocks_cel: bool) {
    out.push(Rejection {
        path: path.to_owned(),
        message,
        blocks_cel,
    });
}

/// The OpenAPI checks the API server makes, for the keywords our CRDs use:
/// type, nullable, enum, required, properties (unknown fields are rejected,
/// as `kubectl apply` does with its default strict field validation), items,
/// maxItems, minLength, maxLength, pattern, minimum and maximum.
fn check_schema(schema: &Value, value: &Value, path: &str, root: bool, out: &mut Vec<Rejection>) {
    if value.is_null() {
        if schema["nullable"] != Value::Bool(true) {
            reject(out, path, "Invalid value: null".into(), true);
        }
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        reject(
            out,
            path,
            format!("Unsupported value: {value}: supported values: {allowed:?}"),
            true,
        );
        return;
    }
    let ty = schema["type"].as_str().unwrap_or_default();
    let type_ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        reject(
            out,
            path,
            format!("Invalid value: {value}: must be of type {ty}"),
            true,
        );
        return;
    }
    match value {
        Value::Object(fields) => {
            let properties = schema["properties"].as_object();
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap();
                if !fields.contains_key(name) {
                    reject(out, &join(path, name), "Required value".into(), true);
                }
            }
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
            for (name, field) in fields {
                match properties.and_then(|p| p.get(name)) {
                    Some(sub) => check_schema(sub, field, &join(path, name), false, out),
                    None if preserve
                        || (root
                            && ["apiVersion", "kind", "metadata"].contains(&name.as_str())) => {}
                    None if properties.is_some() => {
                        reject(out, &join(path, name), "unknown field".into(), true)
                    }
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                reject(
                    out,
                    path,
                    format!("Too many: {}: must have at most {max} items", items.len()),
                    true,
                );
            }
            for (i, item) in items.iter().enumerate() {
                check_schema(&schema["items"], item, &format!("{path}[{i}]"), false, out);
            }
        }
        Value::String(text) => {
            let chars = text.chars().count() as u64;
            if let Some(max) = schema["maxLength"].as_u64()
                && chars > max
            {
                reject(
                    out,
                    path,
                    format!("Too long: may not be more than {max} bytes"),
                    true,
                );
            }
            if let Some(min) = schema["minLength"].as_u64()
                && chars < min
            {
                reject(
                    out,
                    path,
                    format!("Invalid value: {text:?}: should be at least {min} chars long"),
                    false,
                );
            }
            if let Some(pattern) = schema["pattern"].as_str()
                && !regex::Regex::new(pattern).unwrap().is_match(text)
            {
                reject(
                    out,
                    path,
                    format!("Invalid value: {text:?}: {path} in body should match '{pattern}'"),
                    false,
                );
            }
        }
        Value::Number(n) => {
            let n = n.as_f64().unwrap();
            if let Some(min) = schema["minimum"].as_f64() {
                let exclusive = schema["exclusiveMinimum"] == Value::Bool(true);
                if n < min || (exclusive && n == min) {
                    reject(
                        out,
                        path,
                        format!(
                            "Invalid value: {n}: {path} in body should be greater than or equal to {min}"
                        ),
                        false,
                    );
                }
            }
            if let Some(max) = schema["maximum"].as_f64() {
                let exclusive = schema["exclusiveMaximum"] == Value::Bool(true);
                if n > max || (exclusive && n == max) {
                    reject(
                        out,
                        path,
                        format!(
                            "Invalid value: {n}: {path} in body should be less than or equal to {max}"
                        ),
                        false,
                    );
                }
            }
        }
        _ => {}
    }
}

/// The repository's `examples/` folder.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The `*.yaml` files directly in `dir`, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// A manifest read as plain JSON, the way the API server receives it.
pub fn read_manifest(path: &Path) -> (String, Value) {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let value: Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    (text, value)
}
