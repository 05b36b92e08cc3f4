//! The finalizer `communicationpatterns.commlab.dev`: no chaos experiment
//! outlives its CommunicationPattern.
//!
//! Kubernetes deletes a pattern's children by their owner references, and
//! the runner deletes its chaos experiments on every way out it lives to
//! see. Neither covers a runner killed outright (SIGKILL, a lost node) with
//! faults in force while the experiments were created through the Chaos
//! Mesh dashboard, which Kubernetes' garbage collector cannot be relied on
//! for. So every CommunicationPattern carries this finalizer, and when one
//! is deleted the operator builds the configured backend for it
//! (`ChaosScope::new(namespace, name)`) and calls its `cleanup()`, which
//! deletes every experiment labelled as the pattern's; only then does the
//! finalizer go and the deletion go on. kube's
//! [`finalizer`](kube::runtime::finalizer::finalizer) helper adds the
//! finalizer to new objects and removes it after a successful cleanup.
//!
//! A dashboard that does not answer must not hold a deletion forever
//! without a word: each request is bounded ([`REQUEST_TIMEOUT`]) and so is
//! the whole cleanup ([`CLEANUP_TIMEOUT`]). A failure keeps the finalizer,
//! logs, records a Warning Event `ChaosCleanupFailed` saying what is wrong,
//! and retries with exponential backoff. Removing the finalizer by hand
//! lets the deletion go on without the cleanup.

use std::{future::Future, sync::Arc, time::Duration};

use commlab_api::CommunicationPattern;
use commlab_chaos::{ChaosError, ChaosScope};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{
        controller::Action,
        events::{Event as KubeEvent, EventType},
        finalizer::{Error as FinalizerError, Event, finalizer},
    },
};
use tracing::{info, instrument, warn};

use crate::{
    context::Context,
    error::{Error, Result},
};

/// `<plural>.<group>`.
pub const FINALIZER: &str = "communicationpatterns.commlab.dev";
/// Bounds each request to the chaos backend while cleaning up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds one whole cleanup: listing the experiments and deleting each.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);
/// The Event reason when a cleanup fails.
pub const CLEANUP_FAILED: &str = "ChaosCleanupFailed";

/// Runs `apply` (the reconcile proper) for a CommunicationPattern that is
/// not being deleted, once it carries the finalizer; for one being deleted,
/// deletes its chaos experiments and then lets it go.
pub async fn reconcile_with_finalizer<F, Fut>(
    cp: &CommunicationPattern,
    ctx: &Context,
    apply: F,
) -> Result<Action>
where
    F: FnOnce(Arc<CommunicationPattern>) -> Fut,
    Fut: Future<Output = Result<Action>>,
{
    let ns = cp
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<CommunicationPattern> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, Arc::new(cp.clone()), |event| async move {
        match event {
            Event::Apply(cp) => apply(cp).await,
            Event::Cleanup(cp) => clean_up(&cp, ctx).await,
        }
    })
    .await
    .map_err(|error| match error {
        FinalizerError::ApplyFailed(error) | FinalizerError::CleanupFailed(error) => error,
        FinalizerError::AddFinalizer(source) => Error::Finalizer {
            action: "add",
            source,
        },
        FinalizerError::RemoveFinalizer(source) => Error::Finalizer {
            action: "remove",
            source,
        },
        FinalizerError::UnnamedObject => Error::MissingField("metadata.name"),
        FinalizerError::InvalidFinalizer => Error::MissingField("a valid finalizer name"),
    })
}

/// A failed cleanup retries after its own backoff rather than the error
/// policy's fixed delay: a dashboard that is down stays down for a while,
/// and each attempt may take up to [`CLEANUP_TIMEOUT`]. Call this after
/// the failure has been counted in the metrics.
pub fn retry_failed_cleanup(result: Result<Action>) -> Result<Action> {
    match result {
        Err(Error::ChaosCleanup { retry_in, .. }) => Ok(Action::requeue(retry_in)),
        other => other,
    }
}

#[instrument(skip_all, fields(namespace = cp.namespace().unwrap_or_default(), name = cp.name_any()))]
async fn clean_up(cp: &CommunicationPattern, ctx: &Context) -> Result<Action> {
    let ns = cp
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = cp.name_any();
    let key = format!("{ns}/{name}");
    let backend_name = ctx.config.chaos.backend;
    let cleaned = async {
        let backend = ctx.config.chaos.build(
            ctx.client.clone(),
            ChaosScope::new(&ns, &name),
            REQUEST_TIMEOUT,
        )?;
        tokio::time::timeout(CLEANUP_TIMEOUT, backend.cleanup())
            .await
            .unwrap_or_else(|_| {
                Err(ChaosError::Timeout {
                    request: format!("deleting the chaos experiments of {name}"),
                    after: CLEANUP_TIMEOUT,
                })
            })
    };
    match cleaned.await {
        Ok(()) => {
            ctx.backoff.succeeded(&key);
            if let Some(uid) = cp.uid() {
                ctx.last_applied.forget(&uid);
            }
            info!(backend = %backend_name, "chaos experiments deleted; the deletion goes on");
            Ok(Action::await_change())
        }
        Err(source) => {
            let retry_in = ctx.backoff.failed(&key);
            warn!(
                backend = %backend_name,
                category = source.category(),
                error = %source,
                ?retry_in,
                "could not delete the chaos experiments; keeping the finalizer"
            );
            let note = format!(
                "{name} is not deleted yet: its chaos experiments could not be deleted through \
                 the {backend_name} backend ({source}). Retrying in {}s; removing finalizer \
                 {FINALIZER} by hand deletes it without the cleanup.",
                retry_in.as_secs()
            );
            let event = KubeEvent {
                type_: EventType::Warning,
                reason: CLEANUP_FAILED.into(),
                note: Some(note),
                action: "Delete".into(),
                secondary: None,
            };
            if let Err(error) = ctx.recorder.publish(&event, &cp.object_ref(&())).await {
                warn!(%error, "could not record an event");
            }
            Err(Error::ChaosCleanup { source, retry_in })
        }
    }
}
