//! The load generator's benchmark helper (`bench/loadgen-vs-oha.sh`).
//!
//! `loadgen_bench serve [--threads N] [--max-seconds S]` serves a tiny orders
//! on 127.0.0.1 (an ephemeral port, printed on the first line of stdout):
//! `POST /checkout` parses the body and answers a priced `Order`. It exits by
//! itself after `--max-seconds` (default 600).
//!
//! `loadgen_bench load --url URL --rate R --seconds S [--max-in-flight N]`
//! runs commlab's load generator against `URL` and prints one JSON line:
//! the achieved rate (2xx answers over the run's wall time), latency from the
//! scheduled time, the service time, how far sends fell behind, and drops.

use std::time::{Duration, Instant};

use axum::{Json, Router, routing::post};
use commlab_workload::load::{LoadConfig, LoadRun};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Checkout {
    product_id: u32,
    quantity: u32,
}

async fn checkout(Json(checkout): Json<Checkout>) -> Json<Value> {
    Json(json!({
        "order_id": "bench", "product_id": checkout.product_id, "quantity": checkout.quantity,
        "price_cents": 1299, "version": 1, "total_cents": 1299 * u64::from(checkout.quantity),
        "status": "priced"
    }))
}

fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: Option<T>) -> T {
    let value = args
        .iter()
        .position(|arg| arg == name)
        .and_then(|i| args.get(i + 1));
    match (value, default) {
        (Some(value), _) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}: cannot parse `{value}`")),
        (None, Some(default)) => default,
        (None, None) => panic!("{name} is required"),
    }
}

fn serve(args: &[String]) {
    let threads: usize = flag(args, "--threads", Some(2));
    let max_seconds: u64 = flag(args, "--max-seconds", Some(600));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("http://{}", listener.local_addr().expect("address"));
        let app = Router::new().route("/checkout", post(checkout));
        let server = axum::serve(listener, app);
        // Bounded: the server never outlives the benchmark by long.
        let _ = tokio::time::timeout(Duration::from_secs(max_seconds), server).await;
    });
}

fn load(args: &[String]) {
    let url: String = flag(args, "--url", None);
    let rate: f64 = flag(args, "--rate", None);
    let seconds: f64 = flag(args, "--seconds", Some(3.0));
    let threads: usize = flag(args, "--threads", Some(2));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut config = LoadConfig::new(vec![url], rate, Duration::from_secs_f64(seconds));
        if let Some(i) = args.iter().position(|arg| arg == "--max-in-flight") {
            config.max_in_flight = args[i + 1].parse().expect("--max-in-flight");
        }
        if let Some(i) = args.iter().position(|arg| arg == "--max-connections") {
            config.max_connections = args[i + 1].parse().expect("--max-connections");
        }
        let started = Instant::now();
        let handle = LoadRun::start(config).await.expect("start");
        let recording = handle.finish().await.expect("finish");
        let wall = started.elapsed().as_secs_f64();
        let phase = recording.phase(Duration::ZERO..recording.schedule_end());
        let service = recording.service_time(Duration::ZERO..recording.schedule_end());
        let summary = recording.summary();
        let line = json!({
            "targetRps": rate,
            // As oha counts: 2xx answers received within the run's duration.
            "achievedRps": recording.throughput(Duration::ZERO..Duration::from_secs_f64(seconds)),
            "wallS": wall,
            "scheduled": summary.scheduled,
            "ok": summary.ok,
            "dropped": summary.dropped,
            "errors": summary.scheduled - summary.ok,
            "p50Ms": phase.response_ms.p50,
            "p99Ms": phase.response_ms.p99,
            "maxMs": phase.response_ms.max,
            "serviceP50Ms": service.p50,
            "serviceP99Ms": service.p99,
            "behindP99Ms": summary.behind_schedule.p99_ms,
            "behindMaxMs": summary.behind_schedule.max_ms,
        });
        println!("{line}");
        if args.iter().any(|arg| arg == "--lag-profile") {
            let step = Duration::from_millis(100);
            let mut at = Duration::ZERO;
            while at < recording.schedule_end() {
                let lag = recording.schedule_lag(at..at + step);
                let service = recording.service_time(at..at + step);
                eprintln!(
                    "{:>6.1}s lag p99 {:>8.3} max {:>8.3} | service p99 {:>8.3} max {:>8.3}",
                    at.as_secs_f64(),
                    lag.p99_ms,
                    lag.max_ms,
                    service.p99,
                    service.max
                );
                at += step;
            }
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args),
        Some("load") => load(&args),
        _ => {
            eprintln!("usage: loadgen_bench serve [--threads N] [--max-seconds S]");
            eprintln!(
                "       loadgen_bench load --url URL --rate R [--seconds S] [--max-in-flight N]"
            );
            std::process::exit(2);
        }
    }
}
