//! Warm instances and plugin state (WIT 0.2.0), through the real engine with
//! the `memory` test guest, which reports what its instance remembers
//! (`Served`, `Inits`) and what the host keeps for it (`Stored`).

use std::sync::Arc;

use serde_json::json;
use warden::plugin::{
    EvalFailure, Evaluator, Isolation, Kind, Limits, MemoryStates, NoData, PolicyId,
};

use crate::daemon::Daemon;
use crate::util::{engine, load};

/// What one evaluation of the memory guest reported: (served, inits, stored).
fn seen(e: &Evaluator) -> (f64, f64, f64) {
    let alerts = e.evaluate_alerts().unwrap();
    let v = |n: &str| alerts.iter().find(|a| a.name == n).unwrap().value;
    (v("Served"), v("Inits"), v("Stored"))
}

fn memory(
    config: &serde_json::Value,
    isolation: Isolation,
) -> (Evaluator, warden::plugin::Engine, tempfile::TempDir) {
    let (engine, dir) = engine();
    let plugin = load(&engine, warden_plugins::MEMORY_COMPONENT, Kind::Alert);
    let e = Evaluator::new(plugin, "mem", config, Limits::default(), Arc::new(NoData))
        .with_isolation(isolation);
    (e, engine, dir)
}

#[test]
fn a_warm_instance_is_initialized_once_and_serves_every_evaluation() {
    let (e, engine, _dir) = memory(&json!({}), Isolation::default());
    assert!(e.is_warm());
    e.prepare().unwrap();
    assert_eq!(seen(&e), (1.0, 1.0, 1.0));
    assert_eq!(seen(&e), (2.0, 1.0, 2.0));
    assert_eq!(
        seen(&e.clone()),
        (3.0, 1.0, 3.0),
        "clones share the instance"
    );
    assert_eq!(engine.stats().instantiations, 1);
    assert_eq!(engine.stats().recycles, 0);
}

#[test]
fn recycle_after_replaces_the_instance_and_state_carries_on() {
    let (e, engine, _dir) = memory(&json!({}), Isolation::Warm { recycle_after: 2 });
    let served: Vec<(f64, f64, f64)> = (0..5).map(|_| seen(&e)).collect();
    assert_eq!(
        served,
        vec![
            (1.0, 1.0, 1.0),
            (2.0, 1.0, 2.0),
            (1.0, 1.0, 3.0),
            (2.0, 1.0, 4.0),
            (1.0, 1.0, 5.0)
        ]
    );
    assert_eq!(engine.stats().recycles, 2);
    assert_eq!(engine.stats().instantiations, 3);
}

#[test]
fn a_trap_recycles_the_instance_and_forgets_what_the_call_stored() {
    let (e, engine, _dir) = memory(&json!({ "panic_on": 2 }), Isolation::default());
    assert_eq!(seen(&e), (1.0, 1.0, 1.0));
    let err = e.evaluate_alerts().unwrap_err();
    assert!(
        matches!(&err.failure, EvalFailure::Trap { stderr: Some(m), .. } if m.contains("panics at evaluation 2")),
        "{err}"
    );
    // A new instance (served from 1 again), and the trapped call's store of
    // 2 was never kept: the counter goes on from 1.
    assert_eq!(seen(&e), (1.0, 1.0, 2.0));
    assert_eq!(engine.stats().recycles, 1);
}

#[test]
fn fresh_isolation_starts_every_evaluation_from_nothing_but_state() {
    let (e, engine, _dir) = memory(&json!({}), Isolation::Fresh);
    assert!(!e.is_warm());
    for stored in 1..=3 {
        assert_eq!(seen(&e), (1.0, 1.0, f64::from(stored)));
    }
    assert_eq!(engine.stats().instantiations, 3);
}

#[test]
fn plugin_state_is_capped_and_belongs_to_its_policy() {
    let (engine, _dir) = engine();
    let plugin = load(&engine, warden_plugins::MEMORY_COMPONENT, Kind::Alert);
    let states = Arc::new(MemoryStates::default());
    let bind = |name: &str, config: serde_json::Value, limit: u64| {
        Evaluator::new(
            Arc::clone(&plugin),
            name,
            &config,
            Limits::default(),
            Arc::new(NoData),
        )
        .with_state(
            Arc::clone(&states) as _,
            PolicyId {
                file: "p.yaml".into(),
                name: name.into(),
            },
            limit,
        )
    };
    let a = bind("a", json!({}), 1024);
    let b = bind("b", json!({}), 1024);
    assert_eq!(seen(&a).2, 1.0);
    assert_eq!(seen(&a).2, 2.0);
    assert_eq!(seen(&b).2, 1.0, "another policy has its own state");
    // A new evaluator for the same identity (a reload) finds it again.
    assert_eq!(seen(&bind("a", json!({}), 1024)).2, 3.0);
    // Over the cap: the plugin is told, and reports it.
    let big = bind("big", json!({ "state_bytes": 100 }), 50);
    let err = big.evaluate_alerts().unwrap_err();
    assert!(
        matches!(&err.failure, EvalFailure::Plugin(m) if m.contains("state_limit") && m.contains("50 bytes")),
        "{err}"
    );
    // Clearing forgets it.
    seen(&bind("a", json!({ "clear": true }), 1024));
    assert_eq!(seen(&bind("a", json!({}), 1024)).2, 1.0);
}

#[test]
fn init_refuses_a_config_with_the_path_of_the_field() {
    let (e, _engine, _dir) = memory(&json!({ "panic_on": "soon" }), Isolation::default());
    let err = e.prepare().unwrap_err();
    let EvalFailure::InvalidConfig(errors) = &err.failure else {
        panic!("{err}");
    };
    assert_eq!(errors[0].path, "panic_on");
    assert!(errors[0].message.contains("invalid type"), "{errors:?}");
    // An evaluation without `prepare` reports it the same way.
    assert!(matches!(
        e.evaluate_alerts().unwrap_err().failure,
        EvalFailure::InvalidConfig(_)
    ));
}

/// The memory guest's (served, stored) for `policy`, as the daemon's alert
/// state shows them.
fn values(d: &Daemon, policy: &str) -> Option<(f64, f64)> {
    let alerts = crate::http::get(&d.addr, &format!("/api/v1/alerts?policy={policy}"));
    let v = |n: &str| alerts.as_array()?.iter().find(|a| a["name"] == n)?["value"].as_f64();
    Some((v("Served")?, v("Stored")?))
}

/// Waits until `cond` holds for `policy`'s (served, stored) and returns them.
fn wait_values(
    d: &Daemon,
    policy: &str,
    what: &str,
    cond: impl Fn(f64, f64) -> bool,
) -> (f64, f64) {
    let mut last = None;
    crate::http::wait(what, 30, || {
        last = values(d, policy);
        last.is_some_and(|(s, t)| cond(s, t))
    });
    last.unwrap()
}

fn state_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("warden-data/state/plugins"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect()
}

#[test]
fn the_daemon_keeps_plugin_state_across_reloads_and_restarts_and_drops_it_with_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::copy(
        warden_plugins::MEMORY_COMPONENT,
        dir.path().join("policies/mem.wasm"),
    )
    .unwrap();
    let policy = |name: &str, config: &str| {
        format!(
            "policies:\n  - name: {name}\n    kind: alert\n    plugin: mem.wasm\n    trigger:\n      interval: 100ms\n    config: {config}\n"
        )
    };
    let file = dir.path().join("policies/mem.yaml");
    std::fs::write(&file, policy("mem", "{}")).unwrap();
    let d = Daemon::start_in(dir, None);
    // One warm instance from the start: it served every evaluation it stored.
    let (served, stored) = wait_values(&d, "mem", "three evaluations", |_, t| t >= 3.0);
    assert_eq!(served, stored);

    // A config change: a new instance (served restarts), the same state.
    std::fs::write(&file, policy("mem", "{panic_on: 1000000}")).unwrap();
    wait_values(&d, "mem", "a new instance on the kept state", |s, t| {
        s < t && t > stored
    });
    let (_, before_stop) = wait_values(&d, "mem", "some evaluations on it", |s, _| s >= 5.0);
    let dir = d.stop();
    assert_eq!(state_files(dir.path()).len(), 1);

    // A restart: a new instance, the state read back from disk.
    let d = Daemon::start_in(dir, None);
    wait_values(&d, "mem", "the state after a restart", |s, t| {
        s <= 3.0 && t > before_stop
    });

    // Renamed, it is another policy: its own state from nothing, and the old
    // one's is dropped, on disk too.
    std::fs::write(
        d.dir.path().join("policies/mem.yaml"),
        policy("renamed", "{}"),
    )
    .unwrap();
    let (served, stored) = wait_values(&d, "renamed", "the renamed policy", |s, _| s >= 2.0);
    assert!(stored <= served, "{stored} > {served}: it inherited state");
    crate::http::wait("the old policy's state file to go", 10, || {
        let files = state_files(d.dir.path());
        files.len() == 1 && files[0].contains("\"policy\":\"renamed\"")
    });
    d.stop();
}
