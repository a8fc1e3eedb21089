//! Plugins' own state (the WIT 0.2.0 `state` import), kept for each policy
//! identity (file and name) in memory and in `state/plugins/` of the data
//! directory (0700): one 0600 file per policy, written whole to a temporary
//! file, synced and renamed, the directory synced, so a crash leaves the old
//! blob or the new one. A reload that
//! keeps a policy's file and name keeps its blob; removing the policy drops
//! it, file and all.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use warden_plugin_host::{PluginStateStore, PolicyId};

/// The folder of the state directory the blobs are kept in.
const DIR: &str = "plugins";

/// Blobs by policy, and where they are saved.
#[derive(Debug, Default)]
pub(crate) struct PluginStates {
    blobs: Mutex<HashMap<PolicyId, Arc<[u8]>>>,
    /// `state/plugins`; nothing is saved when `None`.
    dir: Option<PathBuf>,
}

/// What precedes the blob in its file: whose it is, on one line of JSON.
#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    file: PathBuf,
    policy: String,
}

impl PluginStates {
    /// Opens (creating) `state_dir/plugins` and loads every blob saved there.
    /// A file that does not read is moved aside and named in the log.
    pub(crate) fn open(state_dir: &Path) -> std::io::Result<Self> {
        let dir = state_dir.join(DIR);
        warden_core::fsx::create_private_dir_all(&dir)?;
        let mut blobs = HashMap::new();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "state") {
                continue;
            }
            match read(&path) {
                Ok((id, blob)) => {
                    blobs.insert(id, blob);
                }
                Err(e) => {
                    let aside =
                        path.with_extension(format!("unreadable-{}", warden_core::clock::now_ms()));
                    std::fs::rename(&path, &aside)?;
                    tracing::error!(file = %path.display(), moved_to = %aside.display(), error = %e, "a saved plugin state is unreadable; its policy starts without it");
                }
            }
        }
        Ok(PluginStates {
            blobs: Mutex::new(blobs),
            dir: Some(dir),
        })
    }

    /// Returns the file of `id`'s blob: named by a hash of the identity, so
    /// any file path and policy name make a safe, fixed-length file name.
    fn path(dir: &Path, id: &PolicyId) -> PathBuf {
        let mut h = Sha256::new();
        h.update(id.file.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(id.name.as_bytes());
        dir.join(format!("{}.state", hex::encode(&h.finalize()[..16])))
    }

    /// Drops the blob of every policy for which `keep` is false.
    pub(crate) fn retain(&self, keep: impl Fn(&Path, &str) -> bool) {
        let mut blobs = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<PolicyId> = blobs
            .keys()
            .filter(|id| !keep(&id.file, &id.name))
            .cloned()
            .collect();
        for id in gone {
            blobs.remove(&id);
            if let Some(dir) = &self.dir {
                let path = Self::path(dir, &id);
                if let Err(e) = std::fs::remove_file(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove the state of a removed policy");
                }
            }
        }
    }

    /// Returns how many policies have a blob.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.blobs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn read(path: &Path) -> std::io::Result<(PolicyId, Arc<[u8]>)> {
    let bytes = std::fs::read(path)?;
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| std::io::Error::other("no header line"))?;
    let header: Header =
        serde_json::from_slice(&bytes[..newline]).map_err(std::io::Error::other)?;
    Ok((
        PolicyId {
            file: header.file,
            name: header.policy,
        },
        Arc::from(&bytes[newline + 1..]),
    ))
}

fn write(path: &Path, id: &PolicyId, blob: &[u8]) -> std::io::Result<()> {
    let header = serde_json::to_vec(&Header {
        file: id.file.clone(),
        policy: id.name.clone(),
    })
    .map_err(std::io::Error::other)?;
    // 0600, replaced whole and durably (temporary removed on failure).
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Err(std::io::Error::other(
            "a plugin state path has no directory",
        ));
    };
    warden_core::fsx::write_atomic_with(dir, name, |f| {
        f.write_all(&header)?;
        f.write_all(b"\n")?;
        f.write_all(blob)
    })
}

impl PluginStateStore for PluginStates {
    fn load(&self, id: &PolicyId) -> Option<Arc<[u8]>> {
        self.blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn save(&self, id: &PolicyId, blob: Option<Arc<[u8]>>) {
        // The lock is held through the write, so two saves of one policy
        // land in the order they were made.
        let mut blobs = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        let result = match (&self.dir, &blob) {
            (None, _) => Ok(()),
            (Some(dir), Some(b)) => write(&Self::path(dir, id), id, b),
            (Some(dir), None) => match std::fs::remove_file(Self::path(dir, id)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            },
        };
        if let Err(e) = result {
            tracing::error!(policy = %id.name, file = %id.file.display(), error = %e, "cannot save the plugin's state; it will be lost on restart");
        }
        match blob {
            Some(b) => blobs.insert(id.clone(), b),
            None => blobs.remove(id),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(file: &str, name: &str) -> PolicyId {
        PolicyId {
            file: file.into(),
            name: name.into(),
        }
    }

    #[test]
    fn blobs_survive_reopening_and_go_with_their_policy() {
        let dir = tempfile::tempdir().unwrap();
        let s = PluginStates::open(dir.path()).unwrap();
        s.save(&id("/p/a.yaml", "x"), Some(Arc::from(&b"one\ntwo"[..])));
        s.save(&id("/p/a.yaml", "y"), Some(Arc::from(&b"y"[..])));
        s.save(&id("/p/b.yaml", "x"), Some(Arc::from(&b"bx"[..])));
        s.save(&id("/p/b.yaml", "x"), None);
        drop(s);
        let s = PluginStates::open(dir.path()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.load(&id("/p/a.yaml", "x")).as_deref(),
            Some(&b"one\ntwo"[..])
        );
        assert_eq!(s.load(&id("/p/b.yaml", "x")), None);
        s.retain(|_, name| name != "y");
        drop(s);
        let s = PluginStates::open(dir.path()).unwrap();
        assert_eq!(s.load(&id("/p/a.yaml", "y")), None);
        assert_eq!(s.len(), 1);
        // A damaged file is set aside; the rest still load.
        std::fs::write(dir.path().join(DIR).join("junk.state"), "no header").unwrap();
        let s = PluginStates::open(dir.path()).unwrap();
        assert_eq!(s.len(), 1);
    }

    /// Issue 12's data-dir rules: the folder 0700, each blob 0600, and no
    /// temporary file left behind.
    #[test]
    fn blobs_are_private_and_written_whole() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let s = PluginStates::open(&state).unwrap();
        let who = id("/p/a.yaml", "x");
        s.save(&who, Some(Arc::from(&b"secret"[..])));
        assert_eq!(mode(&state.join(DIR)), 0o700);
        let names: Vec<_> = std::fs::read_dir(state.join(DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].ends_with(".state"), "{names:?}");
        assert_eq!(mode(&PluginStates::path(&state.join(DIR), &who)), 0o600);
    }
}
