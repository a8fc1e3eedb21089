use super::*;
use crate::replay::decision::What;

const T0: i64 = 1_714_557_600_000; // 2024-05-01T10:00:00Z
const MIN: i64 = 60_000;

fn plugins() -> PluginCache {
    PluginCache::new(
        warden_plugin_host::Engine::new(&warden_plugin_host::EngineOptions::default()).unwrap(),
    )
}

fn replay(policy: &str, store: &Arc<SeriesStore>) -> Replay {
    let data: Arc<dyn DataSource> = Arc::new(crate::sources::Sources {
        series: Arc::clone(store),
        ..Default::default()
    });
    Replay::new(
        Path::new("replay.yaml"),
        policy,
        &ParseContext {
            data_dir: "/var/lib/warden".into(),
        },
        &plugins(),
        &data,
    )
    .unwrap_or_else(|e| panic!("{e:?}"))
}

fn run(r: &mut Replay, from: i64, to: i64) -> Vec<Decision> {
    let mut out = Vec::new();
    let s = r.run(from, to, |d| out.push(d.clone()));
    assert_eq!(s.decisions as usize, out.len());
    out
}

/// A CSV of `disk_used`: 10 for 10 minutes, 95 for 10, then 10 again.
fn csv(dir: &Path) -> PathBuf {
    let path = dir.join("disk_used.csv");
    let mut text = String::from("timestamp,value\n");
    for m in 0..30 {
        let v = if (10..20).contains(&m) { 95.0 } else { 10.0 };
        // Seconds, milliseconds and ISO 8601 mixed, as files come.
        let t = T0 + m * MIN;
        let when = match m % 3 {
            0 => (t / 1000).to_string(),
            1 => t.to_string(),
            _ => decision::rfc3339(t),
        };
        text.push_str(&format!("{when},{v}\n"));
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn an_alert_policy_replays_its_state_changes_and_notifications_in_simulated_time() {
    let dir = tempfile::tempdir().unwrap();
    let (store, extent) = load_sources(&[csv(dir.path())]).unwrap();
    assert_eq!(extent, Some((T0, T0 + 29 * MIN)));
    let mut r = replay(
        "policies:
  - name: disk
    kind: alert
    plugin: threshold
    trigger: {interval: 1m}
    for: 3m
    labels: {team: ops}
    config:
      rules:
        - {alert: DiskFull, metric: disk_used, condition: gt, threshold: 90, window: 2m}
",
        &store,
    );
    let out = run(&mut r, T0, T0 + 29 * MIN);
    let seen: Vec<(i64, String)> = out
        .iter()
        .map(|d| {
            let what = match &d.what {
                What::Alert { phase, .. } => format!("alert {phase:?}"),
                What::Notify { status, labels } => {
                    assert_eq!(labels["team"], "ops");
                    format!("notify {status:?}")
                }
                other => format!("{other:?}"),
            };
            ((d.at_ms - T0) / MIN, what)
        })
        .collect();
    assert_eq!(
        seen,
        [
            (10, "alert Pending".to_owned()),
            (13, "alert Firing".to_owned()),
            (13, "notify Firing".to_owned()),
            // `over: latest`: the sample of minute 20 (10) resolves it.
            (20, "alert Resolved".to_owned()),
            (20, "notify Resolved".to_owned()),
        ]
    );
    assert!(
        out[0].text().contains("alert DiskFull{} pending value=95"),
        "{}",
        out[0].text()
    );
}

#[test]
fn a_detector_replays_findings_raised_and_resolved() {
    let dir = tempfile::tempdir().unwrap();
    // JSON lines, two series by label: one climbs 1/min toward 100, one is flat.
    let path = dir.path().join("disks.jsonl");
    let mut text = String::new();
    for m in 0..60 {
        let t = T0 + m * MIN;
        let climbing = if m < 40 { 20.0 + m as f64 } else { 20.0 };
        text.push_str(&format!(
            "{{\"metric\": \"used\", \"labels\": {{\"disk\": \"a\"}}, \"timestamp\": {t}, \"value\": {climbing}}}\n"
        ));
        text.push_str(&format!(
            "{{\"labels\": {{\"disk\": \"b\"}}, \"timestamp\": \"{}\", \"value\": 5}}\n",
            decision::rfc3339(t)
        ));
    }
    std::fs::write(&path, text).unwrap();
    let (store, _) = load_sources(&[path]).unwrap();
    assert_eq!(
        store.series_count(),
        2,
        "`metric` defaults to the file's name"
    );
    let mut r = replay(
        "policies:
  - name: trend
    kind: detector
    plugin: linear-trend
    trigger: {interval: 1m}
    resolve_after: 2
    config: {metric: used, capacity: 100, window: 10m, horizon: 2h}
",
        &store,
    );
    let out = run(&mut r, T0, T0 + 59 * MIN);
    let findings: Vec<(i64, crate::findings::Happened, f64)> = out
        .iter()
        .filter_map(|d| match &d.what {
            What::Finding {
                event,
                labels,
                evidence,
                ..
            } => {
                assert_eq!(labels["disk"], "a");
                Some(((d.at_ms - T0) / MIN, *event, evidence["capacity"]))
            }
            _ => None,
        })
        .collect();
    use crate::findings::Happened::{Raised, Resolved};
    // Six samples fit from minute 5; the drop at 40 breaks the fit within
    // the 10-minute window, and two quiet evaluations resolve it.
    assert_eq!(findings.first(), Some(&(5, Raised, 100.0)), "{out:#?}");
    assert_eq!(findings.len(), 2, "{findings:?}");
    assert_eq!(findings[1].1, Resolved);
    assert!((41..=46).contains(&findings[1].0), "{findings:?}");
}

#[test]
fn policies_that_cannot_replay_are_named_and_bad_input_is_located() {
    let store = store();
    let r = replay(
        "policies:
  - name: clean
    kind: cleanup
    plugin: temp-files
    config: {max_age: 1d}
  - name: retry
    kind: recovery
    plugin: backoff
  - name: hot
    kind: alert
    plugin: threshold
    trigger: {event: finding-raised}
    config: {rules: []}
",
        &store,
    );
    // The recovery policy replays, over recorded failures.
    assert_eq!(r.policies().collect::<Vec<_>>(), ["retry"]);
    assert_eq!(r.recovery_policies().collect::<Vec<_>>(), ["retry"]);
    let why: Vec<&str> = r.skipped.iter().map(|(_, w)| w.as_str()).collect();
    assert_eq!(why.len(), 2, "{why:?}");
    assert!(why[0].contains("acts on the machine"), "{why:?}");
    assert!(why[1].contains("interval or cron"), "{why:?}");

    // A config the plugin refuses is an error of the file, at its line, as
    // `warden check` reports it, before any step runs.
    let errors = Replay::new(
        Path::new("bad.yaml"),
        "policies:
  - name: hot
    kind: alert
    plugin: threshold
    trigger: {interval: 1m}
    config:
      rules:
        - {alert: Hot, metric: temp, condition: gt, threshold: 1, window: soon}
",
        &ParseContext {
            data_dir: "/var/lib/warden".into(),
        },
        &plugins(),
        &(Arc::new(crate::sources::Sources {
            series: Arc::clone(&store),
            ..Default::default()
        }) as Arc<dyn DataSource>),
    )
    .unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line, Some(8), "{errors:?}");
    assert!(errors[0].message.contains("window"), "{errors:?}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("m.csv");
    std::fs::write(&bad, "timestamp,value\n1714557600,1\nnot-a-time,2\n").unwrap();
    let e = load::load(&bad, &store).unwrap_err();
    assert!(e.ends_with(":3: `not-a-time` is not a time; write ISO 8601 (`2024-05-01T10:00:00Z`) or epoch seconds or milliseconds"), "{e}");
    let header = dir.path().join("h.csv");
    std::fs::write(&header, "time;value\n").unwrap();
    assert!(
        load::load(&header, &store)
            .unwrap_err()
            .contains(":1: the header must be")
    );
    let named = dir.path().join("not-a-metric.csv");
    std::fs::write(&named, "timestamp,value\n").unwrap();
    assert!(
        load::load(&named, &store)
            .unwrap_err()
            .contains("rename the file")
    );
}

#[test]
fn a_data_directory_replays_from_its_batch_files() {
    let dir = tempfile::tempdir().unwrap();
    let batches = dir.path().join("metrics");
    std::fs::create_dir(&batches).unwrap();
    let records: Vec<String> = (0..5)
        .map(|m| {
            format!(
                "{{\"timestamp_ms\": {}, \"type\": \"counter\", \"metric\": \"req_total\", \"labels\": {{\"svc\": \"a\"}}, \"value\": {}}}",
                T0 + m * MIN,
                m * 60
            )
        })
        .collect();
    std::fs::write(
        batches.join("metrics_20240501_100000_000001.json"),
        format!(
            "{{\"batch_id\": \"x\", \"batch_timestamp\": \"2024-05-01T10:00:00Z\", \"total_records\": 5, \"records\": [{}]}}",
            records.join(",")
        ),
    )
    .unwrap();
    let (store, extent) = load_sources(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(extent, Some((T0, T0 + 4 * MIN)));
    let mut r = replay(
        "policies:
  - name: rate
    kind: alert
    plugin: threshold
    trigger: {interval: 1m}
    config:
      rules:
        - {alert: Busy, metric: req_total, over: rate, window: 3m, condition: ge, threshold: 1}
",
        &store,
    );
    let out = run(&mut r, T0, T0 + 4 * MIN);
    assert_eq!(
        (out[0].at_ms - T0) / MIN,
        1,
        "a rate needs two samples: {out:#?}"
    );
    assert!(matches!(&out[0].what, What::Alert { value, .. } if (*value - 1.0).abs() < 1e-9));
}

/// A recovery policy for `db.*` with a small breaker and three attempts.
const RECOVERY: &str = "policies:
  - name: db
    kind: recovery
    plugin: backoff
    trigger: {event: failure-reported}
    scope: {operations: ['db.*']}
    recovery:
      breaker: {window_size: 4, minimum_calls: 4, failure_rate: 50, wait_in_open: 30s, half_open_calls: 2}
    config: {max_attempts: 3, jitter: 0, base: 100ms}
";

#[test]
fn a_recovery_policy_replays_its_decisions_and_breaker_changes_over_recorded_failures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("failures.jsonl");
    let s = |sec: i64| (T0 / 1000 + sec).to_string();
    let lines = [
        // Out of order in the file: replayed in time order.
        format!(
            r#"{{"timestamp": {}, "operation": "db.query", "errno": "ECONNREFUSED", "attempt": 2}}"#,
            s(1)
        ),
        format!(
            r#"{{"timestamp": {}, "operation": "db.query", "errno": "ECONNREFUSED"}}"#,
            s(0)
        ),
        format!(
            r#"{{"timestamp": "{}", "operation": "db.query", "errno": "ECONNREFUSED", "attempt": 3}}"#,
            decision::rfc3339(T0 + 2_000)
        ),
        String::new(),
        // The fourth failing call in the window opens the breaker.
        format!(
            r#"{{"timestamp": {}, "operation": "db.query", "errno": "ECONNREFUSED"}}"#,
            s(3)
        ),
        format!(
            r#"{{"timestamp": {}, "operation": "cache.get", "errno": "ECONNREFUSED"}}"#,
            s(4)
        ),
        // After the wait, good calls move it to half-open, then close it.
        format!(
            r#"{{"timestamp": {}, "outcomes": [{{"operation": "db.query", "outcome": "success"}}, {{"operation": "db.query", "outcome": "success"}}, {{"operation": "db.query", "outcome": "success"}}, {{"operation": "db.query", "outcome": "success"}}]}}"#,
            s(40)
        ),
    ];
    std::fs::write(&path, lines.join("\n")).unwrap();
    let records = failures::load(&path).unwrap();
    assert_eq!(records.len(), 6);
    assert_eq!(failures::extent(&records), Some((T0, T0 + 40_000)));

    let store = store();
    let mut r = replay(RECOVERY, &store);
    r.failures(records);
    let out = run(&mut r, T0, T0 + 60_000);
    let shown: Vec<String> = out.iter().map(Decision::text).collect();
    let what: Vec<String> = out
        .iter()
        .map(|d| match &d.what {
            What::Recovery {
                attempt,
                action,
                decided_by,
                ..
            } => format!(
                "{} {attempt} {} {decided_by:?}",
                (d.at_ms - T0) / 1000,
                action.kind()
            ),
            What::Breaker { from, to, .. } => format!(
                "{} breaker {}->{}",
                (d.at_ms - T0) / 1000,
                from.name(),
                to.name()
            ),
            What::Error { error } => format!("{} error {error}", (d.at_ms - T0) / 1000),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        what[..5],
        [
            "0 1 retry-after Plugin".to_owned(),
            "1 2 retry-after Plugin".into(),
            "2 3 give-up Plugin".into(),
            "3 breaker closed->open".into(),
            "3 1 open-circuit Breaker".into(),
        ],
        "{shown:#?}"
    );
    assert!(
        what[5].starts_with("4 error ")
            && what[5].contains("failures.jsonl:6")
            && what[5].contains("no recovery policy covers the operation `cache.get`"),
        "{shown:#?}"
    );
    assert_eq!(
        what[6..],
        [
            "40 breaker open->half-open".to_owned(),
            "40 breaker half-open->closed".into()
        ],
        "{shown:#?}"
    );
    // Every decision names its policy, except a report no policy covers.
    assert!(
        out.iter()
            .filter(|d| !matches!(d.what, What::Error { .. }))
            .all(|d| d.policy == "db")
    );

    // A second run starts from closed breakers and decides the same: the
    // jitter seed is fixed.
    assert_eq!(run(&mut r, T0, T0 + 60_000), out);
    // A window after the opening replays only its own records.
    let late = run(&mut r, T0 + 3_500, T0 + 60_000);
    assert!(late.iter().all(|d| d.at_ms >= T0 + 3_500), "{late:?}");

    // A report the daemon would refuse is refused at its file, line and field.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        format!(
            "{}\n{{\"timestamp\": 1714557600, \"operation\": \"db.query\", \"errno\": \"nope\"}}\n",
            lines[1]
        ),
    )
    .unwrap();
    let e = failures::load(&bad).unwrap_err();
    assert!(e.contains("bad.jsonl:2: ") && e.contains("errno"), "{e}");
    std::fs::write(&bad, r#"{"operation": "db.query"}"#).unwrap();
    let e = failures::load(&bad).unwrap_err();
    assert!(
        e.contains("bad.jsonl:1: timestamp: each line needs a `timestamp`"),
        "{e}"
    );
}
