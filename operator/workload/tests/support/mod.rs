//! What the libtest-mimic suites (`services`, `experiments`) share: trials
//! that are async functions of a suite, on one runtime, bounded in time.

use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Result;
use libtest_mimic::{Arguments, Conclusion, Failed, Trial};
use tokio::runtime::Runtime;

pub fn commlab_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_commlab"))
}

pub fn runtime() -> Arc<Runtime> {
    Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime"),
    )
}

pub struct Trials<S> {
    runtime: Arc<Runtime>,
    suite: Arc<S>,
    timeout: Duration,
    trials: Vec<Trial>,
}

impl<S: Send + Sync + 'static> Trials<S> {
    /// Trials of `suite` on `runtime`, each failing after `timeout` whatever it waits for.
    pub fn new(runtime: &Arc<Runtime>, suite: &Arc<S>, timeout: Duration) -> Self {
        Trials {
            runtime: runtime.clone(),
            suite: suite.clone(),
            timeout,
            trials: Vec::new(),
        }
    }

    pub fn add<F, Fut>(&mut self, name: &str, test: F)
    where
        F: FnOnce(Arc<S>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>>,
    {
        let (runtime, suite, timeout) = (self.runtime.clone(), self.suite.clone(), self.timeout);
        self.trials.push(Trial::test(name, move || {
            runtime.block_on(async move {
                match tokio::time::timeout(timeout, test(suite)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err(Failed::from(format!("{error:#}"))),
                    Err(_) => Err(Failed::from(format!("timed out after {timeout:?}"))),
                }
            })
        }));
    }

    /// Runs the trials; they and their hold on the suite are gone when it returns.
    pub fn run(self, arguments: &Arguments) -> Conclusion {
        libtest_mimic::run(arguments, self.trials)
    }
}

/// Adds each test function as a trial of its own name, so the two cannot drift apart.
macro_rules! add_trials {
    ($trials:expr, $($test:ident),+ $(,)?) => {
        $($trials.add(stringify!($test), $test);)+
    };
}
pub(crate) use add_trials;
