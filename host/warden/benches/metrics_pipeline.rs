//! The metrics pipeline's figures, each printed beside its goal:
//!
//! - in-process record, CPU per call on the calling thread (goal ≤ 100 ns),
//!   for one series repeated (the per-thread cache's best case) and for
//!   10,000 series in turn; beside it the CPU of all threads per record (the
//!   caller, the ingest worker and the batch writer), which is what a record
//!   costs the machine;
//! - sustained records persisted per second (goal ≥ 1,000,000/s), with the
//!   real defaults (`full_queue: drop_oldest`, so the loss is counted) and
//!   with the defaults but `full_queue: wait`, which loses nothing;
//! - bytes per persisted record: plain JSON, the default, against the seed's
//!   < 50; zstd (goal ≤ 20);
//! - HTTP ingest into the real daemon, batches of 1,000 (goal ≥ 500,000 samples/s);
//! - aggregates over 10,000 series (goal ≤ 5 ms).
//!
//! Run: `cargo bench -p warden --bench metrics_pipeline`. Under `cargo test`
//! it runs each part once, small, as a smoke test.

#[path = "support/cpu.rs"]
mod cpu;
use cpu::thread_cpu;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden::metrics::config::{Compression, FullQueue, PersistConfig};
use warden::metrics::persist::{Writer, batch_files, read_batch};
use warden::metrics::store::Scope;
use warden::metrics::validate::PiiKeys;
use warden::metrics::{Aggregation, Kind, Metrics, SeriesStore, StoreLimits};
use warden::plugin::records::SeriesSelector;
use warden::values::HumanDuration;

struct Row {
    what: String,
    value: String,
    goal: String,
    met: Option<bool>,
}

fn row(rows: &mut Vec<Row>, what: &str, value: String, goal: &str, met: Option<bool>) {
    println!("{what}: {value}");
    rows.push(Row {
        what: what.into(),
        value,
        goal: goal.into(),
        met,
    });
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn persist_config(
    batch: usize,
    queue: usize,
    compression: Compression,
    full: FullQueue,
) -> PersistConfig {
    PersistConfig {
        max_batch_size: batch,
        max_queue_size: queue,
        compression,
        zstd_level: 3,
        full_queue: full,
        wait_timeout: HumanDuration(Duration::from_secs(30)),
        ..PersistConfig::default()
    }
}

fn start(dir: &std::path::Path, config: &PersistConfig) -> Metrics {
    let store = Arc::new(SeriesStore::new(
        StoreLimits {
            max_series: 100_000,
            max_samples: 64,
            retention: Duration::from_secs(3600),
        },
        PiiKeys::default(),
    ));
    let writer = Writer::open(
        dir,
        config.compression,
        config.zstd_level,
        config.retention.0,
    )
    .unwrap();
    Metrics::start(store, config, Some(writer)).unwrap()
}

/// CPU time (user + system) of every thread of this process.
fn process_cpu() -> Duration {
    // SAFETY: an all-zero `rusage` is a valid value to be overwritten.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `r` is writable for the call.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(r.ru_utime) + tv(r.ru_stime)
}

/// What a record costs, in nanoseconds of CPU per call (medians of rounds).
struct Cost {
    /// The calling thread's CPU: what the caller pays.
    caller: f64,
    /// Every thread's CPU, the round's flush to disk included: the caller,
    /// the ingest worker applying it to the store, the writer encoding and
    /// writing it.
    all_threads: f64,
}

/// The cost of a call, over rounds of `per_round` calls; the queue is
/// drained (and written) between rounds so no call meets a full queue.
/// `setup` runs once (resolving a handle, say) and its result is passed to
/// every call.
fn record_cost<T>(
    rounds: usize,
    per_round: usize,
    setup: impl Fn(&Metrics) -> T,
    call: impl Fn(&Metrics, &T, usize),
) -> Cost {
    let dir = tempfile::tempdir().unwrap();
    let m = start(
        dir.path(),
        &persist_config(1000, per_round * 2, Compression::None, FullQueue::Wait),
    );
    let prepared = setup(&m);
    let (mut caller, mut all) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        // CPU time, not wall time: on 2 shared cores other work would count.
        let (p, t) = (process_cpu(), thread_cpu());
        for i in 0..per_round {
            call(&m, &prepared, r * per_round + i);
        }
        caller.push((thread_cpu() - t).as_nanos() as f64 / per_round as f64);
        m.flush();
        all.push((process_cpu() - p).as_nanos() as f64 / per_round as f64);
    }
    m.shutdown();
    Cost {
        caller: median(caller),
        all_threads: median(all),
    }
}

/// Label values of `n` distinct series (two labels each), made up front so
/// that formatting them is not timed.
fn series_labels(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("{}", i % 100), format!("r{}", i / 100)))
        .collect()
}

/// A mix like a service's: request latencies (log-normal-ish, 0.1 ms
/// resolution) by route, method and status, queue depths (a random walk) by
/// shard, and request counters. Values come from a xorshift generator so the
/// compressor sees noise where real data has it.
fn realistic(m: &Metrics, i: usize, routes: &[String], rng: &mut u64) {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let route = &routes[i % routes.len()];
    match i % 4 {
        0 | 1 => {
            let r = next();
            let status = if r % 97 == 0 { "500" } else { "200" };
            // exp of a sum of uniforms: a right-skewed latency around 20 ms.
            let u = ((r >> 11) as f64 / (1u64 << 53) as f64
                + (next() >> 11) as f64 / (1u64 << 53) as f64)
                - 1.0;
            let ms = (20.0 * (u * 1.5).exp() * 10.0).round() / 10.0;
            m.observe(
                "http_request_duration_ms",
                &[("route", route), ("method", "GET"), ("status", status)],
                ms,
            )
            .unwrap();
        }
        2 => {
            let depth = (next() % 200) as f64;
            m.record("queue_depth", &[("shard", route)], depth).unwrap();
        }
        _ => m
            .increment(
                "http_requests_total",
                &[("route", route), ("method", "GET")],
                1.0,
            )
            .unwrap(),
    }
}

struct Sustained {
    /// Records persisted per second of the run (recording to last write).
    per_second: f64,
    bytes_per_record: f64,
    files: usize,
    /// Records lost to a full queue.
    dropped: u64,
}

/// Records `total` realistic records as fast as one thread can and waits
/// until the writer has them all; every record is persisted or counted as
/// dropped.
fn sustained(total: usize, config: &PersistConfig) -> Sustained {
    let dir = tempfile::tempdir().unwrap();
    let routes: Vec<String> = (0..250).map(|i| format!("/api/v1/items/{i}")).collect();
    let m = start(dir.path(), config);
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let t = Instant::now();
    for i in 0..total {
        realistic(&m, i, &routes, &mut rng);
    }
    m.flush();
    let elapsed = t.elapsed();
    let stats = m.stats();
    m.shutdown();
    assert_eq!(
        stats.total_persisted + stats.dropped,
        total as u64,
        "every record persisted or counted as dropped: {stats:?}"
    );
    if config.full_queue == FullQueue::Wait {
        assert_eq!(stats.dropped, 0, "`wait` loses nothing: {stats:?}");
    }
    let files = batch_files(dir.path()).unwrap();
    let bytes: u64 = files
        .iter()
        .map(|(p, _)| std::fs::metadata(p).unwrap().len())
        .sum();
    let on_disk: usize = files
        .iter()
        .map(|(p, _)| read_batch(p).unwrap().total_records)
        .sum();
    assert_eq!(on_disk as u64, stats.total_persisted);
    Sustained {
        per_second: stats.total_persisted as f64 / elapsed.as_secs_f64(),
        bytes_per_record: bytes as f64 / stats.total_persisted.max(1) as f64,
        files: files.len(),
        dropped: stats.dropped,
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Samples per second accepted by the real daemon over HTTP, `clients`
/// connections each posting batches of 1,000 for `secs`.
fn http_ingest(secs: f64, clients: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("warden.yaml"),
        "metrics:\n  collect:\n    enabled: false\n  persist:\n    max_queue_size: 200000\n    full_queue: wait\n    wait_timeout: 10s\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let _d = Daemon(
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["run", "--listen", &addr, "--config", "warden.yaml"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://{addr}/api/v1/metrics");
    let t = Instant::now();
    while ureq::get(&format!("http://{addr}/health")).call().is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The token the daemon made, as a client on the same machine reads it.
    let bearer = format!(
        "Bearer {}",
        std::fs::read_to_string(dir.path().join("warden-data/api-token"))
            .unwrap()
            .trim()
    );
    let bodies: Vec<String> = (0..clients)
        .map(|c| {
            let samples: Vec<serde_json::Value> = (0..1000)
                .map(|i| {
                    serde_json::json!({
                        "metric": "ingest_bench",
                        "labels": {"client": c.to_string(), "shard": (i % 50).to_string()},
                        "value": i as f64 * 0.5,
                    })
                })
                .collect();
            serde_json::json!({ "samples": samples }).to_string()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let t = Instant::now();
    let handles: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let url = url.clone();
            let bearer = bearer.clone();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
                let mut accepted = 0u64;
                while Instant::now() < deadline {
                    let mut r = agent
                        .post(&url)
                        .header("authorization", &bearer)
                        .header("content-type", "application/json")
                        .send(body.as_str())
                        .unwrap();
                    let v: serde_json::Value =
                        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
                    accepted += v["accepted"].as_u64().unwrap();
                }
                accepted
            })
        })
        .collect();
    let accepted: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    accepted as f64 / t.elapsed().as_secs_f64()
}

/// Median milliseconds to compute `aggs` over `series` series of `samples`
/// samples each (10 s apart), in a 5-minute window.
fn aggregate_ms(
    series: usize,
    samples: usize,
    aggs: &[Aggregation],
    scope: Scope,
    rounds: usize,
) -> f64 {
    let store = SeriesStore::new(
        StoreLimits {
            max_series: series + 1,
            max_samples: samples,
            retention: Duration::from_secs(86_400),
        },
        PiiKeys::default(),
    );
    let now = 1_800_000_000_000i64;
    let interner = store.interner();
    let ids: Vec<u32> = (0..series)
        .map(|i| {
            let host = format!("host-{i}");
            interner
                .intern("cpu_usage_ratio", &[("host", &host)], Kind::Gauge)
                .unwrap()
        })
        .collect();
    let mut changes = Vec::with_capacity(series * samples);
    for s in 0..samples {
        let at = now - (samples - 1 - s) as i64 * 10_000;
        for (k, id) in ids.iter().enumerate() {
            let v = ((k * 131 + s * 17) % 1000) as f64 / 1000.0;
            changes.push((*id, warden::metrics::store::Op::Set, at, v));
        }
    }
    store.apply(&changes, |_, _, _| {});
    let selector = SeriesSelector {
        metric: "cpu_usage_ratio".into(),
        matchers: vec![],
    };
    let mut times = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let r = store.aggregate_by(&selector, Duration::from_secs(300), now, aggs, scope);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(
            r.series.len(),
            if scope == Scope::Combined { 0 } else { series }
        );
        assert_eq!(
            r.combined.len(),
            if scope == Scope::Each { 0 } else { aggs.len() }
        );
    }
    median(times)
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    // `WARDEN_BENCH_ONLY=aggregate` (or record, persist, http) runs one part.
    let only = std::env::var("WARDEN_BENCH_ONLY").ok();
    let part = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let mut rows = Vec::new();

    let (rounds, per_round) = if benchmarking {
        (21, 200_000)
    } else {
        (2, 1000)
    };
    if part("record") {
        const VARIED: usize = 10_000;
        let one = record_cost(
            rounds,
            per_round,
            |_| (),
            |m, (), i| {
                m.record("bench_gauge", &[("shard", "7"), ("region", "eu")], i as f64)
                    .unwrap();
            },
        );
        let labels = series_labels(VARIED);
        let varied = record_cost(
            rounds,
            per_round,
            |_| (),
            |m, (), i| {
                let (shard, region) = &labels[i % VARIED];
                m.record(
                    "bench_gauge",
                    &[("shard", shard.as_str()), ("region", region.as_str())],
                    i as f64,
                )
                .unwrap();
            },
        );
        for (what, cost) in [
            ("1 series repeated (per-thread cache hit)", &one),
            ("10,000 series in turn", &varied),
        ] {
            row(
                &mut rows,
                &format!("record by name (gauge, 2 labels), {what}: CPU per call, calling thread"),
                format!("{:.0} ns", cost.caller),
                "≤ 100 ns",
                Some(cost.caller <= 100.0),
            );
            row(
                &mut rows,
                "  same, CPU per record of all threads (caller, ingest, batch writer)",
                format!("{:.0} ns", cost.all_threads),
                "",
                None,
            );
        }
        let inc = record_cost(
            rounds,
            per_round,
            |_| (),
            |m, (), _| {
                m.increment("bench_total", &[("shard", "7"), ("region", "eu")], 1.0)
                    .unwrap();
            },
        );
        row(
            &mut rows,
            "increment by name (counter, 2 labels), 1 series: CPU per call, calling thread",
            format!("{:.0} ns", inc.caller),
            "≤ 100 ns",
            Some(inc.caller <= 100.0),
        );
        let handle_cost = record_cost(
            rounds,
            per_round,
            |m| {
                m.handle("bench_hist", &[("shard", "7")], Kind::Histogram)
                    .unwrap()
            },
            |_, h, i| h.record(i as f64).unwrap(),
        );
        row(
            &mut rows,
            "observe through a resolved handle: CPU per call, calling thread",
            format!("{:.0} ns", handle_cost.caller),
            "≤ 100 ns",
            Some(handle_cost.caller <= 100.0),
        );
        row(
            &mut rows,
            "  same, CPU per record of all threads (caller, ingest, batch writer)",
            format!("{:.0} ns", handle_cost.all_threads),
            "",
            None,
        );
    }

    if part("persist") {
        let total = if benchmarking { 3_000_000 } else { 20_000 };
        // The real defaults: a producer faster than the writer fills the
        // 10,000-record queue and `drop_oldest` makes room, counting each loss.
        let defaults = sustained(total, &PersistConfig::default());
        row(
            &mut rows,
            "persisted per second, defaults (batch 1,000, queue 10,000, drop_oldest, plain JSON, fsync per batch)",
            format!("{:.0}/s ({} files)", defaults.per_second, defaults.files),
            "≥ 1,000,000/s",
            Some(defaults.per_second >= 1e6),
        );
        let lost = defaults.dropped as f64 / total as f64 * 100.0;
        row(
            &mut rows,
            "  records dropped by the defaults when recorded as fast as one thread can",
            format!("{} ({lost:.1} %)", defaults.dropped),
            "0",
            Some(defaults.dropped == 0),
        );
        let waiting = sustained(
            total,
            &persist_config(1000, 10_000, Compression::None, FullQueue::Wait),
        );
        row(
            &mut rows,
            "persisted per second, defaults but `full_queue: wait` (30 s): nothing lost",
            format!("{:.0}/s ({} files)", waiting.per_second, waiting.files),
            "≥ 1,000,000/s",
            Some(waiting.per_second >= 1e6),
        );
        let big = sustained(
            total,
            &persist_config(50_000, 200_000, Compression::Zstd, FullQueue::Wait),
        );
        row(
            &mut rows,
            "persisted per second, batch 50,000, zstd, `wait`",
            format!("{:.0}/s ({} files)", big.per_second, big.files),
            "≥ 1,000,000/s",
            Some(big.per_second >= 1e6),
        );
        row(
            &mut rows,
            "bytes per record, plain JSON, the default format (batch 1,000)",
            format!("{:.1}", waiting.bytes_per_record),
            "< 50 (the seed's)",
            Some(waiting.bytes_per_record < 50.0),
        );
        row(
            &mut rows,
            "bytes per record, zstd (batch 50,000)",
            format!("{:.1}", big.bytes_per_record),
            "≤ 20",
            Some(big.bytes_per_record <= 20.0),
        );
        let small_zstd = sustained(
            total / 4,
            &persist_config(1000, 10_000, Compression::Zstd, FullQueue::Wait),
        );
        row(
            &mut rows,
            "bytes per record, zstd (batch 1,000)",
            format!("{:.1}", small_zstd.bytes_per_record),
            "≤ 20",
            Some(small_zstd.bytes_per_record <= 20.0),
        );
    }

    if part("http") {
        let http = http_ingest(if benchmarking { 5.0 } else { 0.5 }, 2);
        row(
            &mut rows,
            "HTTP ingest into the daemon, batches of 1,000, 2 clients on the same 2 cores",
            format!("{http:.0} samples/s"),
            "≥ 500,000/s",
            Some(http >= 500_000.0),
        );
    }

    if part("aggregate") {
        let (series, agg_rounds) = if benchmarking { (10_000, 21) } else { (200, 2) };
        let all = [
            Aggregation::Avg,
            Aggregation::Min,
            Aggregation::Max,
            Aggregation::Sum,
            Aggregation::Count,
            Aggregation::Rate,
            Aggregation::Quantile(0.5),
            Aggregation::Quantile(0.9),
            Aggregation::Quantile(0.95),
            Aggregation::Quantile(0.99),
        ];
        for (name, aggs, scope) in [
            ("avg, each series and combined", &all[..1], Scope::Both),
            (
                "avg,min,max,sum,count,rate, each and combined",
                &all[..6],
                Scope::Both,
            ),
            ("p99 of each series", &all[9..], Scope::Each),
            ("p99 over all series together", &all[9..], Scope::Combined),
            (
                "all ten incl. p50/p90/p95/p99, each series",
                &all[..],
                Scope::Each,
            ),
            (
                "all ten incl. p50/p90/p95/p99, all together",
                &all[..],
                Scope::Combined,
            ),
            (
                "all ten, each series and combined in one call",
                &all[..],
                Scope::Both,
            ),
        ] {
            let ms = aggregate_ms(series, 60, aggs, scope, agg_rounds);
            row(
                &mut rows,
                &format!("aggregate {name}: {series} series × 30 samples in window"),
                format!("{ms:.2} ms"),
                "≤ 5 ms",
                Some(ms <= 5.0),
            );
        }
    }

    println!();
    println!("| figure | measured | goal | |");
    println!("| --- | ---: | --- | --- |");
    for r in rows {
        let mark = match r.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        println!("| {} | {} | {} | {mark} |", r.what, r.value, r.goal);
    }
}
