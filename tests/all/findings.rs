//! Findings end to end through `warden run`: a detector policy's finding is
//! stored and listed, reaches a webhook and a real Alertmanager through the
//! alerts' dispatcher, shows on `/metrics`, triggers a policy on
//! `finding-raised`, resolves once the detector stops reporting it, and is
//! still there after a restart. Also `/api/v1/analytics`.

use serde_json::{Value, json};

use crate::alerts::{Alertmanager, Receiver};
use crate::daemon::Daemon;
use crate::http::{call, get, wait};

const MIN: i64 = 60_000;

/// A linear-trend detector over `disk_used` notifying both receivers, and a
/// cleanup policy (dry run, over the data directory) run by `finding-raised`.
fn policies(hook: &str, am: &str) -> String {
    format!(
        "policies:
  - name: disk-trend
    kind: detector
    plugin: linear-trend
    trigger: {{interval: 200ms}}
    resolve_after: 2
    min_severity: warning
    labels: {{team: storage}}
    notify:
      - {{type: webhook, url: \"{hook}\"}}
      - {{type: alertmanager, url: \"{am}\", resend_ends_after: 1m}}
    config: {{metric: disk_used, capacity: 100, window: 1h, horizon: 1d}}
  - name: on-finding
    kind: cleanup
    plugin: temp-files
    trigger: {{event: finding-raised}}
    scope: {{paths: [\"${{data_dir}}/scratch\"]}}
    dry_run: true
    config: {{max_age: 1d}}
"
    )
}

const CONFIG: &str = "metrics:\n  collect:\n    enabled: false\nalerts:\n  refresh: 300ms\n";

/// Pushes `disk_used{mount="/data"}`: `values[i]` at `ago[i]` minutes ago.
fn push(addr: &str, points: &[(i64, f64)]) {
    let now = chrono::Utc::now().timestamp_millis();
    let samples: Vec<Value> = points
        .iter()
        .map(|(ago, v)| {
            json!({"metric": "disk_used", "labels": {"mount": "/data"}, "value": v, "timestamp_ms": now - ago * MIN})
        })
        .collect();
    let (status, body) = call(
        "POST",
        addr,
        "/api/v1/metrics",
        Some(&json!({"samples": samples})),
    );
    assert_eq!(status, 200, "{body}");
}

fn findings(d: &Daemon, query: &str) -> Vec<Value> {
    get(&d.addr, &format!("/api/v1/findings{query}"))
        .as_array()
        .cloned()
        .unwrap()
}

fn cleanup_runs(d: &Daemon) -> usize {
    get(&d.addr, "/api/v1/cleanup/history?policy=on-finding")
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn a_detector_finding_is_stored_notified_exposed_and_triggers_a_policy_then_resolves() {
    let am = Alertmanager::start();
    let hook = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::create_dir_all(dir.path().join("warden-data/scratch")).unwrap();
    std::fs::write(
        dir.path().join("policies/disk.yaml"),
        policies(&hook.url, &am.base),
    )
    .unwrap();
    let d = Daemon::start_in(dir, Some(CONFIG));
    assert_eq!(cleanup_runs(&d), 0);
    // 1 unit a minute for 20 minutes, now at 80: exhausted in about 20 min.
    let rising: Vec<(i64, f64)> = (0..20).map(|i| (19 - i, 61.0 + i as f64)).collect();
    push(&d.addr, &rising);

    wait("the finding is active", 20, || {
        findings(&d, "?state=active").len() == 1
    });
    let f = &findings(&d, "?policy=disk-trend&pattern=linear-growth")[0];
    assert_eq!(f["subject"], "disk_used");
    assert_eq!(f["labels"], json!([["mount", "/data"]]));
    assert_eq!(f["severity"], "critical", "{f}");
    let eta = f["exhaustion_in_ms"].as_i64().unwrap();
    assert!((eta - 20 * MIN).abs() < 2 * MIN, "{f}");
    assert!(f["evidence"]["slope_per_s"].as_f64().unwrap() > 0.0, "{f}");
    assert!(findings(&d, "?severity=info").is_empty());
    assert_eq!(findings(&d, "?min_severity=warning").len(), 1);
    let (status, e) = call("GET", &d.addr, "/api/v1/findings?state=open", None);
    assert_eq!(status, 400);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("pending, active or resolved"),
        "{e}"
    );

    wait("the webhook hears the finding", 20, || {
        hook.count("firing", "linear-growth") == 1
    });
    wait("Alertmanager holds it", 20, || {
        am.active_named("linear-growth").is_some()
    });
    let held = am.active_named("linear-growth").unwrap();
    assert_eq!(held["labels"]["subject"], "disk_used", "{held}");
    assert_eq!(held["labels"]["team"], "storage", "{held}");
    assert_eq!(held["labels"]["mount"], "/data", "{held}");
    assert!(
        held["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("grows"),
        "{held}"
    );
    assert!(held["annotations"]["exhaustion_in"].is_string(), "{held}");

    wait("`finding-raised` runs the cleanup policy", 20, || {
        cleanup_runs(&d) == 1
    });

    let text = crate::http::text(&d.addr, "/metrics");
    assert!(
        text.contains(
            "warden_findings_active{policy=\"disk-trend\",pattern=\"linear-growth\",severity=\"critical\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("warden_finding_exhaustion_seconds{policy=\"disk-trend\",pattern=\"linear-growth\",subject=\"disk_used\",mount=\"/data\"}"),
        "{text}"
    );

    let patterns = get(&d.addr, "/api/v1/analytics/patterns");
    assert_eq!(patterns[0]["pattern"], "linear-growth", "{patterns}");
    assert_eq!(patterns[0]["count"], 1);
    let recommended = get(&d.addr, "/api/v1/analytics/recommendations");
    assert_eq!(recommended[0]["source"], "finding", "{recommended}");
    assert_eq!(recommended[0]["policy"], "disk-trend");

    // Usage drops: the fit over the hour now falls, the detector stops
    // reporting, and two quiet evaluations resolve the finding.
    push(
        &d.addr,
        &(0..20).map(|i| (19 - i, 10.0)).collect::<Vec<_>>(),
    );
    wait("the finding resolves", 20, || {
        findings(&d, "?state=resolved").len() == 1
    });
    wait("the webhook hears it resolved", 20, || {
        hook.count("resolved", "linear-growth") == 1
    });
    wait("Alertmanager lets it go", 20, || {
        am.active_named("linear-growth").is_none()
    });
    let history = get(&d.addr, "/api/v1/findings/history?policy=disk-trend");
    let events: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["resolved", "raised"], "newest first");
    assert_eq!(cleanup_runs(&d), 1, "raised once, run once");

    let dir = d.stop();
    let d = Daemon::start_in(dir, Some(CONFIG));
    let after = findings(&d, "?policy=disk-trend");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["phase"], "resolved");
    assert_eq!(
        get(&d.addr, "/api/v1/findings/history")
            .as_array()
            .unwrap()
            .len(),
        2
    );
    d.stop();
}

#[test]
fn usage_profiles_cover_processes_and_registered_resources() {
    use std::os::unix::fs::DirBuilderExt as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    // Process memory is a collector's series, which no client may push: it
    // comes from the batch files an earlier run of the daemon wrote, as
    // after a restart. Memory: 100 MB, and 1 GB for one sample in twenty.
    let data = dir.path().join("data");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data.join("metrics"))
        .unwrap();
    let now = chrono::Utc::now();
    let now_ms = now.timestamp_millis();
    let records: Vec<Value> = (0..20)
        .map(|i| {
            json!({"type": "gauge", "metric": "process_resident_memory_bytes", "labels": {"process": "api"},
                   "value": if i == 5 { 1e9 } else { 1e8 }, "timestamp_ms": now_ms - (19 - i) * MIN})
        })
        .collect();
    let batch = json!({"batch_id": "earlier-run", "batch_timestamp": now.to_rfc3339(),
                       "total_records": records.len(), "records": records});
    std::fs::write(
        data.join(format!(
            "metrics/metrics_{}.json",
            now.format("%Y%m%d_%H%M%S_%6f")
        )),
        batch.to_string(),
    )
    .unwrap();
    let d = Daemon::start_with_data_dir(dir, CONFIG, &data);
    let (status, _) = call(
        "POST",
        &d.addr,
        "/api/v1/resources",
        Some(&json!({"kind": "app-object", "name": "cache/1", "size_bytes": 1000})),
    );
    assert_eq!(status, 201);
    // `idle=0s` counts what was last touched before now, in whole ms: on a
    // quick loopback the query can land in the registration's millisecond.
    let registered = chrono::Utc::now().timestamp_millis();
    while chrono::Utc::now().timestamp_millis() <= registered {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let p = get(&d.addr, "/api/v1/analytics/profiles?window=1h&idle=0s");
    let mem = &p["processes"][0]["usage"]["memory_bytes"];
    assert_eq!(p["processes"][0]["process"], "api", "{p}");
    assert_eq!(mem["samples"], 20);
    assert_eq!(mem["peak"], 1e9);
    assert!((mem["avg"].as_f64().unwrap() - 1.45e8).abs() < 1.0, "{mem}");
    assert!(
        (mem["waste_pct"].as_f64().unwrap() - 85.5).abs() < 0.01,
        "{mem}"
    );
    assert_eq!(p["resource_kinds"][0]["kind"], "app-object");
    assert_eq!(p["resource_kinds"][0]["idle_bytes"], 1000, "{p}");
    let r = get(&d.addr, "/api/v1/analytics/recommendations?idle=0s");
    let topics: Vec<&str> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["topic"].as_str().unwrap())
        .collect();
    assert!(
        topics.contains(&"memory_bytes") && topics.contains(&"idle-resources"),
        "{r}"
    );
    let (status, e) = call(
        "GET",
        &d.addr,
        "/api/v1/analytics/profiles?window=soon",
        None,
    );
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("`window`"), "{e}");
    d.stop();
}

/// The `leaks` detector through the daemon: a real process that opens a
/// descriptor every quarter second and keeps it is reported, with its
/// slope; a process beside it that holds steady is not. The collector reads
/// both each second; the policy judges 40 seconds of that.
#[test]
fn a_watched_process_leaking_descriptors_becomes_a_finding_and_a_steady_one_does_not() {
    let mut leaky = std::process::Command::new("bash")
        .args([
            "-c",
            "for i in $(seq 10 600); do eval \"exec $i</dev/null\"; sleep 0.25; done; sleep 60",
        ])
        .spawn()
        .unwrap();
    let mut steady = std::process::Command::new("sleep")
        .arg("120")
        .spawn()
        .unwrap();
    let config = format!(
        "metrics:\n  collect:\n    interval: 1s\n    processes:\n      - {{name: leaky, pid: {}}}\n      - {{name: steady, pid: {}}}\n  persist:\n    enabled: false\n",
        leaky.id(),
        steady.id()
    );
    let policy = "policies:
  - name: fd-leaks
    kind: detector
    plugin: leaks
    trigger: {interval: 2s}
    config: {window: 40s, min_duration: 15s, min_rise: 10s, registered: false}
";
    let d = crate::api::daemon(&[("leaks.yaml", policy)], &config);
    wait("the leak is found", 90, || {
        !findings(&d, "?policy=fd-leaks&pattern=fd-leak").is_empty()
    });
    let all = findings(&d, "?policy=fd-leaks");
    assert!(
        all.iter().all(|f| f["labels"]
            .as_array()
            .unwrap()
            .contains(&json!(["process", "leaky"]))),
        "{all:?}"
    );
    let f = &findings(&d, "?policy=fd-leaks&pattern=fd-leak")[0];
    // Four a second; samples a second apart see about 240 a minute.
    let slope = f["evidence"]["slope_per_min"].as_f64().unwrap();
    assert!((150.0..=330.0).contains(&slope), "{f}");
    assert!(
        f["recommendation"].as_str().unwrap().contains("`leaky`"),
        "{f}"
    );
    for c in [&mut leaky, &mut steady] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
}
