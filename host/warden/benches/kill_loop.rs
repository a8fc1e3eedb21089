//! `kill -9` while the daemon is busy, over and over: heavy HTTP ingest, an
//! alert policy firing, a cleanup policy deleting, and a policy file
//! rewritten every 50 ms (so reloads run all the time). After each kill the
//! daemon restarts on the same data directory and four invariants are
//! checked:
//!
//! 1. **No torn file**: every batch file reads back whole, `alerts.json`
//!    parses, every line of the cleanup history parses.
//! 2. **No accepted sample lost beyond the last flush interval**: every
//!    sample the API accepted more than two flush intervals before the kill
//!    (one to be cut into a batch, one to be written) is in the store after
//!    the restart.
//! 3. **No alert state lost**: an alert that was firing before the kill
//!    fires after it, with the same `fired_at_ms`.
//! 4. **No cleanup outside its scope**: the files it must never touch (one
//!    outside the scope, excluded ones inside) are all there, and every item
//!    of the cleanup history is inside the scope.
//!
//! Run: `cargo bench -p warden --bench kill_loop` (60 rounds;
//! `WARDEN_BENCH_ROUNDS` to change). Under `cargo test` it runs 2 rounds as
//! a smoke test. Every invariant is asserted in both.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/daemon.rs"]
mod daemon;

use daemon::{Daemon, alert_policy, cleanup_policy, files, old_file};

/// The batch writer's flush interval in this run.
const FLUSH_MS: i64 = 200;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator for the kill times.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Samples the API accepted: (value, when accepted in ms since the epoch).
type Accepted = Arc<Mutex<Vec<(u64, i64)>>>;

fn ingest(d: &Daemon, round: usize, thread: usize, stop: &AtomicBool, accepted: &Accepted) {
    let mut seq = (thread as u64) << 40;
    while !stop.load(Ordering::Relaxed) {
        let now = warden::clock::now_ms();
        let first = seq;
        let samples: Vec<serde_json::Value> = (0..100)
            .map(|_| {
                seq += 1;
                serde_json::json!({
                    "metric": "kill_probe",
                    "labels": {"round": round.to_string(), "thread": thread.to_string()},
                    "value": seq as f64,
                    "timestamp_ms": now,
                })
            })
            .collect();
        let body = serde_json::json!({ "samples": samples }).to_string();
        if d.post("/api/v1/metrics", &body).0 != 200 {
            break;
        }
        let at = warden::clock::now_ms();
        accepted
            .lock()
            .unwrap()
            .extend((first + 1..=seq).map(|v| (v, at)));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Invariant 1: what is on disk reads back. Returns the files checked.
fn no_torn_file(data: &Path) -> Result<usize, String> {
    let mut checked = 0;
    for path in files(&data.join("metrics")) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("metrics_") {
            continue;
        }
        warden::metrics::persist::read_batch(&path).map_err(|e| format!("{e:#}"))?;
        checked += 1;
    }
    let alerts = data.join("state/alerts.json");
    if alerts.exists() {
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(&alerts).unwrap())
            .map_err(|e| format!("{}: {e}", alerts.display()))?;
        checked += 1;
    }
    let history = data.join("state/cleanup-history.jsonl");
    if history.exists() {
        for (n, line) in std::fs::read_to_string(&history)
            .unwrap()
            .lines()
            .enumerate()
        {
            serde_json::from_str::<serde_json::Value>(line)
                .map_err(|e| format!("{} line {}: {e}", history.display(), n + 1))?;
        }
        checked += 1;
    }
    Ok(checked)
}

fn firing_since(d: &Daemon) -> Option<i64> {
    let (status, alerts) = d.get("/api/v1/alerts?policy=hot&state=firing");
    (status == 200)
        .then(|| alerts[0]["fired_at_ms"].as_i64())
        .flatten()
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let rounds = env_usize("WARDEN_BENCH_ROUNDS", if benchmarking { 60 } else { 2 });
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("warden");
    let scope = base.path().join("scope");
    let outside = base.path().join("outside");
    for d in [dir.join("policies"), scope.clone(), outside.clone()] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(
        dir.join("warden.yaml"),
        format!(
            "metrics:\n  collect:\n    enabled: false\n  store:\n    max_samples: 400000\n    retention: 1h\n  persist:\n    flush_interval: {FLUSH_MS}ms\n    max_queue_size: 100000\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("policies/sweep.yaml"),
        cleanup_policy(&scope, "300ms"),
    )
    .unwrap();
    std::fs::write(
        dir.join("policies/hot.yaml"),
        alert_policy("hot", "kill_alert", 1.0, "200ms"),
    )
    .unwrap();
    let traps = [outside.join("precious"), scope.join("kept.keep")];
    for t in &traps {
        old_file(t);
    }
    let data = dir.join("warden-data");

    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
    let mut d = Daemon::start(&dir);
    let (mut torn, mut files_checked) = (0usize, 0usize);
    let (mut lost_old, mut lost_recent, mut accepted_total) = (0usize, 0usize, 0usize);
    let mut newest_lost_ms = 0i64;
    let (mut alert_rounds, mut alert_kept) = (0usize, 0usize);
    let mut deleted_total = 0usize;
    let started = Instant::now();
    for round in 0..rounds {
        for i in 0..20 {
            old_file(&scope.join(format!("r{round}-{i}.tmp")));
        }
        let (status, v) = d.post(
            "/api/v1/metrics",
            r#"{"samples": [{"metric": "kill_alert", "value": 5}]}"#,
        );
        assert_eq!(status, 200, "{v}");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted: Accepted = Arc::default();
        let shared = Arc::new(d);
        let mut workers = Vec::new();
        for t in 0..2 {
            let (d, stop, accepted) = (
                Arc::clone(&shared),
                Arc::clone(&stop),
                Arc::clone(&accepted),
            );
            workers.push(std::thread::spawn(move || {
                ingest(&d, round, t, &stop, &accepted);
            }));
        }
        {
            let (d, stop) = (Arc::clone(&shared), Arc::clone(&stop));
            let file = dir.join("policies/flip.yaml");
            workers.push(std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let text = alert_policy("flip", "nothing", f64::from(i % 7), "1h");
                    let _ = std::fs::write(&file, text);
                    i += 1;
                    if i.is_multiple_of(10) {
                        let _ = d.post("/api/v1/cleanup/tasks/sweep/run", "");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }));
        }
        let wait = 800 + next(&mut seed) % 1700;
        std::thread::sleep(Duration::from_millis(wait));
        let fired = firing_since(&shared);
        let kill_at = warden::clock::now_ms();
        // SIGKILL while the workers are still busy; they stop on the
        // failures that follow.
        let pid = shared.child.id();
        // SAFETY: `pid` is our own child, not yet reaped (the `Daemon` holds it).
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        let Ok(killed) = Arc::try_unwrap(shared) else {
            unreachable!("the workers are done with their clones")
        };
        killed.kill9();

        // 1. Nothing torn.
        match no_torn_file(&data) {
            Ok(n) => files_checked += n,
            Err(e) => {
                torn += 1;
                eprintln!("round {round}: torn file: {e}");
            }
        }

        d = Daemon::start(&dir);
        // 2. Accepted samples.
        let (status, series) = d.get(&format!(
            "/api/v1/series?metric=kill_probe&match=round={round}&from=0&to={}",
            kill_at + 3_600_000
        ));
        assert_eq!(status, 200, "{series}");
        let present: HashSet<u64> = series["series"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["samples"].as_array().unwrap().iter())
            .filter_map(|p| p[1].as_f64())
            .map(|v| v as u64)
            .collect();
        let accepted = accepted.lock().unwrap();
        accepted_total += accepted.len();
        for (v, at) in accepted.iter() {
            if !present.contains(v) {
                let age = kill_at - at;
                if age > 2 * FLUSH_MS {
                    lost_old += 1;
                } else {
                    lost_recent += 1;
                }
                newest_lost_ms = newest_lost_ms.max(age);
            }
        }
        // 3. Alert state.
        if let Some(before) = fired {
            alert_rounds += 1;
            let after = firing_since(&d);
            if after == Some(before) {
                alert_kept += 1;
            } else {
                eprintln!(
                    "round {round}: alert fired at {before} before the kill, {after:?} after"
                );
            }
        }
        // 4. Cleanup scope.
        for t in &traps {
            assert!(t.exists(), "round {round}: cleanup deleted {}", t.display());
        }
        let (status, history) = d.get("/api/v1/cleanup/history?policy=sweep&limit=500");
        assert_eq!(status, 200, "{history}");
        for run in history.as_array().unwrap() {
            for item in run["items"].as_array().unwrap() {
                let target = item["target"].as_str().unwrap_or("");
                assert!(
                    target.starts_with(&*scope.to_string_lossy()),
                    "round {round}: a cleanup item outside the scope: {item}"
                );
            }
        }
        deleted_total = history
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["items"].as_array().unwrap().iter())
            .filter(|i| i["outcome"] == "deleted")
            .count()
            .max(deleted_total);
        println!(
            "round {round}: killed after {wait} ms; {} samples accepted, {} files read back",
            accepted.len(),
            files_checked
        );
    }
    drop(d);
    let took = started.elapsed();
    println!();
    println!(
        "kill -9 loop: {rounds} rounds in {:.0} s (heavy ingest, cleanup every 300 ms, a reload every 50 ms)",
        took.as_secs_f64()
    );
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "| invariant | result | goal | |\n|---|---|---|---|\n| torn files after a kill | {torn} of {rounds} rounds ({files_checked} files read back) | 0 | {} |\n| accepted samples lost older than 2 flush intervals ({} ms) | {lost_old} of {accepted_total} | 0 | {} |\n| accepted samples lost within 2 flush intervals of the kill | {lost_recent} (newest lost {newest_lost_ms} ms before the kill) | — | |\n| alert state kept | {alert_kept} of {alert_rounds} rounds where it fired before the kill | all | {} |\n| cleanup outside its scope | 0 items; traps intact; {deleted_total} deletions in scope | 0 | met |",
        verdict(torn == 0),
        2 * FLUSH_MS,
        verdict(lost_old == 0),
        verdict(alert_kept == alert_rounds)
    );
    assert_eq!(torn, 0, "torn files after a kill");
    assert_eq!(
        lost_old, 0,
        "accepted samples lost beyond the flush interval"
    );
    assert_eq!(alert_kept, alert_rounds, "alert state lost");
}
