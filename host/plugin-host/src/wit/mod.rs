//! The host side of every WIT version Warden supports: one module per frozen
//! `wit/since_vX.Y.Z/` folder, each with its own `bindgen!` and conversions to
//! host records. Generated types never leave this module.
//!
//! To add a version: copy the newest module, point it at the new folder, add a
//! variant to [`Pre`] and an entry to [`SUPPORTED`].

pub(crate) mod since_v0_1_0;

pub(crate) use since_v0_1_0 as latest;

use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker};

use super::kind::Kind;
use super::store::StoreState;
use warden_core::records::{
    Alert, Attempt, CleanupPlan, Failure, Finding, Invocation, RecoveryDecision, ResourceSet,
};

/// WIT versions this host links plugins against, oldest first.
pub const SUPPORTED: &[&str] = &[since_v0_1_0::VERSION];

/// The newest supported WIT version.
pub const LATEST: &str = latest::VERSION;

/// Adds the host imports of every supported version to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    since_v0_1_0::add_to_linker(linker)
}

/// A plugin ready to instantiate, typed by its WIT version and kind.
pub(crate) enum Pre {
    V0_1_0(since_v0_1_0::Pre),
}

/// What a call returns: a trap (outer) or the plugin's own error (inner).
pub(crate) type CallResult<T> = wasmtime::Result<Result<T, String>>;

impl Pre {
    pub(crate) fn new(
        version: &str,
        kind: Kind,
        pre: InstancePre<StoreState>,
    ) -> wasmtime::Result<Pre> {
        match version {
            since_v0_1_0::VERSION => Ok(Pre::V0_1_0(since_v0_1_0::Pre::new(kind, pre)?)),
            other => Err(wasmtime::format_err!("unsupported WIT version {other}")),
        }
    }

    pub(crate) fn instantiate(&self, store: &mut Store<StoreState>) -> wasmtime::Result<Instance> {
        match self {
            Pre::V0_1_0(p) => Ok(Instance::V0_1_0(p.instantiate(store)?)),
        }
    }
}

/// An instance of a plugin, typed by its WIT version and kind.
pub(crate) enum Instance {
    V0_1_0(since_v0_1_0::Instance),
}

impl Instance {
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
        }
    }

    pub(crate) fn evaluate(
        &self,
        store: &mut Store<StoreState>,
        inv: Invocation,
    ) -> CallResult<Vec<Alert>> {
        match self {
            Instance::V0_1_0(p) => p.evaluate(store, inv),
        }
    }

    pub(crate) fn detect(
        &self,
        store: &mut Store<StoreState>,
        inv: Invocation,
    ) -> CallResult<Vec<Finding>> {
        match self {
            Instance::V0_1_0(p) => p.detect(store, inv),
        }
    }
}
