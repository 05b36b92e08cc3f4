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
        .secrets
        .extend(crate::experiment::dashboard_token_secret(
            &names,
            &inputs.config.chaos,
            &meta,
        ));
    children
}

/// Metadata of a child: name, namespace, labels and the controller owner reference.
pub fn child_meta(cp: &CommunicationPattern) -> impl Fn(String, &str) -> ObjectMeta + '_ {
    let owner = cp
        .controller_owner_ref(&())
        .expect("a CommunicationPattern read from the API server has a uid");
    let instance = cp.name_any();
    move |name: String, component: &str| ObjectMeta {
        name: Some(name),
        namespace: cp.namespace(),
        labels: Some(labels::child(&instance, component)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
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

pub(crate) type MetaFn<'a> = dyn Fn(String, &str) -> ObjectMeta + 'a;

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
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

#[cfg(test)]
mod tests {
    use commlab_api::{CommunicationPatternSpec, Pattern};
    use kube::Resource;

    use super::*;

    fn pattern(p: Pattern, orders: i32) -> CommunicationPattern {
        let spec: CommunicationPatternSpec = serde_json::from_value(serde_json::json!({
            "pattern": p, "components": { "replicas": { "orders": orders, "catalog": 1 } }
        }))
        .unwrap();
        let mut cp = CommunicationPattern::new("shop", spec);
        cp.meta_mut().namespace = Some("lab".into());
        cp.meta_mut().uid = Some("uid-1".into());
        cp
    }

    fn build(cp: &CommunicationPattern) -> Children {
        desired(
            cp,
            &BuildInputs {
                config: &OperatorConfig::default(),
                database_password: "secret",
            },
        )
    }

    fn all_meta(c: &Children) -> Vec<&ObjectMeta> {
        c.config_maps
            .iter()
            .map(|o| o.meta())
            .chain(c.secrets.iter().map(|o| o.meta()))
            .chain(c.services.iter().map(|o| o.meta()))
            .chain(c.deployments.iter().map(|o| o.meta()))
            .chain(c.stateful_sets.iter().map(|o| o.meta()))
            .collect()
    }

    #[test]
    fn every_child_is_labelled_owned_and_namespaced() {
        let children = build(&pattern(Pattern::AsyncMessaging, 2));
        for meta in all_meta(&children) {
            let labels = meta.labels.as_ref().unwrap();
            assert_eq!(labels[labels::INSTANCE], "shop");
            assert_eq!(labels[labels::MANAGED_BY], labels::MANAGER);
            assert!(labels.contains_key(labels::COMPONENT));
            assert!(
                is_owned_by(meta.owner_references.as_ref(), "uid-1"),
                "{:?}",
                meta.name
            );
            assert_eq!(meta.namespace.as_deref(), Some("lab"));
        }
    }

    #[test]
    fn a_broker_only_for_patterns_that_need_one() {
        let names = |c: &Children| {
            c.stateful_sets
                .iter()
                .map(|s| s.meta().name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&build(&pattern(Pattern::DirectApiCall, 1))),
            ["shop-database"]
        );
        assert_eq!(
            names(&build(&pattern(Pattern::CacheWithUpdateEvents, 1))),
            ["shop-database", "shop-broker"]
        );
    }

    #[test]
    fn replicas_come_from_the_spec() {
        let children = build(&pattern(Pattern::DirectApiCall, 3));
        let orders = children
            .deployments
            .iter()
            .find(|d| d.meta().name.as_deref() == Some("shop-orders"))
            .unwrap();
        assert_eq!(orders.spec.as_ref().unwrap().replicas, Some(3));
    }

    #[test]
    fn services_select_their_own_component() {
        let children = build(&pattern(Pattern::DirectApiCall, 1));
        for svc in &children.services {
            let component = &svc.meta().labels.as_ref().unwrap()[labels::COMPONENT];
            let selector = svc.spec.as_ref().unwrap().selector.as_ref().unwrap();
            assert_eq!(&selector[labels::COMPONENT], component);
            assert_eq!(selector[labels::INSTANCE], "shop");
        }
    }

    #[test]
    fn a_pattern_change_rolls_the_services_pods() {
        let digest_of = |c: &Children| {
            c.deployments[0]
                .spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()[services::CONFIG_DIGEST]
                .clone()
        };
        let direct = build(&pattern(Pattern::DirectApiCall, 1));
        assert_eq!(
            digest_of(&direct),
            digest_of(&build(&pattern(Pattern::DirectApiCall, 1)))
        );
        assert_ne!(
            digest_of(&direct),
            digest_of(&build(&pattern(Pattern::AsyncPolling, 1)))
        );
    }

    #[test]
    fn with_the_dashboard_the_children_include_the_runners_copy_of_its_token() {
        let cp = pattern(Pattern::DirectApiCall, 1);
        let config = OperatorConfig {
            chaos: commlab_chaos::ClusterBackendArgs::dashboard(
                "http://dashboard:2333",
                Some(commlab_chaos::BearerToken::new("t0ken")),
            ),
            ..OperatorConfig::default()
        };
        let with_dashboard = desired(
            &cp,
            &BuildInputs {
                config: &config,
                database_password: "secret",
            },
        );
        let secret_names = |c: &Children| {
            c.secrets
                .iter()
                .map(|s| s.meta().name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            secret_names(&with_dashboard),
            ["shop-database-credentials", "shop-chaos-dashboard"]
        );
        // Back to Chaos Mesh's CRDs: the copy is no longer desired, so pruned.
        assert_eq!(secret_names(&build(&cp)), ["shop-database-credentials"]);
    }

    #[test]
    fn the_password_stays_in_the_secret() {
        let children = build(&pattern(Pattern::SharedData, 1));
        let secret = &children.secrets[0];
        assert_eq!(secret.data.as_ref().unwrap()[PASSWORD_KEY].0, b"secret");
        let text = serde_json::to_string(&children.deployments).unwrap();
        assert!(
            !text.contains("secret\""),
            "the password must not be inlined in pod specs"
        );
        assert!(text.contains("$(DATABASE_PASSWORD)"));
    }
}
