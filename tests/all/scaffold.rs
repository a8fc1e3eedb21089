//! `warden plugin new` as a plugin author outside this repository uses it:
//! scaffold into a temporary directory, build with the one documented command
//! (`cargo build --release --target wasm32-wasip2`, the SDK as a path
//! dependency), run the crate's native test, `warden check` its policy and
//! run it end to end through the daemon.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::daemon::Daemon;

const KINDS: [&str; 4] = ["cleanup", "recovery", "alert", "detector"];

/// Where the scaffolded crates build: one directory for all of them and for
/// every run, inside this build's target directory, so their dependencies are
/// compiled once.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/release/deps/integration-… → target
    exe.ancestors().nth(3).unwrap().join("scaffolded-plugins")
}

/// The toolchain this repository pins (with its wasm target), for a crate
/// outside it: `rust-toolchain.toml` does not reach a temporary directory.
fn toolchain() -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rust-toolchain.toml"),
    )
    .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

/// `cargo ARGS` in `dir` as a plugin author runs it: none of the variables
/// the cargo running this test set.
fn cargo(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new("cargo");
    cmd.args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("RUSTUP_TOOLCHAIN", toolchain());
    for (k, _) in std::env::vars() {
        if (k.starts_with("CARGO_") && k != "CARGO_HOME")
            || k.starts_with("RUSTC")
            || k == "RUSTFLAGS"
        {
            cmd.env_remove(&k);
        }
    }
    cmd.env("CARGO_TARGET_DIR", target_dir());
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cargo is needed to build scaffolded plugins and could not run: {e}")
    });
    assert!(
        out.status.success(),
        "`cargo {}` in {} failed:\n{}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn warden(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn scaffolded_plugins_build_out_of_tree_check_and_run() {
    // Outside the repository: a fresh temporary directory.
    let authors = tempfile::tempdir().unwrap();
    for kind in KINDS {
        let name = format!("my-{kind}");
        let out = warden(authors.path(), &["plugin", "new", "--kind", kind, &name]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("cargo build --release --target wasm32-wasip2"),
            "{text}"
        );
        assert!(text.contains(&format!("kind: {kind}")), "{text}");
        let crate_dir = authors.path().join(&name);
        cargo(
            &crate_dir,
            &["build", "--release", "--target", "wasm32-wasip2"],
        );
        cargo(&crate_dir, &["test"]);
        let wasm = target_dir()
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        assert!(wasm.is_file(), "no component at {}", wasm.display());
    }
    // Refuses to write over a crate.
    let again = warden(
        authors.path(),
        &["plugin", "new", "--kind", "alert", "my-alert"],
    );
    assert_eq!(again.status.code(), Some(2));

    // The policies the scaffold printed, pointing at the components where the
    // shared target directory put them; the alert rule fires at any memory use.
    let run = tempfile::tempdir().unwrap();
    std::fs::create_dir(run.path().join("policies")).unwrap();
    for kind in KINDS {
        let name = format!("my-{kind}");
        let lib = name.replace('-', "_");
        let yaml = std::fs::read_to_string(authors.path().join(&name).join("policy.yaml")).unwrap();
        let yaml = yaml
            .replace(
                &authors
                    .path()
                    .canonicalize()
                    .unwrap()
                    .join(&name)
                    .join("target")
                    .display()
                    .to_string(),
                &target_dir().display().to_string(),
            )
            .replace("threshold: 0.9", "threshold: -1")
            .replace("interval: 30s", "interval: 200ms");
        assert!(yaml.contains(&format!("{lib}.wasm")), "{yaml}");
        std::fs::write(run.path().join(format!("policies/{name}.yaml")), yaml).unwrap();
    }
    let check = warden(run.path(), &["check", "policies"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // Its `init` reads the config: a bad one is refused at its line.
    let bad = std::fs::read_to_string(run.path().join("policies/my-alert.yaml"))
        .unwrap()
        .replace("threshold: -1", "threshold: high");
    std::fs::write(run.path().join("bad.yaml"), &bad).unwrap();
    let refused = warden(run.path(), &["check", "bad.yaml"]);
    let text = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(
        text.contains("policy `my-alert`: threshold: invalid type"),
        "{text}"
    );
    std::fs::remove_file(run.path().join("bad.yaml")).unwrap();

    let d = Daemon::start_in(run, None);
    let s = d.until("the scaffolded alert rule fires", |s| {
        s["policies"].as_array().is_some_and(|ps| {
            ps.iter().any(|p| {
                p["name"] == "my-alert"
                    && p["state"]["last"]["detail"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("1 alerts firing"))
            })
        })
    });
    let mine = s["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "my-alert")
        .unwrap();
    assert_eq!(mine["wit_version"], "0.3.0");
    d.stop();
}
