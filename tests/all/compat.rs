//! Plugins built against an older WIT contract keep loading and working:
//! `tests/fixtures/threshold-wit-0.1.0.wasm` and `threshold-wit-0.2.0.wasm`
//! are the shipped threshold rule as warden-sdk 0.1 and 0.2 built it, frozen.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use serde_json::json;
use warden::clock::now_ms;
use warden::plugin::{Isolation, Kind, Limits};
use warden::sources::Sources;

use crate::daemon::Daemon;
use crate::util::{bind_with, engine};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/threshold-wit-0.1.0.wasm")
}

/// Memory in use on two hosts, one of them above 0.9.
fn two_hosts() -> Sources {
    let sources = Sources::default();
    for (host, v) in [("a", 0.95), ("b", 0.5)] {
        sources
            .series
            .record("memory_used_ratio", &[("host", host)], now_ms() - 1000, v)
            .unwrap();
    }
    sources
}

fn fixture_0_2_0() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/threshold-wit-0.2.0.wasm")
}

#[test]
fn a_plugin_built_for_0_2_0_stays_warm_and_reads_samples_as_before() {
    let (engine, _dir) = engine();
    let plugin = Arc::new(
        engine
            .load_file(&fixture_0_2_0(), Some(Kind::Alert))
            .unwrap(),
    );
    assert_eq!(plugin.info().wit_version, "0.2.0");
    let imports = &plugin.info().imports;
    assert!(
        imports.contains(&"warden:policy/host@0.2.0".to_owned()),
        "{imports:?}"
    );
    let sources = two_hosts();
    let config = json!({ "rules": [
        { "alert": "HighMemory", "metric": "memory_used_ratio", "over": "avg", "condition": "gt", "threshold": 0.9 }
    ]});
    let policy = bind_with(
        &plugin,
        "old",
        &config,
        Limits::default(),
        Arc::new(sources),
    );
    assert!(policy.is_warm());
    policy.prepare().unwrap();
    let before = engine.stats().instantiations;
    for _ in 0..3 {
        let alerts = policy.evaluate_alerts().unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].labels, vec![("host".into(), "a".into())]);
        assert_eq!(alerts[0].value, 0.95);
    }
    // One instance served them all.
    assert_eq!(engine.stats().instantiations, before);
}

#[test]
fn a_plugin_built_for_0_1_0_loads_and_evaluates_fresh_every_time() {
    let (engine, _dir) = engine();
    let plugin = Arc::new(engine.load_file(&fixture(), Some(Kind::Alert)).unwrap());
    assert_eq!(plugin.info().wit_version, "0.1.0");
    assert!(
        plugin
            .info()
            .imports
            .contains(&"warden:policy/host@0.1.0".to_owned())
    );
    let sources = two_hosts();
    let config = json!({ "rules": [
        { "alert": "HighMemory", "metric": "memory_used_ratio", "condition": "gt", "threshold": 0.9 }
    ]});
    // Asked for warm, it is still evaluated fresh: 0.1.0 promised that.
    let policy = bind_with(
        &plugin,
        "old",
        &config,
        Limits::default(),
        Arc::new(sources),
    )
    .with_isolation(Isolation::default());
    assert!(!policy.is_warm());
    policy.prepare().unwrap();
    let before = engine.stats().instantiations;
    for _ in 0..2 {
        let alerts = policy.evaluate_alerts().unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].labels, vec![("host".into(), "a".into())]);
    }
    assert_eq!(engine.stats().instantiations, before + 2);
}

#[test]
fn inspect_check_and_the_daemon_run_a_0_1_0_plugin() {
    let warden = env!("CARGO_BIN_EXE_warden");
    let out = Command::new(warden)
        .args(["plugin", "inspect", fixture().to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("wit version: 0.1.0 (a fresh instance"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::copy(fixture(), dir.path().join("policies/old.wasm")).unwrap();
    // Every system has memory in use: the rule fires at the first collection.
    let policy = "policies:\n  - name: old-rule\n    kind: alert\n    plugin: old.wasm\n    trigger:\n      interval: 200ms\n    config:\n      rules:\n        - {alert: MemoryInUse, metric: memory_used_ratio, condition: gt, threshold: 0}\n";
    std::fs::write(dir.path().join("policies/old.yaml"), policy).unwrap();
    let check = Command::new(warden)
        .args(["check", "policies"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // What 0.1.0 cannot do is refused by name.
    std::fs::write(
        dir.path().join("bad.yaml"),
        policy
            .replace("old.wasm", "policies/old.wasm")
            .replace("    trigger:", "    state_limit: 2MiB\n    trigger:"),
    )
    .unwrap();
    let refused = Command::new(warden)
        .args(["check", "bad.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(
        text.contains("`state_limit` needs a plugin built against WIT 0.2.0"),
        "{text}"
    );
    std::fs::remove_file(dir.path().join("bad.yaml")).unwrap();

    let d = Daemon::start_in(dir, None);
    let s = d.until("the 0.1.0 rule fires", |s| {
        s["policies"][0]["state"]["last"]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("1 alerts firing"))
    });
    assert_eq!(s["policies"][0]["wit_version"], "0.1.0");
    d.stop();
}
