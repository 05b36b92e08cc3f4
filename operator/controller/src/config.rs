//! The operator's own configuration: which images the children run and with
//! what resources. It comes from the Helm values through environment
//! variables, so one chart value changes every CommunicationPattern.

use clap::Args;

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
