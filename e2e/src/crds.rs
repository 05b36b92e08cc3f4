//! Installing CRDs in tests: commlab's own, as `crdgen` renders them, and
//! the minimal Chaos Mesh definitions of `e2e/fixtures/chaos-mesh-crds.yaml`
//! (no Chaos Mesh controller runs here, so chaos objects are stored, never
//! acted on).

use std::fmt::Debug;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt as _};
use serde::Serialize;

use crate::{has_condition, wait_for};

/// The field manager of every CRD a test applies.
const FIELD_MANAGER: &str = "commlab-tests";
/// How long an applied CRD may take to be Established.
const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);
/// The label the fixture's CRDs carry, telling them from a real Chaos Mesh's.
const CHAOS_FIXTURE_LABEL: (&str, &str) = ("commlab.dev/test-fixture", "chaos-mesh-crds");

/// Server-side applies the CRD `body` named `name` and waits until it is
/// Established; returns it as the API server has it.
pub async fn apply_established(
    crds: &Api<CustomResourceDefinition>,
    name: &str,
    body: &(impl Serialize + Debug),
) -> anyhow::Result<CustomResourceDefinition> {
    crds.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .with_context(|| format!("the API server refused CRD {name}"))?;
    wait_for(
        crds,
        name,
        ESTABLISHED_TIMEOUT,
        "condition Established",
        |crd: Option<&CustomResourceDefinition>| {
            crd.is_some_and(|crd| has_condition(crd, "Established"))
        },
    )
    .await
}

/// Applies commlab's CRDs as `crdgen` renders them.
pub async fn install_commlab_crds(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in commlab_api::crds() {
        apply_established(&crds, &crd.name_any(), &crd).await?;
    }
    Ok(())
}

/// Applies the fixture's PodChaos and NetworkChaos CRDs. CRDs of those names
/// that are not the fixture's (a real Chaos Mesh) are used as they are; the
/// fixture's are left installed for the next test.
pub async fn install_chaos_mesh_crds(client: &Client) -> anyhow::Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/chaos-mesh-crds.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for document in serde_yaml::Deserializer::from_str(&text) {
        let crd: CustomResourceDefinition = serde::Deserialize::deserialize(document)
            .with_context(|| format!("parsing {}", path.display()))?;
        let name = crd.name_any();
        if let Some(existing) = crds.get_opt(&name).await? {
            let from_fixture = existing
                .labels()
                .get(CHAOS_FIXTURE_LABEL.0)
                .is_some_and(|value| value == CHAOS_FIXTURE_LABEL.1);
            if !from_fixture {
                eprintln!("using the cluster's own CRD {name}, not the fixture");
                continue;
            }
        }
        apply_established(&crds, &name, &crd).await?;
    }
    Ok(())
}
