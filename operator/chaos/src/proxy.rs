//! A small TCP fault proxy, in the spirit of Toxiproxy.
//!
//! A [`FaultProxy`] listens on a loopback port and forwards every connection
//! to one upstream address. Clients (orders, catalog) are configured with
//! the proxy's address instead of the target's, so the local backend can
//! degrade traffic to the target at runtime by switching its [`Toxic`]:
//!
//! - [`Toxic::None`]: bytes are forwarded as they arrive.
//! - [`Toxic::Delay`]: every chunk of data waits before it is written on, in
//!   both directions, so that a round trip through the proxy takes `latency`
//!   (± `jitter`) longer. Each chunk is stamped when it is read and released
//!   at its own time, so the delay adds latency without limiting throughput,
//!   and order is kept.
//! - [`Toxic::Partition`]: nothing is forwarded either way, as when the
//!   network drops every packet: bytes in flight are held, reads stop, and
//!   new connections are accepted but not connected upstream. Clients see
//!   their requests stall until their own timeouts fire. When the partition
//!   ends, traffic resumes where it stopped, as TCP would after retransmits.
//!
//! Toxics apply to connections that are already open as well as to new ones,
//! which matters because HTTP keep-alive, database pools and NATS hold their
//! connections for the whole run.
//!
//! [noxious](https://crates.io/crates/noxious), a Rust port of Toxiproxy, was
//! considered; it is unmaintained since 2021 and built around Toxiproxy's
//! HTTP API, where this crate needs three toxics switched in-process.

use std::{
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpSocket, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{mpsc, watch},
    task::{JoinHandle, JoinSet},
    time::Instant,
};
use tracing::{debug, warn};

use crate::ChaosError;

/// Largest chunk read from a socket at once.
const CHUNK_SIZE: usize = 16 * 1024;
/// Chunks read but not yet written, per direction of one connection; bounds
/// the memory a slow or delayed connection holds.
const CHUNKS_IN_FLIGHT: usize = 64;
/// How long connecting to the upstream may take before the client's
/// connection is closed.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (e.g. out of file descriptors) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// Pending connections the listener's kernel queue holds.
const LISTEN_BACKLOG: u32 = 1024;

/// What the proxy does to traffic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Toxic {
    /// Forward everything as it arrives.
    #[default]
    None,
    /// Add `latency` to every round trip through the proxy: half of it to
    /// each direction. `jitter` varies each chunk's delay uniformly within
    /// ± `jitter` / 2 per direction, so a round trip varies within ± `jitter`.
    Delay { latency: Duration, jitter: Duration },
    /// Forward nothing either way and hold new connections, until cleared.
    Partition,
}

impl Toxic {
    fn is_partition(&self) -> bool {
        matches!(self, Toxic::Partition)
    }
}

/// A running proxy. Dropping it stops the listener and closes every
/// connection through it.
#[derive(Debug)]
pub struct FaultProxy {
    handle: ProxyHandle,
    accept_loop: JoinHandle<()>,
}

/// A cheap, cloneable handle to switch a proxy's toxic and read its state.
#[derive(Clone, Debug)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    local_addr: SocketAddr,
    upstream: SocketAddr,
    toxic: watch::Sender<Toxic>,
    open: AtomicUsize,
    accepted: AtomicU64,
}

impl FaultProxy {
    /// Listens on `listen` (port 0 picks a free port, see
    /// [`local_addr`](Self::local_addr)) and forwards to `upstream`, with no
    /// toxic. The upstream need not be up yet: it is connected to once per
    /// accepted connection.
    pub async fn bind(listen: SocketAddr, upstream: SocketAddr) -> Result<Self, ChaosError> {
        let proxy_error = |source| ChaosError::Proxy {
            addr: listen,
            source,
        };
        let socket = if listen.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(proxy_error)?;
        // Lets a proxy be bound again on the same port right after a previous one closed.
        socket.set_reuseaddr(true).map_err(proxy_error)?;
        socket.bind(listen).map_err(proxy_error)?;
        let listener = socket.listen(LISTEN_BACKLOG).map_err(proxy_error)?;
        let local_addr = listener.local_addr().map_err(proxy_error)?;
        let shared = Arc::new(Shared {
            local_addr,
            upstream,
            toxic: watch::Sender::new(Toxic::None),
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
        });
        let accept_loop = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self {
            handle: ProxyHandle { shared },
            accept_loop,
        })
    }

    /// A handle to switch toxics, e.g. for [`LocalBackend`](crate::LocalBackend).
    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// Stops listening and closes every connection through the proxy.
    pub async fn shutdown(mut self) {
        self.accept_loop.abort();
        // The accept loop owns the connection tasks; once it is gone, so are they.
        let _ = (&mut self.accept_loop).await;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl ProxyHandle {
    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The address the proxy forwards to.
    pub fn upstream_addr(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Switches the toxic for open and new connections alike.
    pub fn set_toxic(&self, toxic: Toxic) {
        debug!(proxy = %self.shared.local_addr, ?toxic, "fault proxy toxic");
        self.shared.toxic.send_replace(toxic);
    }

    /// Back to forwarding everything as it arrives.
    pub fn clear(&self) {
        self.set_toxic(Toxic::None);
    }

    pub fn toxic(&self) -> Toxic {
        self.shared.toxic.borrow().clone()
    }

    /// Client connections currently open through the proxy, including ones
    /// held by a partition.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Client connections accepted since the proxy started.
    pub fn accepted_connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

/// Accepts until the proxy is dropped; owns every connection's task, so
/// aborting it closes them all.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    shared.accepted.fetch_add(1, Ordering::Relaxed);
                    connections.spawn(serve(client, shared.clone()));
                }
                Err(err) => {
                    warn!(proxy = %shared.local_addr, %err, "fault proxy could not accept a connection");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
            // Reap finished connections so the set does not grow with them.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Counts a connection as open while it lives.
struct OpenConnection<'a>(&'a AtomicUsize);

impl<'a> OpenConnection<'a> {
    fn new(open: &'a AtomicUsize) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open)
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve(client: TcpStream, shared: Arc<Shared>) {
    let _open = OpenConnection::new(&shared.open);
    let mut toxic = shared.toxic.subscribe();
    // A partition holds new connections before they reach the upstream.
    if toxic.wait_for(|t| !t.is_partition()).await.is_err() {
        return;
    }
    let upstream = match tokio::time::timeout(
        UPSTREAM_CONNECT_TIMEOUT,
        TcpStream::connect(shared.upstream),
    )
    .await
    {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(err)) => {
            debug!(upstream = %shared.upstream, %err, "fault proxy could not reach upstream");
            return;
        }
        Err(_) => {
            debug!(upstream = %shared.upstream, "fault proxy timed out connecting upstream");
            return;
        }
    };
    // Chunks were already coalesced by their sender; forward them without waiting for more.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let outcome = tokio::try_join!(
        pipe(client_read, upstream_write, toxic.clone()),
        pipe(upstream_read, client_write, toxic),
    );
    if let Err(err) = outcome {
        debug!(proxy = %shared.local_addr, %err, "fault proxy connection closed on error");
    }
}

/// Bytes read from one side, waiting to be written to the other.
struct Chunk {
    data: Vec<u8>,
    read_at: Instant,
    /// Where in the jitter range this chunk's delay falls, in `-1.0..=1.0`.
    jitter_draw: f64,
}

/// Forwards one direction until `from` reaches end of file, then shuts
/// `to` down for writing so the peer sees the end too.
async fn pipe(
    from: OwnedReadHalf,
    to: OwnedWriteHalf,
    toxic: watch::Receiver<Toxic>,
) -> io::Result<()> {
    let (chunks_tx, chunks_rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    tokio::try_join!(
        read_side(from, chunks_tx, toxic.clone()),
        write_side(chunks_rx, to, toxic)
    )?;
    Ok(())
}

async fn read_side(
    mut from: OwnedReadHalf,
    chunks: mpsc::Sender<Chunk>,
    mut toxic: watch::Receiver<Toxic>,
) -> io::Result<()> {
    let mut buf = vec![0; CHUNK_SIZE];
    loop {
        // In a partition, stop reading: the sender's buffers fill and it stalls.
        if toxic.wait_for(|t| !t.is_partition()).await.is_err() {
            return Ok(());
        }
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let chunk = Chunk {
            data: buf[..n].to_vec(),
            read_at: Instant::now(),
            jitter_draw: fastrand::f64() * 2.0 - 1.0,
        };
        if chunks.send(chunk).await.is_err() {
            // The writer is gone; its error ends the connection.
            return Ok(());
        }
    }
}

async fn write_side(
    mut chunks: mpsc::Receiver<Chunk>,
    mut to: OwnedWriteHalf,
    mut toxic: watch::Receiver<Toxic>,
) -> io::Result<()> {
    while let Some(chunk) = chunks.recv().await {
        if hold(&chunk, &mut toxic).await.is_err() {
            return Ok(());
        }
        to.write_all(&chunk.data).await?;
    }
    // Half-close: the peer reads end of file, and may still answer.
    let _ = to.shutdown().await;
    Ok(())
}

/// Waits until `chunk` may be written under the current toxic. Chunks are
/// written in order, so a chunk is never released before the one before it.
/// Errs when the proxy is gone.
async fn hold(
    chunk: &Chunk,
    toxic: &mut watch::Receiver<Toxic>,
) -> Result<(), watch::error::RecvError> {
    loop {
        let release = match &*toxic.borrow_and_update() {
            Toxic::None => return Ok(()),
            Toxic::Partition => None,
            Toxic::Delay { latency, jitter } => {
                let release = chunk.read_at + one_way_delay(*latency, *jitter, chunk.jitter_draw);
                if release <= Instant::now() {
                    return Ok(());
                }
                Some(release)
            }
        };
        match release {
            None => toxic.changed().await?,
            Some(release) => tokio::select! {
                () = tokio::time::sleep_until(release) => return Ok(()),
                changed = toxic.changed() => changed?,
            },
        }
    }
}

/// Half of a round trip's delay, moved by `draw` (in `-1.0..=1.0`) within the jitter.
fn one_way_delay(latency: Duration, jitter: Duration, draw: f64) -> Duration {
    let round_trip = latency.as_secs_f64() + jitter.as_secs_f64() * draw;
    Duration::from_secs_f64(round_trip.max(0.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_way_delay_is_half_the_round_trip_within_the_jitter() {
        let ms = Duration::from_millis;
        assert_eq!(one_way_delay(ms(100), ms(0), 0.7), ms(50));
        assert_eq!(one_way_delay(ms(100), ms(20), 1.0), ms(60));
        assert_eq!(one_way_delay(ms(100), ms(20), -1.0), ms(40));
        // Jitter larger than the latency never makes a delay negative.
        assert_eq!(one_way_delay(ms(10), ms(50), -1.0), ms(0));
    }
}
