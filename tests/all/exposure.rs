//! Issue 12, what the API lets in and lets out: the `Host` header and the
//! body's content type, registered resources (owners, guessable handles,
//! personal data), hostile pushes (forged exposition lines, names Warden
//! writes, timestamps), and secrets in answers and logs.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::daemon::Daemon;
use crate::http::{anonymous_agent, call, get, post};

const QUIET: &str = "metrics:\n  collect:\n    enabled: false\n  persist:\n    enabled: false\n";

fn daemon(policies: &[(&str, &str)], config: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    for (name, text) in policies {
        std::fs::write(dir.path().join("policies").join(name), text).unwrap();
    }
    Daemon::start_in(dir, Some(config))
}

fn token(d: &Daemon) -> String {
    std::fs::read_to_string(d.token_file())
        .unwrap()
        .trim()
        .to_owned()
}

/// A request as a web page in a local browser could send it, token and all
/// (the worst case): with a `Host` of its own domain (DNS rebinding) or a
/// `text/plain` body (a form or `fetch` without preflight).
#[test]
fn r12_foreign_hosts_and_non_json_bodies_are_refused() {
    let d = daemon(&[], QUIET);
    let bearer = format!("Bearer {}", token(&d));
    let url = format!("http://{}/api/v1/resources", d.addr);
    let body = json!({"kind": "app-object", "name": "x", "owner": "svc"}).to_string();
    let a = anonymous_agent();
    let r = a
        .post(&url)
        .header("authorization", &bearer)
        .header("content-type", "text/plain")
        .send(body.clone())
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let r = a
        .post(&url)
        .header("authorization", &bearer)
        .send(body.clone())
        .unwrap();
    assert_eq!(r.status().as_u16(), 415, "no content type at all");
    let r = a
        .post(&format!("http://{}/api/v1/recovery/failures", d.addr))
        .header("authorization", &bearer)
        .header("content-type", "text/plain")
        .send(json!({"operation": "db.query", "class": "timeout"}).to_string())
        .unwrap();
    assert_eq!(r.status().as_u16(), 415, "a recovery report as text/plain");
    for host in ["rebind.example:80", "127.0.0.2", "localhost.evil.example"] {
        let r = a
            .get(&format!("http://{}/health", d.addr))
            .header("host", host)
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 421, "{host}");
    }
    let port = d.addr.rsplit_once(':').unwrap().1;
    let r = a
        .get(&format!("http://{}/health", d.addr))
        .header("host", &format!("localhost:{port}"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = a
        .post(&url)
        .header("authorization", &bearer)
        .header("content-type", "application/json; charset=utf-8")
        .send(body)
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    d.stop();
}

#[test]
fn r12_releasing_anothers_resource_needs_force_and_handles_are_not_a_count() {
    let d = daemon(&[], QUIET);
    let register = |name: &str, owner: &str| {
        let (status, v) = post(
            &d.addr,
            "/api/v1/resources",
            &json!({"kind": "app-object", "name": name, "owner": owner}),
        );
        assert_eq!(status, 201, "{v}");
        v["handle"].as_u64().unwrap()
    };
    let a = register("cache/a", "svc");
    let b = register("cache/b", "svc");
    let c = register("cache/c", "");
    assert!(a.abs_diff(b) > 1000, "handles {a} and {b} are neighbours");
    assert!(a < 1 << 53 && b < 1 << 53, "exact in JSON");
    let delete = |path: String| call("DELETE", &d.addr, &path, None);
    let (status, v) = delete(format!("/api/v1/resources/{a}"));
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("?owner="), "{v}");
    let (status, v) = delete(format!("/api/v1/resources/{a}?owner=other"));
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("force"), "{v}");
    assert_eq!(delete(format!("/api/v1/resources/{a}?owner=svc")).0, 204);
    assert_eq!(delete(format!("/api/v1/resources/{b}?force=true")).0, 204);
    // No owner given at registration: anyone with the token may release it.
    assert_eq!(delete(format!("/api/v1/resources/{c}")).0, 204);
    d.stop();
}

#[test]
fn r12_personal_data_is_refused_in_resources_and_pushes_whatever_its_spelling() {
    let d = daemon(&[], QUIET);
    for (resource, field) in [
        (
            json!({"kind": "app-object", "name": "sessions/session_id=ab12"}),
            "name",
        ),
        (
            json!({"kind": "app-object", "name": "upload/jane.doe@example.com"}),
            "name",
        ),
        (
            json!({"kind": "app-object", "name": "x", "labels": {"E-Mail": "a"}}),
            "labels.E-Mail",
        ),
        (
            json!({"kind": "app-object", "name": "x", "labels": {"who": "userId=42"}}),
            "labels.who",
        ),
    ] {
        let (status, v) = post(&d.addr, "/api/v1/resources", &resource);
        assert_eq!(status, 400, "{resource}: {v}");
        let e = v["error"].as_str().unwrap();
        assert!(e.starts_with(field) && e.contains("personal data"), "{e}");
    }
    // Label names Prometheus accepts (`-` and `.` are refused before).
    for label in ["userId", "USER_ID", "Session_Id", "e_mail"] {
        let (status, v) = post(
            &d.addr,
            "/api/v1/metrics",
            &json!({"samples": [{"metric": "m", "labels": {label: "1"}, "value": 1}]}),
        );
        assert_eq!(status, 400, "{label}: {v}");
        assert!(v.to_string().contains("personal data"), "{v}");
    }
    d.stop();
}

/// `promtool check metrics` on `/metrics`: whether it parses, and what
/// promtool said; panics naming what is missing if promtool is not installed.
fn promtool_check(exposition: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `promtool` ({e}); install Debian's `prometheus` package")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    // Exit 1 with "error while linting" is a text that does not parse (what
    // an injected line makes); exit 3 lists style problems (help texts,
    // unit names) that Warden's exposition has by design.
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code() != Some(1) && !report.contains("error while linting"),
        report,
    )
}

#[test]
fn r12_hostile_pushes_neither_forge_the_exposition_nor_reach_warden_s_own_series() {
    let d = daemon(&[], "metrics:\n  collect:\n    enabled: false\n");
    let forged = "x\"} 1\nforged_metric{a=\"b\"} 666\n# HELP";
    let (status, v) = post(
        &d.addr,
        "/api/v1/metrics",
        &json!({"samples": [
            {"metric": "app_queue", "labels": {"shard": forged}, "value": 3},
            {"metric": "app_queue", "labels": {"shard": "back\\slash"}, "value": 4},
            {"metric": "app_hits_total", "type": "counter", "value": 1},
            {"metric": "app_latency", "type": "histogram", "value": 0.5},
        ]}),
    );
    assert_eq!(status, 200, "{v}");
    // Names that would share a line of the exposition with another metric.
    for (metric, kind) in [
        ("app_hits", "gauge"),
        ("app_latency_count", "gauge"),
        ("app_latency_sum", "counter"),
    ] {
        let (status, v) = post(
            &d.addr,
            "/api/v1/metrics",
            &json!({"samples": [{"metric": metric, "type": kind, "value": 1}]}),
        );
        assert_eq!(status, 400, "{metric}: {v}");
    }
    let now = warden::clock::now_ms();
    let refused = [
        (
            json!({"samples": [{"metric": "memory_used_ratio", "value": 0.99}]}),
            "written by Warden itself",
        ),
        (
            json!({"samples": [{"metric": "operations_total", "type": "counter", "value": 1}]}),
            "written by Warden itself",
        ),
        (
            json!({"samples": [{"metric": "app_queue", "value": 1, "timestamp_ms": i64::MAX}]}),
            "ahead of this machine's clock",
        ),
        (
            json!({"samples": [{"metric": "app_queue", "value": 1, "timestamp_ms": now - 86_400_000}]}),
            "older than the store keeps",
        ),
        (
            json!({"operations": [{"operation_type": "db", "operation_name": "q", "duration_ms": 1,
                                   "timestamp_ms": i64::MAX}]}),
            "ahead of this machine's clock",
        ),
    ];
    for (body, why) in &refused {
        let (status, v) = post(&d.addr, "/api/v1/metrics", body);
        assert_eq!(status, 400, "{body}: {v}");
        assert!(
            v["errors"][0]["problem"].as_str().unwrap().contains(why),
            "{v}"
        );
    }
    let stats = get(&d.addr, "/api/v1/metrics/stats");
    assert_eq!(stats["refused"]["reserved"], 2, "{stats}");
    assert_eq!(stats["refused"]["too_far_ahead"], 2, "{stats}");
    assert_eq!(stats["refused"]["too_old"], 1, "{stats}");
    // The operation stamped at i64::MAX did not empty its series.
    let (status, v) = post(
        &d.addr,
        "/api/v1/metrics",
        &json!({"operations": [{"operation_type": "db", "operation_name": "q", "duration_ms": 1}]}),
    );
    assert_eq!(status, 200, "{v}");

    let mut r = anonymous_agent()
        .get(&format!("http://{}/metrics", d.addr))
        .call()
        .unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    assert!(
        !text.lines().any(|l| l.starts_with("forged_metric")),
        "a pushed label value forged a line:\n{text}"
    );
    assert!(text.contains(r#"shard="x\"} 1\nforged_metric"#), "{text}");
    let (ok, report) = promtool_check(&text);
    assert!(ok, "promtool cannot parse /metrics: {report}\n{text}");
    assert!(
        text.contains("warden_metrics_push_refused_total{reason=\"reserved\"} 2"),
        "{text}"
    );
    d.stop();
}

/// Everything a person or a program can read from the daemon — every read
/// of the API, `/metrics`, `warden status`, its log at debug level while
/// alerts are being delivered and refused — holds no header value, no
/// credentials and no API token.
#[test]
fn r12_no_answer_or_log_line_holds_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/cred"), "cr3dfile-SECRET\n").unwrap();
    // A receiver nobody listens on: delivery fails and is logged.
    let closed = format!("http://127.0.0.1:{}/hook", crate::daemon::free_port());
    std::fs::write(
        dir.path().join("policies/a.yaml"),
        format!(
            "policies:
  - name: a
    kind: alert
    plugin: threshold
    trigger:
      interval: 1h
    config:
      rules:
        - {{alert: A, metric: m, condition: gt, threshold: 1}}
    notify:
      - type: webhook
        url: {closed}
        retries: 1
        backoff: 10ms
        headers: {{X-Api-Key: h3ader-SECRET}}
      - type: webhook
        url: {closed}
        retries: 0
        authorization: {{credentials: cr3d-SECRET}}
      - type: alertmanager
        url: {closed}
        retries: 0
        authorization: {{credentials_file: cred}}
"
        ),
    )
    .unwrap();
    // A URL with a password in it is refused, and the refusal does not
    // repeat the password.
    std::fs::write(
        dir.path().join("policies/b.yaml"),
        "policies:\n  - name: b\n    kind: alert\n    plugin: threshold\n    notify:\n      - type: webhook\n        url: http://admin:pa55w0rd-SECRET@127.0.0.1:1/x\n    config: {rules: []}\n",
    )
    .unwrap();
    let log = dir.path().join("warden.log");
    let config = format!(
        "{QUIET}alerts:\n  notifiers:\n    - type: webhook\n      url: {closed}\n      retries: 0\n      headers: {{Authorization: 'Bearer gl0bal-SECRET'}}\n"
    );
    let d = Daemon::start_logged(dir, &config, &log);
    let token = token(&d);
    let (status, v) = post(
        &d.addr,
        "/api/v1/metrics",
        &json!({"samples": [{"metric": "m", "value": 5}]}),
    );
    assert_eq!(status, 200, "{v}");
    // The push reaches the store through a queue: run until it is seen.
    crate::http::wait("the rule firing on the pushed sample", 30, || {
        let (status, v) = call("POST", &d.addr, "/api/v1/policies/a/run", None);
        assert!(status == 200 || status == 409, "{status}: {v}");
        v["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("1 alerts firing"))
    });
    // Deliveries fail (nobody listens) and say so in the log.
    crate::http::wait("failed deliveries", 30, || {
        get(&d.addr, "/health")["subsystems"]["notifications"]["detail"]
            .as_str()
            .is_some_and(|s| s.contains("3 failed after retries"))
    });
    let rules = get(&d.addr, "/api/v1/alerts/rules");
    assert_eq!(
        rules[0]["notify"][0]["headers"]["X-Api-Key"], "<redacted>",
        "{rules}"
    );
    let mut seen = String::new();
    for path in [
        "/api/v1/policies",
        "/api/v1/alerts",
        "/api/v1/alerts/rules",
        "/api/v1/alerts/history",
        "/api/v1/cleanup/tasks",
        "/api/v1/cleanup/history",
        "/api/v1/resources",
        "/api/v1/metrics/stats",
        "/health",
    ] {
        seen.push_str(&get(&d.addr, path).to_string());
    }
    let mut r = anonymous_agent()
        .get(&format!("http://{}/metrics", d.addr))
        .call()
        .unwrap();
    seen.push_str(&r.body_mut().read_to_string().unwrap());
    let status = d.cli(&["status"]);
    seen.push_str(&String::from_utf8_lossy(&status.stdout));
    assert!(
        seen.contains("carries credentials"),
        "b.yaml's refusal is shown"
    );
    let dir = d.stop();
    let logged = std::fs::read_to_string(dir.path().join("warden.log")).unwrap();
    assert!(logged.contains("alerts not delivered"), "{logged}");
    for (what, text) in [("the API", &seen), ("the log", &logged)] {
        for secret in ["SECRET", token.as_str()] {
            assert!(!text.contains(secret), "{what} shows `{secret}`:\n{text}");
        }
    }
}

#[test]
fn r12_bodies_over_a_routes_cap_are_refused() {
    let d = daemon(&[], QUIET);
    let big = Value::String("x".repeat(600 * 1024));
    let (status, _) = post(
        &d.addr,
        "/api/v1/resources",
        &json!({"kind": "app-object", "name": big}),
    );
    assert_eq!(status, 413);
    let (status, _) = post(
        &d.addr,
        "/api/v1/policies/reload",
        &json!({"pad": "y".repeat(20 * 1024)}),
    );
    assert_eq!(status, 413);
    // Issue 14's routes: a report has its own cap, forcing a circuit reads
    // no body at all.
    let (status, _) = post(
        &d.addr,
        "/api/v1/recovery/failures",
        &json!({"operation": "db.query", "message": "m".repeat(70 * 1024)}),
    );
    assert_eq!(status, 413);
    let (status, _) = post(
        &d.addr,
        "/api/v1/recovery/circuits/x/reset",
        &json!({"pad": "y".repeat(20 * 1024)}),
    );
    assert_eq!(status, 413);
    d.stop();
}

/// Run-now on a disabled policy is refused with `409` naming it (on both
/// routes that run one), and a policy runs at most once at a time: while a
/// run of a plugin that loops until its 5 s timeout goes on, another
/// run-now of it is refused with `429` and the reason, not started beside
/// it.
#[test]
fn r12_run_now_refuses_a_disabled_policy_and_a_second_run_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::copy(
        warden_plugins::ADVERSARY_COMPONENT,
        dir.path().join("policies/adversary.wasm"),
    )
    .unwrap();
    let scope = dir.path().join("scope");
    std::fs::create_dir(&scope).unwrap();
    // A candidate, so that the plugin is asked for a plan.
    std::fs::write(scope.join("a.tmp"), b"x").unwrap();
    std::fs::write(
        dir.path().join("policies/p.yaml"),
        format!(
            "policies:\n  - name: off\n    kind: cleanup\n    plugin: temp-files\n    enabled: false\n    trigger: manual\n    scope:\n      paths: [\"{s}\"]\n    config:\n      max_age: 1d\n  - name: spin\n    kind: cleanup\n    plugin: ./adversary.wasm\n    trigger: manual\n    timeout: 5s\n    scope:\n      paths: [\"{s}\"]\n    config:\n      mode: infinite-loop\n",
            s = scope.display()
        ),
    )
    .unwrap();
    let d = Daemon::start_in(dir, Some(QUIET));
    for path in ["/api/v1/policies/off/run", "/api/v1/cleanup/tasks/off/run"] {
        let (status, v) = call("POST", &d.addr, path, None);
        assert_eq!(status, 409, "{path}: {v}");
        let message = v.to_string();
        assert!(
            message.contains("`off`") && message.contains("enabled: false"),
            "{path}: {message}"
        );
    }
    // Two run-nows at once: the plugin loops until its 5 s timeout, so the
    // two overlap; one runs, the other is refused.
    let start = std::sync::Arc::new(std::sync::Barrier::new(2));
    let both: Vec<_> = (0..2)
        .map(|_| {
            let (addr, start) = (d.addr.clone(), std::sync::Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                call("POST", &addr, "/api/v1/policies/spin/run", None)
            })
        })
        .collect();
    let mut answers: Vec<(u16, Value)> = both.into_iter().map(|t| t.join().unwrap()).collect();
    answers.sort_by_key(|(status, _)| *status);
    assert_eq!(
        answers.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [200, 429],
        "{answers:?}"
    );
    assert_eq!(
        answers[0].1["ok"], false,
        "stopped by its timeout: {answers:?}"
    );
    assert!(
        answers[1].1.to_string().contains("running already"),
        "the refusal says why: {answers:?}"
    );
    d.stop();
}
