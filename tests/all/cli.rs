//! The `warden` binary as a user runs it.

use std::process::Command;

fn warden(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn plugin_inspect_reports_kind_world_version_imports_size_and_hash() {
    let out = warden(&[
        "plugin",
        "inspect",
        warden_plugins::LINEAR_TREND_COMPONENT,
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["kind"], "detector");
    assert_eq!(info["world"], "detector");
    assert_eq!(info["wit_version"], "0.2.0");
    let bytes = std::fs::read(warden_plugins::LINEAR_TREND_COMPONENT).unwrap();
    assert_eq!(info["size_bytes"], bytes.len() as u64);
    assert_eq!(info["sha256"].as_str().unwrap().len(), 64);
    let imports: Vec<&str> = info["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(imports.contains(&"warden:policy/host@0.2.0"), "{imports:?}");

    let human = warden(&["plugin", "inspect", "builtin:backoff"]);
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(text.contains("kind:        recovery"), "{text}");
    assert!(text.contains("warden:policy/recovery@0.2.0"), "{text}");
    assert!(
        text.contains("wit version: 0.2.0 (warm instances"),
        "{text}"
    );
}

#[test]
fn plugin_inspect_of_a_bad_file_exits_1_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.wasm");
    std::fs::write(&path, "not wasm").unwrap();
    let out = warden(&["plugin", "inspect", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("warden: "), "{err}");
    assert!(err.contains("notes.wasm: not a WebAssembly file"), "{err}");
}
