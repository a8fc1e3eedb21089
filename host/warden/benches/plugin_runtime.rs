//! Costs of the plugin runtime, each printed beside its goal:
//!
//! - a no-op call on a warm instance (engine configuration overhead),
//! - a fresh store plus instantiation from `InstancePre` (paid per evaluation),
//! - loading a plugin: cold compile versus the on-disk cache,
//! - `plan` over 1,000 resources through WASM versus the same code native,
//! - how far past its deadline an infinite loop runs before it is stopped,
//!   and a plugin blocked in a host call (a 30 s `std::thread::sleep`, a WASI
//!   clock pollable) that epoch interruption cannot reach (goal: ≤ 50 ms).
//!
//! Run: `cargo bench -p warden --bench plugin_runtime`. The table at the end
//! reads criterion's estimates from `target/criterion`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use serde_json::json;
use warden::plugin::records::{NewResource, ResourceSet};
use warden::plugin::{Engine, EngineOptions, Evaluator, Kind, Limits, NoData};
use warden_sdk::cleanup::{CleanupContext, CleanupStrategy};

const RESOURCES: usize = 1_000;

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

fn noop_call(c: &mut Criterion, engine: &Engine) {
    use wasmtime::component::{Component, Linker};
    let wat = r#"(component
        (core module $m (func (export "f")))
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
    c.bench_function("noop_call_warm_instance", |b| {
        b.iter(|| f.call(&mut store, ()).unwrap())
    });
}

fn instantiate(c: &mut Criterion, engine: &Engine) {
    let plugin = engine
        .load_builtin("temp-files", Some(Kind::Cleanup))
        .unwrap();
    c.bench_function("fresh_store_and_instantiate", |b| {
        b.iter(|| plugin.instantiate_fresh().unwrap())
    });

    // The engine's floor: the same work for a component with no imports and no
    // WASI context, to read the figure above against.
    use wasmtime::component::{Component, Linker};
    let wat = r#"(component
        (core module $m (memory (export "mem") 1) (func (export "f")))
        (core instance $i (instantiate $m))
        (func (export "noop") (canon lift (core func $i "f"))))"#;
    let component = Component::new(engine.wasmtime(), wat::parse_str(wat).unwrap()).unwrap();
    let pre = Linker::<()>::new(engine.wasmtime())
        .instantiate_pre(&component)
        .unwrap();
    c.bench_function("fresh_store_and_instantiate_floor", |b| {
        b.iter(|| {
            let mut store = wasmtime::Store::new(engine.wasmtime(), ());
            pre.instantiate(&mut store).unwrap()
        })
    });
}

fn load(c: &mut Criterion) {
    let bytes = warden_plugins::builtin("temp-files").unwrap().bytes;
    let mut g = c.benchmark_group("load_temp_files_plugin");
    g.sample_size(10);
    let cold = Engine::new(&EngineOptions::default()).unwrap();
    g.bench_function("cold_compile", |b| {
        b.iter(|| cold.load("temp-files", black_box(bytes), None).unwrap())
    });
    let dir = tempfile::tempdir().unwrap();
    let cached = Engine::new(&EngineOptions {
        cache_dir: Some(dir.path().to_path_buf()),
    })
    .unwrap();
    cached.load("temp-files", bytes, None).unwrap();
    g.sample_size(100);
    g.bench_function("cache_load", |b| {
        b.iter(|| cached.load("temp-files", black_box(bytes), None).unwrap())
    });
    g.finish();
}

fn evaluate(c: &mut Criterion, engine: &Engine) {
    let plugin = Arc::new(
        engine
            .load_builtin("temp-files", Some(Kind::Cleanup))
            .unwrap(),
    );
    let policy = Evaluator::new(
        plugin,
        "bench",
        &config(),
        Limits::default(),
        Arc::new(NoData),
    );
    let now = warden::clock::now_ms();
    let set = host_set(now);
    let ctx = native_ctx(now);
    let strategy =
        warden_plugin_temp_files::TempFiles::new(serde_json::from_value(config()).unwrap())
            .unwrap();
    // Both decide the same: the comparison is of equal work.
    assert_eq!(
        strategy.plan(&ctx).unwrap().len(),
        policy.plan(true, set.clone()).unwrap().actions.len()
    );

    let mut warm = policy.warm().unwrap();
    let mut g = c.benchmark_group("plan_1000_resources");
    g.bench_function("wasm_fresh_store", |b| {
        b.iter_batched(
            || set.clone(),
            |s| policy.plan(true, s).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("wasm_warm_instance", |b| {
        b.iter_batched(
            || set.clone(),
            |s| warm.plan(true, s).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("native", |b| {
        b.iter(|| strategy.plan(black_box(&ctx)).unwrap())
    });
    g.finish();
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

/// Returns criterion's median estimate for `id`, in nanoseconds.
fn median_ns(id: &str) -> Option<f64> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let text =
        std::fs::read_to_string(dir.join("criterion").join(id).join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
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
    let engine = Engine::new(&EngineOptions::default()).unwrap();
    noop_call(&mut c, &engine);
    instantiate(&mut c, &engine);
    load(&mut c);
    evaluate(&mut c, &engine);
    c.final_summary();
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

    let row = |what: &str, measured: String, goal: &str, ok: Option<bool>| {
        let verdict = match ok {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        };
        println!("{what:<48} {measured:>12}   goal {goal:<10} {verdict}");
    };
    println!("\nplugin runtime, medians on this machine:");
    let noop = median_ns("noop_call_warm_instance");
    let inst = median_ns("fresh_store_and_instantiate");
    let floor = median_ns("fresh_store_and_instantiate_floor");
    let cold = median_ns("load_temp_files_plugin/cold_compile");
    let cache = median_ns("load_temp_files_plugin/cache_load");
    let wasm = median_ns("plan_1000_resources/wasm_fresh_store");
    let warm = median_ns("plan_1000_resources/wasm_warm_instance");
    let native = median_ns("plan_1000_resources/native");
    let show = |v: Option<f64>| v.map_or("not run".to_owned(), fmt_ns);
    row(
        "no-op call, warm instance",
        show(noop),
        "<= 150 ns",
        noop.map(|v| v <= 150.0),
    );
    row(
        "fresh store + instantiate from InstancePre",
        show(inst),
        "<= 15 µs",
        inst.map(|v| v <= 15_000.0),
    );
    row(
        "  same, component with no imports (engine floor)",
        show(floor),
        "",
        None,
    );
    row("load plugin: cold compile", show(cold), "", None);
    row(
        "load plugin: from cache",
        show(cache),
        "<= 1 ms",
        cache.map(|v| v <= 1e6),
    );
    row("plan over 1,000 resources: native", show(native), "", None);
    row(
        "plan over 1,000 resources: wasm, warm instance",
        show(warm),
        "",
        None,
    );
    if let (Some(w), Some(n)) = (warm, native) {
        row(
            "  ratio wasm call / native",
            format!("{:.2}x", w / n),
            "<= 3x",
            Some(w / n <= 3.0),
        );
    }
    row(
        "plan over 1,000 resources: wasm, fresh store",
        show(wasm),
        "",
        None,
    );
    if let (Some(w), Some(n)) = (wasm, native) {
        row(
            "  ratio whole evaluation / native",
            format!("{:.2}x", w / n),
            "",
            None,
        );
    }
    let p50 = overruns[overruns.len() / 2];
    let max = overruns[overruns.len() - 1];
    row(
        "infinite loop: overrun past 100 ms deadline, p50",
        format!("{:.2} ms", p50.as_secs_f64() * 1e3),
        "",
        None,
    );
    row(
        "infinite loop: overrun past 100 ms deadline, max",
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
