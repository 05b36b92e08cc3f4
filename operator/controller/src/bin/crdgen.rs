//! Writes the CustomResourceDefinitions to `crds/` and to the chart's
//! `charts/commlab/crds/`, one file per CRD:
//!
//! ```sh
//! cargo run -p commlab-controller --bin crdgen            # write both folders
//! cargo run -p commlab-controller --bin crdgen -- --check # fail if either is stale
//! ```
//!
//! The YAML comes from `commlab_api::crd_files`, the same source as
//! `commlab-operator crd`, so the committed files, the chart and the operator
//! cannot disagree.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "crdgen",
    about = "Write the commlab.dev CRDs to crds/ and charts/commlab/crds/"
)]
struct Args {
    /// Compare the files instead of writing them; exit non-zero when they differ.
    #[arg(long)]
    check: bool,
    /// Where the CRD files live; repeat for several folders (default: the
    /// repository's `crds/` and `charts/commlab/crds/`).
    #[arg(long)]
    dir: Vec<PathBuf>,
}

fn main() -> ExitCode {
    // A plain message, not anyhow's Debug output: CI shows it as it is.
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crdgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let dirs = if args.dir.is_empty() {
        repository_crds_dirs()
    } else {
        args.dir
    };
    let files = commlab_api::crd_files().context("rendering the CRDs")?;
    if args.check {
        let mut stale = Vec::new();
        for dir in &dirs {
            stale.extend(check(dir, &files)?);
        }
        if !stale.is_empty() {
            anyhow::bail!(
                "the generated CRDs are stale:\n  {}\nRun `cargo run -p commlab-controller --bin crdgen` and commit the result.",
                stale.join("\n  ")
            );
        }
        for dir in &dirs {
            println!("{} CRDs in {} are up to date", files.len(), dir.display());
        }
        return Ok(());
    }
    for dir in &dirs {
        write(dir, &files)?;
    }
    Ok(())
}

/// What is stale in `dir`: files that differ from the generated ones, are
/// missing, or were not generated.
fn check(dir: &Path, files: &[commlab_api::CrdFile]) -> anyhow::Result<Vec<String>> {
    let mut stale = Vec::new();
    for file in files {
        let path = dir.join(&file.file_name);
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == file.yaml => {}
            Ok(committed) => stale.push(format!(
                "{} differs from the generated CRD ({})",
                path.display(),
                first_difference(&committed, &file.yaml)
            )),
            Err(e) => stale.push(format!("{} cannot be read: {e}", path.display())),
        }
    }
    if dir.is_dir() {
        for extra in unexpected_files(dir, files)? {
            stale.push(format!(
                "{} is not a generated CRD; remove it",
                extra.display()
            ));
        }
    }
    Ok(stale)
}

/// Writes every generated CRD into `dir`.
fn write(dir: &Path, files: &[commlab_api::CrdFile]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for file in files {
        let path = dir.join(&file.file_name);
        std::fs::write(&path, &file.yaml).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `crds/` and the chart's `charts/commlab/crds/` in the repository this
/// binary was built from (`operator/controller/../..`).
fn repository_crds_dirs() -> Vec<PathBuf> {
    let controller = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = controller
        .parent()
        .and_then(Path::parent)
        .unwrap_or(controller);
    vec![root.join("crds"), root.join("charts/commlab/crds")]
}

/// `*.yaml` files in `dir` that crdgen did not generate.
fn unexpected_files(dir: &Path, files: &[commlab_api::CrdFile]) -> anyhow::Result<Vec<PathBuf>> {
    let mut extra = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.ends_with(".yaml") && !files.iter().any(|f| f.file_name == name) {
            extra.push(path);
        }
    }
    extra.sort();
    Ok(extra)
}

/// Where two texts first differ, for the error message.
fn first_difference(committed: &str, generated: &str) -> String {
    let mut committed_lines = committed.lines();
    let mut generated_lines = generated.lines();
    for number in 1.. {
        match (committed_lines.next(), generated_lines.next()) {
            (Some(a), Some(b)) if a == b => continue,
            (Some(a), Some(b)) => {
                return format!(
                    "line {number}: committed `{}`, generated `{}`",
                    a.trim(),
                    b.trim()
                );
            }
            (Some(_), None) => return format!("the committed file is longer, from line {number}"),
            (None, Some(_)) => return format!("the committed file ends at line {}", number - 1),
            (None, None) => break,
        }
    }
    "line endings differ".to_owned()
}
