//! Reload latency: from a policy file written to its new version being live,
//! with 100 policy files in the directory, for a plugin already compiled and
//! for one that must be compiled. Prints p50 and p99 beside the goal.
//!
//! Run: `cargo bench -p warden --bench policy_reload`. Under `cargo test` it
//! makes a few rounds only, to prove it works.

use std::sync::Arc;
use std::time::{Duration, Instant};

use warden::plugin::{Engine, EngineOptions};
use warden::policy::watch::watch;
use warden::policy::{ParseContext, PluginCache, PolicyDir};
use warden::sources::Sources;
use warden::telemetry::Telemetry;

const FILES: usize = 100;

fn policy(name: &str, plugin: &str, threshold: u64) -> String {
    format!(
        "policies:\n  - name: {name}\n    kind: alert\n    plugin: {plugin}\n    trigger:\n      interval: 1h\n    config:\n      rules:\n        - {{alert: A, metric: m, condition: gt, threshold: {threshold}}}\n"
    )
}

/// Returns `component` with a custom section appended: the same plugin with a
/// different hash, so it misses every cache and must be compiled.
fn variant(component: &[u8], n: u64) -> Vec<u8> {
    fn leb(mut v: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"warden-bench";
    let payload = n.to_le_bytes();
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.extend_from_slice(&payload);
    let mut out = component.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn measure(
    dir: &Arc<PolicyDir>,
    path_of: impl Fn(usize) -> std::path::PathBuf,
    text: impl Fn(usize, u64) -> String,
    rounds: usize,
    prepare: impl Fn(u64),
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for r in 0..rounds {
        let i = r % FILES;
        let value = 1_000_000 + r as u64;
        prepare(value);
        let name = format!("p{i:03}");
        let started = Instant::now();
        std::fs::write(path_of(i), text(i, value)).unwrap();
        loop {
            let live = dir.current();
            if live
                .get(&name)
                .and_then(|p| p.policy.config["rules"][0]["threshold"].as_u64())
                == Some(value)
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "round {r} never went live"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        latencies.push(started.elapsed());
        // Let the watcher go quiet, so rounds do not overlap.
        std::thread::sleep(Duration::from_millis(30));
    }
    latencies.sort();
    latencies
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let (cached_rounds, compile_rounds) = if benchmarking { (300, 30) } else { (5, 2) };

    let tmp = tempfile::tempdir().unwrap();
    let dir_path = tmp.path().join("policies");
    std::fs::create_dir(&dir_path).unwrap();
    let engine = Engine::new(&EngineOptions {
        cache_dir: Some(tmp.path().join("cache")),
    })
    .unwrap();
    for i in 0..FILES {
        std::fs::write(
            dir_path.join(format!("p{i:03}.yaml")),
            policy(&format!("p{i:03}"), "threshold", 1),
        )
        .unwrap();
    }
    let dir = Arc::new(PolicyDir::new(
        &dir_path,
        ParseContext {
            data_dir: tmp.path().join("data"),
        },
        PluginCache::new(engine),
        Arc::new(Sources::default()),
        Arc::new(Telemetry::default()),
    ));
    let report = dir.reload();
    assert_eq!(report.loaded.len(), FILES);
    let _watch = watch(Arc::clone(&dir)).unwrap();

    let path_of = |i: usize| dir_path.join(format!("p{i:03}.yaml"));
    let cached = measure(
        &dir,
        path_of,
        |i, v| policy(&format!("p{i:03}"), "threshold", v),
        cached_rounds,
        |_| {},
    );

    let component = std::fs::read(warden_plugins::THRESHOLD_COMPONENT).unwrap();
    let wasm = dir_path.join("fresh.wasm");
    let compiled = measure(
        &dir,
        path_of,
        |i, v| policy(&format!("p{i:03}"), &format!("./fresh-{v}.wasm"), v),
        compile_rounds,
        |v| {
            std::fs::write(
                dir_path.join(format!("fresh-{v}.wasm")),
                variant(&component, v),
            )
            .unwrap();
        },
    );
    let _ = std::fs::remove_file(wasm);

    if !benchmarking {
        return;
    }
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    println!(
        "\nreload latency, file written -> new version live, {FILES} policy files in the directory:"
    );
    let p99 = percentile(&cached, 0.99);
    println!(
        "plugin cached ({cached_rounds} rounds):   p50 {:>9}   p99 {:>9}   max {:>9}   goal p99 <= 100 ms {}",
        ms(percentile(&cached, 0.5)),
        ms(p99),
        ms(*cached.last().unwrap()),
        if p99 <= Duration::from_millis(100) {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "plugin compiled ({compile_rounds} rounds):  p50 {:>9}   p99 {:>9}   max {:>9}",
        ms(percentile(&compiled, 0.5)),
        ms(percentile(&compiled, 0.99)),
        ms(*compiled.last().unwrap())
    );
}
