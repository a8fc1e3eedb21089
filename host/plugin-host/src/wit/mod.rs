//! The host side of every WIT version Warden supports: one module per frozen
//! `wit/since_vX.Y.Z/` folder, each with its own `bindgen!` and conversions to
//! host records. Generated types never leave this module.
//!
//! Versions from 0.2.0 on share what follows their `bindgen!`s
//! (`since_v0_2_common.rs`, included by each): the conversions and calls are
//! the same text over each version's own generated types. To add a version:
//! copy the newest module, point it at the new folder, implement its `host`
//! imports, add a variant to [`Pre`] and [`Instance`] and an entry to
//! [`SUPPORTED`], and name it [`latest`]; a version that changes a shared
//! conversion takes a copy of the common file instead of including it.

pub(crate) mod since_v0_1_0;
pub(crate) mod since_v0_2_0;
pub(crate) mod since_v0_3_0;

pub(crate) use since_v0_3_0 as latest;

use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker};

use super::error::ConfigError;
use super::kind::Kind;
use super::store::StoreState;
use warden_core::records::{
    Alert, Attempt, CleanupPlan, Failure, Finding, Invocation, RecoveryDecision, ResourceSet,
};

/// WIT versions this host links plugins against, oldest first.
pub const SUPPORTED: &[&str] = &[
    since_v0_1_0::VERSION,
    since_v0_2_0::VERSION,
    since_v0_3_0::VERSION,
];

/// The newest supported WIT version.
pub const LATEST: &str = latest::VERSION;

/// Adds the host imports of every supported version to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    since_v0_1_0::add_to_linker(linker)?;
    since_v0_2_0::add_to_linker(linker)?;
    since_v0_3_0::add_to_linker(linker)
}

/// A plugin ready to instantiate, typed by its WIT version and kind.
pub(crate) enum Pre {
    V0_1_0(since_v0_1_0::Pre),
    V0_2_0(since_v0_2_0::Pre),
    V0_3_0(since_v0_3_0::Pre),
}

/// What a call returns: a trap (outer) or the plugin's own error (inner).
pub(crate) type CallResult<T> = wasmtime::Result<Result<T, String>>;

/// A result the host refuses to convert (a malformed plan): not a trap and not
/// the plugin's own error, so the evaluator reports it as invalid output.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl Pre {
    pub(crate) fn new(
        version: &str,
        kind: Kind,
        pre: InstancePre<StoreState>,
    ) -> wasmtime::Result<Pre> {
        match version {
            since_v0_1_0::VERSION => Ok(Pre::V0_1_0(since_v0_1_0::Pre::new(kind, pre)?)),
            since_v0_2_0::VERSION => Ok(Pre::V0_2_0(since_v0_2_0::Pre::new(kind, pre)?)),
            since_v0_3_0::VERSION => Ok(Pre::V0_3_0(since_v0_3_0::Pre::new(kind, pre)?)),
            other => Err(wasmtime::format_err!(
                "unsupported WIT version {other} (supported: {})",
                SUPPORTED.join(", ")
            )),
        }
    }

    pub(crate) fn instantiate(&self, store: &mut Store<StoreState>) -> wasmtime::Result<Instance> {
        match self {
            Pre::V0_1_0(p) => Ok(Instance::V0_1_0(p.instantiate(store)?)),
            Pre::V0_2_0(p) => Ok(Instance::V0_2_0(p.instantiate(store)?)),
            Pre::V0_3_0(p) => Ok(Instance::V0_3_0(p.instantiate(store)?)),
        }
    }

    /// Returns true if and only if the contract lets an instance serve more
    /// than one evaluation: 0.1.0 promised a fresh instance per call.
    pub(crate) fn reusable(&self) -> bool {
        matches!(self, Pre::V0_2_0(_) | Pre::V0_3_0(_))
    }
}

/// An instance of a plugin, typed by its WIT version and kind.
pub(crate) enum Instance {
    V0_1_0(since_v0_1_0::Instance),
    V0_2_0(since_v0_2_0::Instance),
    V0_3_0(since_v0_3_0::Instance),
}

impl Instance {
    /// Hands the policy's config to the plugin. 0.1.0 plugins have no `init`:
    /// they read the config through an import when they need it.
    pub(crate) fn init(
        &self,
        store: &mut Store<StoreState>,
        config_json: &str,
    ) -> wasmtime::Result<Result<(), Vec<ConfigError>>> {
        match self {
            Instance::V0_1_0(_) => Ok(Ok(())),
            Instance::V0_2_0(p) => p.init(store, config_json),
            Instance::V0_3_0(p) => p.init(store, config_json),
        }
    }

    /// Calls `plan` over `candidates`, which are lent to the call and given
    /// back, whatever its outcome.
    pub(crate) fn plan(
        &self,
        store: &mut Store<StoreState>,
        inv: Invocation,
        candidates: &mut ResourceSet,
    ) -> CallResult<CleanupPlan> {
        match self {
            Instance::V0_1_0(p) => p.plan(store, inv, candidates),
            Instance::V0_2_0(p) => p.plan(store, inv, candidates),
            Instance::V0_3_0(p) => p.plan(store, inv, candidates),
        }
    }

    pub(crate) fn decide(
        &self,
        store: &mut Store<StoreState>,
        inv: Invocation,
        failure: &Failure,
        history: &[Attempt],
    ) -> CallResult<RecoveryDecision> {
        match self {
            Instance::V0_1_0(p) => p.decide(store, inv, failure, history),
            Instance::V0_2_0(p) => p.decide(store, inv, failure, history),
            Instance::V0_3_0(p) => p.decide(store, inv, failure, history),
        }
    }

    pub(crate) fn evaluate(
        &self,
        store: &mut Store<StoreState>,
        inv: Invocation,
    ) -> CallResult<Vec<Alert>> {
        match self {
            Instance::V0_1_0(p) => p.evaluate(store, inv),
            Instance::V0_2_0(p) => p.evaluate(store, inv),
            Instance::V0_3_0(p) => p.evaluate(store, inv),
        }
    }

    pub(crate) fn detect(
        &self,
        store: &mut Store<StoreState>,
        inv: Invocation,
    ) -> CallResult<Vec<Finding>> {
        match self {
            Instance::V0_1_0(p) => p.detect(store, inv),
            Instance::V0_2_0(p) => p.detect(store, inv),
            Instance::V0_3_0(p) => p.detect(store, inv),
        }
    }
}
