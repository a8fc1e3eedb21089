//! The on-disk cache of compiled plugins. Compiling a component takes tens of
//! milliseconds; loading its precompiled artifact takes a fraction of one. Keys
//! are the component's sha256 plus a hash of everything in the engine that
//! affects compiled code, so a new Warden or different settings never load a
//! stale artifact.
//!
//! An artifact is native code that wasmtime maps and runs without checking
//! it, so one is only loaded if it carries a MAC (HMAC-SHA256) under a key
//! that only this install holds: `<cache dir>.key`, 32 random bytes, mode
//! 0600, beside the cache directory rather than in it, so that copying the
//! artifacts somewhere does not copy the key with them. The file is read
//! into memory once, checked there and deserialized from the same bytes, so
//! it cannot change between the check and the load. An entry that fails the
//! check is removed, the reason logged, and the component compiled again.
//! The cache directory must be owned by Warden's user and writable by no one
//! else; [`Cache::open`] refuses it otherwise.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

/// First bytes of an artifact file: the format, then the 32-byte MAC.
const MAGIC: &[u8; 8] = b"WDNCWM01";
const TAG_LEN: usize = 32;

/// The cache directory and the engine key its files are valid for.
pub(crate) struct Cache {
    dir: PathBuf,
    engine_key: String,
    mac_key: [u8; 32],
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the MAC key.
        f.debug_struct("Cache")
            .field("dir", &self.dir)
            .field("engine_key", &self.engine_key)
            .finish_non_exhaustive()
    }
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

/// HMAC-SHA256 (RFC 2104) of the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Cache {
    /// Opens (creating, 0700) the cache under `dir` for `engine`, with its
    /// key (created on first use). Refuses a directory another user owns or
    /// others may write.
    pub(crate) fn open(dir: &Path, engine: &wasmtime::Engine) -> std::io::Result<Cache> {
        warden_core::fsx::ensure_private_dir(dir, "plugin cache directory")?;
        let mut key_path = dir.as_os_str().to_owned();
        key_path.push(".key");
        let mac_key = warden_core::fsx::load_or_create_secret::<32>(Path::new(&key_path))?;
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = hex::encode(&h.0.finalize()[..8]);
        Ok(Cache {
            dir: dir.to_path_buf(),
            engine_key,
            mac_key,
        })
    }

    fn name(&self, sha256: &str) -> String {
        format!("{sha256}-{}.cwasm", self.engine_key)
    }

    fn tag(&self, sha256: &str, artifact: &[u8]) -> [u8; 32] {
        hmac_sha256(
            &self.mac_key,
            &[
                MAGIC,
                sha256.as_bytes(),
                b"\0",
                self.engine_key.as_bytes(),
                b"\0",
                artifact,
            ],
        )
    }

    /// Returns the cached compilation of the component with this hash, if
    /// any. An entry that is damaged, or was not written by this install, is
    /// removed, the reason logged, and reported as a miss.
    pub(crate) fn load(&self, engine: &wasmtime::Engine, sha256: &str) -> Option<Component> {
        let path = self.dir.join(self.name(sha256));
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read a cached plugin artifact; compiling the plugin again");
                return None;
            }
        };
        let artifact = match self.verify(sha256, &bytes) {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!(path = %path.display(), "refusing a cached plugin artifact ({why}); removing it and compiling the plugin again");
                let _ = fs::remove_file(&path);
                return None;
            }
        };
        // SAFETY: `artifact` carries a MAC under this install's key, made by
        // `store` below over `Component::serialize` output of an engine with
        // this same compatibility hash, and it is the very buffer that was
        // checked (read once, never re-read from disk). Wasmtime still checks
        // the header and engine settings.
        match unsafe { Component::deserialize(engine, artifact) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "dropping unusable cached plugin artifact; compiling the plugin again");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Returns the artifact inside `file` if its MAC is right, or why not.
    fn verify<'a>(&self, sha256: &str, file: &'a [u8]) -> Result<&'a [u8], &'static str> {
        let Some(rest) = file.strip_prefix(MAGIC) else {
            return Err("it has no MAC header: written by an older Warden or by something else");
        };
        if rest.len() < TAG_LEN {
            return Err("it is cut short");
        }
        let (tag, artifact) = rest.split_at(TAG_LEN);
        if !same(tag, &self.tag(sha256, artifact)) {
            return Err("its MAC does not match: it was changed, or written by another install");
        }
        Ok(artifact)
    }

    /// Stores a compiled component (0600, fsynced, renamed into place, the
    /// directory fsynced). Failure only costs a recompile next time.
    pub(crate) fn store(&self, sha256: &str, component: &Component) {
        let result = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|artifact| {
                let tag = self.tag(sha256, &artifact);
                warden_core::fsx::write_atomic_with(&self.dir, &self.name(sha256), |f| {
                    f.write_all(MAGIC)?;
                    f.write_all(&tag)?;
                    f.write_all(&artifact)
                })
            });
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not cache a compiled plugin");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        let tag = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        let tag = hmac_sha256(
            &[0xaa; 131],
            &[b"Test Using Larger Than Block-Size Key - Hash Key First"],
        );
        assert_eq!(
            hex::encode(tag),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
