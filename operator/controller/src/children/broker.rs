//! NATS with JetStream, for the patterns that need a broker. JetStream keeps
//! streams on disk so messages survive a catalog outage.

use k8s_openapi::api::apps::v1::StatefulSet;

use super::{BROKER, BuildInputs, Children, MetaFn, Names, from_json, service};
use crate::labels;

pub const PORT: i32 = 4222;
const MONITOR_PORT: i32 = 8222;

pub(super) fn add(children: &mut Children, names: &Names, inputs: &BuildInputs, meta: &MetaFn) {
    let mut sts: StatefulSet = from_json(serde_json::json!({
        "spec": {
            "serviceName": names.component(BROKER),
            "replicas": 1,
            "selector": { "matchLabels": labels::selector(&names.instance, BROKER) },
            "template": {
                "metadata": { "labels": labels::child(&names.instance, BROKER) },
                "spec": {
                    "containers": [{
                        "name": "nats",
                        "image": inputs.config.broker_image,
                        "args": ["--jetstream", "--store_dir", "/data", "--http_port", MONITOR_PORT.to_string()],
                        "ports": [
                            { "name": "client", "containerPort": PORT },
                            { "name": "monitor", "containerPort": MONITOR_PORT },
                        ],
                        "readinessProbe": { "httpGet": { "path": "/healthz?js-enabled-only=true", "port": MONITOR_PORT }, "periodSeconds": 5 },
                        "livenessProbe": { "httpGet": { "path": "/healthz", "port": MONITOR_PORT }, "periodSeconds": 10 },
                        "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } },
                        "volumeMounts": [{ "name": "data", "mountPath": "/data" }],
                    }],
                    "volumes": [{ "name": "data", "emptyDir": {} }],
                }
            }
        }
    }));
    sts.metadata = meta(names.component(BROKER), BROKER);
    children.stateful_sets.push(sts);
    children
        .services
        .push(service(meta, names, BROKER, PORT, PORT));
}

pub fn url(names: &Names) -> String {
    format!("nats://{}:{PORT}", names.component(BROKER))
}
