//! The host's lifting of plugin output, fuzzed below the SDK: two components
//! made here from a hand-written core module — one of the `alert-rule`
//! world, one of `cleanup-strategy` — return, as their call's result area,
//! whatever bytes the fuzzer chose (passed in hex through the policy
//! config). Wasmtime's lifting then reads discriminants, pointers, lengths
//! and strings straight from those bytes, as it would from a hostile plugin;
//! what lifts is then used the way the daemon uses it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use warden_plugin_host::{Engine, EngineOptions, Evaluator, Kind, Limits, NoData, Plugin};

/// Where the core module puts the decoded bytes: its call's result area.
/// Pointers in the fuzzer's bytes that land in this page point into them.
const BUFFER: u32 = 1024;

/// The core module: `config()` is read, its hex decoded into [`BUFFER`], and
/// [`BUFFER`] returned as the result pointer of `export`, whose core
/// signature is `params -> i32`.
fn core_module(export: &str, params: &str) -> String {
    format!(
        r#"(module
  (import "warden:policy/host@0.1.0" "config" (func $config (param i32)))
  (memory (export "memory") 8)
  (global $heap (mut i32) (i32.const 131072))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (drop (memory.grow
          (i32.add
            (i32.div_u
              (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
              (i32.const 65536))
            (i32.const 1))))))
    (local.get $p))
  (func $hex (param $c i32) (result i32)
    (if (result i32) (i32.le_u (local.get $c) (i32.const 57))
      (then (i32.sub (local.get $c) (i32.const 48)))
      (else (i32.sub (local.get $c) (i32.const 87)))))
  (func $decode (result i32)
    (local $ptr i32) (local $n i32) (local $i i32)
    (call $config (i32.const 16))
    ;; The config is a JSON string: skip its quotes.
    (local.set $ptr (i32.add (i32.load (i32.const 16)) (i32.const 1)))
    (local.set $n (i32.shr_u (i32.sub (i32.load (i32.const 20)) (i32.const 2)) (i32.const 1)))
    (if (i32.gt_u (local.get $n) (i32.const 65536)) (then (local.set $n (i32.const 65536))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (i32.store8
          (i32.add (i32.const {BUFFER}) (local.get $i))
          (i32.or
            (i32.shl
              (call $hex (i32.load8_u (i32.add (local.get $ptr) (i32.shl (local.get $i) (i32.const 1)))))
              (i32.const 4))
            (call $hex
              (i32.load8_u
                (i32.add (local.get $ptr) (i32.add (i32.shl (local.get $i) (i32.const 1)) (i32.const 1)))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const {BUFFER}))
  (func (export "{export}") (param {params}) (result i32)
    (call $decode)))
"#
    )
}

/// Wraps the core module into a component of `world`.
fn component(world: &str, export: &str, params: &str) -> Vec<u8> {
    let mut module = wat::parse_str(core_module(export, params)).expect("the core module parses");
    let mut resolve = wit_parser::Resolve::default();
    let wit = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/since_v0.1.0");
    let (package, _) = resolve.push_dir(wit).expect("the WIT package parses");
    let world = resolve
        .select_world(&[package], Some(world))
        .expect("the world exists");
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("metadata embeds");
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .expect("the module is accepted")
        .encode()
        .expect("the component encodes")
}

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
        let load = |bytes: Vec<u8>, kind: Kind| {
            Arc::new(
                engine
                    .load("fuzz", &bytes, Some(kind))
                    .unwrap_or_else(|e| panic!("the {kind:?} harness component loads: {e}")),
            )
        };
        Harness {
            alert: load(
                component(
                    "alert-rule",
                    "warden:policy/alerting@0.1.0#evaluate",
                    "i32 i32 i64 i32",
                ),
                Kind::Alert,
            ),
            cleanup: load(
                component(
                    "cleanup-strategy",
                    "warden:policy/cleanup@0.1.0#plan",
                    "i32",
                ),
                Kind::Cleanup,
            ),
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
        let candidates = warden_runtime::cleanup::walk::scan(&[&h.scope]);
        let Ok(plan) = e.plan(true, candidates.clone()) else {
            return;
        };
        let rules = warden_runtime::cleanup::Rules::new(vec![h.scope.clone()], &[], None, true)
            .expect("rules");
        let _ = warden_runtime::cleanup::execute("fuzz", &rules, &candidates, &plan);
    }
}
