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
//!
//! The plugin's `config:` block from its YAML file arrives as the trait's
//! `Config` type, deserialized with serde; a config that does not fit is reported
//! to the operator as the evaluation's error.
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
pub mod log;
pub mod recovery;
pub mod resources;
pub mod series;

pub use error::{Error, Result};

/// The WIT package version this SDK builds plugins against.
pub const WIT_VERSION: &str = "0.1.0";

/// Generated bindings, one module per world. Private: the public API re-exports
/// the types it needs so any of them can later be replaced by a hand-written one.
#[doc(hidden)]
pub mod __bindings {
    /// The cleanup world; also the home of the shared `types` and `host` bindings.
    pub mod cleanup {
        wit_bindgen::generate!({
            world: "cleanup-strategy",
            path: "../../wit/since_v0.1.0",
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
            path: "../../wit/since_v0.1.0",
            pub_export_macro: true,
            additional_derives: [PartialEq],
            export_macro_name: "export_recovery",
            default_bindings_module: "warden_sdk::__bindings::recovery",
            with: {
                "warden:policy/types@0.1.0": crate::__bindings::cleanup::warden::policy::types,
                "warden:policy/host@0.1.0": crate::__bindings::cleanup::warden::policy::host,
            },
        });
    }
    /// The alert-rule world.
    pub mod alert {
        wit_bindgen::generate!({
            world: "alert-rule",
            path: "../../wit/since_v0.1.0",
            pub_export_macro: true,
            additional_derives: [PartialEq],
            export_macro_name: "export_alert",
            default_bindings_module: "warden_sdk::__bindings::alert",
            with: {
                "warden:policy/types@0.1.0": crate::__bindings::cleanup::warden::policy::types,
                "warden:policy/host@0.1.0": crate::__bindings::cleanup::warden::policy::host,
            },
        });
    }
    /// The detector world.
    pub mod detector {
        wit_bindgen::generate!({
            world: "detector",
            path: "../../wit/since_v0.1.0",
            pub_export_macro: true,
            additional_derives: [PartialEq],
            export_macro_name: "export_detector",
            default_bindings_module: "warden_sdk::__bindings::detector",
            with: {
                "warden:policy/types@0.1.0": crate::__bindings::cleanup::warden::policy::types,
                "warden:policy/host@0.1.0": crate::__bindings::cleanup::warden::policy::host,
            },
        });
    }

    pub use cleanup::warden::policy::host;
    pub use cleanup::warden::policy::types;
}

pub use __bindings::types::{Invocation, LabelPair, Severity};

/// Glue the registration macros expand to. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;

    /// Builds the plugin from the policy's `config:` block, once per instance.
    pub fn construct<T, C>(new: fn(C) -> crate::Result<T>) -> Result<T, String>
    where
        C: serde::de::DeserializeOwned,
    {
        let json = crate::__bindings::host::config();
        let config: C = serde_json::from_str(&json)
            .map_err(|e| format!("invalid `config` for this plugin: {e}"))?;
        new(config).map_err(|e| e.to_string())
    }
}

/// Declares the per-instance storage of a registered plugin. Wasm instances are
/// single-threaded and a fresh one serves each evaluation, so the plugin is built
/// at most once per evaluation, on first use.
#[doc(hidden)]
#[macro_export]
macro_rules! __instance {
    ($ty:ty) => {
        fn __warden_instance() -> ::core::result::Result<&'static $ty, ::std::string::String> {
            static CELL: ::std::sync::OnceLock<::core::result::Result<$ty, ::std::string::String>> =
                ::std::sync::OnceLock::new();
            CELL.get_or_init(|| $crate::__private::construct(<$ty>::new))
                .as_ref()
                .map_err(::core::clone::Clone::clone)
        }
        // Native builds (tests, benchmarks) export nothing; this keeps the
        // plugin's code reachable there, so it is linted like the component.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() -> ::core::result::Result<&'static $ty, ::std::string::String> =
            __warden_instance;
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

/// Returns the value of `key` among `labels`, if present.
pub fn label<'a>(labels: &'a [LabelPair], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|l| l.key == key)
        .map(|l| l.value.as_str())
}
