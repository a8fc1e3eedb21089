//! `warden plugin new`: a plugin crate that builds outside this repository
//! with one command, has a native unit test, and a policy that uses it.

use std::path::{Path, PathBuf};

use anyhow::Context;

use warden::plugin::Kind;

/// Where the SDK was when this binary was built; the default dependency of
/// scaffolded crates when it is still there.
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/sdk");

/// A scaffolded crate.
pub(crate) struct Scaffold {
    /// Its directory.
    pub(crate) dir: PathBuf,
    /// The policy YAML that uses it.
    pub(crate) policy: String,
}

/// Returns true if and only if `name` can be a crate (and component) name.
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.len() <= 64
}

/// Writes a `kind` plugin crate called `name` into `dir` (`./NAME` when
/// absent), depending on the SDK at `sdk` (the one this warden was built
/// from when absent).
pub(crate) fn new(
    kind: Kind,
    name: &str,
    dir: Option<&Path>,
    sdk: Option<&Path>,
) -> anyhow::Result<Scaffold> {
    anyhow::ensure!(
        valid_name(name),
        "`{name}` cannot name a plugin crate: use lowercase letters, digits, `-` and `_`, starting with a letter"
    );
    let sdk = match sdk {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from(BUILT_SDK),
    };
    let sdk = sdk.canonicalize().ok().filter(|p| p.join("Cargo.toml").is_file()).with_context(|| {
        format!(
            "cannot find warden-sdk at `{}`; pass `--sdk PATH` with the `plugins/sdk` folder of a Warden checkout",
            sdk.display()
        )
    })?;
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from(name),
    };
    anyhow::ensure!(
        !dir.exists() || dir.read_dir().is_ok_and(|mut d| d.next().is_none()),
        "`{}` already exists and is not empty; choose another directory",
        dir.display()
    );
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("failed to create `{}`", dir.display()))?;
    let dir = dir.canonicalize()?;
    let lib = name.replace('-', "_");
    let sdk_dep = format!("{{ path = {:?} }}", sdk.display().to_string());
    let sdk_mock = format!(
        "{{ path = {:?}, features = [\"mock\"] }}",
        sdk.display().to_string()
    );
    let source = match kind {
        Kind::Cleanup => include_str!("scaffold/cleanup.rs.in"),
        Kind::Recovery => include_str!("scaffold/recovery.rs.in"),
        Kind::Alert => include_str!("scaffold/alert.rs.in"),
        Kind::Detector => include_str!("scaffold/detector.rs.in"),
    };
    let alert_name: String = name
        .split(['-', '_'])
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let source = source
        .replace("{name}", name)
        .replace("{alert_name}", &alert_name);
    let wasm = dir
        .join("target/wasm32-wasip2/release")
        .join(format!("{lib}.wasm"));
    let policy = policy_yaml(kind, name, &wasm);
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk_dep, &sdk_mock)),
        ("src/lib.rs", source),
        ("README.md", readme(kind, name, &lib)),
        ("policy.yaml", policy.clone()),
        (".gitignore", "/target\n".to_owned()),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text)
            .with_context(|| format!("failed to write `{}`", path.display()))?;
    }
    Ok(Scaffold { dir, policy })
}

fn cargo_toml(name: &str, sdk: &str, sdk_mock: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

# A Warden policy plugin: a WebAssembly component. Build it with
#     cargo build --release --target wasm32-wasip2
# and test it natively with `cargo test`.
[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
warden-sdk = {sdk}
serde = {{ version = "1", features = ["derive"] }}

[dev-dependencies]
# The SDK's mock host serves series, resources and state to native tests.
warden-sdk = {sdk_mock}

[profile.release]
lto = true
codegen-units = 1
strip = "debuginfo"

# Its own workspace, wherever it is put.
[workspace]
"#
    )
}

fn readme(kind: Kind, name: &str, lib: &str) -> String {
    format!(
        "# {name}\n\nA Warden {kind} plugin.\n\n\
         Build (once: `rustup target add wasm32-wasip2`):\n\n\
         ```sh\ncargo build --release --target wasm32-wasip2\n```\n\n\
         The component is `target/wasm32-wasip2/release/{lib}.wasm`. `policy.yaml` \
         uses it: copy it into Warden's policies directory and check it with \
         `warden check policy.yaml`, which also runs the plugin's `init` on its config.\n\n\
         Test natively: `cargo test`.\n"
    )
}

fn policy_yaml(kind: Kind, name: &str, wasm: &Path) -> String {
    let (trigger, extra, config) = match kind {
        Kind::Cleanup => (
            "interval: 10m",
            "    scope:\n      paths: [\"${data_dir}/scratch\"]\n    dry_run: true\n",
            "      max_age: 7d\n",
        ),
        Kind::Recovery => (
            "event: failure-reported",
            "",
            "      delay: 500ms\n      max_attempts: 3\n",
        ),
        Kind::Alert => (
            "interval: 30s",
            "",
            "      metric: memory_used_ratio\n      threshold: 0.9\n",
        ),
        Kind::Detector => (
            "interval: 1m",
            "",
            "      metric: open_fds\n      max_growth: 100\n",
        ),
    };
    format!(
        "policies:\n  - name: {name}\n    kind: {kind}\n    plugin: {}\n    trigger:\n      {trigger}\n{extra}    config:\n{config}",
        wasm.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_suit_a_crate() {
        assert!(valid_name("disk-guard_2"));
        for bad in ["", "2x", "Big", "a b", "../x", "a/b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
