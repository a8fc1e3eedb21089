//! # warden-sdk
//!
//! Write the logic of a Warden policy — a cleanup strategy, a recovery strategy, an
//! alert rule or a detector — as a WebAssembly component. A plugin never touches
//! the machine: it reads a snapshot and returns decisions; the Warden host checks
//! them against the scope the policy's YAML grants and acts.
//!
//! A plugin is one `cdylib` crate built for `wasm32-wasip2`:
//!
//! ```ignore
//! use warden_sdk::cleanup::{CleanupContext, CleanupStrategy, Plan};
//!
//! #[derive(serde::Deserialize)]
//! struct Config { max_size_bytes: u64 }
//!
//! struct BigFiles(Config);
//!
//! impl CleanupStrategy for BigFiles {
//!     type Config = Config;
//!     fn new(config: Config) -> warden_sdk::Result<Self> { Ok(BigFiles(config)) }
//!     fn plan(&self, ctx: &CleanupContext) -> warden_sdk::Result<Plan> {
//!         let mut plan = Plan::new();
//!         for file in ctx.candidates().iter() {
//!             if file.size_bytes() > self.0.max_size_bytes {
//!                 plan.delete(&file, "larger than max_size_bytes");
//!             }
//!         }
//!         Ok(plan)
//!     }
//! }
//!
//! warden_sdk::register_cleanup!(BigFiles);
//! ```
//!
//! # Key types
//!
//! - [`cleanup::CleanupStrategy`], [`recovery::RecoveryStrategy`],
//!   [`alert::AlertRule`], [`detector::Detector`]: one trait per policy kind.
//! - [`register_cleanup!`], [`register_recovery!`], [`register_alert_rule!`],
//!   [`register_detector!`]: export a type as the plugin.
//! - [`resources::ResourceSet`]: a batch of resources, with borrowed views.
//! - [`series::query`]: read a window of series from the host.
//! - [`log`]: write to the host's log.
//! - [`labels`]: the labels the host puts on registered resources.
//!
//! - [`state`]: a typed value the host keeps for the policy across
//!   evaluations, reloads and restarts.
//! - [`config::parse`]: what the host's `init` does with a config, for tests.
//! - `mock` (feature `mock`): a host for native unit tests, serving series,
//!   resources and state from fixtures.
//!
//! The plugin's `config:` block from its YAML file arrives as the trait's
//! `Config` type, deserialized with serde when the host calls `init` — by
//! `warden check` and before a reload puts the policy live, so a config that
//! does not fit is refused with the path of the offending field (which the
//! host turns into a line and column) before it ever runs. `new` may refuse
//! it too, with [`Error::at`] to point at a field.
//!
//! # Across evaluations
//!
//! Since WIT 0.2.0 an instance is warm: `new` runs once per instance and the
//! value it returns serves many evaluations. Memory is not a place to keep
//! anything that matters — the host replaces the instance after a trap, a
//! memory-limit hit, a config change and every `recycle_after` evaluations —
//! but it may cache what it derived from the config. What must persist goes
//! through [`state`].
//!
//! # Crate features
//!
//! - `mock` (off by default): the [`mock`] host for native tests.
//!
//! # Limits every evaluation runs under
//!
//! The policy's `timeout` bounds the whole evaluation, host calls included: a
//! plugin may block (`std::thread::sleep`, a WASI clock pollable), but the
//! host wakes it no later than the deadline and ends the evaluation as a
//! timeout, exactly as for a plugin that computes too long. Nothing else a
//! plugin can reach blocks: stdout and stderr are captured, stdin is empty,
//! and no file, socket or name lookup is granted. Also bounded, each failing
//! the evaluation with a typed error: memory and tables (`memory_limit`),
//! what the plan returns to the host (`output_limit`: `output_too_large`,
//! and at most 1,000 notices), and what [`series::query`] and listing
//! resources may read across one evaluation (`query_limit`: past it the
//! call returns an error the plugin sees).

#![deny(missing_docs)]

pub mod alert;
pub mod cleanup;
pub mod config;
pub mod detector;
mod error;
pub mod labels;
pub mod log;
#[cfg(feature = "mock")]
pub mod mock;
pub mod recovery;
pub mod resources;
pub mod series;
pub mod state;

// The host's imports: the component's own, or the mock host's in native tests.
#[cfg_attr(
    all(feature = "mock", not(target_arch = "wasm32")),
    path = "host_mock.rs"
)]
mod host;

pub use config::ConfigError;
pub use error::{Error, Result};

/// The WIT package version this SDK builds plugins against.
pub const WIT_VERSION: &str = "0.3.0";

/// Generated bindings, one module per world. Private: the public API re-exports
/// the types it needs so any of them can later be replaced by a hand-written one.
#[doc(hidden)]
pub mod __bindings {
    /// The cleanup world; also the home of the shared `types` and `host` bindings.
    pub mod cleanup {
        wit_bindgen::generate!({
            world: "cleanup-strategy",
            path: "wit",
            pub_export_macro: true,
            additional_derives: [PartialEq],
            export_macro_name: "export_cleanup",
            default_bindings_module: "warden_sdk::__bindings::cleanup",
        });
    }
    /// The recovery world.
    pub mod recovery {
        wit_bindgen::generate!({
            world: "recovery-strategy",
            path: "wit",
            pub_export_macro: true,
            additional_derives: [PartialEq],
            export_macro_name: "export_recovery",
            default_bindings_module: "warden_sdk::__bindings::recovery",
            with: {
                "warden:policy/types@0.3.0": crate::__bindings::cleanup::warden::policy::types,
                "warden:policy/host@0.3.0": crate::__bindings::cleanup::warden::policy::host,
                "warden:policy/state@0.3.0": crate::__bindings::cleanup::warden::policy::state,
            },
        });
    }
    /// The alert-rule world.
    pub mod alert {
        wit_bindgen::generate!({
            world: "alert-rule",
            path: "wit",
            pub_export_macro: true,
            additional_derives: [PartialEq],
            export_macro_name: "export_alert",
            default_bindings_module: "warden_sdk::__bindings::alert",
            with: {
                "warden:policy/types@0.3.0": crate::__bindings::cleanup::warden::policy::types,
                "warden:policy/host@0.3.0": crate::__bindings::cleanup::warden::policy::host,
                "warden:policy/state@0.3.0": crate::__bindings::cleanup::warden::policy::state,
            },
        });
    }
    /// The detector world.
    pub mod detector {
        wit_bindgen::generate!({
            world: "detector",
            path: "wit",
            pub_export_macro: true,
            additional_derives: [PartialEq],
            export_macro_name: "export_detector",
            default_bindings_module: "warden_sdk::__bindings::detector",
            with: {
                "warden:policy/types@0.3.0": crate::__bindings::cleanup::warden::policy::types,
                "warden:policy/host@0.3.0": crate::__bindings::cleanup::warden::policy::host,
                "warden:policy/state@0.3.0": crate::__bindings::cleanup::warden::policy::state,
            },
        });
    }

    pub use cleanup::warden::policy::host;
    pub use cleanup::warden::policy::state;
    pub use cleanup::warden::policy::types;
}

pub use __bindings::types::{Invocation, LabelPair, Severity};

/// Glue the registration macros expand to. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;

    /// The WIT `config-error` the exports return.
    pub type WitConfigError = crate::__bindings::types::ConfigError;

    /// Runs a plugin's `init`: parses `config_json` into its `Config`, builds
    /// it with `new`, and keeps it in `cell` for the calls that follow.
    pub fn init<T, C>(
        cell: &std::sync::OnceLock<T>,
        new: fn(C) -> crate::Result<T>,
        config_json: &str,
    ) -> Result<(), Vec<WitConfigError>>
    where
        C: serde::de::DeserializeOwned,
    {
        let plugin = crate::config::build(config_json, new).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| WitConfigError {
                    path: e.path,
                    message: e.message,
                })
                .collect::<Vec<_>>()
        })?;
        cell.set(plugin).map_err(|_| {
            vec![WitConfigError {
                path: String::new(),
                message: "`init` was called twice on one instance".into(),
            }]
        })
    }

    /// Returns the plugin `init` built.
    pub fn get<T>(cell: &std::sync::OnceLock<T>) -> Result<&T, String> {
        cell.get()
            .ok_or_else(|| "the host called the plugin before `init`".to_owned())
    }
}

/// Declares the per-instance storage of a registered plugin: the value `init`
/// builds, which serves every call to this instance.
#[doc(hidden)]
#[macro_export]
macro_rules! __instance {
    ($ty:ty) => {
        static __WARDEN_CELL: ::std::sync::OnceLock<$ty> = ::std::sync::OnceLock::new();
        fn __warden_init(
            config: ::std::string::String,
        ) -> ::core::result::Result<(), ::std::vec::Vec<$crate::__private::WitConfigError>> {
            $crate::__private::init(&__WARDEN_CELL, <$ty>::new, &config)
        }
        fn __warden_instance() -> ::core::result::Result<&'static $ty, ::std::string::String> {
            $crate::__private::get(&__WARDEN_CELL)
        }
        // Native builds (tests, benchmarks) export nothing; this keeps the
        // plugin's code reachable there, so it is linted like the component.
        #[cfg(not(target_arch = "wasm32"))]
        const _: (
            fn(
                ::std::string::String,
            )
                -> ::core::result::Result<(), ::std::vec::Vec<$crate::__private::WitConfigError>>,
            fn() -> ::core::result::Result<&'static $ty, ::std::string::String>,
        ) = (__warden_init, __warden_instance);
    };
}

impl LabelPair {
    /// Returns a label with this key and value.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        LabelPair {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// Returns the host's wall clock, ms since the epoch.
pub fn now_ms() -> i64 {
    host::now_ms()
}

/// Returns the value of `key` among `labels`, if present.
pub fn label<'a>(labels: &'a [LabelPair], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|l| l.key == key)
        .map(|l| l.value.as_str())
}

#[cfg(test)]
mod tests {
    /// The SDK's copy of the WIT is the workspace's newest frozen folder: a
    /// plugin built from this crate anywhere gets exactly that contract.
    #[test]
    fn the_wit_copy_is_the_frozen_folder() {
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let frozen = here.join("../../wit/since_v0.3.0");
        let mut names: Vec<String> = std::fs::read_dir(&frozen)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut ours: Vec<String> = std::fs::read_dir(here.join("wit"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        ours.sort();
        assert_eq!(names, ours, "the same files");
        for n in &names {
            assert_eq!(
                std::fs::read_to_string(frozen.join(n)).unwrap(),
                std::fs::read_to_string(here.join("wit").join(n)).unwrap(),
                "`wit/{n}` differs from `wit/since_v0.3.0/{n}`: copy the frozen folder, never edit the copy"
            );
        }
        let package = format!("package warden:policy@{};", crate::WIT_VERSION);
        assert!(
            std::fs::read_to_string(here.join("wit/types.wit"))
                .unwrap()
                .starts_with(&package)
        );
    }
}
