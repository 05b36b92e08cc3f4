//! Acting as a ServiceAccount: a token from the TokenRequest API and a
//! kubeconfig whose only credential is that token, so a process run with it
//! has exactly the RBAC of the account (the operator with the chart's, the
//! experiment runner with the one the operator gives it).

use std::path::Path;

use anyhow::{Context as _, bail};
use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::ServiceAccount,
};
use kube::{Api, Client, api::PostParams};
use serde_json::{Value, json};

/// How long a requested token is valid: longer than any run it serves.
const TOKEN_SECONDS: i64 = 3600;

/// A token for ServiceAccount `name` in `ns` (TokenRequest, one hour).
pub async fn service_account_token(
    client: &Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(TOKEN_SECONDS),
            ..Default::default()
        },
        ..Default::default()
    };
    let response = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .with_context(|| format!("requesting a token for ServiceAccount {ns}/{name}"))?;
    Ok(response
        .status
        .context("TokenRequest without status")?
        .token)
}

/// A kubeconfig file for the cluster of `admin_kubeconfig`'s current context
/// whose only credential is `token`, with `ns` as its namespace. The file is
/// deleted when the returned handle is dropped.
pub fn token_kubeconfig(
    admin_kubeconfig: &Path,
    ns: &str,
    token: &str,
) -> anyhow::Result<tempfile::NamedTempFile> {
    let text = std::fs::read_to_string(admin_kubeconfig)
        .with_context(|| format!("reading {}", admin_kubeconfig.display()))?;
    let admin: Value = serde_yaml::from_str(&text)
        .with_context(|| format!("parsing {}", admin_kubeconfig.display()))?;
    let cluster = current_cluster(&admin)
        .with_context(|| format!("the current cluster of {}", admin_kubeconfig.display()))?;
    let config = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{ "name": "cluster", "cluster": cluster }],
        "users": [{ "name": "sa", "user": { "token": token } }],
        "contexts": [{ "name": "sa", "context": { "cluster": "cluster", "user": "sa", "namespace": ns } }],
    });
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), serde_yaml::to_string(&config)?)?;
    Ok(file)
}

/// The `cluster` entry (server, CA) of the kubeconfig's current context.
fn current_cluster(kubeconfig: &Value) -> anyhow::Result<Value> {
    let named = |list: &str, name: &str| {
        kubeconfig[list]
            .as_array()
            .and_then(|entries| entries.iter().find(|entry| entry["name"] == name))
            .cloned()
    };
    let context = kubeconfig["current-context"]
        .as_str()
        .context("no current-context")?;
    let cluster_name = named("contexts", context)
        .and_then(|entry| entry["context"]["cluster"].as_str().map(str::to_owned))
        .with_context(|| format!("no context {context}"))?;
    let cluster = named("clusters", &cluster_name)
        .map(|entry| entry["cluster"].clone())
        .with_context(|| format!("no cluster {cluster_name}"))?;
    if cluster["certificate-authority"].is_string() {
        // A CA file path is relative to the admin kubeconfig's directory,
        // which the token kubeconfig does not live in.
        bail!("cluster {cluster_name} names its CA by file; use certificate-authority-data");
    }
    Ok(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_kubeconfig_keeps_the_current_clusters_server_and_ca_only() {
        let admin = serde_json::json!({
            "current-context": "b",
            "contexts": [
                { "name": "a", "context": { "cluster": "one", "user": "admin" } },
                { "name": "b", "context": { "cluster": "two", "user": "admin" } },
            ],
            "clusters": [
                { "name": "one", "cluster": { "server": "https://127.0.0.1:1" } },
                { "name": "two", "cluster": { "server": "https://127.0.0.1:2", "certificate-authority-data": "Q0E=" } },
            ],
            "users": [{ "name": "admin", "user": { "client-key-data": "secret" } }],
        });
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), serde_yaml::to_string(&admin).unwrap()).unwrap();

        let token = token_kubeconfig(file.path(), "lab", "t0k3n").unwrap();
        let text = std::fs::read_to_string(token.path()).unwrap();
        let config: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            config["clusters"][0]["cluster"],
            admin["clusters"][1]["cluster"]
        );
        assert_eq!(
            config["users"],
            json!([{ "name": "sa", "user": { "token": "t0k3n" } }])
        );
        assert_eq!(config["contexts"][0]["context"]["namespace"], "lab");
        assert!(!text.contains("secret"), "no admin credential: {text}");
    }
}
