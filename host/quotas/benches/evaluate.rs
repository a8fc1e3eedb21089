//! Issue 17's accounting figure: usage accounting for 100,000 owners, one
//! `evaluate` cycle (goal ≤ 50 ms), on two per-owner quotas — a count with
//! soft, hard and an hourly burst allowance, and a rolling daily byte rate
//! (16 buckets) — so each cycle runs 200,000 (quota, owner) pairs through
//! the state machine. One owner in twenty is over a limit; the first cycle
//! takes their transitions, the later ones are steady state. Also printed:
//! what a charge costs (no goal) and the snapshot's size and time (no goal).
//!
//! Run: `cargo bench -p warden-quotas --bench evaluate`. Knob:
//! `WARDEN_BENCH_OWNERS` (default 100,000). Under `cargo test` it runs small
//! (2,000 owners) as a smoke test; the goal is printed, not enforced.

use std::time::{Duration, Instant};

use warden_quotas::{
    Action, Amount, Limits, Measure, Period, QuotaDef, Quotas, Scope, Subject, Unit,
};

const GOAL_MS: f64 = 50.0;
const NOW: i64 = 1_700_000_000_000;

fn quotas() -> Quotas {
    let per_owner = Scope {
        matchers: vec![],
        per_owner: true,
    };
    let files = QuotaDef {
        scope: per_owner.clone(),
        actions: vec![
            Action::Deny,
            Action::Cleanup {
                policies: vec!["temp-files".into()],
                min_reclaim: 10,
            },
        ],
        period: Some(Period::Hourly),
        ..QuotaDef::new(
            "files",
            Measure::Level(Unit::Count),
            Limits {
                soft: Some(800),
                hard: Some(1_000),
                burst: Some(1_200),
                grace_ms: Some(60_000),
                burst_allowance_ms: Some(300_000),
                ..Limits::default()
            },
        )
    };
    let written = QuotaDef {
        scope: per_owner,
        actions: vec![Action::Warn],
        period: Some(Period::Rolling {
            length_ms: 86_400_000,
        }),
        ..QuotaDef::new(
            "written-per-day",
            Measure::Rate(Unit::Bytes),
            Limits {
                hard: Some(1 << 30),
                ..Limits::default()
            },
        )
    };
    Quotas::new(vec![files, written]).unwrap()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("WARDEN_BENCH_OWNERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benchmarking { 100_000 } else { 2_000 });
    let q = quotas();
    let owners: Vec<String> = (0..n).map(|i| format!("user-{i:06}")).collect();

    let t = Instant::now();
    let mut charges = 0u32;
    for (i, o) in owners.iter().enumerate() {
        let s = Subject::new(o, "temp-file");
        let over = i % 20 == 0;
        let count = if over { 1_100 } else { (i % 700) as u64 };
        let bytes = if over { 1 << 31 } else { 1 << 20 };
        // Spread over the day, so the rate sums several buckets.
        for h in 0..4 {
            q.charge(&s, Amount::bytes(bytes / 4), NOW - h * 6 * 3_600_000);
            charges += 1;
        }
        q.charge(&s, Amount::count(count), NOW);
        charges += 1;
    }
    let per_charge = t.elapsed() / charges;

    let t = Instant::now();
    let first = q.evaluate(NOW);
    let first_time = t.elapsed();
    assert!(!first.is_empty());
    let cycles = if benchmarking { 20 } else { 3 };
    let mut steady: Vec<Duration> = (1..=cycles)
        .map(|c| {
            let t = Instant::now();
            let events = q.evaluate(NOW + c * 10_000);
            let took = t.elapsed();
            assert!(
                events.len() < n / 10,
                "{} events in a steady cycle",
                events.len()
            );
            took
        })
        .collect();
    steady.sort_unstable();
    let p50 = steady[steady.len() / 2];
    let max = steady[steady.len() - 1];

    let t = Instant::now();
    let json = q.snapshot(NOW).to_json();
    let snap_time = t.elapsed();

    let verdict = |d: Duration| if ms(d) <= GOAL_MS { "meets" } else { "MISSES" };
    println!("usage accounting, {n} owners × 2 quotas");
    println!(
        "  charge                          {} ns each ({charges} charges)",
        per_charge.as_nanos()
    );
    println!(
        "  evaluate, first cycle           {:>6.1} ms ({} events)   goal ≤ {GOAL_MS} ms: {}",
        ms(first_time),
        first.len(),
        verdict(first_time)
    );
    println!(
        "  evaluate, steady (of {cycles})       p50 {:>6.1} ms, max {:.1} ms   goal ≤ {GOAL_MS} ms: {}",
        ms(p50),
        ms(max),
        verdict(p50)
    );
    println!(
        "  snapshot                        {:>6.1} ms, {:.1} MB of JSON",
        ms(snap_time),
        json.len() as f64 / 1e6
    );
}
