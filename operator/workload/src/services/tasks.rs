//! Background work of a service: long-lived tasks that end with the service,
//! and the retry loop of start-up steps whose dependency may not be up yet.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::task::JoinSet;

use crate::error::Result;

/// The long-lived tasks of one service, aborted together when it stops, so a
/// service run inside a test leaves nothing behind.
#[derive(Clone, Default)]
pub struct Tasks(Arc<Mutex<JoinSet<()>>>);

impl Tasks {
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.0.lock().expect("tasks lock").spawn(task);
    }

    pub fn abort_all(&self) {
        self.0.lock().expect("tasks lock").abort_all();
    }
}

/// Runs `attempt` until it succeeds, waiting a little longer after each
/// failure (100 ms doubling up to 2 s): a dependency that is down at start
/// delays readiness instead of crashing the service.
pub async fn until_ok<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(error) => {
                tracing::warn!(%error, "{what} failed; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}
