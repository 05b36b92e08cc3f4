use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Equal within the histogram's three significant digits.
fn assert_near(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= expected.abs() * 1e-3 + 1e-9,
        "{actual} is not within 0.1 % of {expected}"
    );
}

/// A checkout scheduled at `at_ms`, sent on time, answered `200` after `took_ms`.
fn priced(at_ms: u64, took_ms: u64, product_id: u32, version: u64) -> CheckoutRecord {
    CheckoutRecord {
        scheduled: ms(at_ms),
        sent: Some(ms(at_ms)),
        ended: Some(ms(at_ms + took_ms)),
        product_id,
        outcome: Outcome::Priced { version },
    }
}

fn failed(at_ms: u64, took_ms: u64, outcome: Outcome) -> CheckoutRecord {
    CheckoutRecord {
        scheduled: ms(at_ms),
        sent: Some(ms(at_ms)),
        ended: Some(ms(at_ms + took_ms)),
        product_id: 1,
        outcome,
    }
}

/// `rate` checkouts per second for `seconds`, each answered after `took_ms`.
fn steady(rate: u64, seconds: u64, took_ms: u64) -> Vec<CheckoutRecord> {
    let step = 1000 / rate;
    (0..rate * seconds)
        .map(|i| priced(i * step, took_ms, 1, 1))
        .collect()
}

fn recording(checkouts: Vec<CheckoutRecord>, schedule_end_ms: u64) -> Recording {
    Recording::new(RecordingInput {
        checkouts,
        schedule_end: ms(schedule_end_ms),
        ..RecordingInput::default()
    })
}

#[test]
fn phase_counts_only_checkouts_scheduled_in_the_window() {
    let recording = recording(steady(10, 10, 5), 10_000);
    let phase = recording.phase(ms(2000)..ms(5000));
    assert_eq!(phase.offered_rps, 10.0);
    assert_eq!(phase.achieved_rps, 10.0);
    assert_eq!(phase.success_ratio, 1.0);
    assert_eq!(phase.response_ms.p50, 5.0);
    assert_eq!(phase.completion_ms, phase.response_ms);
    // Start inclusive, end exclusive: 2000, 2100, ..., 4900.
    let edges = recording.phase(ms(2000)..ms(2100));
    assert_eq!(edges.offered_rps, 10.0); // one checkout in 0.1 s
}

#[test]
fn window_beyond_the_schedule_is_clipped() {
    let recording = recording(steady(10, 2, 1), 2000);
    let phase = recording.phase(ms(1000)..ms(60_000));
    assert_eq!(phase.offered_rps, 10.0);
    let empty = recording.phase(ms(5000)..ms(6000));
    assert_eq!(empty, PhaseMeasurement::default());
}

#[test]
fn records_need_not_arrive_in_schedule_order() {
    let mut checkouts = steady(10, 2, 1);
    checkouts.reverse();
    let recording = recording(checkouts, 2000);
    assert_eq!(recording.phase(ms(0)..ms(1000)).offered_rps, 10.0);
}

#[test]
fn a_stalled_loader_does_not_hide_latency() {
    // Every 10 ms a checkout, service time 1 ms. Between 1.0 s and 1.2 s the
    // sender itself stalled: the checkouts scheduled then went out together
    // at 1.2 s. Latency from the actual send would stay at 1 ms; from the
    // scheduled time it shows the stall (up to 201 ms), and the lag shows it too.
    let checkouts: Vec<_> = (0..200)
        .map(|i| {
            let at = i * 10;
            let sent = if (1000..1200).contains(&at) { 1200 } else { at };
            CheckoutRecord {
                scheduled: ms(at),
                sent: Some(ms(sent)),
                ended: Some(ms(sent + 1)),
                product_id: 1,
                outcome: Outcome::Priced { version: 1 },
            }
        })
        .collect();
    let recording = recording(checkouts, 2000);
    let phase = recording.phase(ms(0)..ms(2000));
    assert_eq!(phase.response_ms.max, 201.0);
    assert!(phase.response_ms.p99 >= 180.0, "{:?}", phase.response_ms);
    assert_eq!(phase.response_ms.p50, 1.0);
    assert_eq!(phase.behind_schedule_ms, 200.0);
    // From the actual send, every checkout took 1 ms: what a closed-loop
    // load generator would have reported.
    assert_eq!(recording.service_time(ms(0)..ms(2000)).max, 1.0);
    let lag = recording.schedule_lag(ms(0)..ms(2000));
    assert_eq!(lag.max_ms, 200.0);
    assert!(lag.p99_ms >= 180.0, "{lag:?}");
    assert_eq!(recording.summary().behind_schedule, lag);
}

#[test]
fn a_stalled_server_shows_in_latency_from_scheduled_time() {
    // The server stops answering between 1.0 s and 1.2 s; everything sent then
    // is answered at 1.2 s.
    let checkouts: Vec<_> = (0..200)
        .map(|i| {
            let at = i * 10;
            let ended = if (1000..1200).contains(&at) {
                1200
            } else {
                at + 1
            };
            priced(at, ended - at, 1, 1)
        })
        .collect();
    let recording = recording(checkouts, 2000);
    let phase = recording.phase(ms(0)..ms(2000));
    assert_eq!(phase.response_ms.max, 200.0);
    // 20 of 200 checkouts waited 10..200 ms: p90 sits at the edge, p99 deep in the stall.
    assert!(phase.response_ms.p99 >= 180.0, "{:?}", phase.response_ms);
    assert_eq!(phase.response_ms.p50, 1.0);
    assert_eq!(phase.behind_schedule_ms, 0.0);
}

#[test]
fn dropped_and_failed_checkouts_count_against_success() {
    let checkouts = vec![
        priced(0, 1, 1, 1),
        failed(100, 2, Outcome::Rejected { status: 503 }),
        failed(200, 1000, Outcome::TimedOut),
        failed(300, 0, Outcome::Failed),
        CheckoutRecord {
            scheduled: ms(400),
            sent: None,
            ended: None,
            product_id: 1,
            outcome: Outcome::Dropped,
        },
    ];
    let recording = recording(checkouts, 500);
    let phase = recording.phase(ms(0)..ms(500));
    assert_eq!(phase.offered_rps, 10.0);
    assert_eq!(phase.achieved_rps, 2.0);
    assert!((phase.success_ratio - 0.2).abs() < 1e-12);
    // The timeout counts with its full wait; the dropped one has no latency.
    assert_eq!(phase.response_ms.max, 1000.0);
    assert_eq!(phase.completion_ms.max, 1.0);
    let summary = recording.summary();
    assert_eq!(
        (summary.scheduled, summary.sent, summary.dropped, summary.ok),
        (5, 4, 1, 1)
    );
    assert_eq!(
        (summary.rejected, summary.timed_out, summary.failed),
        (1, 1, 1)
    );
}

#[test]
fn completions_match_accepted_checkouts_by_order_id() {
    let accepted = |at_ms: u64, order_id: &str| CheckoutRecord {
        scheduled: ms(at_ms),
        sent: Some(ms(at_ms)),
        ended: Some(ms(at_ms + 2)),
        product_id: 7,
        outcome: Outcome::Accepted {
            order_id: order_id.into(),
        },
    };
    let completion = |order_id: &str, received_ms: u64, version: u64| Completion {
        order_id: order_id.into(),
        product_id: 7,
        version,
        received: ms(received_ms),
    };
    let recording = Recording::new(RecordingInput {
        checkouts: vec![accepted(0, "a"), accepted(100, "b"), accepted(200, "c")],
        completions: vec![
            completion("a", 50, 1),
            // A duplicate delivery: the earliest counts.
            completion("b", 190, 1),
            completion("b", 130, 1),
            // Not ours.
            completion("zz", 10, 1),
        ],
        price_changes: vec![PriceChange {
            product_id: 7,
            version: 2,
            acked: ms(60),
        }],
        schedule_end: ms(300),
        ..RecordingInput::default()
    });
    let phase = recording.phase(ms(0)..ms(300));
    assert_eq!(phase.success_ratio, 1.0);
    assert_eq!(phase.response_ms.max, 2.0);
    assert_near(phase.completion_ms.p50, 30.0);
    assert_eq!(phase.completion_ms.max, 50.0);
    // "b" was sent at 100 ms, after version 2 was acknowledged at 60 ms, and
    // completed with version 1 at 130 ms: stale for 70 ms.
    assert_eq!(phase.stale_ratio, 0.5);
    assert_eq!(phase.staleness_ms.max, 70.0);
    let fault = recording.fault_window(
        "broker-down",
        FaultKind::Outage,
        Target::Broker,
        ms(0)..ms(300),
        1.0,
    );
    assert_eq!(fault.availability, 1.0);
    assert!((fault.completed_ratio - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(recording.summary().priced, 2);
    assert_eq!(recording.summary().completions_unmatched, 1);
}

#[test]
fn stale_ratio_is_over_priced_checkouts_and_staleness_over_stale_ones() {
    let changes = vec![PriceChange {
        product_id: 1,
        version: 2,
        acked: ms(100),
    }];
    let checkouts = vec![
        priced(0, 5, 1, 1),                                // sent before the change: fresh
        priced(150, 5, 1, 1),                              // stale by 55 ms
        priced(160, 40, 1, 1),                             // stale by 100 ms
        priced(170, 5, 1, 2),                              // fresh
        failed(180, 5, Outcome::Rejected { status: 503 }), // not priced: not judged
    ];
    let recording = Recording::new(RecordingInput {
        checkouts,
        price_changes: changes,
        price_changes_failed: 3,
        schedule_end: ms(200),
        ..RecordingInput::default()
    });
    let phase = recording.phase(ms(0)..ms(200));
    assert_eq!(phase.stale_ratio, 0.5);
    assert_near(phase.staleness_ms.p50, 55.0);
    assert_eq!(phase.staleness_ms.max, 100.0);
    assert_eq!(recording.summary().price_changes_acked, 1);
    assert_eq!(recording.summary().price_changes_failed, 3);
    assert_eq!(recording.timeline(ms(0))[0].stale, 2);
}

#[test]
fn timeline_has_one_row_per_second_from_the_measured_start() {
    let mut checkouts = steady(10, 4, 2);
    // In the third second (2.0..3.0 s), half of the checkouts fail.
    for checkout in checkouts.iter_mut().filter(|c| c.scheduled >= ms(2000)) {
        if checkout.scheduled < ms(3000) && checkout.scheduled.as_millis() % 200 == 0 {
            checkout.outcome = Outcome::Rejected { status: 503 };
        }
    }
    let recording = recording(checkouts, 4000);
    // Warm-up of one second: the timeline starts at 1 s.
    let rows = recording.timeline(ms(1000));
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].second, 0);
    assert_eq!((rows[0].offered, rows[0].ok, rows[0].errors), (10, 10, 0));
    assert_eq!((rows[1].offered, rows[1].ok, rows[1].errors), (10, 5, 5));
    assert_eq!(rows[2].p50_ms, 2.0);
    assert_eq!(rows[2].p99_ms, 2.0);
    let json = serde_json::to_value(&rows[0]).unwrap();
    assert!(json.get("p99Ms").is_some(), "{json}");
}

#[test]
fn timeline_gives_a_last_partial_second_its_own_row() {
    let recording = recording(steady(10, 3, 1), 2500);
    assert_eq!(recording.timeline(ms(0)).len(), 3);
}

/// 100 checkouts a second for 10 s, 2 ms each; between `fault_ms` and
/// `healed_ms` every checkout fails after 1 s.
fn outage(fault_ms: Range<u64>, healed_ms: u64) -> Recording {
    let checkouts = (0..1000)
        .map(|i| {
            let at = i * 10;
            if at >= fault_ms.start && at < healed_ms {
                failed(at, 1000, Outcome::TimedOut)
            } else {
                priced(at, 2, 1, 1)
            }
        })
        .collect();
    recording(checkouts, 10_000)
}

#[test]
fn recovery_is_immediate_when_the_first_window_after_the_fault_is_good() {
    let recording = outage(3000..5000, 5000);
    assert_eq!(recording.recovery_s(ms(5000), 2.0), Some(0.0));
}

#[test]
fn recovery_waits_for_a_window_at_99_percent_success() {
    // Failures go on 1.5 s after the fault's end.
    let recording = outage(3000..5000, 6500);
    let recovery = recording.recovery_s(ms(5000), 2.0).unwrap();
    assert!((recovery - 1.5).abs() < 1e-9, "{recovery}");
}

#[test]
fn one_failure_in_a_hundred_is_still_recovered() {
    let mut checkouts: Vec<_> = (0..1000).map(|i| priced(i * 10, 2, 1, 1)).collect();
    checkouts[505] = failed(5050, 2, Outcome::Rejected { status: 503 });
    let recording = recording(checkouts, 10_000);
    assert_eq!(recording.recovery_s(ms(5000), 2.0), Some(0.0));
    // Two in a hundred is not.
    let mut checkouts: Vec<_> = (0..1000).map(|i| priced(i * 10, 2, 1, 1)).collect();
    checkouts[505] = failed(5050, 2, Outcome::Rejected { status: 503 });
    checkouts[506] = failed(5060, 2, Outcome::Rejected { status: 503 });
    let recording = self::recording(checkouts, 10_000);
    // The first window without both failures starts at 5.1 s.
    let recovery = recording.recovery_s(ms(5000), 2.0).unwrap();
    assert!((recovery - 0.1).abs() < 1e-9, "{recovery}");
}

#[test]
fn recovery_waits_for_p99_within_twice_the_baseline() {
    // All succeed, but until 7 s they take 20 ms against a 2 ms baseline.
    let checkouts = (0..1000)
        .map(|i| {
            let at = i * 10;
            priced(at, if (5000..7000).contains(&at) { 20 } else { 2 }, 1, 1)
        })
        .collect();
    let recording = recording(checkouts, 10_000);
    let recovery = recording.recovery_s(ms(5000), 2.0).unwrap();
    assert!((recovery - 2.0).abs() < 1e-9, "{recovery}");
    // With a baseline p99 of 10 ms, 20 ms is within twice it.
    assert_eq!(recording.recovery_s(ms(5000), 10.0), Some(0.0));
}

#[test]
fn recovery_limit_has_a_floor_for_sub_millisecond_baselines() {
    let recording = recording(steady(100, 10, 1), 10_000);
    // Twice a 0.2 ms baseline would be 0.4 ms; the floor is 1 ms.
    assert_eq!(recording.recovery_s(ms(5000), 0.2), Some(0.0));
}

#[test]
fn no_recovery_before_the_run_ends_is_none() {
    let recording = outage(3000..5000, 10_000);
    assert_eq!(recording.recovery_s(ms(5000), 2.0), None);
    // A window that would reach past the schedule is not judged.
    let recording = outage(3000..5000, 9500);
    assert_eq!(recording.recovery_s(ms(5000), 2.0), None);
}

#[test]
fn fault_measurement_from_the_chaos_plan() {
    let recording = outage(3000..5000, 5500);
    let baseline = recording.phase(ms(0)..ms(3000));
    assert_eq!(baseline.response_ms.p99, 2.0);
    let fault: Fault = serde_json::from_value(serde_json::json!({
        "name": "catalog-down", "fault": "Outage", "target": "catalog", "at": "2s", "duration": "2s"
    }))
    .unwrap();
    // The measured run starts after a one-second warm-up: the fault is 3..5 s.
    let measured = recording.fault(&fault, ms(1000), &baseline);
    assert_eq!(measured.name, "catalog-down");
    assert_eq!(measured.availability, 0.0);
    assert_eq!(measured.completed_ratio, 0.0);
    assert_eq!(measured.response_ms.p99, 1000.0);
    assert_eq!(measured.recovery_s, Some(0.5));
}

#[test]
fn throughput_counts_answers_by_when_they_arrived() {
    // 10 a second for 2 s, each answered after 500 ms.
    let recording = recording(steady(10, 2, 500), 2000);
    // Scheduled in the first second: 10, all ok.
    assert_eq!(recording.phase(ms(0)..ms(1000)).achieved_rps, 10.0);
    // Arrived in the first second: those scheduled before 0.5 s.
    assert_eq!(recording.throughput(ms(0)..ms(1000)), 5.0);
    assert_eq!(recording.throughput(ms(0)..ms(2500)), 8.0);
    assert_eq!(recording.throughput(ms(1000)..ms(1000)), 0.0);
}
