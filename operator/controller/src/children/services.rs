//! orders and catalog: the two services of the reference scenario, both
//! running the `commlab` binary, configured through one ConfigMap of
//! `COMMLAB_*` environment variables (the same names the binary reads
//! locally, see docs/protocol.md).

use std::collections::BTreeMap;

use commlab_api::CommunicationPattern;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};

use super::{
    BuildInputs, CATALOG, Children, MetaFn, Names, ORDERS, SERVICE_PORT, broker, database, digest,
    from_json, service,
};
use crate::labels;

/// Annotation on pod templates carrying the configuration's digest.
pub const CONFIG_DIGEST: &str = "commlab.dev/config-digest";

pub(super) fn add(
    children: &mut Children,
    cp: &CommunicationPattern,
    names: &Names,
    inputs: &BuildInputs,
    meta: &MetaFn,
) {
    let config = service_config(cp, names);
    let config_digest = digest(&config);
    let mut config_map = ConfigMap {
        data: Some(config),
        ..ConfigMap::default()
    };
    config_map.metadata = meta(names.service_config(), "config");
    children.config_maps.push(config_map);

    let replicas = &cp.spec.components.replicas;
    for (component, count) in [(CATALOG, replicas.catalog), (ORDERS, replicas.orders)] {
        let mut deployment = deployment(names, inputs, component, count, &config_digest);
        deployment.metadata = meta(names.component(component), component);
        children.deployments.push(deployment);
        children
            .services
            .push(service(meta, names, component, 80, SERVICE_PORT));
    }
}

/// Environment shared by orders and catalog. Flags the binary reads as
/// `COMMLAB_<FLAG>`; a service ignores what its pattern does not use.
fn service_config(cp: &CommunicationPattern, names: &Names) -> BTreeMap<String, String> {
    let spec = &cp.spec;
    let mut env = BTreeMap::from([
        ("COMMLAB_PATTERN".to_owned(), spec.pattern.to_string()),
        (
            "COMMLAB_LISTEN".to_owned(),
            format!("0.0.0.0:{SERVICE_PORT}"),
        ),
        (
            "COMMLAB_PRODUCTS".to_owned(),
            spec.workload.products.to_string(),
        ),
        (
            "COMMLAB_CATALOG_URL".to_owned(),
            format!("http://{}", names.component(CATALOG)),
        ),
    ]);
    if spec.pattern.needs_broker() {
        env.insert("COMMLAB_BROKER_URL".to_owned(), broker::url(names));
    }
    env
}

fn deployment(
    names: &Names,
    inputs: &BuildInputs,
    component: &str,
    replicas: i32,
    config_digest: &str,
) -> Deployment {
    from_json(serde_json::json!({
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": labels::selector(&names.instance, component) },
            "template": {
                "metadata": {
                    "labels": labels::child(&names.instance, component),
                    "annotations": { CONFIG_DIGEST: config_digest },
                },
                "spec": {
                    "containers": [{
                        "name": component,
                        "image": inputs.config.workload_image,
                        // The image's entrypoint is the operator; the services are `commlab`.
                        "command": ["commlab"],
                        "args": ["serve", component],
                        "ports": [{ "name": "http", "containerPort": SERVICE_PORT }],
                        "envFrom": [{ "configMapRef": { "name": names.service_config() } }],
                        "env": [
                            // Order matters: $(VAR) expands only variables defined above it.
                            { "name": "DATABASE_PASSWORD", "valueFrom": { "secretKeyRef": { "name": names.database_secret(), "key": database::PASSWORD_KEY } } },
                            { "name": "COMMLAB_DATABASE_URL", "value": database::url(names) },
                            { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
                            { "name": "COMMLAB_ADVERTISE_URL", "value": format!("http://$(POD_IP):{SERVICE_PORT}") },
                            { "name": "COMMLAB_REPLICA_ID", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                        ],
                        "readinessProbe": { "httpGet": { "path": "/readyz", "port": SERVICE_PORT }, "periodSeconds": 2 },
                        "livenessProbe": { "httpGet": { "path": "/healthz", "port": SERVICE_PORT }, "periodSeconds": 10 },
                        "resources": { "requests": { "cpu": inputs.config.service_cpu, "memory": inputs.config.service_memory } },
                        "securityContext": { "runAsNonRoot": true, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true },
                    }],
                }
            }
        }
    }))
}
