//! Reading manifests the way `kubectl apply` would judge them, so that
//! `commlab run FILE.yaml` refuses what the API server refuses, naming the
//! field: the YAML must parse, every field must be known and of the right
//! type (serde, with the path of the field it failed on), and the spec must
//! pass the CRD's schema bounds and CEL rules
//! ([`CommunicationPatternSpec::validate`]).

use std::{fmt, path::Path};

use commlab_api::{
    CommunicationPattern, CommunicationPatternSpec, Fault, PatternComparison, PatternComparisonSpec,
};
use serde::de::DeserializeOwned;
use serde_json::Value as Json;

/// The API version every commlab manifest is written for.
pub const API_VERSION: &str = "commlab.dev/v1alpha1";

/// A manifest commlab can run.
#[derive(Clone, Debug, PartialEq)]
pub enum Manifest {
    Pattern {
        name: String,
        spec: CommunicationPatternSpec,
    },
    Comparison {
        name: String,
        spec: PatternComparisonSpec,
    },
}

/// Why a manifest was refused: where, which field, what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// The file, or what stands for it.
    pub origin: String,
    /// One line per problem, each starting with the field it is about
    /// (`spec.chaos[0].latency: ...`) when there is one.
    pub problems: Vec<String>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "{} is invalid: {one}", self.origin),
            many => {
                write!(f, "{} is invalid:", self.origin)?;
                for problem in many {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl ManifestError {
    fn new(origin: &str, problem: impl Into<String>) -> Self {
        Self {
            origin: origin.to_owned(),
            problems: vec![problem.into()],
        }
    }
}

/// Reads and judges the manifest in `path`.
pub fn read_manifest(path: &Path) -> Result<Manifest, ManifestError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|error| ManifestError::new(&origin, format!("cannot read it: {error}")))?;
    parse_manifest(&text, &origin)
}

/// Judges one YAML document holding a CommunicationPattern or a PatternComparison.
pub fn parse_manifest(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
    let document = single_document(text, origin)?;
    let api_version = document.get("apiVersion").and_then(Json::as_str);
    if api_version != Some(API_VERSION) {
        return Err(ManifestError::new(
            origin,
            format!(
                "apiVersion: must be `{API_VERSION}`, not {}",
                api_version.map_or("missing".to_owned(), |v| format!("`{v}`"))
            ),
        ));
    }
    match document.get("kind").and_then(Json::as_str) {
        Some("CommunicationPattern") => {
            let resource: CommunicationPattern = typed(&document, origin)?;
            refuse_unknown_fields(&document, &resource, origin)?;
            resource.spec.validate().map_err(|invalid| ManifestError {
                origin: origin.to_owned(),
                problems: invalid.problems.iter().map(ToString::to_string).collect(),
            })?;
            Ok(Manifest::Pattern {
                name: resource.metadata.name.unwrap_or_default(),
                spec: resource.spec,
            })
        }
        Some("PatternComparison") => {
            let resource: PatternComparison = typed(&document, origin)?;
            refuse_unknown_fields(&document, &resource, origin)?;
            resource.spec.validate().map_err(|invalid| ManifestError {
                origin: origin.to_owned(),
                problems: invalid.problems.iter().map(ToString::to_string).collect(),
            })?;
            Ok(Manifest::Comparison {
                name: resource.metadata.name.unwrap_or_default(),
                spec: resource.spec,
            })
        }
        other => Err(ManifestError::new(
            origin,
            format!(
                "kind: must be CommunicationPattern or PatternComparison, not {}",
                other.map_or("missing".to_owned(), |k| format!("`{k}`"))
            ),
        )),
    }
}

/// A chaos plan: a YAML list of faults as in `spec.chaos`, or a manifest
/// whose `spec.chaos` is taken.
pub fn read_chaos(path: &Path) -> Result<Vec<Fault>, ManifestError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|error| ManifestError::new(&origin, format!("cannot read it: {error}")))?;
    parse_chaos(&text, &origin)
}

/// See [`read_chaos`]. Fields are named as in a manifest (`spec.chaos[0].at`).
pub fn parse_chaos(text: &str, origin: &str) -> Result<Vec<Fault>, ManifestError> {
    let document = single_document(text, origin)?;
    let (plan, base) = match &document {
        Json::Array(_) => (document.clone(), "spec.chaos"),
        Json::Object(fields) if fields.contains_key("spec") => {
            (document["spec"]["chaos"].clone(), "spec.chaos")
        }
        Json::Object(fields) if fields.contains_key("chaos") => {
            (document["chaos"].clone(), "spec.chaos")
        }
        _ => {
            return Err(ManifestError::new(
                origin,
                "must be a list of faults as in spec.chaos, or a manifest with spec.chaos",
            ));
        }
    };
    let plan = if plan.is_null() {
        Json::Array(Vec::new())
    } else {
        plan
    };
    let faults: Vec<Fault> = serde_path_to_error::deserialize(&plan).map_err(|error| {
        let path = error.path().to_string();
        let field = match path.as_str() {
            "" | "." => base.to_owned(),
            indexed if indexed.starts_with('[') => format!("{base}{indexed}"),
            other => format!("{base}.{other}"),
        };
        ManifestError::new(origin, format!("{field}: {}", error.inner()))
    })?;
    Ok(faults)
}

/// The one YAML document of `text`, as JSON (so serde reports paths the
/// way the API server does).
fn single_document(text: &str, origin: &str) -> Result<Json, ManifestError> {
    use serde::Deserialize;
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|error| ManifestError::new(origin, format!("not valid YAML: {error}")))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    let value = match documents.len() {
        1 => documents.remove(0),
        0 => return Err(ManifestError::new(origin, "is empty")),
        n => {
            return Err(ManifestError::new(
                origin,
                format!("holds {n} YAML documents; give one manifest per file"),
            ));
        }
    };
    serde_json::to_value(value)
        .map_err(|error| ManifestError::new(origin, format!("not a manifest: {error}")))
}

/// `document` as `T`, naming the field serde failed on.
fn typed<T: DeserializeOwned>(document: &Json, origin: &str) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(document).map_err(|error| {
        let path = field_path(&error.path().to_string());
        ManifestError::new(origin, format!("{path}: {}", error.inner()))
    })
}

/// serde_path_to_error's `spec.chaos[0].latency` is already the API
/// server's form; an empty path is the document itself.
fn field_path(path: &str) -> String {
    if path.is_empty() || path == "." {
        "(the document)".to_owned()
    } else {
        path.to_owned()
    }
}

/// Fields of `spec` the types do not know (a typo such as `updaterate`),
/// which the API server's strict field validation rejects. Found by reading
/// the typed resource back: a known field is written back, an unknown one
/// is not.
fn refuse_unknown_fields<T: serde::Serialize>(
    document: &Json,
    typed: &T,
    origin: &str,
) -> Result<(), ManifestError> {
    let written = serde_json::to_value(typed).unwrap_or(Json::Null);
    let mut unknown = Vec::new();
    collect_unknown(&document["spec"], &written["spec"], "spec", &mut unknown);
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ManifestError {
            origin: origin.to_owned(),
            problems: unknown
                .into_iter()
                .map(|field| format!("{field}: unknown field"))
                .collect(),
        })
    }
}

fn collect_unknown(given: &Json, written: &Json, path: &str, out: &mut Vec<String>) {
    match (given, written) {
        (Json::Object(given), Json::Object(written)) => {
            for (key, value) in given {
                let field = format!("{path}.{key}");
                match written.get(key) {
                    Some(inner) => collect_unknown(value, inner, &field, out),
                    // Empty and null values are left out when written back.
                    None if is_empty(value) => {}
                    None => out.push(field),
                }
            }
        }
        (Json::Array(given), Json::Array(written)) => {
            for (i, (value, inner)) in given.iter().zip(written).enumerate() {
                collect_unknown(value, inner, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn is_empty(value: &Json) -> bool {
    match value {
        Json::Null => true,
        Json::Array(items) => items.is_empty(),
        Json::Object(fields) => fields.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use commlab_api::Pattern;

    use super::*;

    fn examples() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
    }

    fn yaml_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn every_example_is_accepted() {
        let files = yaml_files(&examples());
        assert!(files.len() >= 7);
        for path in files {
            let manifest = read_manifest(&path).unwrap_or_else(|e| panic!("{e}"));
            if let Manifest::Pattern { name, .. } = manifest {
                assert!(!name.is_empty());
            }
        }
    }

    /// Every invalid example is refused with the text the API server's
    /// error contains (the `# expect:` line of the file).
    #[test]
    fn every_invalid_example_is_refused_as_the_api_server_would() {
        let files = yaml_files(&examples().join("invalid"));
        assert!(files.len() >= 18);
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            let expect = text
                .lines()
                .next()
                .and_then(|line| line.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{} has no # expect: line", path.display()));
            let error = read_manifest(&path)
                .err()
                .unwrap_or_else(|| panic!("{} was accepted", path.display()));
            assert!(
                error.to_string().contains(expect),
                "{}: `{error}` lacks `{expect}`",
                path.display()
            );
        }
    }

    #[test]
    fn parse_errors_name_the_field() {
        let text = "apiVersion: commlab.dev/v1alpha1\nkind: CommunicationPattern\nmetadata: {name: x}\nspec:\n  pattern: DirectApiCall\n  workload: {rate: fast}\n";
        let error = parse_manifest(text, "x.yaml").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("x.yaml is invalid: spec.workload.rate: invalid type"),
            "{error}"
        );
        let text = "apiVersion: commlab.dev/v1alpha1\nkind: CommunicationPattern\nspec:\n  pattern: DirectApiCall\n  chaos:\n  - {name: a, fault: Outage, target: catalog, at: 1s, duration: 1x}\n";
        let error = parse_manifest(text, "x.yaml").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("spec.chaos[0].duration: `1x` is not a duration"),
            "{error}"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = "apiVersion: commlab.dev/v1alpha1\nkind: CommunicationPattern\nmetadata: {name: x}\nspec:\n  pattern: SharedData\n  workload: {updaterate: 5}\n  chaos: []\n";
        let error = parse_manifest(text, "x.yaml").unwrap_err();
        assert_eq!(
            error.problems,
            vec!["spec.workload.updaterate: unknown field"]
        );
    }

    #[test]
    fn kind_version_and_documents_are_checked() {
        let error = parse_manifest("apiVersion: v1\nkind: ConfigMap\n", "x").unwrap_err();
        assert!(error.problems[0].starts_with("apiVersion:"), "{error}");
        let error =
            parse_manifest("apiVersion: commlab.dev/v1alpha1\nkind: Pod\n", "x").unwrap_err();
        assert!(error.problems[0].starts_with("kind:"), "{error}");
        let two = "apiVersion: commlab.dev/v1alpha1\nkind: CommunicationPattern\nspec: {pattern: SharedData}\n---\napiVersion: commlab.dev/v1alpha1\nkind: CommunicationPattern\nspec: {pattern: SharedData}\n";
        assert!(parse_manifest(two, "x").unwrap_err().problems[0].contains("2 YAML documents"));
        assert!(parse_manifest("a: [", "x").unwrap_err().problems[0].starts_with("not valid YAML"));
    }

    #[test]
    fn a_comparison_reads_its_patterns() {
        let Manifest::Comparison { spec, .. } =
            read_manifest(&examples().join("compare-all.yaml")).unwrap()
        else {
            panic!("not a comparison");
        };
        assert_eq!(spec.patterns(), Pattern::ALL.to_vec());
    }

    #[test]
    fn chaos_plans_are_lists_or_manifests() {
        let list =
            "- {name: a, fault: Delay, target: catalog, at: 1s, duration: 2s, latency: 50ms}\n";
        assert_eq!(parse_chaos(list, "c").unwrap()[0].name, "a");
        let from_manifest = read_chaos(&examples().join("direct-api-call.yaml")).unwrap();
        assert_eq!(from_manifest.len(), 2);
        let bad = "- {name: a, fault: Delay, target: catalog, at: 1s, duration: soon}\n";
        let error = parse_chaos(bad, "c").unwrap_err();
        assert!(
            error.problems[0].starts_with("spec.chaos[0].duration:"),
            "{error}"
        );
        assert!(parse_chaos("rate: 5\n", "c").is_err());
    }
}
