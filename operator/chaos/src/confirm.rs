//! Waiting, bounded, for a cluster backend to confirm a step of a fault
//! (in force at `inject`, undone at `recover`), shared by the Chaos Mesh
//! and the dashboard backends.

use std::{future::Future, time::Duration};

use tokio::time::Instant;

use crate::{Injection, Recovery, chaos_mesh_status::Observed};

/// How long by default a cluster backend waits for Chaos Mesh to confirm a
/// fault in force, or undone. Chaos Mesh usually confirms within a second
/// or two; a pod failure can take a few.
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two readings of a fault's status. It bounds how late the
/// confirmed time of a fault can be.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How a wait for confirmation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Confirmation {
    /// Confirmed at `at`.
    Confirmed { at: Instant },
    /// The backend said it cannot be done: why.
    Refused(String),
    /// Not confirmed within `waited`; `last` is what the status showed.
    TimedOut {
        waited: commlab_api::Duration,
        last: String,
    },
}

impl Confirmation {
    /// What the wait for a fault in force means for the report.
    pub(crate) fn into_injection(self) -> Injection {
        match self {
            Confirmation::Confirmed { at } => Injection::InForce { since: at },
            Confirmation::Refused(reason) => Injection::NotApplied { reason },
            Confirmation::TimedOut { waited, last } => Injection::NotApplied {
                reason: format!("not confirmed in force within {waited}: {last}"),
            },
        }
    }

    /// What the wait for a fault undone means for the report.
    pub(crate) fn into_recovery(self) -> Recovery {
        match self {
            Confirmation::Confirmed { at } => Recovery::Confirmed { at },
            Confirmation::Refused(reason) => Recovery::Unconfirmed { reason },
            Confirmation::TimedOut { waited, last } => Recovery::Unconfirmed {
                reason: format!("not confirmed undone within {waited}: {last}"),
            },
        }
    }
}

/// Reads `observe` every [`POLL_INTERVAL`] until it is done or failed, or
/// until `timeout` has passed since the call (it is read at least once).
/// The confirmed time is when the reading that said so returned.
pub(crate) async fn confirm<F, Fut>(timeout: Duration, mut observe: F) -> Confirmation
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Observed>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match observe().await {
            Observed::Done => return Confirmation::Confirmed { at: Instant::now() },
            Observed::Failed(reason) => return Confirmation::Refused(reason),
            Observed::Pending(last) => last,
        };
        if Instant::now() + POLL_INTERVAL > deadline {
            return Confirmation::TimedOut {
                waited: timeout.into(),
                last,
            };
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn done_on_the_reading_that_says_so() {
        let readings = AtomicU32::new(0);
        let started = Instant::now();
        let confirmation = confirm(Duration::from_secs(5), || async {
            if readings.fetch_add(1, Ordering::SeqCst) < 3 {
                Observed::Pending("not yet".into())
            } else {
                Observed::Done
            }
        })
        .await;
        assert_eq!(
            confirmation,
            Confirmation::Confirmed {
                at: started + 3 * POLL_INTERVAL
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_ends_the_wait_at_once_and_becomes_the_reason() {
        let confirmation = confirm(Duration::from_secs(5), || async {
            Observed::Failed("Chaos Mesh failed to inject it".into())
        })
        .await;
        assert_eq!(
            confirmation.into_injection(),
            Injection::NotApplied {
                reason: "Chaos Mesh failed to inject it".into()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_is_bounded_and_says_what_was_seen_last() {
        let started = Instant::now();
        let confirmation = confirm(Duration::from_secs(1), || async {
            Observed::Pending("0 of 1 targets injected".into())
        })
        .await;
        assert!(started.elapsed() <= Duration::from_secs(1));
        assert_eq!(
            confirmation.clone().into_injection(),
            Injection::NotApplied {
                reason: "not confirmed in force within 1s: 0 of 1 targets injected".into()
            }
        );
        assert_eq!(
            confirmation.into_recovery(),
            Recovery::Unconfirmed {
                reason: "not confirmed undone within 1s: 0 of 1 targets injected".into()
            }
        );
        // A zero timeout still reads once.
        let once = confirm(Duration::ZERO, || async { Observed::Done }).await;
        assert!(matches!(once, Confirmation::Confirmed { .. }));
    }
}
