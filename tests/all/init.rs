//! Plugins read their config before they run (WIT 0.2.0 `init`): `warden
//! check` and every reload call it, and what it refuses is reported at the
//! line and column of the offending field.

use std::process::Command;

use crate::policies::Env;

const GOOD: &str = "policies:
  - name: host-pressure
    kind: alert
    plugin: threshold
    config:
      rules:
        - alert: HighMemory
          metric: memory_used_ratio
          condition: gt
          threshold: 0.9
";

/// `GOOD` with a second rule whose condition does not exist (line 14, column 24).
fn with_between() -> String {
    format!(
        "{GOOD}        - alert: Odd
          metric: load
          threshold: 2
          condition:   between
"
    )
}

fn check(dir: &std::path::Path, what: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["check", what])
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_reports_a_config_error_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alerts.yaml"), with_between()).unwrap();
    let (code, out) = check(dir.path(), "alerts.yaml");
    assert_eq!(code, Some(1), "{out}");
    let first = out.lines().next().unwrap();
    assert_eq!(
        first,
        "alerts.yaml:14:24: policy `host-pressure`: rules[1].condition: unknown value `between`, expected one of `gt`, `lt`, `ge`, `le`, `eq`, `ne`"
    );

    // What the plugin's own checks refuse is located the same way.
    let clear = GOOD.replace(
        "          threshold: 0.9\n",
        "          threshold: 0.9\n          clear_threshold: 0.95\n",
    );
    std::fs::write(dir.path().join("alerts.yaml"), clear).unwrap();
    let (code, out) = check(dir.path(), "alerts.yaml");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with("alerts.yaml:11:28: policy `host-pressure`: rules[0].clear_threshold: `HighMemory`: 0.95 must lie where"),
        "{out}"
    );
}

#[test]
fn check_passes_the_default_policy_set() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (code, out) = check(&root, "policies");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("ok: "), "{out}");
}

#[test]
fn a_reload_refuses_a_config_its_plugin_refuses_and_keeps_the_last_good_one() {
    let env = Env::new();
    env.write("alerts.yaml", GOOD);
    env.wait("the good version", |s| s.get("host-pressure").is_some());
    env.write("alerts.yaml", &with_between());
    let set = env.wait("the refusal", |s| {
        s.files.values().any(|f| f.error.is_some())
    });
    let file = set.files.values().next().unwrap();
    let error = &file.error.as_ref().unwrap().errors[0];
    assert_eq!((error.line, error.column), (Some(14), Some(24)));
    assert!(error.message.contains("rules[1].condition"), "{error}");
    // The good version runs on, its instance warm from its own `init`.
    let p = set.get("host-pressure").unwrap();
    assert_eq!(p.policy.config["rules"].as_array().unwrap().len(), 1);
    assert!(p.evaluator.as_ref().unwrap().is_warm());
}
