//! Build step of the reconcile pipeline: the desired children of one
//! CommunicationPattern, computed from its spec alone (plus the database
//! password observed earlier). Pure, so most tests live here.

mod broker;
mod database;
mod services;

use std::collections::BTreeMap;

use commlab_api::CommunicationPattern;
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::{ConfigMap, Secret, Service},
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{Resource, ResourceExt};

use crate::{config::OperatorConfig, labels};

pub use database::PASSWORD_KEY;

/// Components by the names used in labels, status and fault targets.
pub const ORDERS: &str = "orders";
pub const CATALOG: &str = "catalog";
pub const DATABASE: &str = "database";
pub const BROKER: &str = "broker";

/// Port the services listen on inside their pods.
const SERVICE_PORT: i32 = 8080;

/// What the build step needs besides the spec.
pub struct BuildInputs<'a> {
    pub config: &'a OperatorConfig,
    /// The database password: generated once, then read back from the Secret
    /// so that a reconcile never changes it under a running database.
    pub database_password: &'a str,
}

/// The desired children of one CommunicationPattern.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Children {
    pub config_maps: Vec<ConfigMap>,
    pub secrets: Vec<Secret>,
    pub services: Vec<Service>,
    pub deployments: Vec<Deployment>,
    pub stateful_sets: Vec<StatefulSet>,
}

pub fn desired(cp: &CommunicationPattern, inputs: &BuildInputs) -> Children {
    let names = Names::of(cp);
    let owner = cp
        .controller_owner_ref(&())
        .expect("a CommunicationPattern read from the API server has a uid");
    let meta = |name: String, component: &str| ObjectMeta {
        name: Some(name),
        namespace: cp.namespace(),
        labels: Some(labels::child(&names.instance, component)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    };
    let mut children = Children::default();
    database::add(&mut children, &names, inputs, &meta);
    if cp.spec.pattern.needs_broker() {
        broker::add(&mut children, &names, inputs, &meta);
    }
    services::add(&mut children, cp, &names, inputs, &meta);
    children
}

/// Names of the children, all derived from the CommunicationPattern's name.
pub struct Names {
    pub instance: String,
}

impl Names {
    pub fn of(cp: &CommunicationPattern) -> Self {
        Self {
            instance: cp.name_any(),
        }
    }

    pub fn component(&self, component: &str) -> String {
        format!("{}-{component}", self.instance)
    }

    pub fn database_secret(&self) -> String {
        format!("{}-database-credentials", self.instance)
    }

    pub fn service_config(&self) -> String {
        format!("{}-config", self.instance)
    }
}

type MetaFn<'a> = dyn Fn(String, &str) -> ObjectMeta + 'a;

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("children are built from well-formed JSON literals")
}

/// A ClusterIP Service in front of one component.
fn service(meta: &MetaFn, names: &Names, component: &str, port: i32, target_port: i32) -> Service {
    let mut svc: Service = from_json(serde_json::json!({
        "spec": {
            "selector": labels::selector(&names.instance, component),
            "ports": [{ "name": component, "port": port, "targetPort": target_port, "protocol": "TCP" }],
        }
    }));
    svc.metadata = meta(names.component(component), component);
    svc
}

/// Owner reference check used by tests and by the prune step.
pub fn is_owned_by(owners: Option<&Vec<OwnerReference>>, uid: &str) -> bool {
    owners.is_some_and(|refs| {
        refs.iter()
            .any(|r| r.uid == uid && r.controller == Some(true))
    })
}

/// Short, stable digest of a configuration, put on pod templates so that a
/// configuration change rolls the pods.
fn digest(data: &BTreeMap<String, String>) -> String {
    // FNV-1a: stable across Rust versions, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in data {
        for byte in k.bytes().chain([0]).chain(v.bytes()).chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}
