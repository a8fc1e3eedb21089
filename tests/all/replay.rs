//! `warden replay` as a user runs it: a policy file and recorded series in,
//! one decision per line out, a summary on stderr, and errors that say
//! which file and line.

use std::process::Command;

use serde_json::Value;

fn warden(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

const POLICY: &str = "policies:
  - name: hot
    kind: alert
    plugin: threshold
    trigger: {interval: 1m}
    config:
      rules:
        - {alert: Hot, metric: temp, condition: gt, threshold: 50, window: 1m}
";

/// An hour of `temp` a minute apart, above 50 from minute 20 to 29.
fn csv() -> String {
    let mut text = String::from("timestamp,value\n");
    for m in 0..60 {
        let v = if (20..30).contains(&m) { 70 } else { 20 };
        text.push_str(&format!("2024-05-01T10:{m:02}:00Z,{v}\n"));
    }
    text
}

#[test]
fn replay_prints_each_decision_as_a_json_line_within_from_and_to() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hot.yaml"), POLICY).unwrap();
    std::fs::write(dir.path().join("temp.csv"), csv()).unwrap();
    let out = warden(dir.path(), &["replay", "hot.yaml", "--series", "temp.csv"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen: Vec<(&str, &str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["at"].as_str().unwrap(),
                l["decision"].as_str().unwrap(),
                l["phase"].as_str().or(l["status"].as_str()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("2024-05-01T10:20:00.000Z", "alert", "firing"),
            ("2024-05-01T10:20:00.000Z", "notify", "firing"),
            ("2024-05-01T10:30:00.000Z", "alert", "resolved"),
            ("2024-05-01T10:30:00.000Z", "notify", "resolved"),
        ]
    );
    assert_eq!(lines[0]["policy"], "hot");
    assert_eq!(lines[0]["alert"], "Hot");
    assert_eq!(lines[0]["value"], 70.0);
    assert!(
        stderr.contains("60 evaluations (0 failed), 4 decisions"),
        "{stderr}"
    );

    let out = warden(
        dir.path(),
        &[
            "replay",
            "hot.yaml",
            "--series",
            "temp.csv",
            "--from",
            "2024-05-01T10:25:00Z",
            "--to",
            "1714557600000",
            "--format",
            "text",
        ],
    );
    assert!(!out.status.success(), "--from after --to");
    let out = warden(
        dir.path(),
        &[
            "replay",
            "hot.yaml",
            "--series",
            "temp.csv",
            "--from",
            "2024-05-01T10:25:00Z",
            "--format",
            "text",
        ],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "2024-05-01T10:25:00.000Z  hot  alert Hot{} firing value=70 severity=warning",
            "2024-05-01T10:25:00.000Z  hot  notify firing {alertname=\"Hot\",severity=\"warning\"}",
            "2024-05-01T10:30:00.000Z  hot  alert Hot{} resolved value=70 severity=warning",
            "2024-05-01T10:30:00.000Z  hot  notify resolved {alertname=\"Hot\",severity=\"warning\"}",
        ]
    );
}

#[test]
fn replay_refuses_bad_series_and_bad_policies_naming_where() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hot.yaml"), POLICY).unwrap();
    std::fs::write(dir.path().join("temp.csv"), "timestamp,value\nlater,1\n").unwrap();
    let out = warden(dir.path(), &["replay", "hot.yaml", "--series", "temp.csv"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("warden: temp.csv:2: `later` is not a time"),
        "{stderr}"
    );

    std::fs::write(dir.path().join("temp.csv"), csv()).unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        POLICY.replace("kind: alert", "kind: alrt"),
    )
    .unwrap();
    let out = warden(dir.path(), &["replay", "bad.yaml", "--series", "temp.csv"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("warden: bad.yaml:3:"), "{stderr}");
    assert!(stderr.contains("did you mean `alert`?"), "{stderr}");

    // A plugin config the plugin refuses is an error of the file, at its
    // line, as `warden check` reports it; nothing is replayed.
    std::fs::write(
        dir.path().join("cfg.yaml"),
        POLICY.replace("threshold: 50", "threshhold: 50"),
    )
    .unwrap();
    let out = warden(dir.path(), &["replay", "cfg.yaml", "--series", "temp.csv"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("warden: cfg.yaml:8:"), "{stderr}");
    assert!(stderr.contains("threshhold"), "{stderr}");
}

#[test]
fn replay_of_a_recovery_policy_prints_its_decisions_over_recorded_failures() {
    let dir = tempfile::tempdir().unwrap();
    let policy = "policies:
  - name: db
    kind: recovery
    plugin: backoff
    trigger: {event: failure-reported}
    recovery:
      breaker: {window_size: 3, minimum_calls: 3, failure_rate: 50, wait_in_open: 1m}
    config: {max_attempts: 5, jitter: 0}
";
    std::fs::write(dir.path().join("db.yaml"), policy).unwrap();
    // What a service sent the recovery API, with when.
    let failures: String = (0..4)
        .map(|i| {
            format!(
                "{{\"timestamp\": \"2024-05-01T10:00:0{i}Z\", \"operation\": \"db.query\", \"errno\": \"ETIMEDOUT\", \"attempt\": {}}}\n",
                i + 1
            )
        })
        .collect();
    std::fs::write(dir.path().join("failures.jsonl"), failures).unwrap();

    // Without recorded failures, the policy is named and nothing runs.
    std::fs::write(dir.path().join("temp.csv"), csv()).unwrap();
    let out = warden(dir.path(), &["replay", "db.yaml", "--series", "temp.csv"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("policy `db` is not replayed: a recovery policy replays over recorded failures; give them with --failures"),
        "{stderr}"
    );
    assert!(
        stderr.contains("no policy of this file can be replayed"),
        "{stderr}"
    );
    let out = warden(dir.path(), &["replay", "db.yaml", "--failures"]);
    assert_eq!(out.status.code(), Some(2), "clap wants a file");

    let out = warden(
        dir.path(),
        &["replay", "db.yaml", "--failures", "failures.jsonl"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("replayed db from 2024-05-01T10:00:00.000Z"),
        "{stderr}"
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen: Vec<String> = lines
        .iter()
        .map(|l| match l["decision"].as_str().unwrap() {
            "recovery" => format!(
                "{} {} {} {}",
                l["attempt"], l["action"], l["decided_by"], l["class"]
            ),
            "breaker" => format!("breaker {}->{}", l["from"], l["to"]),
            other => other.to_owned(),
        })
        .collect();
    assert_eq!(
        seen,
        [
            r#"1 "retry-after" "plugin" "timeout""#,
            r#"2 "retry-after" "plugin" "timeout""#,
            r#"breaker "closed"->"open""#,
            r#"3 "open-circuit" "breaker" "timeout""#,
            r#"4 "open-circuit" "breaker" "timeout""#,
        ],
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| l["policy"] == "db"), "{lines:#?}");

    // A bad line stops the replay before anything runs, naming file, line
    // and field.
    std::fs::write(
        dir.path().join("bad.jsonl"),
        "{\"timestamp\": 1714557600, \"operation\": \"db.query\", \"attempt\": 0}\n",
    )
    .unwrap();
    let out = warden(
        dir.path(),
        &["replay", "db.yaml", "--failures", "bad.jsonl"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("warden: bad.jsonl:1: "), "{stderr}");
    assert!(stderr.contains("attempt"), "{stderr}");
}
