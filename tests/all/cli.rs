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
    assert_eq!(info["wit_version"], "0.3.0");
    let bytes = std::fs::read(warden_plugins::LINEAR_TREND_COMPONENT).unwrap();
    assert_eq!(info["size_bytes"], bytes.len() as u64);
    assert_eq!(info["sha256"].as_str().unwrap().len(), 64);
    let imports: Vec<&str> = info["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(imports.contains(&"warden:policy/host@0.3.0"), "{imports:?}");

    let human = warden(&["plugin", "inspect", "builtin:backoff"]);
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(text.contains("kind:        recovery"), "{text}");
    assert!(text.contains("warden:policy/recovery@0.3.0"), "{text}");
    assert!(
        text.contains("wit version: 0.3.0 (warm instances"),
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

/// Runs `warden` with `args`, failing the test if it has not ended after
/// `secs` seconds (a read that blocks or never ends would hang it).
fn warden_within(secs: u64, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > std::time::Duration::from_secs(secs) {
            let _ = child.kill();
            panic!("`warden {}` did not end within {secs} s", args.join(" "));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path and a mode.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

#[test]
fn check_refuses_devices_fifos_and_second_documents_at_once_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cleanup = |name: &str, plugin: &str| {
        format!(
            "policies:\n  - name: {name}\n    kind: cleanup\n    plugin: {plugin}\n    config: {{max_age: 1d}}\n"
        )
    };
    std::fs::write(d.join("zero.yaml"), cleanup("zero", "/dev/zero")).unwrap();
    mkfifo(&d.join("pipe.wasm"));
    std::fs::write(d.join("piped.yaml"), cleanup("piped", "pipe.wasm")).unwrap();
    mkfifo(&d.join("fifo.yaml"));
    std::fs::write(d.join("two.yaml"), "policies: []\n---\npolicies: []\n").unwrap();
    let out = warden_within(60, &["check", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "plugin `/dev/zero`: is a character device, not a regular file".to_owned(),
        format!("plugin `{}`: is a FIFO", d.join("pipe.wasm").display()),
        format!(
            "{}: the policy file is a FIFO",
            d.join("fifo.yaml").display()
        ),
        format!(
            "{}:2:1: a second YAML document",
            d.join("two.yaml").display()
        ),
    ] {
        assert!(text.contains(&expected), "no `{expected}` in:\n{text}");
    }
}

#[test]
fn check_warns_about_scope_parents_other_users_can_write() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home/alice");
    std::fs::create_dir_all(home.join("app/log")).unwrap();
    std::os::unix::fs::chown(&home, Some(1000), None).unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let policy = dir.path().join("policies/p.yaml");
    std::fs::write(
        &policy,
        format!(
            "policies:\n  - name: logs\n    kind: cleanup\n    plugin: temp-files\n    scope:\n      paths: [\"{}\"]\n    config: {{max_age: 1d}}\n",
            home.join("app/log").display()
        ),
    )
    .unwrap();
    let out = warden(&["check", policy.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning is not an error: {text}"
    );
    assert!(
        text.contains("warning: ")
            && text.contains(&format!("`{}`", home.display()))
            && text.contains("uid 1000"),
        "{text}"
    );
}
