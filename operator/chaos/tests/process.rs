//! `ManagedProcess` with real child processes.

mod common;

use std::{net::SocketAddr, time::Duration};

use commlab_chaos::{LocalProcess, ManagedProcess};
use common::{LOOPBACK, free_port, http_server, wait_accepting};
use tokio::{process::Command, time::Instant};

const PATIENCE: Duration = Duration::from_secs(20);

fn sleeper() -> ManagedProcess {
    ManagedProcess::new("sleeper", || {
        let mut command = Command::new("sleep");
        command.arg("30");
        command
    })
}

#[tokio::test]
async fn stop_kill_and_start_an_http_server() {
    let port = free_port();
    let addr = SocketAddr::from((LOOPBACK, port));
    let server = ManagedProcess::new("http-server", move || http_server(port));
    assert!(!server.is_running().await);

    server.start().await.unwrap();
    assert!(
        wait_accepting(addr, true, PATIENCE).await,
        "server never accepted"
    );
    let first = server.id().await.expect("running");

    // Stop returns once the process has exited: nothing accepts any more.
    server.stop().await.unwrap();
    assert!(!server.is_running().await);
    assert!(!common::accepts(addr).await, "still accepting after stop");

    server.start().await.unwrap();
    assert!(
        wait_accepting(addr, true, PATIENCE).await,
        "no accept after restart"
    );
    let second = server.id().await.expect("running");
    assert_ne!(first, second, "a new process");

    server.kill().await.unwrap();
    assert!(!server.is_running().await);
    assert!(!common::accepts(addr).await, "still accepting after kill");

    server.start().await.unwrap();
    assert!(
        wait_accepting(addr, true, PATIENCE).await,
        "no accept after restart"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn start_is_a_no_op_while_running_and_stop_while_stopped() {
    let sleeper = sleeper();
    sleeper.stop().await.unwrap();
    sleeper.kill().await.unwrap();

    sleeper.start().await.unwrap();
    let pid = sleeper.id().await.expect("running");
    sleeper.start().await.unwrap();
    assert_eq!(
        sleeper.id().await,
        Some(pid),
        "start must not spawn a second process"
    );

    let started = Instant::now();
    sleeper.stop().await.unwrap();
    // `sleep` exits on SIGTERM: no need to wait for the grace period.
    assert!(started.elapsed() < Duration::from_secs(5));
    sleeper.stop().await.unwrap();
    assert!(!sleeper.is_running().await);
}

#[tokio::test]
async fn stop_sends_sigkill_after_the_grace_period() {
    let grace = Duration::from_millis(300);
    let stubborn = ManagedProcess::new("stubborn", || {
        let mut command = Command::new("sh");
        // Ignored signals stay ignored across exec.
        command.args(["-c", "trap '' TERM; exec sleep 30"]);
        command
    })
    .with_grace(grace);
    stubborn.start().await.unwrap();
    // Let the shell install its trap before it is signalled.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(stubborn.is_running().await);

    let started = Instant::now();
    stubborn.stop().await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= grace,
        "stopped after {took:?}, before the grace period"
    );
    assert!(took < Duration::from_secs(6), "stop took {took:?}");
    assert!(!stubborn.is_running().await);
}

#[tokio::test]
async fn a_process_that_exited_on_its_own_can_be_started_again() {
    let short = ManagedProcess::new("short", || Command::new("true"));
    short.start().await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    while short.is_running().await && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!short.is_running().await);
    short.stop().await.unwrap();
    short.start().await.unwrap();
}

#[tokio::test]
async fn a_command_that_cannot_start_is_a_process_error() {
    let missing = ManagedProcess::new("missing", || {
        Command::new("/nonexistent/commlab-test-binary")
    });
    let err = missing.start().await.unwrap_err();
    assert_eq!(err.category(), "process");
    assert!(
        err.to_string()
            .starts_with("could not start process `missing`"),
        "{err}"
    );
}

#[tokio::test]
async fn dropping_it_kills_the_process() {
    let sleeper = sleeper();
    sleeper.start().await.unwrap();
    let pid = sleeper.id().await.unwrap();
    drop(sleeper);
    let proc_dir = format!("/proc/{pid}");
    let deadline = Instant::now() + PATIENCE;
    // Gone, or a zombie waiting for tokio's reaper.
    let alive = || {
        std::fs::read_to_string(format!("{proc_dir}/stat"))
            .map(|stat| !stat.contains(") Z"))
            .unwrap_or(false)
    };
    while alive() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive(), "process {pid} outlived its ManagedProcess");
}
