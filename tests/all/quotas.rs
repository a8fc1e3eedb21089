//! Quotas end to end through `warden run` (issue 17): a registration over a
//! denying quota answers 429 and `/api/v1/quotas/check` agrees; a warning
//! reaches a real Alertmanager; a cleanup action runs a cleanup policy
//! that reclaims at least its minimum; state (a rate, a violation) survives
//! a restart; `warden check` locates bad quotas; a disk quota measures
//! its path as `du` does and its cleanup brings it back under. Burst and period
//! boundaries are tested with a hand-moved clock in `warden-quotas`.

use std::process::Command;

use serde_json::{Value, json};

use crate::alerts::Alertmanager;
use crate::api::{QUIET, daemon};
use crate::daemon::Daemon;
use crate::http::{call, get, get_text, post, wait};

/// Registers an app object of `owner`; returns the status and answer.
fn register(d: &Daemon, owner: &str, name: &str, ttl: &str) -> (u16, Value) {
    post(
        &d.addr,
        "/api/v1/resources",
        &json!({"kind": "app-object", "name": name, "owner": owner, "size_bytes": 10, "ttl": ttl}),
    )
}

const DENY: &str = "policies:
  - name: objects
    kind: quota
    trigger: {interval: 200ms}
    quota:
      resource: app-objects
      scope: {per_owner: true}
      soft: 2
      hard: 3
      action: deny
";

#[test]
fn a_registration_over_a_denying_quota_answers_429_and_checks_agree() {
    let d = daemon(&[("quotas.yaml", DENY)], QUIET);
    let mut alice = Vec::new();
    for i in 0..3 {
        let (status, v) = register(&d, "alice", &format!("a/{i}"), "1h");
        assert_eq!(status, 201, "{v}");
        alice.push(v["handle"].as_u64().unwrap());
    }
    let (status, v) = register(&d, "alice", "a/3", "1h");
    assert_eq!(status, 429, "{v}");
    assert_eq!(
        (&v["quota"], &v["limit"], &v["usage"], &v["requested"]),
        (&json!("objects"), &json!(3), &json!(3), &json!(1)),
        "{v}"
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("quota `objects` is full"),
        "{v}"
    );
    // Per owner: bob has room.
    assert_eq!(register(&d, "bob", "b/0", "1h").0, 201);

    let check = |body: Value| {
        let (status, v) = post(&d.addr, "/api/v1/quotas/check", &body);
        assert_eq!(status, 200, "{v}");
        v
    };
    let v = check(json!({"quota": "objects", "owner": "alice"}));
    assert_eq!(v["allow"], false, "{v}");
    assert_eq!((&v["limit"], &v["usage"]), (&json!(3), &json!(3)), "{v}");
    assert_eq!(
        check(json!({"quota": "objects", "owner": "bob", "amount": 2}))["allow"],
        true
    );
    assert_eq!(
        check(json!({"quota": "objects", "owner": "bob", "amount": 3}))["allow"],
        false
    );
    // By subject: every quota whose scope selects it.
    assert_eq!(
        check(json!({"owner": "alice", "kind": "app-object"}))["allow"],
        false
    );
    assert_eq!(
        check(json!({"owner": "alice", "kind": "socket"}))["allow"],
        true
    );
    // A check charges nothing; an unknown quota is named.
    assert_eq!(
        check(json!({"quota": "objects", "owner": "carol", "amount": 3}))["allow"],
        true
    );
    let (status, v) = post(
        &d.addr,
        "/api/v1/quotas/check",
        &json!({"quota": "nope", "owner": "x"}),
    );
    assert_eq!(status, 404, "{v}");

    // A release gives the room back.
    let (status, _) = call(
        "DELETE",
        &d.addr,
        &format!("/api/v1/resources/{}?owner=alice", alice[0]),
        None,
    );
    assert_eq!(status, 204);
    assert_eq!(register(&d, "alice", "a/4", "1h").0, 201);

    // What it measured: in the API, the policy's record and the gauges.
    wait("the quota is evaluated", 20, || {
        get(&d.addr, "/api/v1/quotas")["quotas"][0]["by_state"]["hard"] == 0
            && d.status()["policies"][0]["state"]["last"]["detail"]
                .as_str()
                .is_some_and(|s| s.contains("measured 2 owners holding 4"))
    });
    let list = get(&d.addr, "/api/v1/quotas?quota=objects&limit=1");
    assert_eq!(list["quotas"][0]["usage"], 4, "{list}");
    assert_eq!(list["owners"][0]["owner"], "alice", "{list}");
    assert_eq!(list["owners"][0]["usage"], 3, "{list}");
    assert_eq!(list["next_after"], "alice", "{list}");
    let page = get(&d.addr, "/api/v1/quotas?quota=objects&after=alice");
    assert_eq!(page["owners"][0]["owner"], "bob", "{page}");
    assert_eq!(page["next_after"], Value::Null, "{page}");
    let metrics = get_text(&d.addr, "/metrics");
    assert!(
        metrics.contains("warden_quota_usage{quota=\"objects\",unit=\"items\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("warden_quota_top_owner_usage{quota=\"objects\",owner=\"alice\"} 3"),
        "{metrics}"
    );
    d.stop();
}

#[test]
fn a_quota_warning_reaches_a_real_alertmanager() {
    let am = Alertmanager::start();
    let policy = "policies:
  - name: sockets
    kind: quota
    trigger: {interval: 200ms}
    labels: {team: storage}
    quota:
      resource: registered
      scope:
        per_owner: true
        matchers: [{field: labels.workspace, equals: ci}]
      soft: 1
      hard: 10
      action: warn
";
    let config = format!(
        "{QUIET}alerts:\n  refresh: 300ms\n  notifiers:\n    - {{type: alertmanager, url: \"{}\", resend_ends_after: 1m}}\n",
        am.base
    );
    let d = daemon(&[("quotas.yaml", policy)], &config);
    for (i, workspace) in ["ci", "ci", "web", "web"].iter().enumerate() {
        let (status, v) = post(
            &d.addr,
            "/api/v1/resources",
            &json!({"kind": "socket", "name": format!("s/{i}"), "owner": "builder", "labels": {"workspace": workspace}}),
        );
        assert_eq!(status, 201, "{v}");
    }
    wait("Alertmanager holds the quota warning", 20, || {
        am.active_named("QuotaExceeded").is_some()
    });
    let a = am.active_named("QuotaExceeded").unwrap();
    assert_eq!(a["labels"]["quota"], "sockets", "{a}");
    assert_eq!(a["labels"]["owner"], "builder", "{a}");
    assert_eq!(a["labels"]["team"], "storage", "{a}");
    // Only the two `ci` sockets count.
    assert_eq!(a["annotations"]["usage"], "2", "{a}");
    assert_eq!(a["annotations"]["limit"], "1", "{a}");
    let v = get(&d.addr, "/api/v1/quotas/violations");
    let open = &v["violations"][0];
    assert_eq!(
        (&open["quota"], &open["worst"]),
        (&json!("sockets"), &json!("soft")),
        "{v}"
    );
    assert_eq!(open["ended_ms"], Value::Null, "{v}");
    d.stop();
}

#[test]
fn a_quota_cleanup_runs_its_policy_and_reclaims_at_least_the_minimum() {
    let policies = "policies:
  - name: objects
    kind: quota
    trigger: {interval: 200ms}
    quota:
      resource: app-objects
      hard: 5
      action: cleanup
      cleanup: {policies: [leases], min_reclaim: 3}
  - name: leases
    kind: cleanup
    plugin: temp-files
    trigger: manual
    scope:
      kinds: [app-object]
    max_actions: 100%
    config:
      max_age: 1d
      min_age: 0s
";
    let d = daemon(&[("quotas.yaml", policies)], QUIET);
    // Eight leases whose TTL lapses at once; nothing denies them.
    for i in 0..8 {
        assert_eq!(register(&d, "svc", &format!("lease/{i}"), "1ms").0, 201);
    }
    wait("the quota's cleanup ran", 20, || {
        get(&d.addr, "/api/v1/quotas/violations")["cleanups"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    });
    let v = get(&d.addr, "/api/v1/quotas/violations");
    let c = &v["cleanups"][0];
    assert_eq!(
        (&c["quota"], &c["policy"]),
        (&json!("objects"), &json!("leases")),
        "{v}"
    );
    // At least the minimum, and at least what brings usage below where
    // the state clears (8 - floor(5 × 0.95) = 4).
    assert_eq!(c["min_reclaim"], 4, "{v}");
    assert_eq!(c["reclaimed"], 8, "{v}");
    assert_eq!(c["met"], true, "{v}");
    let (_, left) = call("GET", &d.addr, "/api/v1/resources?owner=svc", None);
    assert_eq!(left.as_array().unwrap().len(), 0, "{left}");
    wait("usage falls back", 20, || {
        get(&d.addr, "/api/v1/quotas")["quotas"][0]["usage"] == 0
    });
    // The cleanup policy's own history records the run.
    let (_, runs) = call(
        "GET",
        &d.addr,
        "/api/v1/cleanup/history?policy=leases",
        None,
    );
    assert!(runs.to_string().contains("\"released\""), "{runs}");
    d.stop();
}

#[test]
fn quota_state_survives_a_restart() {
    // A rate cannot be recounted from the registry: only the snapshot
    // carries it across a restart.
    let policy = "policies:
  - name: per-hour
    kind: quota
    trigger: {interval: 200ms}
    quota:
      resource: app-objects
      measure: rate
      period: 1h
      scope: {per_owner: true}
      soft: 1
      hard: 3
      action: deny
";
    let d = daemon(&[("quotas.yaml", policy)], QUIET);
    for i in 0..3 {
        let (status, v) = register(&d, "alice", &format!("a/{i}"), "1h");
        assert_eq!(status, 201, "{v}");
        let h = v["handle"].as_u64().unwrap();
        let (status, _) = call(
            "DELETE",
            &d.addr,
            &format!("/api/v1/resources/{h}?owner=alice"),
            None,
        );
        assert_eq!(status, 204);
    }
    assert_eq!(
        register(&d, "alice", "a/3", "1h").0,
        429,
        "released, still counted"
    );
    wait("the soft violation opens", 20, || {
        get(&d.addr, "/api/v1/quotas/violations")["violations"]
            .as_array()
            .is_some_and(|v| v.len() == 1)
    });
    let before = get(&d.addr, "/api/v1/quotas/violations")["violations"][0].clone();
    let dir = d.stop();

    let d = Daemon::start_in(dir, Some(QUIET));
    let (status, v) = register(&d, "alice", "a/3", "1h");
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["usage"], 3, "{v}");
    let after = get(&d.addr, "/api/v1/quotas/violations")["violations"][0].clone();
    assert_eq!(
        after["started_ms"], before["started_ms"],
        "the same violation"
    );
    // A reset starts the quota afresh.
    let (status, r) = post(&d.addr, "/api/v1/quotas/per-hour/reset", &json!({}));
    assert_eq!(status, 200, "{r}");
    assert_eq!(register(&d, "alice", "a/3", "1h").0, 201);
    let (status, _) = post(&d.addr, "/api/v1/quotas/nope/reset", &json!({}));
    assert_eq!(status, 404);
    d.stop();
}

#[test]
fn warden_check_locates_bad_quotas() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, quota: &str| {
        std::fs::write(
            dir.path().join(name),
            format!("policies:\n  - name: q\n    kind: quota\n    quota:\n{quota}"),
        )
        .unwrap();
    };
    write(
        "negative.yaml",
        "      resource: temp-files\n      hard: -5\n      action: deny\n",
    );
    write(
        "inverted.yaml",
        "      resource: temp-files\n      soft: 10\n      hard: 5\n      action: deny\n",
    );
    write("unknown.yaml", "      resource: gpus\n      hard: 5\n");
    write(
        "disk.yaml",
        "      resource: disk-bytes\n      disk:\n        paths:\n          - scratch\n      hard: 5GiB\n      action: warn\n",
    );
    write(
        "series.yaml",
        "      resource: series\n      series: {metric: m}\n      scope: {per_owner: true}\n      hard: 5\n      action: deny\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["check", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    for expected in [
        "negative.yaml:6:13: policy `q`: `quota.hard`: a limit cannot be below zero, not -5",
        "inverted.yaml:6:13: policy `q`: `quota.soft`: the soft limit (10) is above the hard limit (5)",
        "unknown.yaml:5:17: policies[0].quota.resource: unknown variant `gpus`",
        "disk.yaml:8:13: policy `q`: `quota.disk.paths[0]`: `scratch` must be absolute",
        "series.yaml:6:7: policy `q`: `quota.series.owner_label`: `scope.per_owner: true` needs the label",
        "series.yaml:9:15: policy `q`: `quota.action`: `deny` refuses registrations",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn quotas_over_series_read_a_pushed_gauge_and_a_watched_processs_memory() {
    let mut sleeper = Command::new("sleep").arg("120").spawn().unwrap();
    let policies = "policies:
  - name: depth
    kind: quota
    trigger: {interval: 200ms}
    quota:
      resource: series
      series: {metric: queue_depth, labels: {env: prod}, owner_label: queue, max_age: 1m}
      scope: {per_owner: true}
      hard: 5000
      action: warn
  - name: memory
    kind: quota
    trigger: {interval: 200ms}
    quota:
      resource: memory-bytes
      scope: {per_owner: true}
      hard: 1KiB
      action: warn
";
    let config = format!(
        "metrics:\n  collect:\n    interval: 200ms\n    processes:\n      - {{name: sleeper, pid: {}}}\n  persist:\n    enabled: false\n",
        sleeper.id()
    );
    let d = daemon(&[("series.yaml", policies)], &config);
    let push = |queue: &str, env: &str, value: f64| {
        let body = json!({"samples": [{"metric": "queue_depth", "labels": {"queue": queue, "env": env}, "value": value}]});
        let (status, answer) = post(&d.addr, "/api/v1/metrics", &body);
        assert_eq!(status, 200, "{answer}");
    };
    push("orders", "prod", 7_000.0);
    push("mail", "prod", 10.0);
    // Not selected: another environment.
    push("orders", "staging", 1e9);
    let owners = |quota: &str| get(&d.addr, &format!("/api/v1/quotas?quota={quota}"));
    let row = |page: &Value, owner: &str| {
        page["owners"]
            .as_array()
            .and_then(|o| o.iter().find(|r| r["owner"] == owner).cloned())
    };
    wait("the pushed gauge is measured and judged", 20, || {
        row(&owners("depth"), "orders").is_some_and(|r| r["state"] == "hard")
    });
    let page = owners("depth");
    assert_eq!(row(&page, "orders").unwrap()["usage"], 7_000, "{page}");
    assert_eq!(row(&page, "mail").unwrap()["state"], "ok", "{page}");
    // The process's resident memory is far above 1 KiB.
    wait(
        "the watched process's memory is measured and judged",
        20,
        || row(&owners("memory"), "sleeper").is_some_and(|r| r["state"] == "hard"),
    );
    let rss = row(&owners("memory"), "sleeper").unwrap()["usage"]
        .as_u64()
        .unwrap();
    assert!(rss > 100 * 1024, "{rss}");
    // The gauge falls back: the warning resolves.
    push("orders", "prod", 100.0);
    wait("the quota returns to ok", 20, || {
        row(&owners("depth"), "orders").is_some_and(|r| r["state"] == "ok" && r["usage"] == 100)
    });
    let v = get(&d.addr, "/api/v1/quotas/violations");
    assert!(
        v["violations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["quota"] == "depth" && x["owner"] == "orders" && !x["ended_ms"].is_null()),
        "{v}"
    );
    d.stop();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn a_disk_quota_measures_its_path_and_its_cleanup_brings_it_back_under() {
    let scratch = tempfile::tempdir().unwrap();
    let space = |p: &std::path::Path| {
        std::os::unix::fs::MetadataExt::blocks(&std::fs::symlink_metadata(p).unwrap()) * 512
    };
    for i in 0..4 {
        let f = scratch.path().join(format!("blob{i}"));
        std::fs::write(&f, vec![1u8; 1 << 20]).unwrap();
        // Oldest first, so the cleanup's order is known (it judges by the
        // newest of the modified and accessed times).
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs(3600 - i * 60);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_times(std::fs::FileTimes::new().set_accessed(t).set_modified(t))
            .unwrap();
    }
    // A terabyte that takes nothing: counted as what it takes.
    std::fs::File::create(scratch.path().join("sparse"))
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let held: u64 = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| space(&e.unwrap().path()))
        .sum::<u64>()
        + space(scratch.path());
    let policies = format!(
        "policies:
  - name: scratch
    kind: quota
    trigger: manual
    quota:
      resource: disk-bytes
      disk: {{paths: [\"{dir}\"]}}
      hard: 2MiB
      action: cleanup
      cleanup: {{policies: [sweep], min_reclaim: 1MiB}}
  - name: sweep
    kind: cleanup
    plugin: temp-files
    trigger: manual
    scope:
      paths: [\"{dir}\"]
    max_actions: 100%
    config:
      max_age: 30d
      min_age: 0s
      max_total_bytes: 1572864
",
        dir = scratch.path().display()
    );
    let d = daemon(&[("disk.yaml", &policies)], QUIET);
    let run = || call("POST", &d.addr, "/api/v1/policies/scratch/run", None).1;
    let first = run();
    let detail = first["detail"].as_str().unwrap_or_default().to_owned();
    assert_eq!(first["ok"], true, "{first}");
    assert!(
        detail.contains(&format!(
            "disk usage under 1 paths: {held} bytes allocated, 6 entries walked in 1 evaluations"
        )),
        "{first}"
    );
    assert!(detail.contains("cleanup `sweep`: reclaimed"), "{first}");
    let v = get(&d.addr, "/api/v1/quotas/violations");
    let c = &v["cleanups"][0];
    assert_eq!(
        (&c["quota"], &c["policy"]),
        (&json!("scratch"), &json!("sweep")),
        "{v}"
    );
    // The three oldest megabytes go, which is more than usage less 95% of
    // the limit; the newest one and the sparse file stay.
    assert_eq!(c["reclaimed"], 3 << 20, "{v}");
    assert_eq!(c["met"], true, "{v}");
    assert!(c["min_reclaim"].as_u64().unwrap() > 1 << 20, "{v}");
    for (name, kept) in [
        ("blob0", false),
        ("blob1", false),
        ("blob2", false),
        ("blob3", true),
        ("sparse", true),
    ] {
        assert_eq!(scratch.path().join(name).exists(), kept, "{name}");
    }
    // The next evaluation walks afresh and finds usage back under.
    let second = run();
    let left = held - (3 << 20);
    assert!(
        second["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("disk usage under 1 paths: {left} bytes allocated")),
        "{second}"
    );
    let page = get(&d.addr, "/api/v1/quotas?quota=scratch");
    assert_eq!(page["owners"][0]["usage"], left, "{page}");
    assert_eq!(page["owners"][0]["state"], "ok", "{page}");
    d.stop();
}
