//! What contract 0.2 (warm instances, `init`, columnar plans) buys, each
//! figure printed beside its goal:
//!
//! - `plan` over 1,000 resources as Warden evaluates it — `Evaluator::plan`
//!   on the policy's warm instance, state read and kept, output checked —
//!   against the same strategy compiled natively (goal ≤ 3×); and the same
//!   with `isolation: fresh` (instantiate and `init` every call), for scale;
//! - a fresh store plus instantiation from `InstancePre`, what every
//!   `isolation: fresh` evaluation (and every 0.1.0 plugin's) still pays
//!   (goal ≤ 15 µs);
//! - `warden check` of the default policy set (`policies/`) with a warm
//!   compile cache: the real binary, parsing, compiling from the cache and
//!   running every plugin's `init` (goal ≤ 300 ms).
//!
//! The 10,000-rule alert cycle is `benches/alert_rules.rs`.
//!
//! Run: `cargo bench -p warden --bench plugin_contract`. Under `cargo test`
//! it runs a few iterations of each as a smoke test and prints nothing.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use warden::plugin::records::{NewResource, ResourceSet};
use warden::plugin::{Engine, EngineOptions, Evaluator, Isolation, Kind, Limits, NoData};
use warden_sdk::cleanup::{CleanupContext, CleanupStrategy};

const RESOURCES: usize = 1_000;

/// 1,000 temp files of mixed ages and sizes, about a third older than `max_age`.
fn files(now: i64) -> Vec<(String, i64, u64)> {
    (0..RESOURCES)
        .map(|i| {
            let age_min = (i as i64 * 7919) % 180;
            (
                format!("/var/lib/app/scratch/job-{i:05}/part-{}.tmp", i % 13),
                now - age_min * 60_000,
                4096 + (i as u64 * 131) % 65536,
            )
        })
        .collect()
}

fn host_set(now: i64) -> ResourceSet {
    let mut set = ResourceSet::default();
    for (name, modified, size) in &files(now) {
        set.push(NewResource {
            name,
            size_bytes: *size,
            modified_ms: Some(*modified),
            accessed_ms: Some(*modified),
            ..Default::default()
        });
    }
    set
}

fn native_ctx(now: i64) -> CleanupContext {
    let mut b = warden_sdk::resources::ResourceSet::builder();
    for (name, modified, size) in &files(now) {
        b.push(warden_sdk::resources::NewResource {
            name,
            size_bytes: *size,
            modified_ms: Some(*modified),
            accessed_ms: Some(*modified),
            ..Default::default()
        });
    }
    let inv = warden_sdk::Invocation {
        policy: "bench".into(),
        now_ms: now,
        dry_run: true,
    };
    CleanupContext::new(inv, b.build())
}

fn config() -> serde_json::Value {
    json!({ "max_age": "2h", "max_total_bytes": 20_000_000 })
}

/// Returns the median of `samples` runs of `f`, each timing `per` calls, in
/// nanoseconds per call. `f` gets the call's index.
fn median_ns(samples: usize, per: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut v: Vec<f64> = (0..samples)
        .map(|s| {
            let t = Instant::now();
            for i in 0..per {
                f(s * per + i);
            }
            t.elapsed().as_nanos() as f64 / per as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn fmt_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

struct Sizes {
    samples: usize,
    per: usize,
    checks: usize,
}

/// Plan over 1,000 resources: warm, fresh and native, in ns per call.
fn plan(engine: &Engine, n: &Sizes) -> (f64, f64, f64) {
    let plugin = Arc::new(
        engine
            .load_builtin("temp-files", Some(Kind::Cleanup))
            .unwrap(),
    );
    let bind = |isolation| {
        Evaluator::new(
            Arc::clone(&plugin),
            "bench",
            &config(),
            // Timed calls, not a test of the deadline: a loaded machine may
            // pause one past the 100 ms default.
            Limits {
                timeout: std::time::Duration::from_secs(30),
                ..Limits::default()
            },
            Arc::new(NoData),
        )
        .with_isolation(isolation)
    };
    let warm = bind(Isolation::default());
    let fresh = bind(Isolation::Fresh);
    warm.prepare().unwrap();
    let now = warden::clock::now_ms();
    let set = host_set(now);
    let ctx = native_ctx(now);
    let strategy =
        warden_plugin_temp_files::TempFiles::new(serde_json::from_value(config()).unwrap())
            .unwrap();
    // Equal work: both decide the same.
    let expected = strategy.plan(&ctx).unwrap().len();
    assert_eq!(
        warm.plan(true, set.clone()).unwrap().actions.len(),
        expected
    );
    assert_eq!(
        fresh.plan(true, set.clone()).unwrap().actions.len(),
        expected
    );
    assert!(expected > 100, "{expected} actions");

    // The sets are built before the clock starts: each call consumes one, as
    // the scheduler hands over what it scanned.
    let calls = n.samples * n.per;
    let mut sets: Vec<Option<ResourceSet>> = (0..calls).map(|_| Some(set.clone())).collect();
    let w = median_ns(n.samples, n.per, |i| {
        black_box(warm.plan(true, sets[i].take().unwrap()).unwrap());
    });
    let mut sets: Vec<Option<ResourceSet>> = (0..calls).map(|_| Some(set.clone())).collect();
    let f = median_ns(n.samples, n.per, |i| {
        black_box(fresh.plan(true, sets[i].take().unwrap()).unwrap());
    });
    let native = median_ns(n.samples, n.per * 4, |_| {
        black_box(strategy.plan(black_box(&ctx)).unwrap());
    });
    (w, f, native)
}

fn instantiate(engine: &Engine, n: &Sizes) -> f64 {
    let plugin = engine
        .load_builtin("temp-files", Some(Kind::Cleanup))
        .unwrap();
    for _ in 0..n.per {
        plugin.instantiate_fresh().unwrap();
    }
    median_ns(n.samples, n.per * 4, |_| {
        plugin.instantiate_fresh().unwrap()
    })
}

/// `warden check policies` from the repository root with a compile cache
/// filled by a first run; milliseconds per run.
fn check(n: &Sizes) -> f64 {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let data = tempfile::tempdir().unwrap();
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["check", "policies", "--data-dir"])
            .arg(data.path())
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    };
    run();
    assert!(
        data.path()
            .join("cache/plugins")
            .read_dir()
            .unwrap()
            .count()
            >= 4,
        "the first check filled the cache"
    );
    let mut v: Vec<Duration> = (0..n.checks)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed()
        })
        .collect();
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let n = if benchmarking {
        Sizes {
            samples: 31,
            per: 20,
            checks: 11,
        }
    } else {
        Sizes {
            samples: 1,
            per: 2,
            checks: 1,
        }
    };
    let engine = Engine::new(&EngineOptions::default()).unwrap();
    let (warm, fresh, native) = plan(&engine, &n);
    let inst = instantiate(&engine, &n);
    let check_ms = check(&n);
    if !benchmarking {
        return;
    }
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("\nplugin contract 0.2, medians on this machine:");
    println!("{:<58} {:>10}   goal", "", "measured");
    println!(
        "{:<58} {:>10}",
        "plan over 1,000 resources: native",
        fmt_ns(native)
    );
    println!(
        "{:<58} {:>10}",
        "plan over 1,000 resources: as Warden evaluates it (warm)",
        fmt_ns(warm)
    );
    println!(
        "{:<58} {:>10}   <= 3x     {}",
        "  ratio to native",
        format!("{:.2}x", warm / native),
        verdict(warm / native <= 3.0)
    );
    println!(
        "{:<58} {:>10}",
        "plan over 1,000 resources: isolation: fresh",
        fmt_ns(fresh)
    );
    println!(
        "{:<58} {:>10}",
        "  ratio to native",
        format!("{:.2}x", fresh / native)
    );
    println!(
        "{:<58} {:>10}   <= 15 µs  {}",
        "fresh store + instantiate from InstancePre (temp-files)",
        fmt_ns(inst),
        verdict(inst <= 15_000.0)
    );
    println!(
        "{:<58} {:>10}   <= 300 ms {}",
        "`warden check policies/`, warm compile cache",
        format!("{check_ms:.1} ms"),
        verdict(check_ms <= 300.0)
    );
}
