//! The HTTP API of `warden run` beyond policies and metrics: resources that
//! applications register and the cleanup policies that release them, cleanup
//! tasks, and `/health`.

use std::time::Duration;

use serde_json::json;

use crate::daemon::Daemon;
use crate::http::{call, wait};

pub(crate) const QUIET: &str =
    "metrics:\n  collect:\n    enabled: false\n  persist:\n    enabled: false\n";

/// A daemon over a policies directory holding `policies` (file name, text).
pub(crate) fn daemon(policies: &[(&str, &str)], config: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    for (name, text) in policies {
        std::fs::write(dir.path().join("policies").join(name), text).unwrap();
    }
    Daemon::start_in(dir, Some(config))
}

/// Releases registered leases whose TTL lapsed, through the shipped plugin.
const LEASES: &str = "policies:
  - name: leases
    kind: cleanup
    plugin: temp-files
    trigger: manual
    scope:
      kinds: [app-object]
    max_actions: 50%
    config:
      max_age: 1d
      min_age: 0s
";

#[test]
fn registered_resources_are_listed_used_released_and_cleaned_up_by_ttl() {
    let d = daemon(&[("leases.yaml", LEASES)], QUIET);
    let register = |name: &str, ttl: &str| {
        let (status, v) = call(
            "POST",
            &d.addr,
            "/api/v1/resources",
            Some(
                &json!({"kind": "app-object", "name": name, "owner": "svc", "size_bytes": 100, "ttl": ttl, "labels": {"pool": "a"}}),
            ),
        );
        assert_eq!(status, 201, "{v}");
        v["handle"].as_u64().unwrap()
    };
    let short = register("lease/short", "200ms");
    let long = register("lease/long", "1h");
    let done = register("lease/done", "1h");
    let (status, list) = call("GET", &d.addr, "/api/v1/resources?owner=svc", None);
    assert_eq!((status, list.as_array().unwrap().len()), (200, 3), "{list}");
    assert_eq!(list[0]["labels"]["pool"], "a");
    assert_eq!(list[0]["ttl_ms"], 200);

    // The application is done with one, and keeps another in use.
    assert_eq!(
        call(
            "DELETE",
            &d.addr,
            // The owner releases it (another caller would need `force`).
            &format!("/api/v1/resources/{done}?owner=svc"),
            None
        )
        .0,
        204
    );
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        call(
            "POST",
            &d.addr,
            &format!("/api/v1/resources/{long}/access"),
            None
        )
        .0,
        204
    );

    let (status, ran) = call("POST", &d.addr, "/api/v1/cleanup/tasks/leases/run", None);
    assert_eq!(status, 200, "{ran}");
    let runs = ran["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "no paths in scope, so no file run: {ran:#}");
    let registered = &runs[0];
    assert_eq!(registered["candidates"], 2, "{ran:#}");
    assert_eq!(registered["items"].as_array().unwrap().len(), 1, "{ran:#}");
    let item = &registered["items"][0];
    assert_eq!(item["action"], "release");
    assert_eq!(item["outcome"], "released");
    assert_eq!(registered["acts_on"], "registered", "{ran:#}");
    assert_eq!(item["reason"], "unused for longer than its TTL");
    assert_eq!(item["target"], format!("{short}:lease/short"));

    // The application learns who released it; the one in use is untouched.
    let (status, gone) = call(
        "POST",
        &d.addr,
        &format!("/api/v1/resources/{short}/access"),
        None,
    );
    assert_eq!(status, 410, "{gone}");
    assert!(
        gone["error"].as_str().unwrap().contains("`leases`"),
        "{gone}"
    );
    assert_eq!(
        call("GET", &d.addr, &format!("/api/v1/resources/{long}"), None).0,
        200
    );
    assert_eq!(
        call("GET", &d.addr, &format!("/api/v1/resources/{done}"), None).0,
        404
    );

    // Bad input names the field.
    let (status, bad) = call(
        "POST",
        &d.addr,
        "/api/v1/resources",
        Some(&json!({"kind": "blob", "name": "x"})),
    );
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().starts_with("kind:"), "{bad}");
    let (status, bad) = call("GET", &d.addr, "/api/v1/resources/abc", None);
    assert_eq!(status, 400, "{bad}");
    let (status, bad) = call("GET", &d.addr, "/api/v1/resources?limit=lots", None);
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["error"].as_str().unwrap().contains("query string"),
        "{bad}"
    );

    let (_, tasks) = call("GET", &d.addr, "/api/v1/cleanup/tasks", None);
    assert_eq!(tasks[0]["id"], "leases");
    assert_eq!(tasks[0]["max_concurrent"], 4);
    assert!(tasks[0]["last_run"].is_object(), "{tasks}");
    let (status, _) = call("POST", &d.addr, "/api/v1/cleanup/tasks/nope/run", None);
    assert_eq!(status, 404);
    // Errors are JSON even where no handler runs.
    let (status, e) = call("GET", &d.addr, "/api/v1/nothing-here", None);
    assert_eq!(status, 404);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("/api/v1/nothing-here"),
        "{e}"
    );
    let (status, e) = call("DELETE", &d.addr, "/api/v1/cleanup/tasks", None);
    assert_eq!(status, 405);
    assert!(e["error"].as_str().unwrap().contains("DELETE"), "{e}");
    d.stop();
}

/// Old enough for `temp-files` with `max_age: 1d`.
fn old_file(path: &std::path::Path) {
    std::fs::write(path, "old").unwrap();
    let then = std::time::SystemTime::now() - Duration::from_secs(3 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(
            std::fs::FileTimes::new()
                .set_accessed(then)
                .set_modified(then),
        )
        .unwrap();
}

#[test]
fn health_scores_each_subsystem_by_what_is_wrong_with_it() {
    let tree = tempfile::tempdir().unwrap();
    old_file(&tree.path().join("a.tmp"));
    old_file(&tree.path().join("b.tmp"));
    let hot = "policies:
  - name: hot
    kind: alert
    plugin: threshold
    trigger:
      interval: 100ms
    config:
      rules:
        - {alert: Hot, metric: m, condition: gt, threshold: 5, severity: critical}
";
    // Two old files, one deletion allowed: the run stops at its cap.
    let capped = format!(
        "policies:
  - name: capped
    kind: cleanup
    plugin: temp-files
    trigger: manual
    scope:
      paths: [\"{}\"]
    max_actions: 1
    config:
      max_age: 1d
",
        tree.path().display()
    );
    // Alerts go to a webhook nobody listens on, without retries; memory
    // thresholds every machine is above.
    let config = format!(
        "{QUIET}alerts:\n  notifiers:\n    - {{type: webhook, url: \"http://127.0.0.1:{}/hook\", retries: 0, timeout: 1s}}\npressure:\n  standard: 0.001\n  critical: 0.002\n  emergency: 0.003\n  every: 100ms\n",
        crate::daemon::free_port()
    );
    let d = daemon(
        &[
            ("hot.yaml", hot),
            ("capped.yaml", &capped),
            ("broken.yaml", "policies: ["),
        ],
        &config,
    );
    let (status, v) = call(
        "POST",
        &d.addr,
        "/api/v1/metrics",
        Some(&json!({"samples": [{"metric": "m", "value": 10}]})),
    );
    assert_eq!(status, 200, "{v}");
    let (status, ran) = call("POST", &d.addr, "/api/v1/cleanup/tasks/capped/run", None);
    assert_eq!(status, 200, "{ran}");
    assert!(ran["runs"][0]["cap_exceeded"].is_string(), "{ran:#}");

    let health = || call("GET", &d.addr, "/health", None).1;
    let mut h = health();
    wait("the alert fires and its notification fails", 20, || {
        h = health();
        h["subsystems"]["alerts"]["score"] == 30 && h["subsystems"]["notifications"]["score"] == 0
    });
    let sub = |name: &str| {
        let s = &h["subsystems"][name];
        (
            s["score"].as_u64().unwrap(),
            s["status"].as_str().unwrap().to_owned(),
            s["detail"].as_str().unwrap().to_owned(),
        )
    };
    // One file of three does not load; both policies evaluate fine: 1 bad
    // unit of 5.
    assert_eq!(
        sub("policies"),
        (
            80,
            "ok".into(),
            "1 of 3 files do not load; 0 of 2 policies failed their latest evaluation".into()
        ),
        "{h:#}"
    );
    assert_eq!(
        sub("alerts"),
        (
            30,
            "critical".into(),
            "firing: 1 critical, 0 warning, 0 info".into()
        )
    );
    assert_eq!(
        sub("cleanup"),
        (
            50,
            "degraded".into(),
            "last 1 runs: 0 acted on (deleted, released or signalled), 0 failed, 1 stopped by their cap".into()
        )
    );
    let (score, status, detail) = sub("memory");
    assert_eq!((score, status.as_str()), (10, "critical"), "{detail}");
    assert!(detail.ends_with("level emergency"), "{detail}");
    let (score, status, detail) = sub("metrics");
    assert_eq!((score, status.as_str()), (100, "ok"), "{detail}");
    assert!(
        detail.starts_with("queue 0% full; 0 dropped, 0 write errors since start"),
        "{detail}"
    );
    assert_eq!(
        sub("notifications"),
        (
            0,
            "critical".into(),
            "0 of the last 1 batches delivered; since start 0 delivered, 1 failed after retries, 0 dropped".into()
        )
    );
    // The overall score is the lowest.
    assert_eq!((&h["score"], &h["status"]), (&json!(0), &json!("critical")));
    assert_eq!(
        (&h["files"], &h["policies"], &h["files_with_errors"]),
        (&json!(3), &json!(2), &json!(1))
    );
    d.stop();
}

/// A cleanup policy of the sleeper guest: it sleeps `sleep_ms` in a host
/// call under a deadline of `timeout`.
fn sleeper(name: &str, sleep_ms: u64, timeout: &str, extra: &str) -> String {
    format!(
        "policies:
  - name: {name}
    kind: cleanup
    plugin: {}
    trigger: manual
    timeout: {timeout}
{extra}    config:
      sleep_ms: {sleep_ms}
",
        warden_plugins::SLEEPER_COMPONENT
    )
}

/// Runs `policies` now, all at once; returns each answer, in order.
fn run_together(d: &Daemon, policies: &[&str]) -> Vec<(u16, serde_json::Value)> {
    std::thread::scope(|s| {
        let runs: Vec<_> = policies
            .iter()
            .map(|p| {
                let path = format!("/api/v1/policies/{p}/run");
                s.spawn(move || call("POST", &d.addr, &path, None))
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

#[test]
fn run_now_past_the_bounds_is_429_and_of_a_disabled_policy_409() {
    let d = daemon(
        &[
            ("nap.yaml", &sleeper("nap", 3000, "10s", "")),
            ("nap2.yaml", &sleeper("nap2", 3000, "10s", "")),
            ("long.yaml", &sleeper("long", 30_000, "500ms", "")),
            ("off.yaml", &sleeper("off", 0, "1s", "    enabled: false\n")),
        ],
        &format!("{QUIET}evaluations:\n  max_concurrent: 1\n"),
    );
    // One policy twice at once: it runs at most once at a time.
    let mut answers = run_together(&d, &["nap", "nap"]);
    answers.sort_by_key(|(status, _)| *status);
    assert_eq!((answers[0].0, answers[1].0), (200, 429), "{answers:?}");
    assert_eq!(answers[0].1["ok"], true, "{answers:?}");
    let why = answers[1].1["error"].as_str().unwrap();
    assert!(why.contains("`nap` is running already"), "{why}");
    // Two policies at once, with room for one evaluation in the daemon.
    let mut answers = run_together(&d, &["nap", "nap2"]);
    answers.sort_by_key(|(status, _)| *status);
    assert_eq!((answers[0].0, answers[1].0), (200, 429), "{answers:?}");
    let why = answers[1].1["error"].as_str().unwrap();
    assert!(why.contains("evaluations.max_concurrent"), "{why}");
    // Blocked in a host call for 30 s under a 500 ms deadline: stopped,
    // through the daemon's own runtime too, and its slot freed.
    let (status, record) = call("POST", &d.addr, "/api/v1/policies/long/run", None);
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["ok"], false, "{record}");
    assert!(
        record["detail"].as_str().unwrap().contains("500ms timeout"),
        "{record}"
    );
    assert!(
        record["micros"].as_u64().unwrap() < 10_000_000,
        "a 30 s sleep ran {} µs",
        record["micros"]
    );
    // A disabled policy says so, on both run endpoints.
    for path in ["/api/v1/policies/off/run", "/api/v1/cleanup/tasks/off/run"] {
        let (status, e) = call("POST", &d.addr, path, None);
        assert_eq!(status, 409, "{path}: {e}");
        let why = e["error"].as_str().unwrap();
        assert!(
            why.contains("`off` is disabled") && why.contains("off.yaml"),
            "{why}"
        );
    }
    d.stop();
}

#[test]
fn a_full_registry_answers_507_with_the_reason() {
    let d = daemon(&[], &format!("{QUIET}resources:\n  max_tracked: 2\n"));
    let register = |name: &str| {
        call(
            "POST",
            &d.addr,
            "/api/v1/resources",
            Some(&json!({"kind": "app-object", "name": name})),
        )
    };
    assert_eq!(register("a").0, 201);
    let (status, b) = register("b");
    assert_eq!(status, 201);
    let (status, e) = register("c");
    assert_eq!(status, 507, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("resources.max_tracked"),
        "{e}"
    );
    // Room again once one is released.
    let handle = b["handle"].as_u64().unwrap();
    assert_eq!(
        call(
            "DELETE",
            &d.addr,
            &format!("/api/v1/resources/{handle}"),
            None
        )
        .0,
        204
    );
    assert_eq!(register("c").0, 201);
    d.stop();
}
