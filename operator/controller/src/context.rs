//! The one context every reconcile gets.

use std::sync::Arc;

use kube::{Client, runtime::events::Recorder};

use crate::{config::OperatorConfig, metrics::Metrics};

pub struct Context {
    pub client: Client,
    pub config: OperatorConfig,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
}
