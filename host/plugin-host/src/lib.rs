//! # warden-plugin-host
//!
//! The plugin runtime: load WebAssembly components built against Warden's WIT
//! contract, and evaluate them safely.
//!
//! - [`Engine`]: one per process; compiles (with a disk cache), links and
//!   enforces deadlines.
//! - [`Plugin`]: a loaded, checked component of one [`Kind`].
//! - [`Evaluator`]: a plugin bound to one policy's name, config, limits, data
//!   and plugin state; calls run on a warm instance (or a fresh one, see
//!   [`Isolation`]) with a deadline and a memory cap, and any trap, timeout or
//!   out-of-memory comes back as an [`EvalError`].
//! - [`PluginStateStore`]: where the blob a plugin keeps through the `state`
//!   import lives; the runtime persists it.
//! - [`DataSource`]: what a plugin may read through its host imports; the
//!   runtime implements it over the series store and the resource registry.
//!
//! Layering: this crate knows nothing of policies, metrics, resources or the
//! daemon. It depends on `warden-core` (the records it lifts plugin output
//! into) and `warden-plugins` (the shipped components), and must never
//! depend on another Warden crate: whatever a plugin reads comes in through
//! [`DataSource`].

#![deny(missing_docs)]

mod cache;
mod data;
mod engine;
mod error;
mod evaluator;
mod kind;
mod limits;
mod output;
mod plugin_state;
mod poll;
mod store;
mod warm;
pub(crate) mod wit;

pub use data::{Budget, DataSource, NoData};
pub use engine::{
    EPOCH_TICK, Engine, EngineOptions, MAX_PLUGIN_BYTES, MAX_PLUGIN_MEMORY, MAX_TRANSFER_BYTES,
    Stats, StatsSnapshot, read_plugin,
};
pub use error::{ConfigError, EvalError, EvalFailure, LoadError, LoadErrorKind};
pub use evaluator::{Clock, Evaluator, WarmInstance};
pub use kind::Kind;
pub use limits::{Limits, MAX_NOTICES};
pub use plugin_state::{
    DEFAULT_STATE_LIMIT, MAX_STATE_LIMIT, MemoryStates, PluginStateStore, PolicyId,
};
/// The records exchanged with plugins (re-exported from `warden-core`).
pub use warden_core::records;
pub use warm::{DEFAULT_RECYCLE_AFTER, Isolation};
pub use wit::{LATEST as LATEST_WIT_VERSION, SUPPORTED as SUPPORTED_WIT_VERSIONS};

/// What is known about a loaded plugin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    /// The file path, or `builtin:<name>`.
    pub name: String,
    /// Its kind.
    #[serde(serialize_with = "serialize_kind")]
    pub kind: Kind,
    /// Its WIT world.
    pub world: &'static str,
    /// The `warden:policy` version it was built against.
    pub wit_version: String,
    /// sha256 of the component's bytes, hex.
    pub sha256: String,
    /// Size of the component in bytes.
    pub size_bytes: u64,
    /// Everything it imports.
    pub imports: Vec<String>,
    /// Everything it exports.
    pub exports: Vec<String>,
    /// True if and only if it was loaded from the compile cache.
    pub from_cache: bool,
}

fn serialize_kind<S: serde::Serializer>(k: &Kind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.name())
}

/// A loaded component, checked against the world of its kind and linked.
pub struct Plugin {
    engine: Engine,
    pre: wit::Pre,
    info: PluginInfo,
}

impl Plugin {
    /// Returns what is known about it.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Returns its kind.
    pub fn kind(&self) -> Kind {
        self.info.kind
    }

    /// Creates a fresh store and instantiates the plugin in it, as every
    /// evaluation does before its call, then drops both. Runs no plugin code.
    pub fn instantiate_fresh(&self) -> anyhow::Result<()> {
        self.instantiate_once().map_err(anyhow::Error::from)
    }

    fn instantiate_once(&self) -> wasmtime::Result<()> {
        let _running = self.engine.running();
        let mut store = self.engine.store(
            store::StoreState::probe(&self.info.name),
            &Limits::default(),
        );
        self.pre.instantiate(&mut store).map(drop)
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
    assert_send_sync::<Plugin>();
    assert_send_sync::<Evaluator>();
};
