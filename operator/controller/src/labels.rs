//! The `app.kubernetes.io/*` labels every child carries. They select a
//! component's pods, and they find the children to prune when the desired
//! set shrinks.

use std::collections::BTreeMap;

pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const COMPONENT: &str = "app.kubernetes.io/component";

pub const APP: &str = "commlab";
pub const MANAGER: &str = "commlab-operator";

/// Labels that select one component's pods of one CommunicationPattern.
pub fn selector(instance: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_owned(), APP.to_owned()),
        (INSTANCE.to_owned(), instance.to_owned()),
        (COMPONENT.to_owned(), component.to_owned()),
    ])
}

/// All labels of a child object: the selector plus who manages it.
pub fn child(instance: &str, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector(instance, component);
    labels.insert(MANAGED_BY.to_owned(), MANAGER.to_owned());
    labels
}

/// The label selector that lists every child of one CommunicationPattern.
pub fn owned_by(instance: &str) -> String {
    format!("{NAME}={APP},{INSTANCE}={instance},{MANAGED_BY}={MANAGER}")
}

/// Whether `labels` mark a child of `instance` (what [`owned_by`] selects).
pub fn is_child_of(labels: &BTreeMap<String, String>, instance: &str) -> bool {
    let is = |key: &str, value: &str| labels.get(key).map(String::as_str) == Some(value);
    is(NAME, APP) && is(INSTANCE, instance) && is(MANAGED_BY, MANAGER)
}
