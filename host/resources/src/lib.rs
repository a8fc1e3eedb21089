//! # warden-resources
//!
//! Resources: what applications register with Warden ([`registry`]) and what
//! watched processes hold ([`discover`]), served to plugins through
//! `list-resources`.
//!
//! The [`Registry`] lives in memory ([`Registry::with_limits`]) or in a
//! state directory ([`Registry::open`]), where its resources, handles and
//! audit trail survive a restart; the daemon calls [`Registry::flush`],
//! [`Registry::sweep_orphans`] and [`Registry::scan`] on intervals.
//!
//! Layering: depends on `warden-core` only; never on policies, plugins or
//! the runtime.

#![deny(missing_docs)]

pub mod discover;
pub mod registry;

pub use registry::{
    Actor, AuditEvent, DependencyError, Full, OwnerRequest, RegisterError, Registration, Registry,
    RegistryLimits, RegistryOptions, ReleaseError, ReleaseMode, ReleaseOutcome, RequestOptions,
    ScanReport, Summary,
};
