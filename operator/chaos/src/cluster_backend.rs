//! Which cluster backend faults go through, and how to reach it.
//!
//! One set of flags and environment variables for both programs that need
//! it: the operator (`commlab-operator run`, from the Helm values), which
//! hands the choice on to each runner Job and cleans up with it when a
//! CommunicationPattern is deleted, and the runner
//! (`commlab experiment --in-cluster`). Both flatten [`ClusterBackendArgs`]
//! into their command line, so the two cannot drift apart.
//!
//! The dashboard's bearer token is read from [`TOKEN_ENV`] only, never from
//! a flag: a command line is visible to every user of the machine (`ps`,
//! `/proc/*/cmdline`), an environment variable set from a Secret is not.

use std::{fmt, sync::Arc, time::Duration};

use kube::Client;

use crate::{
    ChaosError, ChaosMeshBackend, ChaosScope, DEFAULT_CONFIRM_TIMEOUT, DashboardBackend,
    DashboardConfig, FaultBackend, dashboard,
};

/// Selects the backend: `chaosMesh` or `dashboard`.
pub const BACKEND_ENV: &str = "COMMLAB_CHAOS_BACKEND";
/// The dashboard's base URL.
pub const DASHBOARD_URL_ENV: &str = "COMMLAB_CHAOS_DASHBOARD_URL";
/// The dashboard's bearer token.
pub const TOKEN_ENV: &str = "COMMLAB_CHAOS_DASHBOARD_TOKEN";
/// How long to wait for Chaos Mesh to confirm a fault in force or undone.
pub const CONFIRM_TIMEOUT_ENV: &str = "COMMLAB_CHAOS_CONFIRM_TIMEOUT";

/// The cluster backends, named as in the Helm values (`chaos.backend`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClusterBackendKind {
    /// Chaos Mesh's objects through the Kubernetes API ([`ChaosMeshBackend`]).
    #[default]
    #[value(name = "chaosMesh", alias = "chaos-mesh")]
    ChaosMesh,
    /// The same objects through the Chaos Mesh dashboard's HTTP API
    /// ([`DashboardBackend`]).
    #[value(name = "dashboard")]
    Dashboard,
}

impl ClusterBackendKind {
    /// The name in Helm values, flags and environment variables.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterBackendKind::ChaosMesh => "chaosMesh",
            ClusterBackendKind::Dashboard => "dashboard",
        }
    }
}

impl fmt::Display for ClusterBackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bearer token: compared and cloned like a string, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the request header or a Secret.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// From [`TOKEN_ENV`]; `None` when unset or blank. Surrounding white
    /// space is dropped: a token pasted into a Secret often ends with a
    /// newline, which no server accepts in a header.
    pub fn from_env() -> Option<Self> {
        std::env::var(TOKEN_ENV)
            .ok()
            .map(|token| token.trim().to_owned())
            .filter(|token| !token.is_empty())
            .map(Self)
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `--chaos-backend`, `--chaos-dashboard-url`, `--chaos-confirm-timeout`
/// and the token from [`TOKEN_ENV`].
#[derive(clap::Args, Clone, Debug, Default, PartialEq)]
pub struct ClusterBackendArgs {
    /// Where faults go: `chaosMesh`, Chaos Mesh's PodChaos and NetworkChaos
    /// objects through the Kubernetes API; or `dashboard`, the same objects
    /// through the Chaos Mesh dashboard's HTTP API.
    #[arg(
        id = "chaos_backend",
        long = "chaos-backend",
        env = BACKEND_ENV,
        value_enum,
        default_value_t
    )]
    pub backend: ClusterBackendKind,
    /// The Chaos Mesh dashboard's base URL, http:// only, e.g.
    /// http://chaos-dashboard.chaos-mesh.svc:2333 (needed with
    /// `--chaos-backend dashboard`). Its bearer token is read from
    /// COMMLAB_CHAOS_DASHBOARD_TOKEN, never from a flag.
    #[arg(
        id = "chaos_dashboard_url",
        long = "chaos-dashboard-url",
        env = DASHBOARD_URL_ENV,
        required_if_eq("chaos_backend", "dashboard"),
        value_parser = parse_dashboard_url
    )]
    pub dashboard_url: Option<String>,
    /// The dashboard's token, from [`TOKEN_ENV`] when the command line is
    /// parsed; `None` for a dashboard without security mode.
    #[arg(skip = BearerToken::from_env())]
    pub dashboard_token: Option<BearerToken>,
    /// How long to wait for Chaos Mesh to confirm each fault in force, and
    /// undone, e.g. 10s (the default). A fault not confirmed in time is
    /// reported as not applied; the wait never outlasts the fault itself.
    #[arg(
        id = "chaos_confirm_timeout",
        long = "chaos-confirm-timeout",
        env = CONFIRM_TIMEOUT_ENV
    )]
    pub confirm_timeout: Option<commlab_api::Duration>,
}

fn parse_dashboard_url(url: &str) -> Result<String, String> {
    dashboard::base_url(url)
        .map(|_| url.to_owned())
        .map_err(|error| error.to_string())
}

impl ClusterBackendArgs {
    /// The dashboard at `url` with `token`.
    pub fn dashboard(url: impl Into<String>, token: Option<BearerToken>) -> Self {
        Self {
            backend: ClusterBackendKind::Dashboard,
            dashboard_url: Some(url.into()),
            dashboard_token: token,
            confirm_timeout: None,
        }
    }

    /// The confirm timeout given, or [`DEFAULT_CONFIRM_TIMEOUT`].
    pub fn confirm_timeout(&self) -> Duration {
        self.confirm_timeout
            .as_ref()
            .map_or(DEFAULT_CONFIRM_TIMEOUT, commlab_api::Duration::as_std)
    }

    pub fn is_dashboard(&self) -> bool {
        self.backend == ClusterBackendKind::Dashboard
    }

    /// The backend for the experiment in `scope`, every request bounded by
    /// `request_timeout`. Fails when the dashboard is chosen without a
    /// valid URL (clap checks that already; this is for other callers).
    pub fn build(
        &self,
        client: Client,
        scope: ChaosScope,
        request_timeout: Duration,
    ) -> Result<Arc<dyn FaultBackend>, ChaosError> {
        match self.backend {
            ClusterBackendKind::ChaosMesh => Ok(Arc::new(
                ChaosMeshBackend::new(client, scope)
                    .with_request_timeout(request_timeout)
                    .with_confirm_timeout(self.confirm_timeout()),
            )),
            ClusterBackendKind::Dashboard => {
                let url =
                    self.dashboard_url
                        .as_deref()
                        .ok_or_else(|| ChaosError::InvalidConfig {
                            reason: "the dashboard backend needs the dashboard's URL \
                                 (--chaos-dashboard-url or COMMLAB_CHAOS_DASHBOARD_URL)"
                                .into(),
                        })?;
                let mut config = DashboardConfig::new(url)
                    .with_request_timeout(request_timeout)
                    .with_confirm_timeout(self.confirm_timeout());
                if let Some(token) = &self.dashboard_token {
                    config = config.with_token(token.expose());
                }
                Ok(Arc::new(DashboardBackend::new(config, scope)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        chaos: ClusterBackendArgs,
    }

    fn parse(args: &[&str]) -> Result<ClusterBackendArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("cli").chain(args.iter().copied())).map(|c| c.chaos)
    }

    fn parse_dashboard(url: &str) -> Result<ClusterBackendArgs, clap::Error> {
        parse(&["--chaos-backend", "dashboard", "--chaos-dashboard-url", url])
    }

    #[test]
    fn chaos_mesh_is_the_default() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.backend, ClusterBackendKind::ChaosMesh);
        assert!(!args.is_dashboard());
        assert_eq!(
            parse(&["--chaos-backend", "chaos-mesh"]).unwrap().backend,
            ClusterBackendKind::ChaosMesh
        );
    }

    #[test]
    fn the_dashboard_needs_a_plain_http_url() {
        let missing = parse(&["--chaos-backend", "dashboard"]).unwrap_err();
        assert!(
            missing.to_string().contains("--chaos-dashboard-url"),
            "{missing}"
        );
        let https = parse_dashboard("https://dashboard.example").unwrap_err();
        assert!(
            https.to_string().contains("https is not supported"),
            "{https}"
        );
        let args = parse_dashboard("http://chaos-dashboard.chaos-mesh.svc:2333").unwrap();
        assert!(args.is_dashboard());
        assert_eq!(
            args.dashboard_url.as_deref(),
            Some("http://chaos-dashboard.chaos-mesh.svc:2333")
        );
    }

    #[test]
    fn an_unknown_backend_is_refused_naming_the_choices() {
        let error = parse(&["--chaos-backend", "litmus"]).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("chaosMesh") && text.contains("dashboard"),
            "{text}"
        );
    }

    #[test]
    fn the_confirm_timeout_defaults_and_is_read_as_a_duration() {
        assert_eq!(
            parse(&[]).unwrap().confirm_timeout(),
            DEFAULT_CONFIRM_TIMEOUT
        );
        let given = parse(&["--chaos-confirm-timeout", "2500ms"]).unwrap();
        assert_eq!(given.confirm_timeout(), Duration::from_millis(2500));
        let error = parse(&["--chaos-confirm-timeout", "soon"]).unwrap_err();
        assert!(error.to_string().contains("soon"), "{error}");
    }

    #[test]
    fn the_token_is_never_printed() {
        let args = ClusterBackendArgs::dashboard("http://x", Some(BearerToken::new("s3cret")));
        assert!(!format!("{args:?}").contains("s3cret"));
        assert_eq!(args.dashboard_token.unwrap().expose(), "s3cret");
    }

    #[tokio::test]
    async fn the_dashboard_backend_is_built_from_its_url() {
        // A client that is never used: building a backend sends nothing.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let scope = ChaosScope::new("lab", "shop");
        let timeout = Duration::from_secs(1);
        let built = ClusterBackendArgs::dashboard("http://dashboard.example:2333", None)
            .build(client.clone(), scope.clone(), timeout)
            .unwrap();
        assert_eq!(built.name(), "chaos-mesh-dashboard");
        let default = ClusterBackendArgs::default()
            .build(client.clone(), scope.clone(), timeout)
            .unwrap();
        assert_eq!(default.name(), "chaos-mesh");
        let without_url = ClusterBackendArgs {
            backend: ClusterBackendKind::Dashboard,
            ..ClusterBackendArgs::default()
        };
        let error = without_url
            .build(client, scope, timeout)
            .err()
            .expect("no URL");
        assert_eq!(error.category(), "invalid_config");
    }
}
