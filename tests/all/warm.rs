//! Warm instances and plugin state (WIT 0.2.0), through the real engine with
//! the `memory` test guest, which reports what its instance remembers
//! (`Served`, `Inits`) and what the host keeps for it (`Stored`).

use std::sync::Arc;

use serde_json::json;
use warden::plugin::{
    EvalFailure, Evaluator, Isolation, Kind, Limits, MemoryStates, NoData, PolicyId,
};

use crate::util::{engine, load};

/// What one evaluation of the memory guest reported: (served, inits, stored).
fn seen(e: &Evaluator) -> (f64, f64, f64) {
    let alerts = e.evaluate_alerts().unwrap();
    let v = |n: &str| alerts.iter().find(|a| a.name == n).unwrap().value;
    (v("Served"), v("Inits"), v("Stored"))
}

fn memory(config: serde_json::Value, isolation: Isolation) -> (Evaluator, warden::plugin::Engine, tempfile::TempDir) {
    let (engine, dir) = engine();
    let plugin = load(&engine, warden_plugins::MEMORY_COMPONENT, Kind::Alert);
    let e = Evaluator::new(plugin, "mem", &config, Limits::default(), Arc::new(NoData))
        .with_isolation(isolation);
    (e, engine, dir)
}

#[test]
fn a_warm_instance_is_initialized_once_and_serves_every_evaluation() {
    let (e, engine, _dir) = memory(json!({}), Isolation::default());
    assert!(e.is_warm());
    e.prepare().unwrap();
    assert_eq!(seen(&e), (1.0, 1.0, 1.0));
    assert_eq!(seen(&e), (2.0, 1.0, 2.0));
    assert_eq!(seen(&e.clone()), (3.0, 1.0, 3.0), "clones share the instance");
    assert_eq!(engine.stats().instantiations, 1);
    assert_eq!(engine.stats().recycles, 0);
}

#[test]
fn recycle_after_replaces_the_instance_and_state_carries_on() {
    let (e, engine, _dir) = memory(json!({}), Isolation::Warm { recycle_after: 2 });
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
    let (e, engine, _dir) = memory(json!({ "panic_on": 2 }), Isolation::default());
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
    let (e, engine, _dir) = memory(json!({}), Isolation::Fresh);
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
        Evaluator::new(Arc::clone(&plugin), name, &config, Limits::default(), Arc::new(NoData))
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
    let (e, _engine, _dir) = memory(json!({ "panic_on": "soon" }), Isolation::default());
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
