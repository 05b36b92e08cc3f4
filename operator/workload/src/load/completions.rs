//! The completion listener (`AsyncMessaging`): a core NATS subscription to
//! `orders.completed`, made before the first checkout is sent.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::oneshot;

use super::checkout::OrderId;
use super::{Counters, LoadError};
use crate::measure::Completion;

/// The core NATS subject orders publishes priced orders on.
pub const COMPLETED_SUBJECT: &str = "orders.completed";

/// How often `finish` looks whether every accepted order has completed.
const GRACE_POLL: Duration = Duration::from_millis(20);

pub(super) struct Listener {
    /// Kept so the connection lives as long as the subscription.
    client: async_nats::Client,
    subscriber: async_nats::Subscriber,
}

impl Listener {
    /// Connects and subscribes; returns once the server has the subscription.
    pub(super) async fn subscribe(url: &str) -> Result<Self, LoadError> {
        let broker_error = |reason: String| LoadError::Broker {
            url: url.to_owned(),
            reason,
        };
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|error| broker_error(error.to_string()))?;
        let subscriber = client
            .subscribe(COMPLETED_SUBJECT)
            .await
            .map_err(|error| broker_error(error.to_string()))?;
        // A flush round-trip: the server has processed SUB before we go on.
        client
            .flush()
            .await
            .map_err(|error| broker_error(error.to_string()))?;
        Ok(Self { client, subscriber })
    }

    pub(super) fn run(self, origin: Instant, counters: Arc<Counters>) -> Running {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let Listener {
            client,
            mut subscriber,
        } = self;
        let task_log = log.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    message = subscriber.next() => match message {
                        Some(message) => {
                            let received = origin.elapsed();
                            if let Some(completion) = parse(&message.payload, received) {
                                task_log.lock().expect("completions lock").push(completion);
                                counters.completions.fetch_add(1, Ordering::Relaxed);
                            } else {
                                tracing::debug!("ignoring a malformed message on {COMPLETED_SUBJECT}");
                            }
                        }
                        None => break,
                    },
                    _ = &mut stop_rx => break,
                }
            }
            let _ = subscriber.unsubscribe().await;
            drop(client);
        });
        Running {
            task,
            log,
            stop: stop_tx,
        }
    }
}

pub(super) struct Running {
    task: tokio::task::JoinHandle<()>,
    log: Arc<Mutex<Vec<Completion>>>,
    stop: oneshot::Sender<()>,
}

impl Running {
    /// Waits until every order id in `pending` has completed, at most
    /// `grace`, then stops listening and returns every completion seen.
    pub(super) async fn finish(
        self,
        mut pending: HashSet<String>,
        grace: Duration,
    ) -> Vec<Completion> {
        let deadline = Instant::now() + grace;
        let mut seen = 0;
        loop {
            {
                let log = self.log.lock().expect("completions lock");
                for completion in &log[seen..] {
                    pending.remove(&completion.order_id);
                }
                seen = log.len();
            }
            if pending.is_empty() || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(GRACE_POLL).await;
        }
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(1), self.task).await;
        std::mem::take(&mut *self.log.lock().expect("completions lock"))
    }
}

/// `Order` plus `completed_at`, as orders publishes it.
fn parse(payload: &[u8], received: Duration) -> Option<Completion> {
    #[derive(Deserialize)]
    struct Completed {
        order_id: OrderId,
        product_id: u32,
        version: u64,
    }
    let completed: Completed = serde_json::from_slice(payload).ok()?;
    Some(Completion {
        order_id: completed.order_id.into(),
        product_id: completed.product_id,
        version: completed.version,
        received,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_parse_the_order_and_ignore_the_rest() {
        let payload = br#"{"order_id":"o-9","product_id":4,"quantity":1,"price_cents":500,"version":3,"total_cents":500,"status":"priced","completed_at":"2026-01-01T00:00:00Z"}"#;
        let completion = parse(payload, Duration::from_millis(12)).unwrap();
        assert_eq!(
            completion,
            Completion {
                order_id: "o-9".into(),
                product_id: 4,
                version: 3,
                received: Duration::from_millis(12)
            }
        );
        assert!(parse(br#"{"order_id":"o-9","status":"pending"}"#, Duration::ZERO).is_none());
        assert!(parse(b"garbage", Duration::ZERO).is_none());
    }
}
