//! Writes `fuzz-targets/harness/{alert-rule,cleanup-strategy}.wasm`: a
//! hand-written core module wrapped into a component of each world of
//! Warden's WIT package. The core module's export returns, as its call's
//! result area, whatever bytes the policy config holds (in hex), so the
//! fuzzer chooses what the host lifts.

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
    let wit = concat!(env!("CARGO_MANIFEST_DIR"), "/../../wit/since_v0.1.0");
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

fn main() {
    let out = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz-targets/harness");
    for (world, export, params) in [
        ("alert-rule", "warden:policy/alerting@0.1.0#evaluate", "i32 i32 i64 i32"),
        ("cleanup-strategy", "warden:policy/cleanup@0.1.0#plan", "i32"),
    ] {
        let path = format!("{out}/{world}.wasm");
        std::fs::write(&path, component(world, export, params)).expect("the component is written");
        println!("wrote {path}");
    }
}
