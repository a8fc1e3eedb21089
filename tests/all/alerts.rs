//! Alerts against a real Alertmanager: the notifier on its own (firing with
//! `endsAt` ahead, the fingerprint Alertmanager computes, resolved, a refusal
//! not retried), then end to end through `warden run`: a threshold policy
//! over a pushed metric notifies Alertmanager and a webhook receiver when it
//! fires and when it resolves; a pending alert never notifies; alert state
//! survives a restart.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use warden::notify::{
    AlertStatus, Notification, Notifier, NotifierConfig, NotifyError, fingerprint,
};

use crate::daemon::{Daemon, free_port};
use crate::http::{agent, get, get_url, post, wait};

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

fn push(addr: &str, value: f64) {
    let body = json!({"samples": [{"metric": "m", "labels": {"host": "db1"}, "value": value}]});
    let (status, answer) = post(addr, "/api/v1/metrics", &body);
    assert_eq!(status, 200, "{answer}");
}

/// A webhook receiver on loopback that keeps every JSON body it is sent.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok()
                    && let Ok(v) = serde_json::from_slice(&body)
                {
                    keep.lock().unwrap().push(v);
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Receiver { url, bodies }
    }

    /// Every alert received so far: (status, alertname).
    fn alerts(&self) -> Vec<(String, String)> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
            .map(|a| {
                (
                    a["status"].as_str().unwrap_or("").to_owned(),
                    a["labels"]["alertname"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    fn count(&self, status: &str, name: &str) -> usize {
        self.alerts()
            .iter()
            .filter(|(s, n)| s == status && n == name)
            .count()
    }
}

/// A real Alertmanager on loopback, killed on drop.
struct Alertmanager {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    fn start() -> Alertmanager {
        assert!(
            Path::new(ALERTMANAGER).exists(),
            "{ALERTMANAGER} is missing; this test needs the real Alertmanager: apt-get install prometheus-alertmanager (.ci/run does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("am.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n",
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let am = Alertmanager {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        wait("alertmanager ready", 30, || {
            agent()
                .get(&format!("{}/-/ready", am.base))
                .call()
                .is_ok_and(|r| r.status().as_u16() == 200)
        });
        am
    }

    /// Names of the alerts Alertmanager holds as active.
    fn active(&self) -> Vec<Value> {
        get_url(&format!("{}/api/v2/alerts?active=true", self.base))
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["status"]["state"] == "active")
            .collect()
    }

    /// Active alerts with exactly these labels.
    fn active_with(&self, labels: &BTreeMap<String, String>) -> Vec<Value> {
        let wanted = serde_json::to_value(labels).unwrap();
        self.active()
            .into_iter()
            .filter(|a| a["labels"] == wanted)
            .collect()
    }

    fn active_named(&self, name: &str) -> Option<Value> {
        self.active()
            .into_iter()
            .find(|a| a["labels"]["alertname"] == name)
    }
}

fn notifier(url: &str, retries: u32) -> Box<dyn Notifier> {
    let config: NotifierConfig = serde_json::from_value(json!({
        "type": "alertmanager", "url": url, "retries": retries, "backoff": "50ms",
        "resend_ends_after": "5m"
    }))
    .unwrap();
    warden::notify::build(&config).unwrap()
}

#[test]
fn the_alertmanager_notifier_fires_refreshes_ahead_and_resolves() {
    let am = Alertmanager::start();
    let n = notifier(&format!("{}/", am.base), 2);
    let now = chrono::Utc::now().timestamp_millis();
    let labels: BTreeMap<String, String> = [
        ("alertname", "WardenNotifyTest"),
        ("severity", "warning"),
        ("policy", "notify-test"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let mut alert = Notification {
        status: AlertStatus::Firing,
        labels: labels.clone(),
        annotations: [("summary".to_owned(), "it works".to_owned())].into(),
        starts_at_ms: now - 60_000,
        ends_at_ms: None,
        policy: "notify-test".to_owned(),
    };
    n.send(std::slice::from_ref(&alert), now).unwrap();
    wait("the firing alert is listed", 10, || {
        !am.active_with(&labels).is_empty()
    });
    let listed = &am.active_with(&labels)[0];
    assert_eq!(listed["annotations"]["summary"], "it works");
    // Our fingerprint is Alertmanager's, so receivers can correlate.
    assert_eq!(listed["fingerprint"], fingerprint(&labels));
    let ends_at = chrono::DateTime::parse_from_rfc3339(listed["endsAt"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert!(
        (now + 299_000..=now + 301_000).contains(&ends_at),
        "endsAt is `resend_ends_after` ahead: {listed}"
    );
    let later = chrono::Utc::now().timestamp_millis();
    alert.status = AlertStatus::Resolved;
    alert.ends_at_ms = Some(later);
    n.send(&[alert], later).unwrap();
    wait("the resolved alert leaves the active list", 10, || {
        am.active_with(&labels).is_empty()
    });
}

#[test]
fn alerts_alertmanager_refuses_are_not_retried_by_the_notifier() {
    let am = Alertmanager::start();
    let n = notifier(&am.base, 3);
    // Alertmanager refuses alerts without labels.
    let e = n
        .send(
            &[Notification {
                status: AlertStatus::Firing,
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
                starts_at_ms: 0,
                ends_at_ms: None,
                policy: "p".to_owned(),
            }],
            1_000,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            NotifyError::Status {
                status: 400,
                attempts: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

/// A policy with a rule that fires at once (`Now`) and one that stays
/// pending for an hour (`Later`), both on `m > 5`.
const POLICY: &str = "policies:
  - name: db
    kind: alert
    plugin: threshold
    trigger:
      interval: 100ms
    labels:
      team: storage
    config:
      rules:
        - {alert: Now, metric: m, condition: gt, threshold: 5, severity: critical, summary: m is high}
        - {alert: Later, metric: m, condition: gt, threshold: 5, for: 1h}
";

fn config(notifiers: &str) -> String {
    format!(
        "metrics:\n  collect:\n    enabled: false\nalerts:\n  refresh: 300ms\n  notifiers:\n{notifiers}"
    )
}

fn daemon(config: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/db.yaml"), POLICY).unwrap();
    Daemon::start_in(dir, Some(config))
}

fn alerts(d: &Daemon, query: &str) -> Vec<Value> {
    get(&d.addr, &format!("/api/v1/alerts{query}"))
        .as_array()
        .cloned()
        .unwrap()
}

#[test]
fn a_threshold_alert_reaches_alertmanager_and_a_webhook_and_resolves_after_recovery() {
    let am = Alertmanager::start();
    let hook = Receiver::start();
    let d = daemon(&config(&format!(
        "    - {{type: webhook, url: \"{}\"}}\n    - {{type: alertmanager, url: \"{}\", resend_ends_after: 1m}}\n",
        hook.url, am.base
    )));
    push(&d.addr, 10.0);
    wait("the webhook hears `Now` firing", 20, || {
        hook.count("firing", "Now") >= 1
    });
    wait("Alertmanager holds `Now` as active", 20, || {
        am.active_named("Now").is_some()
    });
    let active = am.active_named("Now").unwrap();
    assert_eq!(active["labels"]["team"], "storage", "{active}");
    assert_eq!(active["labels"]["severity"], "critical", "{active}");
    assert_eq!(active["labels"]["host"], "db1", "{active}");
    assert_eq!(active["annotations"]["summary"], "m is high", "{active}");

    // `Later` is pending: listed as such, never sent anywhere.
    let pending = alerts(&d, "?state=pending");
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["name"], "Later");

    // Refreshes reach Alertmanager: each moves `endsAt` on to
    // `resend_ends_after` past its send. Two of them, while the webhook,
    // which is told of changes only, heard `Now` once.
    let ends_at = |a: &Value| {
        chrono::DateTime::parse_from_rfc3339(a["endsAt"].as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    let mut last = ends_at(&active);
    for n in 1..=2 {
        wait(&format!("refresh {n} moves `endsAt` on"), 20, || {
            let now = am.active_named("Now").map_or(0, |a| ends_at(&a));
            if now > last {
                last = now;
                true
            } else {
                false
            }
        });
    }
    assert_eq!(hook.count("firing", "Now"), 1, "{:?}", hook.alerts());

    push(&d.addr, 1.0);
    wait("the webhook hears `Now` resolved", 20, || {
        hook.count("resolved", "Now") == 1
    });
    wait("Alertmanager no longer holds `Now` as active", 20, || {
        am.active_named("Now").is_none()
    });
    let resolved = alerts(&d, "?state=resolved");
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert!(
        alerts(&d, "?state=pending").is_empty(),
        "a pending alert whose condition stops is dropped"
    );

    // Pending never notified, anywhere.
    assert!(
        hook.alerts().iter().all(|(_, n)| n != "Later"),
        "{:?}",
        hook.alerts()
    );
    assert!(am.active_named("Later").is_none());

    let history = get(&d.addr, "/api/v1/alerts/history");
    let phases: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["phase"].as_str().unwrap()))
        .collect();
    assert_eq!(
        phases,
        [("Now", "resolved"), ("Later", "pending"), ("Now", "firing")],
        "newest first"
    );
    let rules = get(&d.addr, "/api/v1/alerts/rules");
    assert_eq!(rules[0]["policy"], "db");
    assert_eq!(rules[0]["config"]["rules"].as_array().unwrap().len(), 2);
    d.stop();
}

#[test]
fn alert_state_survives_a_restart_without_announcing_again() {
    let hook = Receiver::start();
    let cfg = config(&format!("    - {{type: webhook, url: \"{}\"}}\n", hook.url));
    let d = daemon(&cfg);
    push(&d.addr, 10.0);
    wait("`Now` fires", 20, || hook.count("firing", "Now") == 1);
    let before: BTreeMap<String, Value> = alerts(&d, "")
        .into_iter()
        .map(|a| (a["name"].as_str().unwrap().to_owned(), a))
        .collect();
    assert_eq!(before["Now"]["phase"], "firing");
    assert_eq!(before["Later"]["phase"], "pending");

    let dir = d.stop();
    let restarted_ms = chrono::Utc::now().timestamp_millis();
    let d = Daemon::start_in(dir, Some(&cfg));
    // The refilled store still says 10: the policy evaluates it again, a few
    // times, after the restart.
    d.until("three evaluations after the restart", |s| {
        let st = &s["policies"][0]["state"];
        st["evaluations"].as_u64().unwrap_or(0) >= 3
            && st["last"]["at_ms"].as_i64().unwrap_or(0) > restarted_ms
    });
    let after: BTreeMap<String, Value> = alerts(&d, "")
        .into_iter()
        .map(|a| (a["name"].as_str().unwrap().to_owned(), a))
        .collect();
    assert_eq!(after["Now"]["phase"], "firing", "{after:?}");
    assert_eq!(
        after["Now"]["fired_at_ms"], before["Now"]["fired_at_ms"],
        "still the same firing"
    );
    assert_eq!(after["Later"]["phase"], "pending");
    assert_eq!(
        after["Later"]["active_since_ms"], before["Later"]["active_since_ms"],
        "pending time already held counts toward `for`"
    );
    push(&d.addr, 1.0);
    wait("`Now` resolves after the restart", 20, || {
        hook.count("resolved", "Now") == 1
    });
    // A receiver hears a policy's batches in the order they were decided:
    // had the restarted daemon announced `Now` again, it would have arrived
    // before this `resolved`.
    assert_eq!(
        hook.alerts()
            .iter()
            .filter(|(_, n)| n == "Now")
            .cloned()
            .collect::<Vec<_>>(),
        [
            ("firing".to_owned(), "Now".to_owned()),
            ("resolved".to_owned(), "Now".to_owned())
        ],
        "a restart does not announce a firing alert again"
    );
    d.stop();
}
