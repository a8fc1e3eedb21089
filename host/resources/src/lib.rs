//! # warden-resources
//!
//! Resources: what applications register with Warden ([`registry`]) and what
//! watched processes hold ([`discover`]), served to plugins through
//! `list-resources`.
//!
//! Layering: depends on `warden-core` only; never on policies, plugins or
//! the runtime.

#![deny(missing_docs)]

pub mod discover;
pub mod registry;

pub use registry::{Full, Registration, Registry, RegistryLimits};
