use super::*;
use warden_sdk::alert::Condition;
use warden_sdk::{LabelPair, Severity};

fn series(disk: &str, values: &[f64]) -> Series {
    let samples: Vec<(i64, f64)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64, *v))
        .collect();
    Series::new("disk_used_ratio", &[("disk", disk)], &samples)
}

fn rule(json: &str) -> Rule {
    serde_json::from_str(json).unwrap()
}

#[test]
fn every_condition_compares_as_named() {
    let cases = [
        (Op::Gt, 2.0, false),
        (Op::Ge, 1.0, true),
        (Op::Lt, 2.0, true),
        (Op::Le, 0.5, false),
        (Op::Eq, 1.0, true),
        (Op::Ne, 1.0, false),
    ];
    for (op, threshold, expect) in cases {
        assert_eq!(op.holds(1.0, threshold), expect, "{op:?} {threshold}");
    }
}

#[test]
fn alerts_once_per_matching_series_with_its_labels() {
    let r = rule(
        r#"{"alert": "DiskFull", "metric": "disk_used_ratio", "condition": "gt", "threshold": 0.9, "severity": "critical", "for": "5m"}"#,
    );
    let alerts = Threshold::check(
        &r,
        &[series("sda", &[0.5, 0.95]), series("sdb", &[0.99, 0.2])],
    );
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(
        (a.name.as_str(), a.condition, a.severity, a.value),
        ("DiskFull", Condition::Firing, Severity::Critical, 0.95)
    );
    assert_eq!(warden_sdk::label(&a.labels, "disk"), Some("sda"));
    assert_eq!(a.for_ms, Some(300_000));
}

#[test]
fn durations_read_as_text_or_milliseconds() {
    let r = |extra: &str| {
        rule(&format!(
            r#"{{"alert": "A", "metric": "m", "condition": "gt", "threshold": 1{extra}}}"#
        ))
    };
    let (a, b) = (r(r#", "for": "5m""#), r(r#", "for": 300000"#));
    assert_eq!(a.hold_for, b.hold_for);
    assert_eq!(a.hold_for.map(|d| d.as_millis()), Some(300_000));
    assert_eq!(r(r#", "for": null"#).hold_for, None);
    assert_eq!(r("").hold_for, None);
    assert_eq!(r("").window.as_millis(), 300_000);
    assert_eq!(r(r#", "window": "1m""#).window.as_millis(), 60_000);
    let bad = |extra: &str| {
        serde_json::from_str::<Rule>(&format!(
            r#"{{"alert": "A", "metric": "m", "condition": "gt", "threshold": 1{extra}}}"#
        ))
        .unwrap_err()
        .to_string()
    };
    assert!(bad(r#", "for": "soon""#).contains("is not a duration"));
    assert!(bad(r#", "window": -1"#).contains("expected a duration"));
}

#[test]
fn window_reductions() {
    let s = [series("sda", &[0.2, 0.95, 0.5])];
    let over = |o: &str| {
        Threshold::check(&rule(&format!(r#"{{"alert": "A", "metric": "m", "condition": "gt", "threshold": 0.6, "over": "{o}"}}"#)), &s).len()
    };
    assert_eq!(
        (over("latest"), over("max"), over("avg"), over("min")),
        (0, 1, 0, 0)
    );
}

#[test]
fn hysteresis_reports_holding_between_the_thresholds() {
    let r = rule(
        r#"{"alert": "Hot", "metric": "m", "condition": "gt", "threshold": 0.9, "clear_threshold": 0.8}"#,
    );
    assert_eq!(
        Threshold::check(&r, &[series("a", &[0.85])])[0].condition,
        Condition::Holding
    );
    assert!(Threshold::check(&r, &[series("a", &[0.75])]).is_empty());
}

#[test]
fn nan_and_empty_windows_never_alert() {
    let r = rule(r#"{"alert": "A", "metric": "m", "condition": "ne", "threshold": 1}"#);
    assert!(Threshold::check(&r, &[series("a", &[f64::NAN]), series("b", &[])]).is_empty());
}

fn config(rules: &[String]) -> Config {
    serde_json::from_str(&format!(r#"{{"rules": [{}]}}"#, rules.join(","))).unwrap()
}

fn per_id(n: usize, extra: &str) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"alert": "A{i}", "metric": "m", "matchers": {{"id": "{i}"{extra}}}, "condition": "gt", "threshold": 0.5}}"#))
        .collect()
}

#[test]
fn many_rules_on_one_metric_share_a_query_filtered_by_their_common_matchers() {
    let mut rules = per_id(BATCH_FROM, r#", "env": "prod""#);
    // Another window is another query; few rules keep a query each.
    rules.push(
        r#"{"alert": "W", "metric": "m", "condition": "gt", "threshold": 0.5, "window": "1m"}"#
            .into(),
    );
    let t = Threshold::new(config(&rules)).unwrap();
    assert_eq!(t.batches.len(), 1);
    let b = &t.batches[0];
    assert_eq!(
        (b.common.clone(), b.keys.clone(), b.rules),
        (
            vec![("env".to_string(), "prod".to_string())],
            vec!["id".to_string()],
            BATCH_FROM
        )
    );
    assert!(t.batch_of[..BATCH_FROM].iter().all(|b| *b == Some(0)));
    assert_eq!(t.batch_of[BATCH_FROM], None);

    let few = Threshold::new(config(&per_id(BATCH_FROM - 1, ""))).unwrap();
    assert!(few.batches.is_empty() && few.batch_of.iter().all(Option::is_none));

    // A batch's series are reduced once for all its rules, so rules that
    // reduce differently are not one batch: here half take the max.
    let mixed: Vec<String> = per_id(BATCH_FROM, "")
        .into_iter()
        .enumerate()
        .map(|(i, r)| match i % 2 {
            0 => r.replacen(r#""condition""#, r#""over": "max", "condition""#, 1),
            _ => r,
        })
        .collect();
    let mixed = Threshold::new(config(&mixed)).unwrap();
    assert!(mixed.batches.is_empty());
}

#[test]
fn batched_matching_picks_what_the_host_would_in_its_order() {
    let s = |labels: &[(&str, &str)]| Reduced {
        labels: labels.iter().map(|(k, v)| LabelPair::new(*k, *v)).collect(),
        value: 1.0,
    };
    let all = vec![
        s(&[("id", "1"), ("zone", "a")]),
        s(&[("id", "2"), ("zone", "a")]),
        s(&[("id", "1"), ("zone", "b")]),
        // A repeated label must not make its series count twice.
        s(&[("id", "3"), ("id", "3")]),
        s(&[("zone", "a")]),
    ];
    let f = Fetched::new(all.clone(), &["id".into(), "zone".into()]);
    let picked = |m: &[(&str, &str)]| {
        let mut got = Vec::new();
        f.matching(m, |s| got.push(s.clone()));
        got
    };
    let host = |m: &[(&str, &str)]| -> Vec<Reduced> {
        all.iter()
            .filter(|s| {
                m.iter()
                    .all(|(k, v)| s.labels.iter().any(|l| l.key == *k && l.value == *v))
            })
            .cloned()
            .collect()
    };
    for m in [
        &[][..],
        &[("id", "1")],
        &[("zone", "a")],
        &[("id", "1"), ("zone", "b")],
        &[("id", "3")],
        &[("id", "9")],
        &[("zone", "a"), ("id", "2")],
    ] {
        assert_eq!(picked(m), host(m), "{m:?}");
    }
}

#[test]
fn a_clear_threshold_on_the_firing_side_is_refused() {
    let c: Config = serde_json::from_str(r#"{"rules": [{"alert": "A", "metric": "m", "condition": "gt", "threshold": 0.8, "clear_threshold": 0.9}]}"#).unwrap();
    let e = Threshold::new(c).err().unwrap();
    assert_eq!(e.path(), Some("rules[0].clear_threshold"), "{e}");
}

fn timed(metric: &str, labels: &[(&str, &str)], points: &[(i64, f64)]) -> Series {
    Series::new(metric, labels, points)
}

fn one(json: &str, series: &[Series], den: &[Series], now: i64) -> Vec<Alert> {
    let r = rule(json);
    assert_eq!(r.problem(), None, "{json}");
    Threshold::check_at(&r, series, den, now).unwrap()
}

#[test]
fn rate_and_increase_count_through_a_counter_reset() {
    // 0 → 30 over 30 s, reset to 0, then → 20: 50 in 60 s.
    let s = timed(
        "c_total",
        &[],
        &[
            (0, 0.0),
            (10_000, 10.0),
            (30_000, 30.0),
            (40_000, 5.0),
            (60_000, 20.0),
        ],
    );
    assert_eq!(s.reduce(Over::Increase, None), Some(50.0));
    let rate = s.reduce(Over::Rate, None).unwrap();
    assert!((rate - 50.0 / 60.0).abs() < 1e-12, "{rate}");
    assert_eq!(
        timed("c", &[], &[(0, 1.0)]).reduce(Over::Rate, None),
        None,
        "one sample has no rate"
    );
}

#[test]
fn quantiles_interpolate_between_ranks() {
    let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(quantile_of(&mut v, 0.5), Some(50.5));
    assert!((quantile_of(&mut v, 0.99).unwrap() - 99.01).abs() < 1e-9);
    assert_eq!(quantile_of(&mut v, 1.0), Some(100.0));
    assert_eq!(quantile_of(&mut [], 0.5), None);
}

#[test]
fn grouping_aggregates_series_by_their_labels() {
    let s = [
        timed("cpu", &[("cluster", "a"), ("host", "1")], &[(0, 0.9)]),
        timed("cpu", &[("cluster", "a"), ("host", "2")], &[(0, 0.5)]),
        timed("cpu", &[("cluster", "b"), ("host", "3")], &[(0, 0.2)]),
    ];
    let avg = one(
        r#"{"alert": "A", "metric": "cpu", "by": ["cluster"], "aggregate": "avg", "condition": "gt", "threshold": 0.6}"#,
        &s,
        &[],
        0,
    );
    assert_eq!(avg.len(), 1);
    assert_eq!((avg[0].value, avg[0].labels.len()), (0.7, 1));
    assert_eq!(warden_sdk::label(&avg[0].labels, "cluster"), Some("a"));
    let sum_all = one(
        r#"{"alert": "A", "metric": "cpu", "by": [], "condition": "gt", "threshold": 1.5}"#,
        &s,
        &[],
        0,
    );
    assert!((sum_all[0].value - 1.6).abs() < 1e-12 && sum_all[0].labels.is_empty());
    let max = one(
        r#"{"alert": "A", "metric": "cpu", "by": ["cluster"], "aggregate": "max", "condition": "lt", "threshold": 0.3}"#,
        &s,
        &[],
        0,
    );
    assert_eq!(max.iter().map(|a| a.value).collect::<Vec<_>>(), [0.2]);
}

#[test]
fn a_ratio_pairs_series_by_their_groups_or_on_labels() {
    let errors = [
        timed(
            "errors_total",
            &[("svc", "a"), ("code", "500")],
            &[(0, 0.0), (10_000, 8.0)],
        ),
        timed(
            "errors_total",
            &[("svc", "a"), ("code", "503")],
            &[(0, 0.0), (10_000, 2.0)],
        ),
        timed(
            "errors_total",
            &[("svc", "b"), ("code", "500")],
            &[(0, 0.0), (10_000, 1.0)],
        ),
    ];
    let requests = [
        timed(
            "requests_total",
            &[("svc", "a")],
            &[(0, 0.0), (10_000, 100.0)],
        ),
        timed(
            "requests_total",
            &[("svc", "b")],
            &[(0, 0.0), (10_000, 100.0)],
        ),
    ];
    let grouped = one(
        r#"{"alert": "E", "metric": "errors_total", "over": "rate", "by": ["svc"], "divide_by": {"metric": "requests_total"}, "condition": "gt", "threshold": 0.05}"#,
        &errors,
        &requests,
        10_000,
    );
    assert_eq!(grouped.len(), 1);
    assert!((grouped[0].value - 0.1).abs() < 1e-12);
    assert_eq!(warden_sdk::label(&grouped[0].labels, "svc"), Some("a"));
    let per_code = one(
        r#"{"alert": "E", "metric": "errors_total", "over": "increase", "on": ["svc"], "divide_by": {"metric": "requests_total"}, "condition": "ge", "threshold": 0.02}"#,
        &errors,
        &requests,
        10_000,
    );
    assert_eq!(
        per_code.iter().map(|a| a.value).collect::<Vec<_>>(),
        [0.08, 0.02]
    );
    let r = rule(
        r#"{"alert": "E", "metric": "errors_total", "over": "increase", "divide_by": {"metric": "requests_total"}, "on": [], "condition": "gt", "threshold": 0}"#,
    );
    let e = Threshold::check_at(&r, &errors, &requests, 0).unwrap_err();
    assert!(e.contains("several series"), "{e}");
    let zero = [timed(
        "requests_total",
        &[("svc", "a")],
        &[(0, 5.0), (10_000, 5.0)],
    )];
    assert!(
        one(
            r#"{"alert": "E", "metric": "errors_total", "over": "increase", "on": ["svc"], "divide_by": {"metric": "requests_total"}, "condition": "gt", "threshold": 0}"#,
            &errors,
            &zero,
            0
        )
        .is_empty(),
        "nothing is divided by zero"
    );
}

#[test]
fn absence_fires_for_series_that_stopped_and_for_none_at_all() {
    let rule_json = r#"{"alert": "Gone", "metric": "beat", "matchers": {"job": "x"}, "absent": "2m", "window": "1h"}"#;
    let now = 3_600_000;
    let s = [
        timed("beat", &[("job", "x"), ("i", "1")], &[(now - 10_000, 1.0)]),
        timed("beat", &[("job", "x"), ("i", "2")], &[(now - 300_000, 1.0)]),
    ];
    let gone = one(rule_json, &s, &[], now);
    assert_eq!(gone.len(), 1);
    assert_eq!(warden_sdk::label(&gone[0].labels, "i"), Some("2"));
    assert_eq!(gone[0].value, 300.0);
    let none = one(rule_json, &[], &[], now);
    assert_eq!(none.len(), 1);
    assert_eq!(warden_sdk::label(&none[0].labels, "job"), Some("x"));
}

#[test]
fn rules_that_cannot_mean_anything_are_refused() {
    for (json, why) in [
        (
            r#"{"alert": "A", "metric": "m", "threshold": 1}"#,
            "give a `condition`",
        ),
        (
            r#"{"alert": "A", "metric": "m", "absent": "5m", "condition": "gt", "threshold": 1}"#,
            "drop `condition`",
        ),
        (
            r#"{"alert": "A", "metric": "m", "absent": "2h"}"#,
            "shorter than `window`",
        ),
        (
            r#"{"alert": "A", "metric": "m", "over": "quantile", "condition": "gt", "threshold": 1}"#,
            "needs `quantile`",
        ),
        (
            r#"{"alert": "A", "metric": "m", "over": "quantile", "quantile": 99, "condition": "gt", "threshold": 1}"#,
            "between 0 and 1",
        ),
        (
            r#"{"alert": "A", "metric": "m", "aggregate": "max", "condition": "gt", "threshold": 1}"#,
            "needs `by`",
        ),
        (
            r#"{"alert": "A", "metric": "m", "on": ["x"], "condition": "gt", "threshold": 1}"#,
            "has none",
        ),
    ] {
        let (field, p) = rule(json).problem().unwrap_or_default();
        assert!(p.contains(why), "{json}: {field}: {p}");
    }
}

#[test]
fn rules_asking_the_same_query_share_one_fetch_per_evaluation() {
    use warden_sdk::mock::{MockHost, invocation, queries};
    let rules: Vec<String> = [
        // A warning and a critical over one grouped average: one query.
        r#"{"alert": "Warn", "metric": "q", "by": ["c"], "aggregate": "avg", "over": "avg", "condition": "gt", "threshold": 1, "window": "5m"}"#,
        r#"{"alert": "Crit", "metric": "q", "by": ["c"], "aggregate": "avg", "over": "avg", "condition": "gt", "threshold": 3, "window": "5m"}"#,
        // Another window is another query.
        r#"{"alert": "Short", "metric": "q", "by": ["c"], "over": "avg", "condition": "gt", "threshold": 1, "window": "1m"}"#,
        // Two ratios over one denominator: the numerators differ, the
        // denominator is fetched once; a numerator's matchers are its own.
        r#"{"alert": "R1", "metric": "e", "matchers": {"c": "a"}, "over": "increase", "divide_by": {"metric": "n", "matchers": {"c": "a"}}, "condition": "gt", "threshold": 0.1, "window": "5m"}"#,
        r#"{"alert": "R2", "metric": "f", "matchers": {"c": "a"}, "over": "increase", "divide_by": {"metric": "n", "matchers": {"c": "a"}}, "condition": "gt", "threshold": 0.1, "window": "5m"}"#,
    ]
    .iter()
    .map(|r| (*r).to_owned())
    .collect();
    let t = Threshold::new(config(&rules)).unwrap();
    assert!(t.batches.is_empty());
    assert_eq!(t.queries.len(), 5, "q/5m, q/1m, e, f, n");

    let now = 600_000;
    let pts = |v: f64| vec![(now - 20_000, v), (now - 10_000, v)];
    let counter = |a: f64, b: f64| vec![(now - 20_000, a), (now - 10_000, b)];
    MockHost::new()
        .now_ms(now)
        .series(timed("q", &[("c", "a"), ("h", "1")], &pts(2.0)))
        .series(timed("q", &[("c", "a"), ("h", "2")], &pts(6.0)))
        .series(timed("e", &[("c", "a")], &counter(0.0, 5.0)))
        .series(timed("f", &[("c", "a")], &counter(0.0, 1.0)))
        .series(timed("n", &[("c", "a")], &counter(0.0, 20.0)))
        .install();
    let alerts = t.evaluate(&invocation("p")).unwrap();
    let fired: Vec<(&str, f64)> = alerts.iter().map(|a| (a.name.as_str(), a.value)).collect();
    // Each rule still sees its own answer: avg 4 over both thresholds, the
    // 1m window summed (the default aggregate), and 5/20 for R1 only (1/20
    // is under 0.1).
    assert_eq!(
        fired,
        vec![("Warn", 4.0), ("Crit", 4.0), ("Short", 8.0), ("R1", 0.25)]
    );
    let asked: Vec<(String, u64)> = queries().into_iter().map(|(m, _, w)| (m, w)).collect();
    assert_eq!(
        asked,
        vec![
            ("q".to_owned(), 300_000),
            ("q".to_owned(), 60_000),
            ("e".to_owned(), 300_000),
            ("n".to_owned(), 300_000),
            ("f".to_owned(), 300_000),
        ]
    );
}
