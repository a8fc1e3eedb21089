//! The shipped `threshold` plugin's expressions against the real series
//! store, through the host: the store's samples as `query-series` serves
//! them, the plugin's answer as the host lifts it.

use std::sync::Arc;

use serde_json::json;

use warden::clock::now_ms;
use warden::metrics::Kind as SeriesKind;
use warden::metrics::store::Op;
use warden::plugin::records::Alert;
use warden::plugin::{Kind, Limits};
use warden::sources::Sources;
use warden_plugins as guests;

use crate::util::{bind_with, engine, load};

const SEC: i64 = 1000;

/// Records `points` (seconds ago, value) of `metric{labels}` as `kind`, the
/// way the pipeline stores them (a counter's value is its running total).
fn record(
    s: &Sources,
    kind: SeriesKind,
    metric: &str,
    labels: &[(&str, &str)],
    points: &[(i64, f64)],
) {
    let id = s.series.interner().intern(metric, labels, kind).unwrap();
    let op = if kind == SeriesKind::Histogram {
        Op::Observe
    } else {
        Op::Set
    };
    let now = now_ms();
    let changes: Vec<_> = points
        .iter()
        .map(|(ago, v)| (id, op, now - ago * SEC, *v))
        .collect();
    s.series.apply(&changes, |_, _, _| {});
}

/// Evaluates one threshold policy with `rules` over `s`, alerts by labels.
fn evaluate(s: Sources, rules: &serde_json::Value) -> Vec<Alert> {
    evaluate_with(guests::THRESHOLD_COMPONENT, s, rules)
}

/// [`evaluate`] with the threshold plugin built at `path`.
fn evaluate_with(path: &str, s: Sources, rules: &serde_json::Value) -> Vec<Alert> {
    let (engine, _dir) = engine();
    let plugin = load(&engine, path, Kind::Alert);
    let policy = bind_with(
        &plugin,
        "expr",
        &json!({ "rules": rules.clone() }),
        Limits::default(),
        Arc::new(s),
    );
    let mut alerts = policy.evaluate_alerts().unwrap_or_else(|e| panic!("{e}"));
    alerts.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
    alerts
}

fn label<'a>(a: &'a Alert, key: &str) -> Option<&'a str> {
    a.labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn rate_and_increase_of_a_counter_count_through_its_reset() {
    let s = Sources::default();
    // 0, 60, 120, then the process restarts: 30, 90. Increase 210 in 240 s.
    let points = [(240, 0.0), (180, 60.0), (120, 120.0), (60, 30.0), (0, 90.0)];
    record(
        &s,
        SeriesKind::Counter,
        "requests_total",
        &[("svc", "a")],
        &points,
    );
    record(
        &s,
        SeriesKind::Counter,
        "requests_total",
        &[("svc", "b")],
        &[(240, 0.0), (0, 24.0)],
    );
    let alerts = evaluate(
        s,
        &json!([
            {"alert": "Busy", "metric": "requests_total", "over": "rate", "condition": "gt", "threshold": 0.5},
            {"alert": "Many", "metric": "requests_total", "over": "increase", "condition": "ge", "threshold": 200},
        ]),
    );
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(
        (alerts[0].name.as_str(), label(&alerts[0], "svc")),
        ("Busy", Some("a"))
    );
    assert!((alerts[0].value - 210.0 / 240.0).abs() < 1e-6, "{alerts:?}");
    assert_eq!((alerts[1].name.as_str(), alerts[1].value), ("Many", 210.0));
}

#[test]
fn an_error_ratio_divides_two_metrics_grouped_by_service() {
    let s = Sources::default();
    for (svc, code, errors) in [
        ("api", "500", 30.0),
        ("api", "503", 20.0),
        ("web", "500", 1.0),
    ] {
        record(
            &s,
            SeriesKind::Counter,
            "errors_total",
            &[("svc", svc), ("code", code)],
            &[(100, 0.0), (0, errors)],
        );
    }
    for svc in ["api", "web"] {
        record(
            &s,
            SeriesKind::Counter,
            "requests_total",
            &[("svc", svc)],
            &[(100, 0.0), (0, 1000.0)],
        );
    }
    let alerts = evaluate(
        s,
        &json!([{
            "alert": "ErrorRatio", "metric": "errors_total", "over": "increase", "by": ["svc"],
            "divide_by": {"metric": "requests_total"}, "condition": "gt", "threshold": 0.01,
            "summary": "more than 1% of requests fail"
        }]),
    );
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        alerts[0].labels,
        vec![("svc".to_string(), "api".to_string())]
    );
    assert!((alerts[0].value - 0.05).abs() < 1e-12);
}

#[test]
fn a_quantile_over_the_window_reads_every_observation() {
    let s = Sources::default();
    // 100 observations of 1..=100 ms in the last 100 s, and one old outlier
    // outside the window.
    let mut points: Vec<(i64, f64)> = (1..=100).map(|i| (100 - i, i as f64)).collect();
    points.push((3600, 10_000.0));
    record(
        &s,
        SeriesKind::Histogram,
        "latency_ms",
        &[("route", "/a")],
        &points,
    );
    let alerts = evaluate(
        s,
        &json!([
            {"alert": "P99", "metric": "latency_ms", "over": "quantile", "quantile": 0.99, "window": "2m", "condition": "gt", "threshold": 98},
            {"alert": "P50", "metric": "latency_ms", "over": "quantile", "quantile": 0.5, "window": "2m", "condition": "gt", "threshold": 51},
        ]),
    );
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].name, "P99");
    assert!((alerts[0].value - 99.01).abs() < 1e-9, "{alerts:?}");
}

#[test]
fn absence_names_the_series_that_stopped_and_fires_when_none_reports() {
    let s = Sources::default();
    record(
        &s,
        SeriesKind::Gauge,
        "heartbeat",
        &[("job", "a")],
        &[(10, 1.0)],
    );
    record(
        &s,
        SeriesKind::Gauge,
        "heartbeat",
        &[("job", "b")],
        &[(600, 1.0), (300, 1.0)],
    );
    let alerts = evaluate(
        s,
        &json!([
            {"alert": "Stopped", "metric": "heartbeat", "absent": "2m", "window": "1h"},
            {"alert": "Never", "metric": "backup_done", "matchers": {"host": "db"}, "absent": "5m", "window": "1h"},
        ]),
    );
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(
        (alerts[0].name.as_str(), alerts[0].labels.as_slice()),
        ("Never", &[("host".to_string(), "db".to_string())][..])
    );
    assert_eq!(
        (alerts[1].name.as_str(), label(&alerts[1], "job")),
        ("Stopped", Some("b"))
    );
    // 300 s when recorded, plus however long the plugin took to load.
    assert!(
        (300.0..360.0).contains(&alerts[1].value),
        "seconds since its last sample: {alerts:?}"
    );
}

#[test]
fn grouping_sums_maxes_and_averages_by_labels() {
    let s = Sources::default();
    for (cluster, host, v) in [
        ("a", "1", 0.9),
        ("a", "2", 0.7),
        ("b", "3", 0.2),
        ("b", "4", 0.4),
    ] {
        record(
            &s,
            SeriesKind::Gauge,
            "cpu_ratio",
            &[("cluster", cluster), ("host", host)],
            &[(30, v), (0, v)],
        );
    }
    let alerts = evaluate(
        s,
        &json!([
            {"alert": "Avg", "metric": "cpu_ratio", "over": "avg", "by": ["cluster"], "aggregate": "avg", "condition": "gt", "threshold": 0.5},
            {"alert": "Max", "metric": "cpu_ratio", "by": ["cluster"], "aggregate": "max", "condition": "ge", "threshold": 0.4},
            {"alert": "Sum", "metric": "cpu_ratio", "by": [], "condition": "gt", "threshold": 2},
        ]),
    );
    let got: Vec<(&str, Option<&str>, f64)> = alerts
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                label(a, "cluster"),
                (a.value * 1000.0).round() / 1000.0,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("Avg", Some("a"), 0.8),
            ("Max", Some("a"), 0.9),
            ("Max", Some("b"), 0.4),
            ("Sum", None, 2.2)
        ]
    );
}

/// WIT 0.3.0's `query-reduced` computes in the host what a rule computed in
/// the plugin from `query-series`: the frozen 0.2.0 build of the threshold
/// plugin (which can only read samples) and the shipped 0.3.0 build (which
/// asks the host for one value per series or group) raise the same alerts,
/// to the bit, over every reduction, grouping and ratio, with counter resets,
/// values that are not numbers and series with too few samples.
#[test]
fn the_host_reduces_windows_exactly_as_the_plugin_did() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/threshold-wit-0.2.0.wasm"
    );
    let fill = || {
        let s = Sources::default();
        for h in 0..12 {
            let (host, cluster) = (format!("h{h}"), format!("c{}", h % 3));
            let labels = [("host", host.as_str()), ("cluster", cluster.as_str())];
            let wave = |t: i64| ((t as f64 / 7.0) + h as f64).sin() * 10.0 + 50.0 + h as f64;
            let gauge: Vec<(i64, f64)> = (0..40)
                .map(|i| (i * 10, if (i + h) % 13 == 0 { f64::NAN } else { wave(i) }))
                .collect();
            record(&s, SeriesKind::Gauge, "cpu", &labels, &gauge);
            // A counter that resets once for some hosts.
            let counter: Vec<(i64, f64)> = (0..40)
                .map(|i| {
                    let t = 40 - i;
                    let total = (t * (3 + h)) as f64;
                    (
                        i * 10,
                        if h % 4 == 0 && t < 15 {
                            total / 7.0
                        } else {
                            total
                        },
                    )
                })
                .collect();
            record(&s, SeriesKind::Counter, "requests_total", &labels, &counter);
            let errors: Vec<(i64, f64)> = counter
                .iter()
                .map(|(a, v)| (*a, (v / 9.0).floor()))
                .collect();
            record(&s, SeriesKind::Counter, "errors_total", &labels, &errors);
            let observations: Vec<(i64, f64)> =
                (0..40).map(|i| (i * 10, wave(i * 3) * 4.0)).collect();
            record(
                &s,
                SeriesKind::Histogram,
                "latency_ms",
                &labels,
                &observations,
            );
        }
        // One sample only: no rate, no increase.
        record(
            &s,
            SeriesKind::Counter,
            "requests_total",
            &[("host", "lone"), ("cluster", "c0")],
            &[(5, 3.0)],
        );
        s
    };
    let mut rules = Vec::new();
    for over in [
        "latest", "avg", "min", "max", "sum", "count", "rate", "increase",
    ] {
        for (metric, t) in [("cpu", 40.0), ("requests_total", 0.5)] {
            rules.push(json!({"alert": format!("{over}-{metric}"), "metric": metric, "over": over, "condition": "gt", "threshold": t, "window": "5m"}));
            for aggregate in ["sum", "max", "min", "avg", "count"] {
                rules.push(json!({"alert": format!("{over}-{metric}-by-{aggregate}"), "metric": metric, "over": over, "by": ["cluster"], "aggregate": aggregate, "condition": "gt", "threshold": t, "window": "3m"}));
            }
        }
    }
    rules.push(json!({"alert": "p99", "metric": "latency_ms", "over": "quantile", "quantile": 0.99, "condition": "gt", "threshold": 100, "window": "5m"}));
    rules.push(json!({"alert": "p50-by", "metric": "latency_ms", "over": "quantile", "quantile": 0.5, "by": ["cluster"], "aggregate": "max", "condition": "gt", "threshold": 100, "window": "2m"}));
    rules.push(json!({"alert": "ratio", "metric": "errors_total", "over": "increase", "divide_by": {"metric": "requests_total"}, "condition": "gt", "threshold": 0.05, "window": "5m"}));
    rules.push(json!({"alert": "ratio-by", "metric": "errors_total", "over": "rate", "by": ["cluster"], "divide_by": {"metric": "requests_total", "over": "increase"}, "condition": "gt", "threshold": 0.0, "window": "4m"}));
    rules.push(json!({"alert": "hysteresis", "metric": "cpu", "over": "avg", "condition": "gt", "threshold": 70, "clear_threshold": 50, "window": "1m", "matchers": {"cluster": "c1"}}));
    // Enough rules alike for the plugin to answer them from one query (a
    // batch), each with its own matchers.
    for over in ["avg", "latest"] {
        let mut matchers: Vec<serde_json::Value> =
            (0..12).map(|h| json!({"host": format!("h{h}")})).collect();
        matchers.extend((0..3).map(|c| json!({"cluster": format!("c{c}")})));
        matchers.push(json!({}));
        for (i, m) in matchers.into_iter().enumerate() {
            rules.push(json!({"alert": format!("batch-{over}-{i}"), "metric": "cpu", "matchers": m, "over": over, "condition": "gt", "threshold": 52, "window": "90s"}));
        }
    }
    let rules = serde_json::Value::Array(rules);

    let old = evaluate_with(fixture, fill(), &rules);
    let new = evaluate_with(guests::THRESHOLD_COMPONENT, fill(), &rules);
    assert!(
        old.len() > 100,
        "the rules must raise alerts to compare: {}",
        old.len()
    );
    for batch in ["batch-avg-", "batch-latest-"] {
        assert!(
            new.iter().any(|a| a.name.starts_with(batch)),
            "no {batch} alert"
        );
    }
    assert_eq!(old.len(), new.len());
    for (o, n) in old.iter().zip(&new) {
        assert_eq!((&o.name, &o.labels), (&n.name, &n.labels));
        assert_eq!(
            o.value.to_bits(),
            n.value.to_bits(),
            "{} {:?}: {} vs {}",
            o.name,
            o.labels,
            o.value,
            n.value
        );
        assert_eq!(o, n);
    }
}

/// What `query-reduced` returns counts against the evaluation's read budget
/// like `query-series`, and a refusal names the call.
#[test]
fn a_reduced_query_past_the_read_budget_is_refused_by_name() {
    let s = Sources::default();
    for h in 0..200 {
        let host = format!("host-with-a-long-name-{h}");
        record(
            &s,
            SeriesKind::Gauge,
            "cpu",
            &[("host", host.as_str())],
            &[(0, 1.0)],
        );
    }
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::THRESHOLD_COMPONENT, Kind::Alert);
    let limits = Limits {
        max_query_bytes: 4096,
        ..Limits::default()
    };
    let policy = bind_with(
        &plugin,
        "expr",
        &json!({ "rules": [{"alert": "A", "metric": "cpu", "over": "avg", "condition": "gt", "threshold": 0}] }),
        limits,
        Arc::new(s),
    );
    let e = policy.evaluate_alerts().unwrap_err().to_string();
    assert!(e.contains("`query-reduced` refused"), "{e}");
}
