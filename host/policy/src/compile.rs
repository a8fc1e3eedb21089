//! Turning a checked policy into something that runs: resolve its plugin (a
//! shipped one or a file), enforce the sha256 pin, and compile it — once per
//! distinct component and kind, however many policies and reloads use it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use sha2::{Digest, Sha256};

use super::parse::PluginSource;
use warden_plugin_host::{Engine, Kind, LoadError, LoadErrorKind, Plugin};

/// Loaded plugins by content and kind. Entries are weak: a plugin no policy
/// uses any more is freed.
pub struct PluginCache {
    engine: Engine,
    loaded: Mutex<HashMap<(String, Kind), Weak<Plugin>>>,
}

impl std::fmt::Debug for PluginCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginCache").finish_non_exhaustive()
    }
}

impl PluginCache {
    /// Returns a cache loading through `engine`.
    pub fn new(engine: Engine) -> Self {
        PluginCache {
            engine,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// Returns the engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Returns the plugin `source` as a `kind` plugin, checking the pin.
    pub fn resolve(
        &self,
        source: &PluginSource,
        kind: Kind,
        pin: Option<&str>,
    ) -> Result<Arc<Plugin>, LoadError> {
        let name = source.to_string();
        let owned;
        let bytes: &[u8] = match source {
            PluginSource::Builtin(b) => match warden_plugins::builtin(b) {
                Some(b) => b.bytes,
                None => return self.engine.load_builtin(b, Some(kind)).map(Arc::new),
            },
            PluginSource::File(path) => {
                owned = warden_plugin_host::read_plugin(path)?;
                &owned
            }
        };
        let sha = hex::encode(Sha256::digest(bytes));
        if let Some(pin) = pin
            && !pin.eq_ignore_ascii_case(&sha)
        {
            return Err(LoadError::new(
                &name,
                LoadErrorKind::HashMismatch {
                    expected: pin.to_ascii_lowercase(),
                    actual: sha,
                },
            ));
        }
        let key = (sha, kind);
        if let Some(p) = self
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .and_then(Weak::upgrade)
        {
            return Ok(p);
        }
        let plugin = Arc::new(self.engine.load(&name, bytes, Some(kind))?);
        let mut map = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(key, Arc::downgrade(&plugin));
        Ok(plugin)
    }
}
