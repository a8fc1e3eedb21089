//! # warden
//!
//! Warden is a resource-and-metrics daemon for Linux services whose decisions are
//! policies: sandboxed WebAssembly components, switched on by YAML files in a
//! policies directory. Plugins decide; the host acts, inside the scope the YAML
//! grants.
//!
//! This crate is both the `warden` binary and the library for embedding Warden
//! in a service: the one public, documented surface. The layers it re-exports
//! live in their own crates under `host/` (see the workspace `Cargo.toml`);
//! depend on `warden`, not on them, and reach them through the modules below.
//!
//! ```
//! use std::sync::Arc;
//! use warden::plugin::{Engine, EngineOptions, Evaluator, Kind, Limits, NoData};
//! use warden::plugin::records::{ErrorClass, Failure, RecoveryDecision};
//!
//! # fn main() -> anyhow::Result<()> {
//! let engine = Engine::new(&EngineOptions::default())?;
//! let plugin = Arc::new(engine.load_builtin("backoff", Some(Kind::Recovery))?);
//! let config = serde_json::json!({ "base": "100ms", "max": "5s" });
//! let policy = Evaluator::new(plugin, "db-retries", &config, Limits::default(), Arc::new(NoData));
//! let failure = Failure {
//!     operation: "db.query".into(),
//!     class: ErrorClass::Timeout,
//!     message: "timed out".into(),
//!     attempt: 1,
//!     first_failed_ms: 0,
//!     seed: 7,
//! };
//! // A first timeout: try again after a backoff within the configured bounds.
//! match policy.decide(&failure, &[])? {
//!     RecoveryDecision::RetryAfter(ms) => assert!((1..=5_000).contains(&ms)),
//!     other => panic!("expected a retry, got {other:?}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Modules
//!
//! - [`plugin`]: the wasmtime engine, loading and checking components, and
//!   evaluating them under deadlines and memory caps (`warden-plugin-host`).
//! - [`metrics`]: collection, ingest, the series store policies query, batch
//!   files and exposition (`warden-metrics`).
//! - [`resources`]: resources applications register (`warden-resources`).
//! - [`notify`]: alert receivers (`warden-notify`).
//! - [`policy`]: policy files — format, checks, compiling, live reload
//!   (`warden-policy`).
//! - [`runtime`]: the scheduler, the state that outlives reloads, cleanup
//!   execution; [`sources`]: the data plugins read, behind
//!   [`plugin::DataSource`] (`warden-runtime`).
//! - [`api`]: the HTTP API (`warden-api`); [`telemetry`]: Warden's own metrics;
//!   [`clock`]: the wall clock in record units; [`records`]: the records
//!   exchanged with plugins; [`values`]: durations and sizes as policy files
//!   write them (`warden-core`).
//! - [`recovery`]: circuit breakers, retry budgets and decisions for failed
//!   operations, with the in-process guard ([`recovery::Guard`]:
//!   `guard.call(|| …)`, sync and async); [`embed`] loads a policies
//!   directory for it without a daemon.
//! - [`daemon`]: `warden run`, the whole daemon, which an embedder may also start
//!   in-process.

#![deny(missing_docs)]

pub mod daemon;
pub mod embed;

pub use warden_api as api;
pub use warden_core::{clock, records, telemetry, values};
pub use warden_metrics as metrics;
pub use warden_notify as notify;
pub use warden_plugin_host as plugin;
pub use warden_policy as policy;
pub use warden_resources as resources;
pub use warden_runtime as runtime;
pub use warden_runtime::recovery;
pub use warden_runtime::sources;
