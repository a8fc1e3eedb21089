//! `warden replay` speed: a policy of 100 threshold rules over 1,000 series
//! at 10 s resolution, replayed over a simulated day at the policy's
//! interval. Goal: ≥ 10,000× real time.
//!
//! The series are 10 metrics × 100 hosts in 10 clusters: gauges, counters
//! and latency observations. The rules are what operators write: 40
//! per-host thresholds (`matchers: {host: …}`), 20 averages per cluster
//! (`by`), 20 counter rates, 10 p99s over the window and 10 per-cluster error
//! ratios (`divide_by`), on windows of 1 to 5 minutes. The replay is the
//! library call `warden replay` makes (the shipped `threshold` plugin, the
//! host's store, the alert state machine): the figure is simulated time
//! over the wall time of the run. Loading the series is measured apart, from
//! a JSON-lines file as `--series` reads it.
//!
//! Run: `cargo bench -p warden --bench replay`. Knobs: `WARDEN_BENCH_SERIES`
//! (default 1,000), `WARDEN_BENCH_HOURS` (default 24), `WARDEN_BENCH_INTERVAL`
//! (the policy's interval, default 10s). Under `cargo test` it runs small
//! (50 series, one hour) as a smoke test.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use warden::metrics::Kind as SeriesKind;
use warden::metrics::store::Op;
use warden::plugin::{Engine, EngineOptions};
use warden::runtime::replay::{self, Replay};

const STEP_MS: i64 = 10_000;
const START_MS: i64 = 1_704_067_200_000;
const GOAL: f64 = 10_000.0;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a count"))
        })
        .unwrap_or(default)
}

/// Metric `m` of `series` series: (name, kind).
fn metric(m: usize) -> (&'static str, SeriesKind) {
    match m {
        0..=3 => (["cpu", "mem", "disk", "load"][m], SeriesKind::Gauge),
        4 | 5 => (["queue", "temp"][m - 4], SeriesKind::Gauge),
        6 => ("requests_total", SeriesKind::Counter),
        7 => ("errors_total", SeriesKind::Counter),
        8 => ("latency_ms", SeriesKind::Histogram),
        _ => ("conns", SeriesKind::Gauge),
    }
}

/// The value of series (`m`, `host`) at step `t`: smooth, noisy, and for
/// some hosts above the thresholds for a while.
fn value(m: usize, host: usize, t: usize) -> f64 {
    let x = ((t as f64 / 360.0) + host as f64).sin() * 10.0 + ((t * 7919 + host * 31) % 17) as f64;
    match m {
        6 => (t * (10 + host % 7)) as f64,
        7 => (t * (1 + host % 3)) as f64 / 10.0,
        _ => 50.0 + x,
    }
}

fn policy(interval: &str) -> String {
    let mut rules = Vec::new();
    for i in 0..40 {
        let m = ["cpu", "mem", "disk", "load"][i / 10];
        rules.push(format!(
            "{{alert: High{i}, metric: {m}, matchers: {{host: h{}}}, condition: gt, threshold: 70, for: 1m, window: 1m}}",
            i % 100
        ));
    }
    for i in 0..20 {
        let m = ["queue", "temp"][i % 2];
        rules.push(format!(
            "{{alert: ClusterAvg{i}, metric: {m}, over: avg, by: [cluster], aggregate: avg, condition: gt, threshold: {}, window: 5m}}",
            55 + i
        ));
    }
    for i in 0..20 {
        rules.push(format!(
            "{{alert: Rate{i}, metric: requests_total, matchers: {{cluster: c{}}}, over: rate, condition: gt, threshold: {}, window: 2m}}",
            i % 10,
            1 + i % 5
        ));
    }
    for i in 0..10 {
        rules.push(format!(
            "{{alert: P99_{i}, metric: latency_ms, matchers: {{cluster: c{i}}}, over: quantile, quantile: 0.99, condition: gt, threshold: 65, window: 5m}}"
        ));
    }
    for i in 0..10 {
        rules.push(format!(
            "{{alert: ErrorRatio{i}, metric: errors_total, matchers: {{cluster: c{i}}}, over: increase, by: [cluster], divide_by: {{metric: requests_total, matchers: {{cluster: c{i}}}}}, condition: gt, threshold: 0.015, window: 5m}}"
        ));
    }
    format!(
        "policies:\n  - name: fleet\n    kind: alert\n    plugin: threshold\n    timeout: 10s\n    trigger: {{interval: {interval}}}\n    config:\n      rules:\n{}",
        rules
            .iter()
            .map(|r| format!("        - {r}\n"))
            .collect::<String>()
    )
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let series = env_usize("WARDEN_BENCH_SERIES", if benchmarking { 1000 } else { 50 });
    let hours = env_usize("WARDEN_BENCH_HOURS", if benchmarking { 24 } else { 1 });
    let interval = std::env::var("WARDEN_BENCH_INTERVAL").unwrap_or_else(|_| "10s".into());
    let steps = hours * 360;
    let hosts = series.div_ceil(10).max(1);
    let dir = tempfile::tempdir().unwrap();

    // The series, straight into the replay store (the run's figure), and
    // the same as a JSON-lines file for the load figure.
    let store = replay::store();
    let t = Instant::now();
    let mut changes = Vec::with_capacity(steps);
    let mut n = 0;
    for m in 0..10 {
        for host in 0..hosts {
            if n == series {
                break;
            }
            n += 1;
            let (name, kind) = metric(m);
            let host_label = format!("h{host}");
            let cluster = format!("c{}", host % 10);
            let labels = [("host", host_label.as_str()), ("cluster", cluster.as_str())];
            let id = store.interner().intern(name, &labels, kind).unwrap();
            let op = if kind == SeriesKind::Histogram {
                Op::Observe
            } else {
                Op::Set
            };
            changes.clear();
            changes.extend(
                (0..steps).map(|t| (id, op, START_MS + t as i64 * STEP_MS, value(m, host, t))),
            );
            store.apply(&changes, |_, _, _| {});
        }
    }
    let generated = t.elapsed();
    let samples = series * steps;

    let jsonl = dir.path().join("fleet.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&jsonl).unwrap());
        // A tenth of the series: enough to time the reader, small enough to write.
        for host in 0..hosts.min(100).div_ceil(10) {
            for t in 0..steps {
                writeln!(
                    f,
                    "{{\"metric\": \"cpu\", \"labels\": {{\"host\": \"h{host}\"}}, \"timestamp\": {}, \"value\": {}}}",
                    START_MS + t as i64 * STEP_MS,
                    value(0, host, t)
                )
                .unwrap();
            }
        }
    }
    let t = Instant::now();
    let (loaded, _) = replay::load_sources(std::slice::from_ref(&jsonl)).unwrap();
    let load_secs = t.elapsed().as_secs_f64();
    let loaded_samples = hosts.min(100).div_ceil(10) * steps;
    drop(loaded);

    let plugins = warden::policy::PluginCache::new(Engine::new(&EngineOptions::default()).unwrap());
    let sources: Arc<dyn warden::plugin::DataSource> = Arc::new(warden::sources::Sources {
        series: Arc::clone(&store),
        ..Default::default()
    });
    let mut r = Replay::new(
        std::path::Path::new("fleet.yaml"),
        &policy(&interval),
        &warden::policy::ParseContext {
            data_dir: dir.path().to_path_buf(),
        },
        &plugins,
        &sources,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let (mut decisions, mut errors) = (0usize, Vec::new());
    let end = START_MS + (steps as i64 - 1) * STEP_MS;
    let summary = r.run(START_MS, end, |d| {
        decisions += 1;
        if let replay::decision::What::Error { error } = &d.what {
            errors.push(error.clone());
        }
    });
    assert!(
        errors.is_empty(),
        "evaluations failed: {:?}",
        &errors[..errors.len().min(3)]
    );
    assert!(
        decisions > 0,
        "the rules never fired: the bench measures nothing"
    );
    let secs = summary.elapsed.as_secs_f64();
    let speed = summary.simulated_ms as f64 / 1000.0 / secs;
    // A smoke run under `cargo test` is too small to say anything.
    let verdict = |ok: bool| match (benchmarking, ok) {
        (false, _) => "not judged (smoke run)",
        (true, true) => "met",
        (true, false) => "MISSED",
    };
    println!(
        "replay: {series} series at 10 s, 100 rules, interval {interval}, {hours} h simulated ({samples} samples, generated in {:.1} s)",
        generated.as_secs_f64()
    );
    println!("| figure | this run | goal | |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| replay speed | {speed:.0}× real time ({} evaluations in {secs:.2} s, {:.2} ms each; {decisions} decisions) | ≥ {GOAL:.0}× | {} |",
        summary.evaluations,
        secs * 1e3 / summary.evaluations.max(1) as f64,
        verdict(speed >= GOAL)
    );
    println!(
        "| loading JSON lines | {:.2} M samples/s ({loaded_samples} samples in {load_secs:.2} s) | — | |",
        loaded_samples as f64 / load_secs / 1e6
    );
}
