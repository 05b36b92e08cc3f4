//! The operator's own configuration: which images the children run and with
//! what resources, and which chaos backend the experiments use. It comes
//! from the Helm values through environment variables, so one chart value
//! changes every CommunicationPattern.

use std::collections::BTreeMap;

use clap::Args;
use commlab_chaos::ClusterBackendArgs;

#[derive(Args, Clone, Debug, PartialEq)]
pub struct OperatorConfig {
    /// Image with the `commlab` binary that runs orders, catalog and the experiment runner.
    #[arg(long, env = "COMMLAB_WORKLOAD_IMAGE", default_value = concat!("ghcr.io/commlab/commlab:", env!("CARGO_PKG_VERSION")))]
    pub workload_image: String,
    /// PostgreSQL image for each pattern's database.
    #[arg(
        long,
        env = "COMMLAB_DATABASE_IMAGE",
        default_value = "postgres:16-alpine"
    )]
    pub database_image: String,
    /// NATS image for the broker of the patterns that need one.
    #[arg(long, env = "COMMLAB_BROKER_IMAGE", default_value = "nats:2.10-alpine")]
    pub broker_image: String,
    /// CPU request of each orders and catalog container; small, since the
    /// experiments measure patterns, not machines.
    #[arg(long, env = "COMMLAB_SERVICE_CPU", default_value = "100m")]
    pub service_cpu: String,
    #[arg(long, env = "COMMLAB_SERVICE_MEMORY", default_value = "64Mi")]
    pub service_memory: String,
    /// Extra labels for the experiment runner's pod, as `key=value` pairs
    /// separated by commas (the e2e tests keep kwok from completing it).
    #[arg(long, env = "COMMLAB_RUNNER_POD_LABELS", default_value = "", value_parser = parse_labels)]
    pub runner_pod_labels: Labels,
    /// The chaos backend the runners inject faults with, and the operator
    /// cleans up with when a CommunicationPattern is deleted (Helm values
    /// `chaos.*`). Its Debug output never shows the dashboard's token.
    #[command(flatten)]
    pub chaos: ClusterBackendArgs,
}

/// `key=value,key=value` labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Labels(pub BTreeMap<String, String>);

fn parse_labels(text: &str) -> Result<Labels, String> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not key=value"))?;
            Ok((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect::<Result<_, String>>()
        .map(Labels)
}

impl OperatorConfig {
    pub fn runner_pod_labels(&self) -> BTreeMap<String, String> {
        self.runner_pod_labels.0.clone()
    }
}

impl Default for OperatorConfig {
    fn default() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Defaults {
            #[command(flatten)]
            config: OperatorConfig,
        }
        Defaults::parse_from(["defaults"]).config
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: OperatorConfig,
    }

    #[test]
    fn the_dashboard_comes_from_flags_and_its_token_is_never_printed() {
        let mut config = Cli::try_parse_from([
            "run",
            "--chaos-backend",
            "dashboard",
            "--chaos-dashboard-url",
            "http://chaos-dashboard.chaos-mesh.svc:2333",
        ])
        .unwrap()
        .config;
        assert!(config.chaos.is_dashboard());
        config.chaos.dashboard_token = Some(commlab_chaos::BearerToken::new("s3cret"));
        assert!(!format!("{config:?}").contains("s3cret"), "{config:?}");
        assert!(!OperatorConfig::default().chaos.is_dashboard());
    }
}
