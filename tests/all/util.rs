//! Helpers shared by the integration tests.

use std::sync::Arc;

use warden::plugin::{DataSource, Engine, EngineOptions, Evaluator, Kind, Limits, NoData, Plugin};

/// Returns an engine with a compile cache in a fresh temporary directory.
pub(crate) fn engine() -> (Engine, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(&EngineOptions {
        cache_dir: Some(dir.path().join("cache")),
    })
    .unwrap();
    (engine, dir)
}

/// Loads a guest component from its path.
pub(crate) fn load(engine: &Engine, path: &str, kind: Kind) -> Arc<Plugin> {
    Arc::new(engine.load_file(path.as_ref(), Some(kind)).unwrap())
}

/// Limits whose deadline is not under test. A loaded 2-core CI machine can
/// take far longer than the 100 ms default for one call (instantiation
/// included), which would fail a test about something else with `Timeout`.
pub(crate) fn relaxed() -> Limits {
    Limits {
        timeout: std::time::Duration::from_secs(30),
        ..Limits::default()
    }
}

/// Binds a plugin to a policy with a config, no data.
pub(crate) fn bind(
    plugin: &Arc<Plugin>,
    policy: &str,
    config: &serde_json::Value,
    limits: Limits,
) -> Evaluator {
    bind_with(plugin, policy, config, limits, Arc::new(NoData))
}

/// Binds a plugin to a policy with a config and a data source.
pub(crate) fn bind_with(
    plugin: &Arc<Plugin>,
    policy: &str,
    config: &serde_json::Value,
    limits: Limits,
    data: Arc<dyn DataSource>,
) -> Evaluator {
    Evaluator::new(Arc::clone(plugin), policy, config, limits, data)
}
