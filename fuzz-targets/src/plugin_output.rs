//! The host's lifting of plugin output, fuzzed below the SDK: two components
//! made by `fuzz/harness` from a hand-written core module — one of the `alert-rule`
//! world, one of `cleanup-strategy` — return, as their call's result area,
//! whatever bytes the fuzzer chose (passed in hex through the policy
//! config). Wasmtime's lifting then reads discriminants, pointers, lengths
//! and strings straight from those bytes, as it would from a hostile plugin;
//! what lifts is then used the way the daemon uses it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use warden_plugin_host::{Engine, EngineOptions, Evaluator, Kind, Limits, NoData, Plugin};

/// The components, made by `fuzz/harness` (see there): a core module whose
/// export returns the bytes of its policy config as its result area,
/// wrapped for each world. Kept as files so that `cargo test` does not build
/// a component encoder; the frozen WIT package means they never go stale.
const ALERT_RULE: &[u8] = include_bytes!("../harness/alert-rule.wasm");
const CLEANUP_STRATEGY: &[u8] = include_bytes!("../harness/cleanup-strategy.wasm");

struct Harness {
    alert: Arc<Plugin>,
    cleanup: Arc<Plugin>,
    /// Three files for cleanup plans to point at (dry runs only: nothing is
    /// deleted).
    scope: std::path::PathBuf,
}

fn scope() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("warden-fuzz-scope-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    for name in ["a.tmp", "b.tmp", "c.log"] {
        let _ = std::fs::write(dir.join(name), b"x");
    }
    dir
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let engine = Engine::new(&EngineOptions::default()).expect("an engine");
        let load = |bytes: &[u8], kind: Kind| {
            Arc::new(
                engine
                    .load("fuzz", bytes, Some(kind))
                    .unwrap_or_else(|e| panic!("the {kind:?} harness component loads: {e}")),
            )
        };
        Harness {
            alert: load(ALERT_RULE, Kind::Alert),
            cleanup: load(CLEANUP_STRATEGY, Kind::Cleanup),
            scope: scope(),
        }
    })
}

fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(2),
        ..Limits::default()
    }
}

fn config(area: &[u8]) -> serde_json::Value {
    serde_json::Value::String(area.iter().map(|b| format!("{b:02x}")).collect())
}

/// The alerts an `alert-rule` plugin returns when its result area holds
/// `area`, or `None` if the host refuses them (the evaluation fails).
pub fn lift_alerts(area: &[u8]) -> Option<Vec<warden_plugin_host::records::Alert>> {
    Evaluator::new(
        Arc::clone(&harness().alert),
        "fuzz",
        &config(area),
        limits(),
        Arc::new(NoData),
    )
    .evaluate_alerts()
    .ok()
}

/// `data[0]` picks the world (even: alert, odd: cleanup); `data[1..]` is
/// the result area the plugin returns.
pub fn plugin_output(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if rest.len() > 32 * 1024 {
        return;
    }
    let h = harness();
    if which & 1 == 0 {
        let Some(alerts) = lift_alerts(rest) else {
            return;
        };
        // As the scheduler does: through the state machine, saved and read
        // back (a state that cannot be read back is a bug).
        let state = warden_runtime::StateStore::default();
        let applied = state.apply_alerts(
            "fuzz.yaml".as_ref(),
            "fuzz",
            &alerts,
            1_000,
            warden_runtime::alerts::Timing::default(),
        );
        let _ = serde_json::to_string(&applied.changed).map(|json| {
            serde_json::from_str::<Vec<warden_runtime::alerts::AlertState>>(&json)
                .expect("alert state reads back")
        });
    } else {
        let e = Evaluator::new(
            Arc::clone(&h.cleanup),
            "fuzz",
            &config(rest),
            limits(),
            Arc::new(NoData),
        );
        // As the scheduler does: the scope pinned, scanned, the plan lifted
        // and executed (dry run: nothing is deleted).
        let scope = warden_runtime::cleanup::Scope::open(
            std::slice::from_ref(&h.scope),
            &warden_runtime::cleanup::Protected {
                data_dir: "/var/lib/warden".into(),
                policies_dir: "/etc/warden/policies".into(),
                allow_system_paths: false,
            },
        )
        .expect("the fuzz scope opens");
        let mut candidates = warden_runtime::cleanup::walk::scan(&scope);
        let Ok(plan) = e.plan_over(true, &mut candidates.set) else {
            return;
        };
        let rules = warden_runtime::cleanup::Rules::new(&[], None, true).expect("rules");
        let _ = warden_runtime::cleanup::execute("fuzz", &rules, &scope, &candidates, &plan);
    }
}
