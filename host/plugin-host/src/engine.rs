//! The one wasmtime engine of a Warden process: its configuration, the epoch
//! ticker that enforces deadlines, the linker with every host import, the
//! compile cache, and loading a `.wasm` file into a checked [`Plugin`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Store};

use super::cache::Cache;
use super::error::{LoadError, LoadErrorKind};
use super::kind::Kind;
use super::limits::Limits;
use super::store::StoreState;
use super::wit;

/// How often the ticker advances the epoch while an evaluation runs: the
/// granularity of timeouts. It sleeps while nothing runs, so an idle daemon
/// pays nothing for it.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// After this many ticks with nothing running the ticker parks, so a burst of
/// evaluations pays no wake-up syscalls and an idle daemon pays no CPU.
const IDLE_TICKS_BEFORE_PARK: u32 = 100;

/// The largest linear memory any policy may grant a plugin (the most a 32-bit
/// wasm memory can address).
pub const MAX_PLUGIN_MEMORY: u64 = 4 << 30;

/// The largest wasm call stack a plugin gets; deeper recursion traps as a stack
/// overflow instead of threatening the host thread's own stack.
const MAX_WASM_STACK: usize = 512 * 1024;

/// The most data one call may copy from a plugin into the host (its result, or
/// the arguments of one host import). A plan of 100,000 decisions is about 2 MiB;
/// more than this is refused by wasmtime before the host allocates it.
pub const MAX_TRANSFER_BYTES: usize = 16 * 1024 * 1024;

/// Where plugins come from and where their compilations are cached.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Directory for compiled artifacts; no disk cache when `None`.
    pub cache_dir: Option<PathBuf>,
}

/// Counts of evaluations across all plugins, for metrics and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) evaluations: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) out_of_memory: AtomicU64,
    pub(crate) traps: AtomicU64,
    pub(crate) compiles: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) instantiations: AtomicU64,
    pub(crate) recycles: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Evaluations started.
    pub evaluations: u64,
    /// Evaluations that failed for any reason.
    pub failures: u64,
    /// Failures by timeout.
    pub timeouts: u64,
    /// Failures by memory cap.
    pub out_of_memory: u64,
    /// Failures by trap (including stack overflow).
    pub traps: u64,
    /// Components compiled.
    pub compiles: u64,
    /// Components loaded from the disk cache.
    pub cache_hits: u64,
    /// Instances created and initialized (a warm policy creates one, then
    /// one per recycle; a fresh one, one per evaluation).
    pub instantiations: u64,
    /// Warm instances replaced after a trap, a timeout, a memory-limit hit
    /// or `recycle_after` evaluations.
    pub recycles: u64,
}

struct Ticker {
    active: AtomicUsize,
    parked: AtomicBool,
    stop: AtomicBool,
}

/// Marks an evaluation as running, so the ticker ticks.
pub(crate) struct Running<'a>(&'a Inner);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.ticker.active.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Inner {
    wasmtime: wasmtime::Engine,
    linker: Linker<StoreState>,
    cache: Option<Cache>,
    ticker: Arc<Ticker>,
    ticker_thread: thread::Thread,
    stats: Stats,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker.stop.store(true, Ordering::Release);
        self.ticker_thread.unpark();
    }
}

/// The plugin engine. Cheap to clone; every clone shares one wasmtime engine,
/// linker, cache and ticker.
#[derive(Clone)]
pub struct Engine(Arc<Inner>);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cache", &self.0.cache)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Returns a new engine.
    pub fn new(options: &EngineOptions) -> anyhow::Result<Engine> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            // Plugins are called synchronously; the default async machinery
            // makes every call several times slower.
            .concurrency_support(false)
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK);
        let wasmtime = wasmtime::Engine::new(&config).map_err(anyhow::Error::from)?;

        let mut linker = Linker::new(&wasmtime);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(anyhow::Error::from)?;
        // No host call outlasts an evaluation's deadline.
        super::poll::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
        wit::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;

        let cache = match &options.cache_dir {
            Some(dir) => Some(Cache::open(dir, &wasmtime).map_err(|e| {
                anyhow::anyhow!("failed to open the plugin cache `{}`: {e}", dir.display())
            })?),
            None => None,
        };

        let ticker = Arc::new(Ticker {
            active: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let ticker_thread = {
            let ticker = Arc::clone(&ticker);
            let engine = wasmtime.clone();
            thread::Builder::new()
                .name("warden-epoch".into())
                .spawn(move || {
                    // Epochs follow the wall clock: a sleep that overshoots (they
                    // do, by tens of microseconds) is caught up, so a deadline of
                    // N ticks is N ticks of real time.
                    let mut next = Instant::now() + EPOCH_TICK;
                    let mut idle = 0;
                    while !ticker.stop.load(Ordering::Acquire) {
                        if ticker.active.load(Ordering::SeqCst) == 0 {
                            idle += 1;
                            if idle > IDLE_TICKS_BEFORE_PARK {
                                // Announce the park before re-checking, so an
                                // evaluation starting now either is seen here
                                // or sees `parked` and unparks us.
                                ticker.parked.store(true, Ordering::SeqCst);
                                if ticker.active.load(Ordering::SeqCst) == 0
                                    && !ticker.stop.load(Ordering::SeqCst)
                                {
                                    thread::park();
                                }
                                ticker.parked.store(false, Ordering::SeqCst);
                                idle = 0;
                                next = Instant::now() + EPOCH_TICK;
                                continue;
                            }
                        } else {
                            idle = 0;
                        }
                        let now = Instant::now();
                        if next > now {
                            thread::sleep(next - now);
                        }
                        let now = Instant::now();
                        while next <= now {
                            engine.increment_epoch();
                            next += EPOCH_TICK;
                        }
                    }
                })?
                .thread()
                .clone()
        };

        Ok(Engine(Arc::new(Inner {
            wasmtime,
            linker,
            cache,
            ticker,
            ticker_thread,
            stats: Stats::default(),
        })))
    }

    /// Returns the underlying wasmtime engine, for embedders and benchmarks that
    /// measure the engine configuration itself.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.0.wasmtime
    }

    /// Returns the evaluation counters.
    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.0.stats;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            evaluations: l(&s.evaluations),
            failures: l(&s.failures),
            timeouts: l(&s.timeouts),
            out_of_memory: l(&s.out_of_memory),
            traps: l(&s.traps),
            compiles: l(&s.compiles),
            cache_hits: l(&s.cache_hits),
            instantiations: l(&s.instantiations),
            recycles: l(&s.recycles),
        }
    }

    pub(crate) fn counters(&self) -> &Stats {
        &self.0.stats
    }

    /// Marks an evaluation as running until the guard drops.
    pub(crate) fn running(&self) -> Running<'_> {
        self.0.ticker.active.fetch_add(1, Ordering::SeqCst);
        if self.0.ticker.parked.load(Ordering::SeqCst) {
            self.0.ticker_thread.unpark();
        }
        Running(&self.0)
    }

    /// Returns a store for one evaluation with its deadline and memory cap set.
    pub(crate) fn store(&self, state: StoreState, limits: &Limits) -> Store<StoreState> {
        let mut store = Store::new(&self.0.wasmtime, state);
        store.limiter(|s| &mut s.cap);
        store.set_epoch_deadline(deadline_ticks(limits));
        store.epoch_deadline_trap();
        store.set_hostcall_fuel(transfer_bytes(limits));
        store
    }

    /// Loads the plugin at `path`, which must be of `expected` kind if given:
    /// a regular file of at most [`MAX_PLUGIN_BYTES`].
    pub fn load_file(
        &self,
        path: &Path,
        expected: Option<Kind>,
    ) -> Result<super::Plugin, LoadError> {
        let name = path.display().to_string();
        let bytes = read_plugin(path)?;
        self.load(&name, &bytes, expected)
    }

    /// Loads the plugin shipped with Warden under `name`.
    pub fn load_builtin(
        &self,
        name: &str,
        expected: Option<Kind>,
    ) -> Result<super::Plugin, LoadError> {
        let Some(b) = warden_plugins::builtin(name) else {
            let names: Vec<&str> = warden_plugins::BUILTIN.iter().map(|b| b.name).collect();
            return Err(LoadError::new(
                name,
                LoadErrorKind::UnknownBuiltin(names.join(", ")),
            ));
        };
        self.load(&format!("builtin:{name}"), b.bytes, expected)
    }

    /// Loads a plugin from its bytes: checks it is a component, compiles it (or
    /// loads it from the cache), works out its kind and WIT version from its
    /// exports, checks its imports, and links it.
    pub fn load(
        &self,
        name: &str,
        bytes: &[u8],
        expected: Option<Kind>,
    ) -> Result<super::Plugin, LoadError> {
        let err = |kind| LoadError::new(name, kind);
        check_header(bytes).map_err(err)?;
        let sha256 = hex::encode(Sha256::digest(bytes));

        let engine = &self.0.wasmtime;
        let cached = self.0.cache.as_ref().and_then(|c| c.load(engine, &sha256));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(c) => {
                self.0.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                c
            }
            None => {
                let c = Component::new(engine, bytes)
                    .map_err(|e| err(LoadErrorKind::Invalid(format!("{e:#}"))))?;
                self.0.stats.compiles.fetch_add(1, Ordering::Relaxed);
                if let Some(cache) = &self.0.cache {
                    cache.store(&sha256, &c);
                }
                c
            }
        };

        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_owned()).collect();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
        let (kind, version) = identify(&exports).map_err(err)?;
        if let Some(expected) = expected
            && expected != kind
        {
            return Err(err(LoadErrorKind::WrongKind {
                expected,
                found: kind,
                found_world: kind.world(),
            }));
        }
        if let Some(import) = imports.iter().find(|i| !is_provided(i)) {
            return Err(err(LoadErrorKind::UnknownImport {
                import: import.clone(),
            }));
        }
        let pre = self
            .0
            .linker
            .instantiate_pre(&component)
            .map_err(|e| err(LoadErrorKind::Link(format!("{e:#}"))))?;
        let mismatch = |e: wasmtime::Error| {
            err(LoadErrorKind::Link(format!(
                "its `{}` export does not match the `{}` world of WIT {version}: {e:#}",
                kind.interface(),
                kind.world()
            )))
        };
        let pre = wit::Pre::new(&version, kind, pre).map_err(&mismatch)?;
        let plugin = super::Plugin {
            engine: self.clone(),
            pre,
            info: super::PluginInfo {
                name: name.to_owned(),
                kind,
                world: kind.world(),
                wit_version: version.clone(),
                sha256,
                size_bytes: bytes.len() as u64,
                imports,
                exports,
                from_cache,
            },
        };
        plugin.instantiate_once().map_err(mismatch)?;
        Ok(plugin)
    }
}

/// Returns the most data one call may copy from the plugin into the host:
/// a quarter of the policy's output cap (what crosses takes up to about four
/// times as much once lifted into host values), and at least
/// [`MAX_TRANSFER_BYTES`], which is what the default cap gives.
pub(crate) fn transfer_bytes(limits: &Limits) -> usize {
    usize::try_from(limits.max_output_bytes / 4)
        .unwrap_or(usize::MAX)
        .max(MAX_TRANSFER_BYTES)
}

/// Returns how many epoch ticks make up the evaluation's timeout.
pub(crate) fn deadline_ticks(limits: &Limits) -> u64 {
    let tick = EPOCH_TICK.as_micros().max(1);
    u64::try_from(limits.timeout.as_micros().div_ceil(tick).max(1)).unwrap_or(u64::MAX)
}

/// The largest plugin file read: the shipped components are a few hundred
/// KiB, and a component compiles in time proportional to its size.
pub const MAX_PLUGIN_BYTES: u64 = 64 << 20;

/// Reads the plugin file at `path`: a regular file (never a device, a FIFO or
/// a directory, which would block or never end) of at most
/// [`MAX_PLUGIN_BYTES`].
pub fn read_plugin(path: &Path) -> Result<Vec<u8>, LoadError> {
    warden_core::files::read_regular(path, MAX_PLUGIN_BYTES).map_err(|e| {
        LoadError::new(
            path.display().to_string(),
            LoadErrorKind::Read(e.to_string()),
        )
    })
}

/// Tells a component from a core module or a file that is not wasm at all.
/// Never shows the file's bytes: whatever it is, it is not for the log.
fn check_header(bytes: &[u8]) -> Result<(), LoadErrorKind> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        let shown = if bytes.is_empty() {
            "the file is empty".to_owned()
        } else {
            format!(
                "its {} bytes do not start with the WebAssembly magic `\\0asm`",
                bytes.len()
            )
        };
        return Err(LoadErrorKind::NotWasm(shown));
    }
    // Bytes 4..8 are the version and layer: 1/0 for core modules, 0xd/1 for components.
    match bytes[4..8] {
        [1, 0, 0, 0] => Err(LoadErrorKind::CoreModule),
        [_, _, 1, 0] => Ok(()),
        _ => Err(LoadErrorKind::Invalid(
            "unknown WebAssembly version or layer in the header".into(),
        )),
    }
}

/// Returns the kind and WIT version a component was built for, from the one
/// `warden:policy/<interface>@<version>` it exports.
fn identify(exports: &[String]) -> Result<(Kind, String), LoadErrorKind> {
    let ours: Vec<(&str, &str)> = exports
        .iter()
        .filter_map(|e| e.strip_prefix("warden:policy/"))
        .filter_map(|rest| rest.split_once('@'))
        .collect();
    let policies: Vec<(Kind, &str)> = ours
        .iter()
        .filter_map(|(iface, v)| Kind::from_interface(iface).map(|k| (k, *v)))
        .collect();
    match policies.as_slice() {
        [] => Err(LoadErrorKind::NotAPolicy {
            exports: if exports.is_empty() {
                "nothing".into()
            } else {
                exports
                    .iter()
                    .map(|e| format!("`{e}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
        [(kind, version)] => {
            if !wit::SUPPORTED.contains(version) {
                return Err(LoadErrorKind::UnsupportedVersion {
                    found: (*version).to_owned(),
                    supported: wit::SUPPORTED
                        .iter()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            Ok((*kind, (*version).to_owned()))
        }
        many => Err(LoadErrorKind::Ambiguous(
            many.iter()
                .map(|(k, v)| format!("`warden:policy/{}@{v}`", k.interface()))
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// Returns true if and only if the host provides the import `name`: WASI 0.2 or
/// a supported version of Warden's own `host` and `types` interfaces.
fn is_provided(name: &str) -> bool {
    if let Some(rest) = name.strip_prefix("wasi:") {
        return rest
            .split_once('@')
            .is_some_and(|(_, v)| v.starts_with("0.2."));
    }
    if let Some(rest) = name.strip_prefix("warden:policy/") {
        return rest.split_once('@').is_some_and(|(iface, v)| {
            matches!(iface, "host" | "types" | "state") && wit::SUPPORTED.contains(&v)
        });
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_tells_files_apart() {
        assert!(matches!(check_header(b""), Err(LoadErrorKind::NotWasm(m)) if m.contains("empty")));
        // The bytes of what is not wasm are never echoed, in any form.
        let secret = b"DB_PASSWORD=hunter2\n";
        let Err(LoadErrorKind::NotWasm(m)) = check_header(secret) else {
            panic!("a text file passed the header check")
        };
        assert!(m.contains("20 bytes"), "{m}");
        for shown in ["DB_", "hunter2", "44 42", "4442"] {
            assert!(!m.contains(shown), "{m}");
        }
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(LoadErrorKind::CoreModule)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn identify_reads_kind_and_version_from_exports() {
        let e = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            identify(&e(&["warden:policy/alerting@0.1.0"])).unwrap(),
            (Kind::Alert, "0.1.0".into())
        );
        assert!(matches!(
            identify(&e(&["run"])),
            Err(LoadErrorKind::NotAPolicy { .. })
        ));
        assert!(
            matches!(identify(&e(&["warden:policy/cleanup@9.0.0"])), Err(LoadErrorKind::UnsupportedVersion { found, .. }) if found == "9.0.0")
        );
        assert!(matches!(
            identify(&e(&[
                "warden:policy/cleanup@0.1.0",
                "warden:policy/detection@0.1.0"
            ])),
            Err(LoadErrorKind::Ambiguous(_))
        ));
    }

    #[test]
    fn only_wasi_02_and_our_own_interfaces_are_provided() {
        assert!(is_provided("wasi:cli/stdout@0.2.6"));
        assert!(is_provided("warden:policy/host@0.1.0"));
        assert!(is_provided("warden:policy/state@0.2.0"));
        assert!(is_provided("warden:policy/host@0.3.0"));
        assert!(!is_provided("warden:policy/host@0.9.0"));
        assert!(!is_provided("wasi:cli/stdout@0.3.0"));
        assert!(!is_provided("acme:db/query@1.0.0"));
    }
}
