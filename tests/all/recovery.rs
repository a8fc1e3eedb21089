//! Recovery end to end: a real local HTTP service that fails at a set rate
//! and latency is called; its failures and outcomes are reported to the real
//! daemon through `/api/v1/recovery/*` (and, in-process, through the
//! library's guard), and the tests assert what the breakers, the retry
//! budget and the policies answer, across a restart, and what bad input gets.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::daemon::Daemon;
use crate::http::{call, get, post, wait};

const QUIET: &str = "metrics:\n  collect:\n    enabled: false\n  persist:\n    enabled: false\n";

/// A service on loopback that answers 503 to `fail_percent` of requests
/// (every request whose number modulo 100 is below it) after `latency_ms`.
pub(crate) struct Service {
    pub(crate) addr: String,
    pub(crate) fail_percent: Arc<AtomicU32>,
    served: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    pub(crate) fn start(fail_percent: u32, latency_ms: u64) -> Service {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let fail = Arc::new(AtomicU32::new(fail_percent));
        let latency = Arc::new(AtomicU64::new(latency_ms));
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU32::new(0));
        let (f, l, s) = (Arc::clone(&fail), Arc::clone(&latency), Arc::clone(&stop));
        let counted = Arc::clone(&served);
        let thread = std::thread::spawn(move || {
            let mut n = 0u32;
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => got.extend_from_slice(&buf[..k]),
                    }
                }
                std::thread::sleep(Duration::from_millis(l.load(Ordering::SeqCst)));
                let failing = n % 100 < f.load(Ordering::SeqCst);
                n += 1;
                counted.fetch_add(1, Ordering::SeqCst);
                let status = if failing {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                    )
                    .as_bytes(),
                );
            }
        });
        Service {
            addr,
            fail_percent: fail,
            served,
            stop,
            thread: Some(thread),
        }
    }

    /// Returns how many requests the service answered.
    pub(crate) fn call_count(&self) -> u32 {
        self.served.load(Ordering::SeqCst)
    }

    /// Calls the service once: its status and how long it took, in ms.
    pub(crate) fn call(&self) -> (u16, u64) {
        let t = Instant::now();
        let r = crate::http::agent()
            .get(&format!("http://{}/", self.addr))
            .call()
            .unwrap();
        (r.status().as_u16(), t.elapsed().as_millis() as u64)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn daemon_in(policies: &[(&str, &str)], config: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    for (name, text) in policies {
        std::fs::write(dir.path().join("policies").join(name), text).unwrap();
    }
    Daemon::start_in(dir, Some(config))
}

fn recovery(name: &str, extra: &str) -> String {
    format!("policies:\n  - name: {name}\n    kind: recovery\n    plugin: backoff\n{extra}")
}

/// Calls the service and reports the result: a failure gets its decision
/// back; a success is sent as an outcome. Returns the decision, if any.
fn call_and_report(d: &Daemon, svc: &Service, op: &str, attempt: u32) -> Option<Value> {
    let (status, ms) = svc.call();
    if status == 200 {
        let (code, a) = post(
            &d.addr,
            "/api/v1/recovery/outcomes",
            &json!({"outcomes": [{"operation": op, "outcome": "success", "duration_ms": ms}]}),
        );
        assert_eq!(code, 200, "{a}");
        return None;
    }
    let (code, a) = post(
        &d.addr,
        "/api/v1/recovery/failures",
        &json!({"operation": op, "http_status": status, "attempt": attempt, "duration_ms": ms, "message": "upstream said 503"}),
    );
    assert_eq!(code, 200, "{a}");
    Some(a)
}

fn circuits(d: &Daemon) -> Vec<Value> {
    get(&d.addr, "/api/v1/recovery/circuits")
        .as_array()
        .cloned()
        .unwrap()
}

/// A breaker over the last 10 calls that waits `wait` in open.
fn breaker(wait: &str) -> String {
    format!("    recovery:
      breaker: {{window_size: 10, minimum_calls: 10, failure_rate: 50, wait_in_open: {wait}, automatic_half_open: true, half_open_calls: 3}}
    config: {{base: 10ms, max: 1s, jitter_mode: full, max_attempts: 100}}
")
}

#[test]
fn a_failing_service_opens_its_breaker_and_a_recovered_one_closes_it() {
    let d = daemon_in(&[("r.yaml", &recovery("svc", &breaker("2s")))], QUIET);
    let svc = Service::start(100, 0);
    let mut answers = Vec::new();
    for _ in 0..12 {
        answers.push(call_and_report(&d, &svc, "svc.get", 1).unwrap());
    }
    // The first nine are the plugin's retries; the tenth fills the window
    // at 100% and opens it; from then on the breaker answers.
    assert_eq!(answers[0]["action"], "retry-after", "{}", answers[0]);
    assert_eq!(answers[0]["decided_by"], "plugin");
    assert_eq!(answers[0]["class"], "dependency-unavailable");
    assert_eq!(answers[0]["classified_by"], "http_status 503");
    assert_eq!(answers[9]["circuit"]["state"], "open", "{}", answers[9]);
    assert_eq!(answers[11]["decided_by"], "breaker");
    assert_eq!(answers[11]["action"], "open-circuit");
    assert!(answers[11]["for_ms"].as_u64().unwrap() <= 2000);
    let id = answers[11]["circuit"]["id"].as_str().unwrap().to_owned();

    let metrics = crate::http::agent()
        .get(&format!("http://{}/metrics", d.addr))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains(&format!("warden_recovery_circuit_state{{policy=\"svc\",operation=\"svc.get\",circuit=\"{id}\",state=\"open\"}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains("warden_recovery_circuit_transitions_total{policy=\"svc\",operation=\"svc.get\",from=\"closed\",to=\"open\"} 1"),
        "{metrics}"
    );
    let health = get(&d.addr, "/health");
    assert_eq!(health["subsystems"]["recovery"]["score"], 0, "{health}");

    // The service recovers; after the wait the breaker half-opens by itself
    // and three good calls close it.
    svc.fail_percent.store(0, Ordering::SeqCst);
    wait("half-open", 20, || circuits(&d)[0]["state"] == "half-open");
    for _ in 0..3 {
        assert!(call_and_report(&d, &svc, "svc.get", 1).is_none());
    }
    let c = &circuits(&d)[0];
    assert_eq!(c["state"], "closed", "{c}");
    let moves: Vec<(&str, &str)> = c["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["from"].as_str().unwrap(), t["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        moves,
        [
            ("closed", "open"),
            ("open", "half-open"),
            ("half-open", "closed")
        ]
    );
    assert_eq!(
        get(&d.addr, "/health")["subsystems"]["recovery"]["score"],
        100
    );
    let decisions = get(&d.addr, "/api/v1/recovery/decisions?policy=svc&limit=5");
    assert_eq!(decisions.as_array().unwrap().len(), 5);
}

#[test]
fn slow_calls_open_the_breaker_at_their_rate() {
    let d = daemon_in(
        &[(
            "r.yaml",
            &recovery(
                "svc",
                "    recovery:\n      breaker: {window_size: 4, minimum_calls: 4, slow_call_duration: 20ms, slow_call_rate: 50}\n",
            ),
        )],
        QUIET,
    );
    let svc = Service::start(0, 60);
    for _ in 0..4 {
        assert!(call_and_report(&d, &svc, "svc.slow", 1).is_none());
    }
    let c = &circuits(&d)[0];
    assert_eq!(c["state"], "open", "{c}");
    assert!(
        c["transitions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("slow-call rate 100.0%"),
        "{c}"
    );
}

#[test]
fn the_retry_budget_caps_retries_at_its_share_of_calls() {
    let d = daemon_in(
        &[(
            "r.yaml",
            &recovery(
                "svc",
                "    recovery:\n      retry_budget: {ratio: 0.1, min_per_second: 0, window: 1h}\n    config: {max_attempts: 100}\n",
            ),
        )],
        QUIET,
    );
    let svc = Service::start(100, 0);
    let answers: Vec<Value> = (0..30)
        .map(|_| call_and_report(&d, &svc, "svc.get", 1).unwrap())
        .collect();
    let retries = answers
        .iter()
        .filter(|a| a["action"] == "retry-after")
        .count();
    // The 10th, 20th and 30th calls each make room for one more.
    assert_eq!(retries, 3, "10% of 30 calls");
    assert_eq!(answers[9]["action"], "retry-after");
    let spent = answers
        .iter()
        .filter(|a| a["decided_by"] == "retry-budget")
        .count();
    assert_eq!(spent, 27);
    assert!(
        answers[28]["reason"]
            .as_str()
            .unwrap()
            .contains("retry budget")
    );
    let c = &circuits(&d)[0];
    assert_eq!(c["retry_budget"]["refused"], 27, "{c}");
}

#[test]
fn the_plugin_falls_back_and_a_manual_run_asks_it() {
    let d = daemon_in(
        &[(
            "r.yaml",
            &recovery(
                "svc",
                "    config: {fallback: {name: cached, classes: [dependency-unavailable], after: 2}}\n",
            ),
        )],
        QUIET,
    );
    // Before any failure a manual run asks about a made-up one.
    let (code, r) = post(&d.addr, "/api/v1/policies/svc/run", &json!({}));
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["ok"], true, "{r}");
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("`warden.manual-run`"),
        "{r}"
    );
    let svc = Service::start(100, 0);
    assert_eq!(
        call_and_report(&d, &svc, "svc.get", 1).unwrap()["action"],
        "retry-after"
    );
    let a = call_and_report(&d, &svc, "svc.get", 2).unwrap();
    assert_eq!(
        (a["action"].as_str(), a["fallback"].as_str()),
        (Some("fallback"), Some("cached")),
        "{a}"
    );
    // Now it replays the latest failure.
    let (_, r) = post(&d.addr, "/api/v1/policies/svc/run", &json!({}));
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("decided fallback `cached` for `svc.get` attempt 2"),
        "{r}"
    );
}

#[test]
fn a_broken_strategy_answers_per_on_failure_and_its_manual_run_fails() {
    // The refuser guest loads and then fails every decision: a bad config is
    // refused at load since contract 0.2, so it cannot stand in for this.
    let policy = format!(
        "policies:\n  - name: svc\n    kind: recovery\n    plugin: {}\n    on_failure: fail-closed\n",
        warden_plugins::REFUSER_COMPONENT
    );
    let d = daemon_in(&[("r.yaml", &policy)], QUIET);
    let (code, a) = post(
        &d.addr,
        "/api/v1/recovery/failures",
        &json!({"operation": "svc.get", "errno": "ECONNREFUSED"}),
    );
    assert_eq!(code, 200, "{a}");
    assert_eq!(
        (a["action"].as_str(), a["decided_by"].as_str()),
        (Some("give-up"), Some("on-failure")),
        "{a}"
    );
    assert!(
        a["plugin_error"]
            .as_str()
            .unwrap()
            .contains("refuses every failure (`svc.get`)"),
        "{a}"
    );
    let (_, r) = post(&d.addr, "/api/v1/policies/svc/run", &json!({}));
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("refuses every failure"),
        "{r}"
    );
}

#[test]
fn circuits_and_decisions_survive_a_restart() {
    let d = daemon_in(&[("r.yaml", &recovery("svc", &breaker("1h")))], QUIET);
    let svc = Service::start(100, 0);
    for _ in 0..10 {
        call_and_report(&d, &svc, "svc.get", 1);
    }
    let (code, _) = post(
        &d.addr,
        "/api/v1/recovery/failures",
        &json!({"operation": "other.op", "class": "timeout"}),
    );
    assert_eq!(code, 200);
    let before = circuits(&d);
    let other = before
        .iter()
        .find(|c| c["operation"] == "other.op")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, c) = post(
        &d.addr,
        &format!("/api/v1/recovery/circuits/{other}/disable"),
        &json!({}),
    );
    assert_eq!((code, c["state"].as_str()), (200, Some("disabled")), "{c}");
    let dir = d.stop();
    let d = Daemon::start_in(dir, Some(QUIET));
    let after = circuits(&d);
    assert_eq!(after.len(), 2);
    let get_op =
        |cs: &[Value], op: &str| cs.iter().find(|c| c["operation"] == op).cloned().unwrap();
    let (b, a) = (get_op(&before, "svc.get"), get_op(&after, "svc.get"));
    assert_eq!(a["id"], b["id"]);
    assert_eq!(a["state"], "open", "{a}");
    assert_eq!(a["window"], b["window"]);
    assert_eq!(get_op(&after, "other.op")["state"], "disabled");
    assert_eq!(
        get(&d.addr, "/api/v1/recovery/decisions")
            .as_array()
            .unwrap()
            .len(),
        11
    );
    let (code, c) = post(
        &d.addr,
        &format!("/api/v1/recovery/circuits/{other}/reset"),
        &json!({}),
    );
    assert_eq!((code, c["state"].as_str()), (200, Some("closed")));
}

#[test]
fn bad_reports_are_refused_by_field_and_nothing_is_kept() {
    let d = daemon_in(
        &[(
            "r.yaml",
            &recovery("svc", "    scope: {operations: [\"svc.*\"]}\n"),
        )],
        QUIET,
    );
    let refuse = |body: Value, field: &str| {
        let (code, e) = post(&d.addr, "/api/v1/recovery/failures", &body);
        assert_eq!(code, 400, "{body}: {e}");
        let msg = e["error"].as_str().unwrap();
        assert!(msg.starts_with(field), "{field}: {msg}");
        msg.to_owned()
    };
    let m = refuse(json!({"operation": "svc.a", "class": "meltdown"}), "class:");
    assert!(
        m.contains("rate-limited, timeout"),
        "the classes are listed: {m}"
    );
    refuse(
        json!({"operation": "svc.a", "duration_ms": -5}),
        "duration_ms:",
    );
    refuse(json!({"operation": "svc.a", "attempt": -1}), "attempt:");
    refuse(
        json!({"operation": "svc.a", "message": "x".repeat(5000)}),
        "message:",
    );
    refuse(
        json!({"operation": "svc.a", "labels": {"email": "a@b.c"}}),
        "labels.email:",
    );
    refuse(json!({"operation": "svc.a", "errno": "nope"}), "errno:");
    refuse(json!({"class": "timeout"}), "operation:");
    let (code, e) = post(
        &d.addr,
        "/api/v1/recovery/outcomes",
        &json!({"outcomes": [{"operation": "svc.a", "outcome": "success"}, {"operation": "svc.a", "outcome": "success", "labels": {"user_id": "42"}}]}),
    );
    assert_eq!(code, 400);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .starts_with("outcomes[1].labels.user_id:"),
        "{e}"
    );
    let (code, e) = post(
        &d.addr,
        "/api/v1/recovery/failures",
        &json!({"operation": "elsewhere", "class": "timeout"}),
    );
    assert_eq!(code, 422, "no policy covers it: {e}");
    let (code, _) = call(
        "POST",
        &d.addr,
        "/api/v1/recovery/failures",
        Some(&json!({"operation": "svc.a", "message": "y".repeat(100_000)})),
    );
    assert_eq!(code, 413, "a body over 64 KiB");
    assert!(circuits(&d).is_empty(), "nothing kept");
    assert!(
        get(&d.addr, "/api/v1/recovery/decisions")
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (code, e) = call(
        "POST",
        &d.addr,
        "/api/v1/recovery/circuits/0123/force-open",
        None,
    );
    assert_eq!(code, 404, "{e}");
}

/// Issue 12's rules on issue 14's routes: reports and forced states change
/// the daemon, and circuits and decisions are history, so all need the
/// token (no `api.public_reads` here).
#[test]
fn recovery_mutations_and_reads_need_the_token() {
    let d = daemon_in(&[("r.yaml", &recovery("svc", ""))], QUIET);
    // The token the daemon made; `send` and `read` carry only what they are
    // given.
    let token = std::fs::read_to_string(d.token_file()).unwrap();
    let token = token.trim();
    let body = json!({"operation": "svc.get", "class": "timeout"}).to_string();
    let send = |path: &str, token: Option<&str>| {
        let mut r = crate::http::anonymous_agent()
            .post(&format!("http://{}{path}", d.addr))
            .header("content-type", "application/json");
        if let Some(t) = token {
            r = r.header("authorization", &format!("Bearer {t}"));
        }
        r.send(body.as_str()).unwrap().status().as_u16()
    };
    let read = |path: &str| {
        crate::http::anonymous_agent()
            .get(&format!("http://{}{path}", d.addr))
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(send("/api/v1/recovery/failures", None), 401);
    assert_eq!(send("/api/v1/recovery/failures", Some("wrong")), 401);
    assert_eq!(send("/api/v1/recovery/failures", Some(token)), 200);
    assert_eq!(read("/api/v1/recovery/circuits"), 401);
    assert_eq!(read("/api/v1/recovery/decisions"), 401);
    let id = circuits(&d)[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        send(&format!("/api/v1/recovery/circuits/{id}/force-open"), None),
        401
    );
    assert_eq!(
        send(
            &format!("/api/v1/recovery/circuits/{id}/force-open"),
            Some(token)
        ),
        200
    );
    assert_eq!(circuits(&d)[0]["state"], "forced-open");
}

#[test]
fn a_resource_exhausted_failure_triggers_a_cleanup_policy_of_that_class() {
    let cleanup = "policies:
  - name: free-space
    kind: cleanup
    plugin: temp-files
    trigger: {event: failure-reported}
    dry_run: true
    scope: {paths: [\"${data_dir}/scratch\"], classes: [resource-exhausted]}
    config: {max_age: 1d}
";
    let d = daemon_in(
        &[("r.yaml", &recovery("svc", "")), ("c.yaml", cleanup)],
        QUIET,
    );
    std::fs::create_dir_all(d.dir.path().join("warden-data/scratch")).unwrap();
    let evaluations = || {
        get(&d.addr, "/api/v1/policies")["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "free-space")
            .and_then(|p| p["state"]["evaluations"].as_u64())
            .unwrap_or(0)
    };
    // A timeout does not trigger it; the ENOSPC after it does, once.
    for errno in ["ETIMEDOUT", "ENOSPC"] {
        let (code, a) = post(
            &d.addr,
            "/api/v1/recovery/failures",
            &json!({"operation": "upload", "errno": errno}),
        );
        assert_eq!(code, 200, "{a}");
    }
    wait("the cleanup policy ran", 20, || evaluations() >= 1);
    assert_eq!(evaluations(), 1);
}

#[test]
fn the_shipped_recovery_policy_decides() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/recovery.yaml"),
        dir.path().join("policies/recovery.yaml"),
    )
    .unwrap();
    let d = Daemon::start_in(dir, Some(QUIET));
    let svc = Service::start(100, 0);
    let a = call_and_report(&d, &svc, "checkout.pay", 1).unwrap();
    assert_eq!(
        (a["policy"].as_str(), a["decided_by"].as_str()),
        (Some("default-retries"), Some("plugin")),
        "{a}"
    );
    let ms = a["after_ms"].as_u64().unwrap();
    assert!(ms <= 100, "full jitter under `base` for attempt 1: {ms}");
    // `classify` of the shipped policy: 409 is a database conflict.
    let (_, a) = post(
        &d.addr,
        "/api/v1/recovery/failures",
        &json!({"operation": "checkout.pay", "http_status": 409}),
    );
    assert_eq!(
        (a["class"].as_str(), a["classified_by"].as_str()),
        (Some("database"), Some("policy rule 0")),
        "{a}"
    );
    // `give_up_on: [invalid-input, …]`.
    let (_, a) = post(
        &d.addr,
        "/api/v1/recovery/failures",
        &json!({"operation": "checkout.pay", "http_status": 422}),
    );
    assert_eq!(a["action"], "give-up", "{a}");
}
