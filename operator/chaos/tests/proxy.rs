//! The fault proxy over real loopback sockets.

mod common;

use std::time::Duration;

use commlab_chaos::{FaultProxy, Toxic};
use common::{any_port, echo_server, free_port, round_trip};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinSet,
    time::{Instant, timeout},
};

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

async fn proxy_to_echo() -> (FaultProxy, common::Echo) {
    let echo = echo_server().await;
    let proxy = FaultProxy::bind(any_port(), echo.addr).await.unwrap();
    (proxy, echo)
}

#[tokio::test]
async fn forwards_bytes_both_ways_and_the_end_of_stream() {
    let (proxy, echo) = proxy_to_echo().await;
    assert_ne!(proxy.local_addr().port(), 0);
    assert_eq!(proxy.handle().upstream_addr(), echo.addr);

    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut client, b"ping", ms(2000)).await;

    // A megabyte, more than any socket buffer, written while it is read back.
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut read, mut write) = client.into_split();
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        write.write_all(&sent).await.unwrap();
        // Half-close: the echo server sees the end and closes its side too.
        write.shutdown().await.unwrap();
    });
    let mut echoed = Vec::new();
    timeout(Duration::from_secs(10), read.read_to_end(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload, "bytes changed on the way");
    assert_eq!(echo.accepted(), 1);
}

#[tokio::test]
async fn a_connection_to_a_down_upstream_is_closed() {
    let down = std::net::SocketAddr::from((common::LOOPBACK, free_port()));
    let proxy = FaultProxy::bind(any_port(), down).await.unwrap();
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut buf = [0; 8];
    let read = timeout(Duration::from_secs(5), client.read(&mut buf))
        .await
        .unwrap();
    // End of file or a reset: either way the client learns at once.
    assert!(matches!(read, Ok(0) | Err(_)), "got {read:?}");
}

#[tokio::test]
async fn delay_adds_the_latency_to_a_round_trip_and_clears() {
    let (proxy, _echo) = proxy_to_echo().await;
    let handle = proxy.handle();
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let baseline = round_trip(&mut client, b"before", ms(2000)).await;
    assert!(baseline < ms(200), "baseline round trip {baseline:?}");

    // On the connection already open, as with HTTP keep-alive or a pool.
    let latency = ms(200);
    handle.set_toxic(Toxic::Delay {
        latency,
        jitter: Duration::ZERO,
    });
    assert_eq!(
        handle.toxic(),
        Toxic::Delay {
            latency,
            jitter: Duration::ZERO
        }
    );
    for _ in 0..3 {
        let delayed = round_trip(&mut client, b"during", ms(5000)).await;
        assert!(delayed >= latency, "delayed round trip {delayed:?}");
        assert!(delayed < ms(1500), "delayed round trip {delayed:?}");
    }

    // A new connection gets it too.
    let mut fresh = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let delayed = round_trip(&mut fresh, b"fresh", ms(5000)).await;
    assert!(
        delayed >= latency && delayed < ms(1500),
        "new connection round trip {delayed:?}"
    );

    handle.clear();
    let after = round_trip(&mut client, b"after", ms(2000)).await;
    assert!(after < ms(200), "round trip after clearing {after:?}");
}

#[tokio::test]
async fn jitter_varies_the_delay_around_the_latency() {
    let (proxy, _echo) = proxy_to_echo().await;
    proxy.handle().set_toxic(Toxic::Delay {
        latency: ms(100),
        jitter: ms(80),
    });
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    for _ in 0..5 {
        let delayed = round_trip(&mut client, b"x", ms(5000)).await;
        // At least latency - jitter, at most latency + jitter plus scheduling slack.
        assert!(
            delayed >= ms(20) && delayed < ms(1200),
            "round trip {delayed:?}"
        );
    }
}

#[tokio::test]
async fn delay_does_not_serialize_throughput() {
    let (proxy, _echo) = proxy_to_echo().await;
    proxy.handle().set_toxic(Toxic::Delay {
        latency: ms(200),
        jitter: Duration::ZERO,
    });
    let client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (mut read, mut write) = client.into_split();
    let messages = 20;
    let started = Instant::now();
    // Pipelined: every message is sent before any echo comes back.
    let writer = tokio::spawn(async move {
        for i in 0..messages {
            write
                .write_all(format!("message {i:02}\n").as_bytes())
                .await
                .unwrap();
            tokio::time::sleep(ms(5)).await;
        }
        write
    });
    let mut echoed = vec![0; messages * "message 00\n".len()];
    timeout(Duration::from_secs(10), read.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    let elapsed = started.elapsed();
    drop(writer.await.unwrap());
    let expected: String = (0..messages).map(|i| format!("message {i:02}\n")).collect();
    assert_eq!(String::from_utf8(echoed).unwrap(), expected, "order kept");
    // One delay for all, not one per message (which would be 4 s).
    assert!(elapsed >= ms(200), "elapsed {elapsed:?}");
    assert!(
        elapsed < ms(1500),
        "elapsed {elapsed:?}: the delay serialized the messages"
    );
}

#[tokio::test]
async fn partition_stalls_open_and_new_connections_then_resumes() {
    let (proxy, echo) = proxy_to_echo().await;
    let handle = proxy.handle();
    let mut open = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut open, b"hello", ms(2000)).await;
    assert_eq!(echo.accepted(), 1);

    handle.set_toxic(Toxic::Partition);
    open.write_all(b"held").await.unwrap();
    let mut buf = [0; 4];
    assert!(
        timeout(ms(300), open.read_exact(&mut buf)).await.is_err(),
        "an open connection answered during a partition"
    );

    // A new connection is accepted by the kernel but goes nowhere.
    let mut new = TcpStream::connect(proxy.local_addr()).await.unwrap();
    new.write_all(b"late").await.unwrap();
    let mut new_buf = [0; 4];
    assert!(
        timeout(ms(300), new.read_exact(&mut new_buf))
            .await
            .is_err()
    );
    assert_eq!(echo.accepted(), 1, "a partition must not connect upstream");
    assert_eq!(handle.open_connections(), 2);

    handle.clear();
    timeout(Duration::from_secs(5), open.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &buf, b"held",
        "held bytes are delivered after the partition"
    );
    timeout(Duration::from_secs(5), new.read_exact(&mut new_buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&new_buf, b"late");
    assert_eq!(echo.accepted(), 2);
    round_trip(&mut open, b"after", ms(2000)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_connections() {
    let (proxy, echo) = proxy_to_echo().await;
    let handle = proxy.handle();
    let connections = 300;
    let addr = proxy.local_addr();
    let mut clients = JoinSet::new();
    for id in 0..connections {
        clients.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            for round in 0..10 {
                let message = format!("connection {id} round {round}");
                round_trip(&mut stream, message.as_bytes(), Duration::from_secs(10)).await;
            }
            stream
        });
    }
    let mut streams = Vec::new();
    let all = async {
        while let Some(joined) = clients.join_next().await {
            streams.push(joined.unwrap());
        }
    };
    timeout(Duration::from_secs(60), all)
        .await
        .expect("clients did not finish in time");
    assert_eq!(streams.len(), connections);
    assert_eq!(handle.open_connections(), connections);
    assert_eq!(handle.accepted_connections(), connections as u64);
    assert_eq!(echo.accepted(), connections);

    // Toxics reach every open connection at once.
    handle.set_toxic(Toxic::Delay {
        latency: ms(100),
        jitter: Duration::ZERO,
    });
    let mut delayed = JoinSet::new();
    for mut stream in streams {
        delayed
            .spawn(async move { round_trip(&mut stream, b"slow", Duration::from_secs(10)).await });
    }
    let started = Instant::now();
    while let Some(elapsed) = delayed.join_next().await {
        assert!(elapsed.unwrap() >= ms(100));
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "delays were serialized"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.open_connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(ms(20)).await;
    }
    assert_eq!(
        handle.open_connections(),
        0,
        "closed connections were not released"
    );
}

#[tokio::test]
async fn shutdown_closes_the_listener_and_connections() {
    let (proxy, _echo) = proxy_to_echo().await;
    let addr = proxy.local_addr();
    let mut client = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut client, b"hi", ms(2000)).await;
    proxy.shutdown().await;
    let mut buf = [0; 2];
    let read = timeout(Duration::from_secs(5), client.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "got {read:?}");
    assert!(!common::accepts(addr).await);
}
