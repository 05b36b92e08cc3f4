//! PostgreSQL, catalog's own database (which orders also reads in `SharedData`).

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::{apps::v1::StatefulSet, core::v1::Secret},
};

use super::{BuildInputs, Children, DATABASE, MetaFn, Names, from_json, service};
use crate::labels;

pub const PASSWORD_KEY: &str = "password";
pub const USER: &str = "commlab";
pub const DATABASE_NAME: &str = "catalog";
const PORT: i32 = 5432;

pub(super) fn add(children: &mut Children, names: &Names, inputs: &BuildInputs, meta: &MetaFn) {
    let secret_name = names.database_secret();
    let mut secret = Secret {
        data: Some(BTreeMap::from([(
            PASSWORD_KEY.to_owned(),
            ByteString(inputs.database_password.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    };
    secret.metadata = meta(secret_name.clone(), DATABASE);

    // The data lives in an emptyDir: an experiment's database is seeded at
    // start and thrown away with the CommunicationPattern.
    let mut sts: StatefulSet = from_json(serde_json::json!({
        "spec": {
            "serviceName": names.component(DATABASE),
            "replicas": 1,
            "selector": { "matchLabels": labels::selector(&names.instance, DATABASE) },
            "template": {
                "metadata": { "labels": labels::child(&names.instance, DATABASE) },
                "spec": {
                    "containers": [{
                        "name": "postgres",
                        "image": inputs.config.database_image,
                        "ports": [{ "name": "postgres", "containerPort": PORT }],
                        "env": [
                            { "name": "POSTGRES_USER", "value": USER },
                            { "name": "POSTGRES_DB", "value": DATABASE_NAME },
                            { "name": "POSTGRES_PASSWORD", "valueFrom": { "secretKeyRef": { "name": secret_name, "key": PASSWORD_KEY } } },
                            { "name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata" },
                        ],
                        "readinessProbe": { "exec": { "command": ["pg_isready", "-U", USER, "-d", DATABASE_NAME] }, "periodSeconds": 5 },
                        "livenessProbe": { "tcpSocket": { "port": PORT }, "periodSeconds": 10, "failureThreshold": 6 },
                        "resources": { "requests": { "cpu": "100m", "memory": "128Mi" } },
                        "volumeMounts": [{ "name": "data", "mountPath": "/var/lib/postgresql/data" }],
                    }],
                    "volumes": [{ "name": "data", "emptyDir": {} }],
                }
            }
        }
    }));
    sts.metadata = meta(names.component(DATABASE), DATABASE);

    children.secrets.push(secret);
    children.stateful_sets.push(sts);
    children
        .services
        .push(service(meta, names, DATABASE, PORT, PORT));
}

/// The URL the services use; `$(DATABASE_PASSWORD)` is expanded by the
/// kubelet from the env var of that name, so the password stays in the Secret.
pub fn url(names: &Names) -> String {
    format!(
        "postgres://{USER}:$(DATABASE_PASSWORD)@{}:{PORT}/{DATABASE_NAME}",
        names.component(DATABASE)
    )
}
