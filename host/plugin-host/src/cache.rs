//! The on-disk cache of compiled plugins. Compiling a component takes tens of
//! milliseconds; loading its precompiled artifact takes a fraction of one. Keys
//! are the component's sha256 plus a hash of everything in the engine that
//! affects compiled code, so a new Warden or different settings never load a
//! stale artifact.

use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

/// The cache directory and the engine key its files are valid for.
#[derive(Debug)]
pub(crate) struct Cache {
    dir: PathBuf,
    engine_key: String,
}

/// Feeds `Hash` output into sha256, so the engine's compatibility hash gives
/// the same key in every process.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes(d[..8].try_into().expect("sha256 is 32 bytes"))
    }
}

impl Cache {
    /// Opens (creating) the cache under `dir` for `engine`.
    pub(crate) fn open(dir: &Path, engine: &wasmtime::Engine) -> std::io::Result<Cache> {
        fs::create_dir_all(dir)?;
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = hex::encode(&h.0.finalize()[..8]);
        Ok(Cache {
            dir: dir.to_path_buf(),
            engine_key,
        })
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    /// Returns the cached compilation of the component with this hash, if any.
    /// A damaged entry is removed and reported as a miss.
    pub(crate) fn load(&self, engine: &wasmtime::Engine, sha256: &str) -> Option<Component> {
        let path = self.path(sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `store` below from `Component::serialize`
        // of this same engine configuration (the key includes its compatibility
        // hash), into a directory only Warden writes, by rename so it is never
        // seen half-written. Wasmtime still checks the header and engine settings.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "dropping unusable cached plugin artifact");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a compiled component. Failure only costs a recompile next time.
    pub(crate) fn store(&self, sha256: &str, component: &Component) {
        let result = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|bytes| {
                let path = self.path(sha256);
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                fs::write(&tmp, &bytes)?;
                fs::rename(&tmp, &path)
            });
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not cache a compiled plugin");
        }
    }
}
