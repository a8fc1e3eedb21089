//! One evaluation cycle of many threshold alert rules, in Warden and in a real
//! Prometheus, side by side:
//!
//! - Warden: 10,000 series `bench_value{id="0".."9999"}` in the series store,
//!   one alert policy running the shipped `threshold` plugin with 10,000 rules,
//!   each selecting its own series (`{id: "N"}`), `gt` a threshold that about
//!   10% of the series pass, `for: 5m` so those alerts go (and stay) pending.
//!   A cycle is what the scheduler does per evaluation: the plugin call
//!   (`Evaluator::evaluate_alerts`), the state machine step
//!   (`StateStore::apply_alerts`, which also decides what receivers hear and
//!   counts firing and pending alerts) and the summary it records from those
//!   counts. The state store keeps nothing
//!   on disk here; in steady state pending alerts change nothing to save.
//!   The evaluator is the policy's as the daemon builds it: warm (contract
//!   0.2), so the 10,000 rules are parsed once, by `init`, not every cycle,
//!   and the rules alike answered by one `query-reduced` (contract 0.3), so
//!   each series' window crosses as one value.
//!   Goal ≤ 12 ms; a second row checks the seed's promise, 100 rules < 100 ms.
//! - Prometheus: the same series scraped from an exporter inside this process,
//!   and the same 10,000 rules in one group (`bench_value{id="N"} > T`,
//!   `for: 5m`); the figure is its `prometheus_rule_group_last_duration_seconds`.
//! - The ratio Warden / Prometheus (goal ≤ 0.5×).
//!
//! Run: `cargo bench -p warden --bench alert_rules`. Needs `prometheus` on the
//! `PATH` (Debian package `prometheus`) or `WARDEN_BENCH_PROMETHEUS=/path`.
//! Knobs: `WARDEN_BENCH_RULES` (rules = series, default 10,000),
//! `WARDEN_BENCH_CYCLES` (measured Warden cycles, default 40),
//! `WARDEN_BENCH_ONLY=warden` or `=prometheus`. Under `cargo test` it runs
//! small (200 rules) as a smoke test, and fails, as the benchmark does, if
//! Prometheus is missing.

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/prometheus.rs"]
mod prometheus;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use warden::metrics::store::Op;
use warden::metrics::validate::PiiKeys;
use warden::metrics::{Kind as SeriesKind, SeriesStore, StoreLimits};
use warden::plugin::records::AlertCondition;
use warden::plugin::{Engine, EngineOptions, Evaluator, Kind, Limits};
use warden::runtime::alerts::{DEFAULT_REFRESH_MS, Timing};
use warden::runtime::state::StateStore;
use warden::sources::Sources;

const METRIC: &str = "bench_value";
/// Every rule's threshold; [`value`] puts about 10% of the series above it.
const THRESHOLD: f64 = 90.0;
/// Long enough that no alert fires while the benchmark runs: they stay pending.
const HOLD_FOR: &str = "5m";
/// How often the collector would write; each series keeps a few samples.
const SAMPLE_EVERY_MS: i64 = 15_000;
const SAMPLES: usize = 4;
/// Prometheus scrapes every second so the series are there soon, and evaluates
/// every 2 s so a slow group on 2 shared cores still gets every iteration.
const SCRAPE_INTERVAL: &str = "1s";
const EVALUATION_INTERVAL: &str = "2s";

/// Series `id`'s value: 0.0 to 99.9, spread so that ids above the threshold are
/// scattered rather than a block.
fn value(id: usize) -> f64 {
    ((id * 7919) % 1000) as f64 / 10.0
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a count"))
        })
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// What a Warden run measured, in ms per cycle.
struct WardenRun {
    cycle: Vec<f64>,
    /// The cycle's CPU time on this thread (the plugin runs on it): on a
    /// shared machine, wall time also counts other processes' turns.
    cpu: Vec<f64>,
    plugin: Vec<f64>,
    state: Vec<f64>,
    summary: Vec<f64>,
    pending: usize,
}

/// The threshold plugin's `config:` block: one rule per series.
fn warden_rules(n: usize) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            json!({
                "alert": format!("BenchValueHigh{i}"),
                "metric": METRIC,
                "matchers": { "id": i.to_string() },
                "condition": "gt",
                "threshold": THRESHOLD,
                "for": HOLD_FOR,
                "summary": "bench_value above its threshold",
            })
        })
        .collect();
    json!({ "rules": rules })
}

fn warden(engine: &Engine, n: usize, warmup: usize, cycles: usize) -> WardenRun {
    let store = Arc::new(SeriesStore::new(
        StoreLimits {
            max_series: n + 1,
            max_samples: SAMPLES,
            retention: Duration::from_secs(3600),
        },
        PiiKeys::default(),
    ));
    let interner = store.interner();
    let ids: Vec<u32> = (0..n)
        .map(|i| {
            interner
                .intern(METRIC, &[("id", &i.to_string())], SeriesKind::Gauge)
                .unwrap()
        })
        .collect();
    // Writes one sample per series at `at`, as the collector would between
    // cycles; the store keeps the newest `SAMPLES`.
    let write = |at: i64| {
        let changes: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, Op::Set, at, value(i)))
            .collect();
        store.apply(&changes, |_, _, _| {});
    };
    let start = warden::clock::now_ms();
    for k in (1..SAMPLES as i64).rev() {
        write(start - k * SAMPLE_EVERY_MS);
    }

    let plugin = Arc::new(engine.load_builtin("threshold", Some(Kind::Alert)).unwrap());
    // A generous deadline: a slow cycle is measured, not cut off at the
    // default 100 ms (the table says when it would have been).
    let limits = Limits {
        timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let sources = Sources {
        series: Arc::clone(&store),
        ..Sources::default()
    };
    let evaluator = Evaluator::new(
        plugin,
        "bench-alerts",
        &warden_rules(n),
        limits,
        Arc::new(sources),
    );
    let state = StateStore::default();
    let file = Path::new("bench-alerts.yaml");
    let expected = (0..n).filter(|i| value(*i) > THRESHOLD).count();

    let mut run = WardenRun {
        cycle: Vec::new(),
        cpu: Vec::new(),
        plugin: Vec::new(),
        state: Vec::new(),
        summary: Vec::new(),
        pending: 0,
    };
    for c in 0..warmup + cycles {
        // Untimed: the collector's write, so every cycle sees a fresh sample.
        write(warden::clock::now_ms());
        let now = warden::clock::now_ms();
        let cpu0 = cpu::thread_cpu();
        let t0 = Instant::now();
        let alerts = evaluator.evaluate_alerts().unwrap();
        let t1 = Instant::now();
        // The policy's own `for`, `keep_firing_for` and `cooldown` are unset:
        // 0, as the scheduler passes them then.
        let timing = Timing {
            default_for_ms: 0,
            keep_firing_for_ms: 0,
            cooldown_ms: 0,
            refresh_ms: DEFAULT_REFRESH_MS,
            min_severity: None,
        };
        let applied = state.apply_alerts(file, "bench-alerts", &alerts, now, timing);
        let t2 = Instant::now();
        // The scheduler's summary: the counts the step returns.
        let summary = format!(
            "{} alerts firing, {} pending",
            applied.firing, applied.pending
        );
        let (pending, firing) = (applied.pending, applied.firing);
        let t3 = Instant::now();
        let cpu3 = cpu::thread_cpu();

        assert_eq!(alerts.len(), expected, "alerts the plugin returned");
        assert!(
            alerts
                .iter()
                .all(|a| a.condition == AlertCondition::Firing && a.for_ms == Some(300_000))
        );
        assert_eq!((pending, firing), (expected, 0), "alerts pending, firing");
        assert_eq!(applied.changed.len(), if c == 0 { expected } else { 0 });
        assert!(applied.due.is_empty(), "pending alerts are not announced");
        assert!(
            summary.ends_with(&format!("{expected} pending")),
            "{summary}"
        );
        if c >= warmup {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            run.cycle.push(ms(t3 - t0));
            run.cpu.push(ms(cpu3 - cpu0));
            run.plugin.push(ms(t1 - t0));
            run.state.push(ms(t2 - t1));
            run.summary.push(ms(t3 - t2));
        }
        run.pending = pending;
    }
    run
}

/// What a Prometheus run measured.
struct PrometheusRun {
    version: String,
    /// `prometheus_rule_group_last_duration_seconds` of successive
    /// evaluations, in ms.
    group_ms: Vec<f64>,
    pending: Option<f64>,
}

/// The series in Prometheus text format.
fn exposition(n: usize) -> String {
    let mut body = format!("# TYPE {METRIC} gauge\n");
    for i in 0..n {
        writeln!(body, "{METRIC}{{id=\"{i}\"}} {}", value(i)).unwrap();
    }
    body
}

/// The same rules as [`warden_rules`], as one Prometheus rule group.
fn prometheus_rules(n: usize) -> String {
    let mut text = String::from("groups:\n  - name: bench\n    rules:\n");
    for i in 0..n {
        writeln!(
            text,
            "      - alert: BenchValueHigh{i}\n        expr: '{METRIC}{{id=\"{i}\"}} > {THRESHOLD}'\n        for: {HOLD_FOR}\n        labels: {{severity: warning}}\n        annotations: {{summary: bench_value above its threshold}}"
        )
        .unwrap();
    }
    text
}

fn prometheus(binary: &str, version: String, n: usize, samples: usize) -> PrometheusRun {
    let dir = tempfile::tempdir().unwrap();
    let target = prometheus::serve_exposition(exposition(n));
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, prometheus_rules(n)).unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  evaluation_interval: {EVALUATION_INTERVAL}\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: bench\n    static_configs:\n      - targets: ['{target}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let mut p = prometheus::Prometheus::start(binary, dir.path(), &config);

    let group = ";bench\"";
    let metric = |text: &str, name: &str| prometheus::sample(text, name, group);
    p.wait_until(
        "the rule group is loaded and the series are scraped",
        Duration::from_secs(120),
        |p| {
            metric(&p.self_metrics(), "prometheus_rule_group_rules") == Some(n as f64)
                && p.query_number(&format!("count({METRIC})")) == Some(n as f64)
        },
    );
    // Evaluations with the series present: the first starts the pending alerts
    // (as Warden's warmup does), the later ones are the steady state measured.
    let evaluated_at = |p: &prometheus::Prometheus| {
        metric(
            &p.self_metrics(),
            "prometheus_rule_group_last_evaluation_timestamp_seconds",
        )
    };
    let mut last = evaluated_at(&p);
    let mut group_ms = Vec::new();
    let mut seen = 0;
    let wait = Duration::from_secs(30 + 5 * samples as u64);
    p.wait_until("enough rule group evaluations", wait, |p| {
        let text = p.self_metrics();
        let at = metric(
            &text,
            "prometheus_rule_group_last_evaluation_timestamp_seconds",
        );
        if at.is_some() && at != last {
            last = at;
            seen += 1;
            if seen > 2 {
                let secs = metric(&text, "prometheus_rule_group_last_duration_seconds").unwrap();
                group_ms.push(secs * 1e3);
            }
        }
        group_ms.len() >= samples
    });
    let pending = p.query_number("count(ALERTS{alertstate=\"pending\"})");
    let missed = metric(
        &p.self_metrics(),
        "prometheus_rule_group_iterations_missed_total",
    );
    if missed.is_some_and(|m| m > 0.0) {
        println!(
            "note: Prometheus missed {} rule group iterations",
            missed.unwrap()
        );
    }
    PrometheusRun {
        version,
        group_ms,
        pending,
    }
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let n = env_usize(
        "WARDEN_BENCH_RULES",
        if benchmarking { 10_000 } else { 200 },
    );
    let cycles = env_usize("WARDEN_BENCH_CYCLES", if benchmarking { 40 } else { 3 });
    let only = std::env::var("WARDEN_BENCH_ONLY").ok();
    let part = |name: &str| only.as_deref().is_none_or(|o| o == name);

    // Prometheus is checked first, so a machine without it fails at once
    // rather than after the Warden half.
    let binary = prometheus::binary();
    let prom_version = if part("prometheus") {
        // The smoke run under `cargo test` needs it too: a comparison that
        // silently drops its peer would pass without comparing anything.
        match prometheus::version(&binary) {
            Ok(v) => Some(v),
            Err(e) => panic!(
                "Prometheus is needed for the comparison and is not installed ({e}).\n\
                 Install it (Debian: `apt-get install prometheus`; .ci/run does), point \
                 WARDEN_BENCH_PROMETHEUS at the binary, or run only Warden's half with \
                 WARDEN_BENCH_ONLY=warden."
            ),
        }
    } else {
        None
    };

    let warmup = if benchmarking { 5 } else { 1 };
    let engine = part("warden").then(|| Engine::new(&EngineOptions::default()).unwrap());
    let w = engine.as_ref().map(|e| warden(e, n, warmup, cycles));
    // The seed's promise, 100 rules in < 100 ms, on the same machine.
    let seed = engine
        .as_ref()
        .filter(|_| n != 100)
        .map(|e| warden(e, 100, warmup, cycles));
    if let Some(w) = &w {
        let c = sorted(w.cycle.clone());
        println!(
            "warden: {n} rules, {cycles} cycles: median {:.2} ms, p90 {:.2} ms, CPU median {:.2} ms (plugin {:.2}, state step {:.2}, summary {:.2}); {} pending",
            percentile(&c, 0.5),
            percentile(&c, 0.9),
            percentile(&sorted(w.cpu.clone()), 0.5),
            percentile(&sorted(w.plugin.clone()), 0.5),
            percentile(&sorted(w.state.clone()), 0.5),
            percentile(&sorted(w.summary.clone()), 0.5),
            w.pending
        );
    }
    let p = prom_version.map(|v| prometheus(&binary, v, n, if benchmarking { 10 } else { 2 }));
    if let Some(p) = &p {
        let g = sorted(p.group_ms.clone());
        println!(
            "prometheus ({}): {n} rules, {} evaluations: median {:.2} ms, p90 {:.2} ms; {} pending",
            p.version,
            g.len(),
            percentile(&g, 0.5),
            percentile(&g, 0.9),
            p.pending.map_or("?".into(), |v| v.to_string())
        );
    }

    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!();
    println!("| {n} threshold rules over {n} series, one cycle | median | p90 | goal | |");
    println!("| --- | ---: | ---: | --- | --- |");
    let w_median = w.as_ref().map(|w| {
        let c = sorted(w.cycle.clone());
        let (m, p90) = (percentile(&c, 0.5), percentile(&c, 0.9));
        println!(
            "| Warden: plugin call + state step + summary | {m:.2} ms | {p90:.2} ms | ≤ 12 ms | {} |",
            verdict(m <= 12.0)
        );
        if m > Limits::DEFAULT_TIMEOUT.as_secs_f64() * 1e3 {
            println!("| (over the default 100 ms policy timeout: it would fail as a timeout) | | | | |");
        }
        m
    });
    if let Some(s) = &seed {
        let c = sorted(s.cycle.clone());
        let (m, p90) = (percentile(&c, 0.5), percentile(&c, 0.9));
        println!(
            "| Warden, 100 rules over 100 series (the seed's promise) | {m:.2} ms | {p90:.2} ms | < 100 ms | {} |",
            verdict(m < 100.0)
        );
    }
    let p_median = p.as_ref().map(|p| {
        let g = sorted(p.group_ms.clone());
        let (m, p90) = (percentile(&g, 0.5), percentile(&g, 0.9));
        println!(
            "| Prometheus: prometheus_rule_group_last_duration_seconds | {m:.2} ms | {p90:.2} ms | | |"
        );
        m
    });
    if let (Some(w), Some(p)) = (w_median, p_median) {
        let ratio = w / p;
        println!(
            "| ratio Warden / Prometheus (medians) | {ratio:.2}× | | ≤ 0.5× | {} |",
            verdict(ratio <= 0.5)
        );
    }
}
