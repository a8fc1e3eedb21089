//! # warden-resources
//!
//! Resources: what applications register with Warden (and, later, what it
//! discovers on the machine), served to plugins through `list-resources`.
//!
//! Layering: depends on `warden-core` only (it may come to depend on
//! `warden-metrics` for discovery); never on policies, plugins or the runtime.

#![deny(missing_docs)]

pub mod registry;

pub use registry::{
    Actor, AuditEvent, Full, Registration, Registry, RegistryLimits, RegistryOptions, ScanReport,
};
