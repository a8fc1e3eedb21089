//! A soak of the real daemon: for 30 minutes, a policy file rewritten every
//! second (a hot reload each time), HTTP ingest of 2,000 samples and 50
//! operations a second over a fixed set of series, a cleanup policy deleting
//! files created for it every 2 s, an alert policy firing and resolving, and
//! API reads (policies, alerts, aggregates, cleanup history, `/metrics`,
//! `/health`) five times a second; collectors on. Goal: resident memory and
//! open descriptors at the end within 10% of their value after warm-up
//! (the first sixth of the run, and at least the store's retention, so that
//! the series store has reached its steady size).
//!
//! Run: `cargo bench -p warden --bench soak` (`WARDEN_SOAK_SECS` sets the
//! length, default 1800). Under `cargo test` it runs 6 s as a smoke test,
//! and prints its figures without judging them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[path = "support/daemon.rs"]
mod daemon;

use daemon::{Daemon, alert_policy, cleanup_policy, old_file};

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let secs: u64 = std::env::var("WARDEN_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benchmarking { 1800 } else { 6 });
    // Warm-up: a sixth of the run, and the store's retention (2 minutes)
    // when the run is long enough to have one.
    let warmup = if secs >= 720 { secs / 6 } else { secs / 3 };
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("warden");
    let scope = base.path().join("scope");
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::create_dir_all(&scope).unwrap();
    std::fs::write(
        dir.join("warden.yaml"),
        "metrics:\n  collect:\n    interval: 10s\n  store:\n    max_samples: 1200\n    retention: 2m\n  persist:\n    flush_interval: 1s\n    retention: 10m\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("policies/sweep.yaml"),
        cleanup_policy(&scope, "2s"),
    )
    .unwrap();
    std::fs::write(
        dir.join("policies/hot.yaml"),
        alert_policy("hot", "soak_load", 50.0, "1s"),
    )
    .unwrap();
    let d = Arc::new(Daemon::start(&dir));
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicU64; 4]> = Arc::default();
    let mut workers = Vec::new();
    let spawn = |f: Box<dyn Fn(u64) + Send>, every: Duration| {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut i = 0u64;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                f(i);
                i += 1;
                next += every;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };
    // Reloads.
    {
        let (file, c) = (dir.join("policies/flip.yaml"), Arc::clone(&counts));
        workers.push(spawn(
            Box::new(move |i| {
                let _ = std::fs::write(
                    &file,
                    alert_policy("flip", "soak_load", (i % 9) as f64, "5s"),
                );
                c[0].fetch_add(1, Ordering::Relaxed);
            }),
            Duration::from_secs(1),
        ));
    }
    // Ingest: 200 samples over 50 series and 5 operations, ten times a second.
    {
        let (d, c) = (Arc::clone(&d), Arc::clone(&counts));
        workers.push(spawn(
            Box::new(move |i| {
                let load = if (i / 100).is_multiple_of(2) { 80.0 } else { 10.0 };
                let samples: Vec<serde_json::Value> = (0..200)
                    .map(|k| {
                        serde_json::json!({
                            "metric": if k == 0 { "soak_load".to_owned() } else { format!("soak_{}", k % 5) },
                            "labels": if k == 0 { serde_json::json!({}) } else { serde_json::json!({"shard": (k % 10).to_string()}) },
                            "value": if k == 0 { load } else { (i % 1000) as f64 },
                        })
                    })
                    .collect();
                let ops: Vec<serde_json::Value> = (0..5)
                    .map(|k| serde_json::json!({"operation_type": "db", "operation_name": format!("q{k}"), "duration_ms": 1.5, "success": k != 0}))
                    .collect();
                let body = serde_json::json!({"samples": samples, "operations": ops}).to_string();
                if d.post("/api/v1/metrics", &body).0 == 200 {
                    c[1].fetch_add(205, Ordering::Relaxed);
                }
            }),
            Duration::from_millis(100),
        ));
    }
    // Files for the cleanup policy, and a run on demand now and then.
    {
        let (d, scope, c) = (Arc::clone(&d), scope.clone(), Arc::clone(&counts));
        workers.push(spawn(
            Box::new(move |i| {
                for k in 0..20 {
                    old_file(&scope.join(format!("{i}-{k}.tmp")));
                }
                if i.is_multiple_of(5) {
                    let _ = d.post("/api/v1/cleanup/tasks/sweep/run", "");
                }
                c[2].fetch_add(20, Ordering::Relaxed);
            }),
            Duration::from_secs(2),
        ));
    }
    // Reads.
    {
        let (d, c) = (Arc::clone(&d), Arc::clone(&counts));
        workers.push(spawn(
            Box::new(move |i| {
                let path = match i % 6 {
                    0 => "/api/v1/policies",
                    1 => "/api/v1/alerts",
                    2 => "/api/v1/series/aggregate?metric=soak_1&window=1m&aggregate=avg,p99",
                    3 => "/api/v1/cleanup/history?limit=20",
                    4 => "/metrics",
                    _ => "/health",
                };
                if d.get(path).0 == 200 {
                    c[3].fetch_add(1, Ordering::Relaxed);
                }
            }),
            Duration::from_millis(200),
        ));
    }
    let start = Instant::now();
    let mut at_warmup: Option<(u64, u64)> = None;
    let mut rss = Vec::new();
    let mut fds = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        assert!(d.child_alive(), "the daemon died during the soak");
        rss.push(d.rss_kib());
        fds.push(d.fds() as u64);
        let t = start.elapsed().as_secs();
        if at_warmup.is_none() && t >= warmup {
            let n = rss.len().min(5);
            at_warmup = Some((
                median(rss[rss.len() - n..].to_vec()),
                median(fds[fds.len() - n..].to_vec()),
            ));
        }
        if benchmarking && t.is_multiple_of(60) {
            println!(
                "{t:>5} s: RSS {} KiB, {} fds",
                rss.last().unwrap(),
                fds.last().unwrap()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let n = rss.len().min(5);
    let end = (
        median(rss[rss.len() - n..].to_vec()),
        median(fds[fds.len() - n..].to_vec()),
    );
    let (warm_rss, warm_fds) = at_warmup.unwrap_or(end);
    let c: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    println!(
        "soak: {secs} s, warm-up {warmup} s: {} reloads, {} records pushed, {} files made for cleanup, {} API reads",
        c[0], c[1], c[2], c[3]
    );
    let within = |end: u64, warm: u64| end as f64 <= warm as f64 * 1.10;
    let verdict = |ok: bool| {
        if !benchmarking {
            "(smoke run, not judged)"
        } else if ok {
            "met"
        } else {
            "MISSED"
        }
    };
    println!(
        "RSS: {warm_rss} KiB after warm-up, {} KiB at the end ({:+.1}%), goal within +10%: {}",
        end.0,
        100.0 * (end.0 as f64 / warm_rss.max(1) as f64 - 1.0),
        verdict(within(end.0, warm_rss))
    );
    println!(
        "open fds: {warm_fds} after warm-up, {} at the end ({:+.1}%), goal within +10%: {}",
        end.1,
        100.0 * (end.1 as f64 / warm_fds.max(1) as f64 - 1.0),
        verdict(within(end.1, warm_fds))
    );
}
