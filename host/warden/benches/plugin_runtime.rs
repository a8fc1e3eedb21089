//! Costs of the plugin runtime, each printed beside its goal:
//!
//! - a `plan` over 1,000 resources the way the daemon runs it (since contract
//!   0.2: `Evaluator::plan` on the policy's warm instance, plugin state read
//!   and kept, output checked) against the same code native; goal ≤ 3×.
//!   Beside it, unjudged: `isolation: fresh` (a fresh store, instance and
//!   `init` per evaluation, what 0.1.0 plugins always get) and the bare call
//!   on a kept instance (the plugin's own work and the bindings);
//! - a real plugin's no-op, `temp-files` planning over no resources, fresh
//!   and warm: the least any evaluation pays;
//! - the wasmtime floor: a no-op export of a hand-written component (no
//!   imports, no Warden bindings) on a warm instance, which checks the
//!   engine's configuration (`concurrency_support(false)`), and a fresh store
//!   plus instantiation of the same;
//! - a fresh store plus instantiation of `temp-files` from its `InstancePre`;
//! - loading a plugin: cold compile against the on-disk cache;
//! - how far past its deadline an infinite loop runs before it is stopped.
//! - a plugin blocked in a host call (a 30 s `std::thread::sleep`, a WASI
//!   clock pollable) that epoch interruption cannot reach: how far past its
//!   deadline it comes back (goal: ≤ 50 ms).
//!
//! Criterion runs each figure (warm-up, sample count, filters); every
//! sample is timed here, in CPU time of the bench thread (a shared machine's
//! other work does not count), and the table is computed from this run's
//! samples only: a figure a filter left out reads "not run".
//!
//! Run: `cargo bench -p warden --bench plugin_runtime` (a filter after `--`
//! runs some figures only).

#[path = "support/cpu.rs"]
mod cpu;
use cpu::thread_cpu;

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};

/// Measured samples per figure (after criterion's warm-up).
const SAMPLES: usize = 50;

type Group<'a> = BenchmarkGroup<'a, WallTime>;
use serde_json::json;
use warden::plugin::records::{NewResource, ResourceSet};
use warden::plugin::{Engine, EngineOptions, Evaluator, Kind, Limits, NoData};
use warden_sdk::cleanup::{CleanupContext, CleanupStrategy};

const RESOURCES: usize = 1_000;

/// Every sample this run took, by figure: (iterations, CPU time).
#[derive(Default)]
struct Samples(RefCell<HashMap<&'static str, Vec<(u64, Duration)>>>);

impl Samples {
    /// Runs `f` as the figure `id`: criterion picks the iteration counts, the
    /// CPU time of each sample is recorded here.
    fn bench(&self, c: &mut Group<'_>, id: &'static str, mut f: impl FnMut()) {
        c.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let t = thread_cpu();
                for _ in 0..iters {
                    f();
                }
                let spent = thread_cpu() - t;
                self.0
                    .borrow_mut()
                    .entry(id)
                    .or_default()
                    .push((iters, spent));
                spent
            })
        });
    }

    /// The same, with an input made by `setup` for each iteration outside the
    /// timed part (a resource set the call consumes).
    fn bench_with<I>(
        &self,
        c: &mut Group<'_>,
        id: &'static str,
        mut setup: impl FnMut() -> I,
        mut f: impl FnMut(I),
    ) {
        c.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let inputs: Vec<I> = (0..iters).map(|_| setup()).collect();
                let t = thread_cpu();
                for input in inputs {
                    f(input);
                }
                let spent = thread_cpu() - t;
                self.0
                    .borrow_mut()
                    .entry(id)
                    .or_default()
                    .push((iters, spent));
                spent
            })
        });
    }

    /// The median time per iteration of the figure's measured samples
    /// (the last [`SAMPLES`]: criterion's warm-up calls come first), in
    /// nanoseconds.
    fn median_ns(&self, id: &str) -> Option<f64> {
        let all = self.0.borrow();
        let samples = all.get(id)?;
        let mut per_iter: Vec<f64> = samples[samples.len().saturating_sub(SAMPLES)..]
            .iter()
            .map(|(iters, d)| d.as_nanos() as f64 / *iters as f64)
            .collect();
        per_iter.sort_by(f64::total_cmp);
        per_iter.get(per_iter.len() / 2).copied()
    }
}

/// 1,000 temp files of mixed ages and sizes, about a third older than `max_age`.
/// Ages are relative to the real clock, which the host puts in every invocation.
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

/// The engine alone: a hand-written component whose only export does
/// nothing; no imports, no WASI, none of Warden's bindings.
fn wasmtime_floor(c: &mut Group<'_>, s: &Samples, engine: &Engine) {
    use wasmtime::component::{Component, Linker};
    let wat = r#"(component
        (core module $m (memory (export "mem") 1) (func (export "f")))
        (core instance $i (instantiate $m))
        (func (export "noop") (canon lift (core func $i "f"))))"#;
    let component = Component::new(engine.wasmtime(), wat::parse_str(wat).unwrap()).unwrap();
    let linker: Linker<()> = Linker::new(engine.wasmtime());
    let mut store = wasmtime::Store::new(engine.wasmtime(), ());
    store.set_epoch_deadline(u64::MAX / 2);
    let instance = linker.instantiate(&mut store, &component).unwrap();
    let f = instance
        .get_typed_func::<(), ()>(&mut store, "noop")
        .unwrap();
    s.bench(c, "floor_noop_call_warm", || {
        f.call(&mut store, ()).unwrap()
    });
    let pre = linker.instantiate_pre(&component).unwrap();
    s.bench(c, "floor_fresh_store_and_instantiate", || {
        let mut store = wasmtime::Store::new(engine.wasmtime(), ());
        black_box(pre.instantiate(&mut store).unwrap());
    });
}

fn instantiate(c: &mut Group<'_>, s: &Samples, engine: &Engine) {
    let plugin = engine
        .load_builtin("temp-files", Some(Kind::Cleanup))
        .unwrap();
    s.bench(c, "fresh_store_and_instantiate", || {
        plugin.instantiate_fresh().unwrap();
    });
}

/// Cold compile, timed by the wall clock: compilation runs on several
/// threads. Returns the median.
fn cold_compile(engine: &Engine, rounds: usize) -> Duration {
    let bytes = warden_plugins::builtin("temp-files").unwrap().bytes;
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            black_box(engine.load("temp-files", black_box(bytes), None).unwrap());
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn cache_load(c: &mut Group<'_>, s: &Samples) {
    let bytes = warden_plugins::builtin("temp-files").unwrap().bytes;
    let dir = tempfile::tempdir().unwrap();
    let cached = Engine::new(&EngineOptions {
        cache_dir: Some(dir.path().to_path_buf()),
    })
    .unwrap();
    cached.load("temp-files", bytes, None).unwrap();
    s.bench(c, "load_from_cache", || {
        black_box(cached.load("temp-files", black_box(bytes), None).unwrap());
    });
}

fn evaluate(c: &mut Group<'_>, s: &Samples, engine: &Engine) {
    let plugin = Arc::new(
        engine
            .load_builtin("temp-files", Some(Kind::Cleanup))
            .unwrap(),
    );
    // A loaded machine can pause a call past the 100 ms default; the bench
    // times calls, it does not test the deadline (timeout_overruns does).
    let limits = Limits {
        timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    // The daemon's path: the default isolation (warm), as a policy file
    // without `isolation:` gets it.
    let daemon = Evaluator::new(
        Arc::clone(&plugin),
        "bench",
        &config(),
        limits,
        Arc::new(NoData),
    );
    daemon.prepare().unwrap();
    assert!(daemon.is_warm());
    let policy = Evaluator::new(plugin, "bench", &config(), limits, Arc::new(NoData))
        .with_isolation(warden::plugin::Isolation::Fresh);
    let now = warden::clock::now_ms();
    let set = host_set(now);
    let ctx = native_ctx(now);
    let strategy =
        warden_plugin_temp_files::TempFiles::new(serde_json::from_value(config()).unwrap())
            .unwrap();
    // Both decide the same: the comparison is of equal work.
    let native_actions = strategy.plan(&ctx).unwrap().len();
    assert!(native_actions > 0);
    assert_eq!(
        native_actions,
        policy.plan(true, set.clone()).unwrap().actions.len()
    );
    let mut warm = policy.warm().unwrap();
    assert_eq!(
        native_actions,
        warm.plan(true, set.clone()).unwrap().actions.len()
    );

    assert_eq!(
        native_actions,
        daemon.plan(true, set.clone()).unwrap().actions.len()
    );
    s.bench_with(
        c,
        "plan_1000_daemon",
        || set.clone(),
        |set| {
            black_box(daemon.plan(true, set).unwrap());
        },
    );
    s.bench_with(
        c,
        "plan_1000_fresh_store",
        || set.clone(),
        |set| {
            black_box(policy.plan(true, set).unwrap());
        },
    );
    s.bench_with(
        c,
        "plan_1000_warm_instance",
        || set.clone(),
        |set| {
            black_box(warm.plan(true, set).unwrap());
        },
    );
    s.bench(c, "plan_1000_native", || {
        black_box(strategy.plan(black_box(&ctx)).unwrap());
    });
    // A real plugin with nothing to do: every host import and binding of a
    // `plan` call, none of the work.
    s.bench(c, "plan_0_fresh_store", || {
        black_box(policy.plan(true, ResourceSet::default()).unwrap());
    });
    s.bench(c, "plan_0_warm_instance", || {
        black_box(warm.plan(true, ResourceSet::default()).unwrap());
    });
}

/// Runs `component` with `config` under a 100 ms deadline `times` times and
/// returns how long past the deadline each call took to come back, sorted.
fn timeout_overruns(
    engine: &Engine,
    component: &str,
    config: &serde_json::Value,
    times: usize,
) -> Vec<Duration> {
    let plugin = Arc::new(
        engine
            .load_file(component.as_ref(), Some(Kind::Cleanup))
            .unwrap(),
    );
    let limits = Limits::default();
    let policy = Evaluator::new(plugin, "overrun", config, limits, Arc::new(NoData));
    let mut overruns: Vec<Duration> = (0..times)
        .map(|_| {
            let t = Instant::now();
            let err = policy.plan(false, ResourceSet::default()).unwrap_err();
            assert!(
                matches!(err.failure, warden::plugin::EvalFailure::Timeout { .. }),
                "{err}"
            );
            t.elapsed().saturating_sub(limits.timeout)
        })
        .collect();
    overruns.sort();
    overruns
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

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default().configure_from_args();
    let samples = Samples::default();
    let engine = Engine::new(&EngineOptions::default()).unwrap();
    {
        let mut g = c.benchmark_group("plugin_runtime");
        g.sample_size(SAMPLES);
        evaluate(&mut g, &samples, &engine);
        instantiate(&mut g, &samples, &engine);
        wasmtime_floor(&mut g, &samples, &engine);
        cache_load(&mut g, &samples);
        g.finish();
    }
    c.final_summary();
    let cold = cold_compile(
        &Engine::new(&EngineOptions::default()).unwrap(),
        if benchmarking { 5 } else { 1 },
    );
    // A smoke run (`cargo test --all-targets`) only checks both are stopped.
    let times = if benchmarking { 20 } else { 2 };
    let overruns = timeout_overruns(
        &engine,
        warden_plugins::ADVERSARY_COMPONENT,
        &json!({ "mode": "infinite-loop" }),
        times,
    );
    let sleeps = timeout_overruns(
        &engine,
        warden_plugins::SLEEPER_COMPONENT,
        &json!({ "sleep_ms": 30_000 }),
        times,
    );
    if !benchmarking {
        return;
    }

    let median = |id: &str| samples.median_ns(id);
    let show = |v: Option<f64>| v.map_or("not run".to_owned(), fmt_ns);
    let row = |what: &str, measured: String, goal: &str, ok: Option<bool>| {
        let verdict = match ok {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        println!("| {what} | {measured} | {goal} | {verdict} |");
    };
    let daemon = median("plan_1000_daemon");
    let fresh = median("plan_1000_fresh_store");
    let warm = median("plan_1000_warm_instance");
    let native = median("plan_1000_native");
    println!("\nplugin runtime, medians of this run's samples, CPU time of the bench thread:\n");
    println!("| figure | measured | goal | |");
    println!("| --- | ---: | --- | --- |");
    row("plan over 1,000 resources: native", show(native), "", None);
    row(
        "plan over 1,000 resources: Evaluator::plan, warm by default (the daemon's path)",
        show(daemon),
        "",
        None,
    );
    match (daemon, native) {
        (Some(w), Some(n)) => row(
            "  ratio daemon's evaluation / native",
            format!("{:.2}×", w / n),
            "≤ 3×",
            Some(w / n <= 3.0),
        ),
        _ => row(
            "  ratio daemon's evaluation / native",
            "not run".into(),
            "≤ 3×",
            None,
        ),
    }
    row(
        "plan over 1,000 resources: `isolation: fresh` (store, instance, init per evaluation)",
        show(fresh),
        "",
        None,
    );
    if let (Some(w), Some(n)) = (fresh, native) {
        row(
            "  ratio fresh evaluation / native",
            format!("{:.2}×", w / n),
            "",
            None,
        );
    }
    row(
        "plan over 1,000 resources: the bare call on a kept instance",
        show(warm),
        "",
        None,
    );
    if let (Some(w), Some(n)) = (warm, native) {
        row(
            "  ratio bare call / native",
            format!("{:.2}×", w / n),
            "",
            None,
        );
    }
    row(
        "temp-files plan over 0 resources, fresh store (least an evaluation pays)",
        show(median("plan_0_fresh_store")),
        "",
        None,
    );
    row(
        "temp-files plan over 0 resources, warm instance (a real plugin's no-op call)",
        show(median("plan_0_warm_instance")),
        "",
        None,
    );
    let inst = median("fresh_store_and_instantiate");
    row(
        "fresh store + instantiate temp-files from InstancePre",
        show(inst),
        "≤ 15 µs",
        inst.map(|v| v <= 15_000.0),
    );
    let floor_call = median("floor_noop_call_warm");
    row(
        "wasmtime floor: no-op export of a hand-written component (not a Warden plugin), warm",
        show(floor_call),
        "≤ 150 ns",
        floor_call.map(|v| v <= 150.0),
    );
    row(
        "wasmtime floor: fresh store + instantiate, no imports",
        show(median("floor_fresh_store_and_instantiate")),
        "",
        None,
    );
    row(
        "load temp-files: cold compile (wall, compiles on several threads)",
        fmt_ns(cold.as_nanos() as f64),
        "",
        None,
    );
    let cache = median("load_from_cache");
    row(
        "load temp-files: from the on-disk cache",
        show(cache),
        "≤ 1 ms",
        cache.map(|v| v <= 1e6),
    );
    let p50 = overruns[overruns.len() / 2];
    let max = overruns[overruns.len() - 1];
    row(
        "infinite loop: overrun past its 100 ms deadline, p50 (wall)",
        format!("{:.2} ms", p50.as_secs_f64() * 1e3),
        "",
        None,
    );
    row(
        "infinite loop: overrun past its 100 ms deadline, max (wall)",
        format!("{:.2} ms", max.as_secs_f64() * 1e3),
        "",
        None,
    );
    let goal = Duration::from_millis(50);
    let p50 = sleeps[sleeps.len() / 2];
    let max = sleeps[sleeps.len() - 1];
    row(
        "30 s sleep in a host call: overrun past 100 ms, p50",
        format!("{:.2} ms", p50.as_secs_f64() * 1e3),
        "<= 50 ms",
        Some(p50 <= goal),
    );
    row(
        "30 s sleep in a host call: overrun past 100 ms, max",
        format!("{:.2} ms", max.as_secs_f64() * 1e3),
        "<= 50 ms",
        Some(max <= goal),
    );
}
