//! What runs a policy in `warden run`, end to end: a threshold crossing, a
//! cron schedule, the `resource-registered`, `alert-fired` and
//! `pressure-changed` events, and memory pressure (`on_pressure`), measured
//! from memory use or from PSI. Each counts the runs of a dry-run cleanup
//! policy in the cleanup history; no test waits a fixed time for something
//! not to happen: each waits for evidence that it had the chance.

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{QUIET, daemon};
use crate::daemon::Daemon;
use crate::http::{call, wait};

/// A dry-run cleanup policy over the (empty) data directory, run by
/// `trigger`; `extra` adds options.
pub(crate) fn counter(name: &str, trigger: &str, extra: &str) -> String {
    format!(
        "policies:
  - name: {name}
    kind: cleanup
    plugin: temp-files
    trigger:
{trigger}
    scope:
      paths: [\"${{data_dir}}/scratch\"]
{extra}    dry_run: true
    config:
      max_age: 1d
"
    )
}

/// The runs of `policy`, newest first.
fn history(d: &Daemon, policy: &str) -> Vec<Value> {
    let (_, h) = call(
        "GET",
        &d.addr,
        &format!("/api/v1/cleanup/history?policy={policy}"),
        None,
    );
    h.as_array().cloned().unwrap_or_default()
}

fn runs(d: &Daemon, policy: &str) -> usize {
    history(d, policy).len()
}

fn push(d: &Daemon, metric: &str, v: f64) {
    let (status, body) = call(
        "POST",
        &d.addr,
        "/api/v1/metrics",
        Some(&json!({"samples": [{"metric": metric, "value": v}]})),
    );
    assert_eq!(status, 200, "{body}");
}

/// Evaluations of the policy `name` so far.
fn evaluations(d: &Daemon, name: &str) -> u64 {
    d.status()["policies"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p["state"]["evaluations"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_threshold_runs_its_policy_once_per_crossing_and_again_after_it_re_arms() {
    let d = daemon(
        &[
            (
                "hot.yaml",
                &counter(
                    "on-hot",
                    "      threshold: {metric: queue_depth, condition: gt, value: 100}",
                    "",
                ),
            ),
            // Crosses with the first push and stays above for the whole test.
            (
                "warm.yaml",
                &counter(
                    "on-warm",
                    "      threshold: {metric: queue_depth, condition: gt, value: 5}",
                    "",
                ),
            ),
        ],
        QUIET,
    );
    push(&d, "queue_depth", 50.0);
    wait("50 crosses `on-warm`'s threshold", 20, || {
        runs(&d, "on-warm") == 1
    });
    assert_eq!(runs(&d, "on-hot"), 0, "50 is below `on-hot`'s threshold");
    push(&d, "queue_depth", 500.0);
    wait("crossing the threshold runs `on-hot`", 20, || {
        runs(&d, "on-hot") == 1
    });
    // Going below re-arms the trigger, and the next crossing runs it again.
    // The check runs once a second: the value goes down and up until one
    // check has seen it below and a later one above, however loaded the
    // machine (without a re-arm, `on-hot` never runs again).
    let mut low = true;
    wait("a crossing after a re-arm runs `on-hot` again", 60, || {
        push(&d, "queue_depth", if low { 10.0 } else { 500.0 });
        low = !low;
        std::thread::sleep(Duration::from_millis(300));
        runs(&d, "on-hot") >= 2
    });
    // Every check of these seconds saw `on-warm`'s condition hold (10 and
    // 500 are both above 5): one crossing, one run.
    assert_eq!(runs(&d, "on-warm"), 1, "once per crossing");
    d.stop();
}

#[test]
fn a_cron_schedule_runs_its_policy_once_in_each_matching_second() {
    // Six fields: the first is the second.
    let d = daemon(
        &[(
            "cron.yaml",
            &counter("each-second", "      cron: \"* * * * * *\"", ""),
        )],
        QUIET,
    );
    wait("three runs on the schedule", 30, || {
        runs(&d, "each-second") >= 3
    });
    // Newest first. The next fire time is reckoned after a run ends, so two
    // runs never share a second, however late one starts.
    let seconds: Vec<i64> = history(&d, "each-second")
        .iter()
        .map(|r| r["started_ms"].as_i64().unwrap() / 1000)
        .collect();
    assert!(
        seconds.windows(2).all(|w| w[0] > w[1]),
        "one run per second: {seconds:?}"
    );
    d.stop();
}

#[test]
fn registering_a_resource_and_memory_pressure_run_their_policies() {
    let d = daemon(
        &[
            (
                "reg.yaml",
                &counter("on-register", "      event: resource-registered", ""),
            ),
            (
                "mem.yaml",
                &counter(
                    "on-memory",
                    "      cron: \"0 0 1 1 *\"",
                    "    on_pressure: standard\n",
                ),
            ),
        ],
        // Thresholds every machine is above, so the level is `emergency`
        // from the first measurement.
        &format!(
            "{QUIET}pressure:\n  standard: 0.001\n  critical: 0.002\n  emergency: 0.003\n  every: 100ms\n"
        ),
    );
    wait("memory pressure runs `on-memory`", 20, || {
        runs(&d, "on-memory") == 1
    });
    let (_, health) = call("GET", &d.addr, "/health", None);
    assert_eq!(health["subsystems"]["memory"]["score"], 10, "{health:#}");

    assert_eq!(runs(&d, "on-register"), 0);
    let (status, _) = call(
        "POST",
        &d.addr,
        "/api/v1/resources",
        Some(&json!({"kind": "socket", "name": "conn/1"})),
    );
    assert_eq!(status, 201);
    wait("registering runs `on-register`", 20, || {
        runs(&d, "on-register") == 1
    });

    // A policy added while the pressure is already high runs at once.
    std::fs::write(
        d.dir.path().join("policies/mem2.yaml"),
        counter(
            "on-memory-too",
            "      cron: \"0 0 1 1 *\"",
            "    on_pressure: critical\n",
        ),
    )
    .unwrap();
    wait("a new policy under pressure runs", 20, || {
        runs(&d, "on-memory-too") == 1
    });
    // The level stayed where it was the whole time: one rise, one run.
    assert_eq!(runs(&d, "on-memory"), 1, "once per rise in level");
    d.stop();
}

#[test]
fn an_alert_that_starts_firing_runs_alert_fired_policies_once() {
    let alert = "policies:
  - name: db
    kind: alert
    plugin: threshold
    trigger:
      interval: 100ms
    config:
      rules:
        - {alert: High, metric: m, condition: gt, threshold: 5}
";
    let d = daemon(
        &[
            ("db.yaml", alert),
            (
                "fired.yaml",
                &counter("on-fired", "      event: alert-fired", ""),
            ),
        ],
        QUIET,
    );
    push(&d, "m", 10.0);
    wait("`High` firing runs `on-fired`", 20, || {
        runs(&d, "on-fired") == 1
    });
    // The event marks the change to firing, not each evaluation that finds
    // the alert still firing.
    let seen = evaluations(&d, "db");
    wait("five more evaluations of `db`", 20, || {
        evaluations(&d, "db") >= seen + 5
    });
    assert_eq!(runs(&d, "on-fired"), 1, "once per alert that starts firing");
    // Resolved, then firing again: a second event.
    push(&d, "m", 1.0);
    wait("`High` resolves", 20, || {
        call("GET", &d.addr, "/api/v1/alerts?state=resolved", None)
            .1
            .as_array()
            .is_some_and(|a| a.len() == 1)
    });
    push(&d, "m", 10.0);
    wait("firing again runs `on-fired` again", 20, || {
        runs(&d, "on-fired") == 2
    });
    d.stop();
}

/// `some avg10` of /proc/pressure/memory, in percent.
fn psi_memory_avg10() -> f64 {
    let text = std::fs::read_to_string("/proc/pressure/memory").unwrap_or_else(|e| {
        panic!("this test needs PSI (a kernel with CONFIG_PSI, not booted with psi=0): cannot read /proc/pressure/memory: {e}")
    });
    text.lines()
        .find_map(|l| l.strip_prefix("some "))
        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("avg10=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `some avg10=` in /proc/pressure/memory: {text}"))
}

#[test]
fn a_change_of_pressure_level_measured_by_psi_runs_pressure_changed_policies() {
    // PSI `some avg10` is at least 0, so the first measurement is at
    // `standard`: a change from no level at all.
    let config = format!(
        "{QUIET}pressure:\n  source: psi\n  standard: 0\n  critical: 99\n  emergency: 100\n  every: 100ms\n"
    );
    let d = daemon(
        &[(
            "changed.yaml",
            &counter("on-change", "      event: pressure-changed", ""),
        )],
        &config,
    );
    wait("the first level runs `on-change`", 20, || {
        runs(&d, "on-change") == 1
    });
    // The level came from PSI, not from memory use: the percentage is the
    // kernel's `some avg10`. That moves every 2 s and the daemon measures
    // every 100 ms, so a reading may straddle a move: look until one
    // matches (a reading of memory use never would).
    let memory = |d: &Daemon| {
        let (_, health) = call("GET", &d.addr, "/health", None);
        health["subsystems"]["memory"]["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let mut detail = String::new();
    let mut seen = Vec::new();
    wait("/health shows PSI's `some avg10`", 20, || {
        let before = psi_memory_avg10();
        detail = memory(&d);
        let after = psi_memory_avg10();
        let percent: f64 = detail
            .strip_prefix("pressure ")
            .and_then(|r| r.split('%').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{detail}"));
        seen.push((before, percent, after));
        assert!(seen.len() < 50, "PSI said, measured, PSI said: {seen:?}");
        [before, after]
            .iter()
            .any(|psi| (psi - percent).abs() <= 0.05 + 1e-9)
    });
    assert!(detail.ends_with("level standard"), "{detail}");
    d.stop();
}
