//! Files that are not usable plugins: each gets an error naming the file and
//! saying what is wrong and what to do.

use warden::plugin::{Kind, LoadError, LoadErrorKind};
use warden_plugins as guests;

use crate::util::engine;

fn load_bytes(bytes: &[u8], kind: Option<Kind>) -> LoadError {
    let (engine, dir) = engine();
    let path = dir.path().join("policy-plugin.wasm");
    std::fs::write(&path, bytes).unwrap();
    let err = engine.load_file(&path, kind).unwrap_err();
    assert!(
        err.to_string().starts_with(&path.display().to_string()),
        "the error names the file: {err}"
    );
    err
}

/// A component exporting `warden:policy/cleanup@VERSION` with a `plan` of the
/// given core signature, plus whatever else `extra` adds.
fn component(version: &str, extra_imports: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(component
            {extra_imports}
            (core module $m (func (export "plan")))
            (core instance $i (instantiate $m))
            (func $plan (canon lift (core func $i "plan")))
            (instance $api (export "plan" (func $plan)))
            (export "warden:policy/cleanup@{version}" (instance $api))
        )"#
    ))
    .unwrap()
}

#[test]
fn not_wasm_at_all() {
    let err = load_bytes(b"#!/bin/sh\nrm -rf /tmp/*\n", None);
    assert!(matches!(err.kind, LoadErrorKind::NotWasm(_)), "{err}");
    assert!(err.to_string().contains("not a WebAssembly file"), "{err}");
    // Whatever the file holds is not repeated, in any form.
    for shown in ["#!", "rm -rf", "23 21"] {
        assert!(!err.to_string().contains(shown), "{err}");
    }
    let empty = load_bytes(b"", None);
    assert!(empty.to_string().contains("the file is empty"), "{empty}");
}

/// Loads `path` as a plugin on another thread; fails if that takes more than
/// 10 s (a device or a FIFO read would never end).
fn load_path(path: &std::path::Path) -> LoadError {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_owned();
    std::thread::spawn(move || {
        let (engine, _dir) = engine();
        let _ = tx.send(engine.load_file(&p, None).map(drop));
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("loading `{}` as a plugin did not end", path.display()))
        .unwrap_err()
}

#[test]
fn devices_fifos_and_directories_are_refused_at_once_by_name() {
    let err = load_path(std::path::Path::new("/dev/zero"));
    assert!(
        err.to_string()
            .starts_with("/dev/zero: is a character device, not a regular file"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("plugin.wasm");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path and a mode.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let err = load_path(&fifo);
    assert!(
        err.to_string().contains("is a FIFO, not a regular file"),
        "{err}"
    );
    assert!(err.to_string().starts_with(fifo.to_str().unwrap()), "{err}");
    let err = load_path(dir.path());
    assert!(err.to_string().contains("is a directory"), "{err}");
}

#[test]
fn a_core_module_instead_of_a_component() {
    let err = load_bytes(
        &wat::parse_str("(module (func (export \"plan\")))").unwrap(),
        None,
    );
    assert!(matches!(err.kind, LoadErrorKind::CoreModule), "{err}");
    assert!(
        err.to_string().contains("wasm32-wasip2"),
        "the error says how to fix it: {err}"
    );
}

#[test]
fn a_component_of_another_world() {
    let bytes = std::fs::read(guests::THRESHOLD_COMPONENT).unwrap();
    let err = load_bytes(&bytes, Some(Kind::Cleanup));
    assert!(
        matches!(
            err.kind,
            LoadErrorKind::WrongKind {
                expected: Kind::Cleanup,
                found: Kind::Alert,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(
            "is a alert plugin (world `alert-rule`), but the policy is of kind `cleanup`"
        ),
        "{err}"
    );
}

#[test]
fn a_component_of_another_wit_version() {
    let err = load_bytes(&component("0.9.0", ""), None);
    match &err.kind {
        LoadErrorKind::UnsupportedVersion { found, supported } => {
            assert_eq!(found, "0.9.0");
            assert_eq!(supported, "`0.1.0`, `0.2.0`, `0.3.0`");
        }
        _ => panic!("{err}"),
    }
    assert!(
        err.to_string()
            .contains("built against `warden:policy@0.9.0`, which this warden does not support (it supports `0.1.0`, `0.2.0`, `0.3.0`)"),
        "{err}"
    );
}

#[test]
fn a_component_importing_what_warden_does_not_provide() {
    let err = load_bytes(
        &component(
            "0.1.0",
            r#"(import "acme:db/query@1.0.0" (instance (export "run" (func))))"#,
        ),
        None,
    );
    assert!(
        matches!(&err.kind, LoadErrorKind::UnknownImport { import } if import == "acme:db/query@1.0.0"),
        "{err}"
    );
    assert!(
        err.to_string().contains("which Warden does not provide"),
        "{err}"
    );
}

#[test]
fn a_component_whose_export_has_the_wrong_shape() {
    // Right name, wrong signature: `plan` takes nothing here.
    let err = load_bytes(&component("0.1.0", ""), Some(Kind::Cleanup));
    assert!(matches!(err.kind, LoadErrorKind::Link(_)), "{err}");
    assert!(
        err.to_string()
            .contains("does not match the `cleanup-strategy` world"),
        "{err}"
    );
}

#[test]
fn a_component_that_is_no_policy() {
    let bytes = wat::parse_str(r#"(component (core module $m (func (export "f"))) (core instance $i (instantiate $m)) (func (export "run") (canon lift (core func $i "f"))))"#).unwrap();
    let err = load_bytes(&bytes, None);
    assert!(
        matches!(err.kind, LoadErrorKind::NotAPolicy { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("it exports `run`"), "{err}");
}

#[test]
fn a_truncated_component() {
    let bytes = std::fs::read(guests::TEMP_FILES_COMPONENT).unwrap();
    let err = load_bytes(&bytes[..bytes.len() / 2], None);
    assert!(matches!(err.kind, LoadErrorKind::Invalid(_)), "{err}");
}

#[test]
fn an_unknown_builtin_lists_the_shipped_ones() {
    let (engine, _dir) = engine();
    let err = engine.load_builtin("tmp-files", None).unwrap_err();
    assert!(err.to_string().contains("temp-files"), "{err}");
}
