//! The NATS JetStream connection and the streams of docs/protocol.md.
//!
//! The client connects in the background and reconnects forever, so a
//! service that starts, or keeps running, while the broker is down stays up;
//! every JetStream call is bounded by the context's timeout, so nothing on a
//! request path waits for the broker for longer than that.

use std::{sync::Arc, time::Duration};

use async_nats::{
    Client, ConnectOptions, Event,
    connection::State,
    jetstream::{
        self,
        stream::{self, RetentionPolicy},
    },
};
use tokio::sync::watch;

use crate::{
    error::{Dependency, Error, Result},
    services::protocol::{
        CATALOG_PRICES_STREAM, CATALOG_PRICES_SUBJECTS, PRICE_REPLIES_STREAM,
        PRICE_REPLIES_SUBJECTS, PRICE_REQUESTS_STREAM, PRICE_REQUESTS_SUBJECT,
    },
};

/// A connection to the broker and its JetStream context.
#[derive(Clone)]
pub struct Broker {
    pub client: Client,
    pub jetstream: jetstream::Context,
    pub timeout: Duration,
    /// Counts connections made, the first included: a change means the
    /// client has (re)connected, maybe to a broker that lost its ephemeral
    /// consumers in a restart.
    pub connections: watch::Receiver<u64>,
}

impl Broker {
    /// Starts connecting to `url` and returns at once; `timeout` bounds every
    /// JetStream request and publish acknowledgement.
    pub async fn connect(url: &str, name: &str, timeout: Duration) -> Result<Self> {
        let (connected, connections) = watch::channel(0);
        let connected = Arc::new(connected);
        let client = ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            .max_reconnects(None)
            // Reconnect quickly after an outage: the time orders needs to be
            // back is part of what experiments measure. Capped at 1 s.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(50u64.saturating_mul(1 << attempts.min(5) as u64))
                    .min(Duration::from_secs(1))
            })
            .event_callback(move |event| {
                let connected = connected.clone();
                async move {
                    tracing::info!(%event, "broker connection");
                    if matches!(event, Event::Connected) {
                        connected.send_modify(|count| *count += 1);
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| Error::unavailable(Dependency::Broker, e))?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(timeout)
            .build(client.clone());
        Ok(Broker {
            client,
            jetstream,
            timeout,
            connections,
        })
    }

    /// Fails at once when the connection is down, so that a request path does
    /// not wait for a timeout on a publish that the client would only buffer.
    pub fn check_connected(&self) -> Result<()> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            state => Err(Error::unavailable(
                Dependency::Broker,
                format!("not connected ({state})"),
            )),
        }
    }

    /// Creates `config`'s stream unless it exists (both services may do it).
    pub async fn ensure_stream(&self, config: stream::Config) -> Result<stream::Stream> {
        let name = config.name.clone();
        self.jetstream
            .get_or_create_stream(config)
            .await
            .map_err(|e| Error::unavailable(Dependency::Broker, format!("stream {name}: {e}")))
    }
}

/// `CATALOG_PRICES`: the latest price of each product, one message per subject.
pub fn catalog_prices_stream() -> stream::Config {
    stream::Config {
        name: CATALOG_PRICES_STREAM.into(),
        subjects: vec![CATALOG_PRICES_SUBJECTS.into()],
        max_messages_per_subject: 1,
        ..Default::default()
    }
}

/// `PRICE_REQUESTS`: a work queue of checkouts waiting for a price.
pub fn price_requests_stream() -> stream::Config {
    stream::Config {
        name: PRICE_REQUESTS_STREAM.into(),
        subjects: vec![PRICE_REQUESTS_SUBJECT.into()],
        retention: RetentionPolicy::WorkQueue,
        ..Default::default()
    }
}

/// `PRICE_REPLIES`: a work queue of catalog's answers, one subject per orders replica.
pub fn price_replies_stream() -> stream::Config {
    stream::Config {
        name: PRICE_REPLIES_STREAM.into(),
        subjects: vec![PRICE_REPLIES_SUBJECTS.into()],
        retention: RetentionPolicy::WorkQueue,
        ..Default::default()
    }
}

/// How long a durable consumer's message may stay unacknowledged before the
/// broker offers it again. Short, because the message may have gone to a
/// consumer that died; duplicates are harmless (orders prices an order once).
pub const ACK_WAIT: Duration = Duration::from_secs(2);

/// Reads a durable pull consumer with short pull requests.
///
/// The broker hands messages to any pull request that has not expired. When
/// the consumer that sent one is cut off without its connection closing (a
/// network partition), what goes to that request waits for `ACK_WAIT` and is
/// then offered again, possibly to the same stale request. A 1 s expiry
/// instead of the client's default 30 s keeps such requests short-lived.
pub async fn pull_messages(
    consumer: &jetstream::consumer::Consumer<jetstream::consumer::pull::Config>,
) -> Result<jetstream::consumer::pull::Stream> {
    consumer
        .stream()
        .expires(Duration::from_secs(1))
        .heartbeat(Duration::from_millis(400))
        .messages()
        .await
        .map_err(|e| Error::unavailable(Dependency::Broker, e))
}

/// The next message of a consumer, or `None` when the stream ended or the
/// client connected again: the caller then binds its consumer anew, since a
/// restarted broker may have lost it and the client may not notice for long.
pub async fn next_message<S, E>(
    messages: &mut S,
    connections: &mut watch::Receiver<u64>,
) -> Option<std::result::Result<jetstream::Message, E>>
where
    S: futures::Stream<Item = std::result::Result<jetstream::Message, E>> + Unpin,
{
    use futures::StreamExt;
    tokio::select! {
        message = messages.next() => message,
        _ = connections.changed() => {
            tracing::info!("broker connection (re)established: binding the consumer again");
            None
        }
    }
}
