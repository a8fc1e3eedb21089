//! # warden-core
//!
//! What every layer of Warden's host shares, and nothing else: the records
//! exchanged with plugins as host types ([`records`]), the values policy and
//! daemon files are written in ([`values`]: durations, byte sizes), the wall
//! clock every record uses ([`clock`]), Warden's own metrics registry
//! ([`telemetry`]), and how Warden writes and trusts its own files
//! ([`fsx`]: private modes, atomic durable writes, directory checks).
//! ([`telemetry`]), and how every file Warden is handed is read ([`files`]:
//! regular files only, never more than a cap).
//!
//! This crate is the bottom of the host's crate graph: it must never depend on
//! another Warden crate, and it holds no behaviour beyond these types, so that
//! a change to any layer above never rebuilds it.

#![deny(missing_docs)]

pub mod clock;
pub mod files;
pub mod fsx;
pub mod records;
pub mod sock_diag;
pub mod telemetry;
pub mod values;
