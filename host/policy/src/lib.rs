//! # warden-policy
//!
//! Policies: the YAML files operators edit, checked, compiled and kept live.
//!
//! - [`schema`]: the file format (and its JSON Schema).
//! - [`parse`]: reading a file into checked [`Policy`] values, errors located.
//! - [`compile`]: resolving and compiling plugins, shared across policies;
//!   binding one to a policy runs the plugin's `init` with its config.
//! - [`live`]: the live set and per-file last-good reloads.
//! - [`watch`]: reloading when the directory changes.
//! - [`check`]: `warden check` over files and directories.
//! - [`cleanup`]: the option values of cleanup policies (cap, excludes).
//! - [`raises`]: the options of policies that raise alerts or findings.
//! - [`recovery`]: the breaker, retry budget and classification settings of
//!   recovery policies.
//!
//! Layering: depends on `warden-core`, `warden-plugin-host` (to compile and
//! bind plugins) and `warden-notify` (receivers named in `notify:`). It must
//! never depend on metrics, resources, the runtime or the API: a policy is
//! what an operator wrote, checked; running it is the runtime's job.

#![deny(missing_docs)]

pub mod bind;
pub mod check;
pub mod cleanup;
pub mod compile;
mod failures;
pub mod live;
mod locate;
pub mod parse;
pub mod raises;
pub mod recovery;
pub mod schema;
pub mod watch;

pub use compile::PluginCache;
pub use live::{LivePolicy, LiveSet, PolicyDir, ReloadReport};
pub use parse::{ParseContext, Policy, PolicyError};
