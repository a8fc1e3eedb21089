//! # warden
//!
//! Warden is a resource-and-metrics daemon for Linux services whose decisions are
//! policies: sandboxed WebAssembly components, switched on by YAML files in a
//! policies directory. Plugins decide; the host acts, inside the scope the YAML
//! grants.
//!
//! This crate is both the `warden` binary and a library for embedding Warden in
//! a service.
//!
//! ```no_run
//! use std::sync::Arc;
//! use warden::plugin::{Engine, EngineOptions, Evaluator, Kind, Limits, NoData};
//! use warden::plugin::records::{Failure, ErrorClass};
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
//! println!("{:?}", policy.decide(&failure, &[])?);
//! # Ok(())
//! # }
//! ```
//!
//! # Key modules
//!
//! - [`plugin`]: the wasmtime engine, loading and checking components, and
//!   evaluating them under deadlines and memory caps.
//! - [`metrics`]: the series store policies query.
//! - [`resources`]: resources applications register.
//! - [`sources`]: the data plugins read, behind [`plugin::DataSource`].
//! - [`policy`]: policy files — format, checks, compiling, live reload.
//! - [`runtime`]: the scheduler and the state that outlives reloads.
//! - [`api`]: the HTTP API; [`telemetry`]: Warden's own metrics.
//! - [`daemon`]: `warden run`; [`cli`]: the `warden` command line.

#![deny(missing_docs)]

pub mod api;
pub mod cli;
pub mod clock;
pub mod daemon;
pub mod metrics;
pub mod plugin;
pub mod policy;
pub mod resources;
pub mod runtime;
pub mod sources;
pub mod telemetry;
