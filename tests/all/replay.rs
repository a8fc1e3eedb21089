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
