//! Policies: the YAML files operators edit, checked, compiled and kept live.
//!
//! - [`schema`]: the file format (and its JSON Schema).
//! - [`parse`]: reading a file into checked [`Policy`] values, errors located.
//! - [`compile`]: resolving and compiling plugins, shared across policies.
//! - [`live`]: the live set and per-file last-good reloads.
//! - [`watch`]: reloading when the directory changes.
//! - [`check`]: `warden check` over files and directories.

pub mod check;
pub mod compile;
pub mod live;
mod locate;
pub mod parse;
pub mod schema;
pub mod values;
pub mod watch;

pub use compile::PluginCache;
pub use live::{LivePolicy, LiveSet, PolicyDir, ReloadReport};
pub use parse::{ParseContext, Policy, PolicyError};
