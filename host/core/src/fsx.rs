//! Files Warden keeps for itself (state, batch files, compiled plugins, the
//! API token): directories created 0700 and files 0600, replaced whole and
//! durably (temporary file, fsync, rename, fsync of the directory, the
//! temporary removed when any step fails), and directories checked before
//! they are trusted.
//!
//! Warden runs as root: whoever can write one of its directories can plant
//! what it later reads (a compiled plugin is native code), so a directory
//! owned by another user, or writable by its group or by others, is refused
//! rather than used.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the directories Warden creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files Warden creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `path` and any missing parents, each new one with mode 0700.
/// Directories that already exist keep their mode.
pub fn create_private_dir_all(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Options that create (or truncate) a file with mode 0600 for writing.
pub fn private_file() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true).mode(FILE_MODE);
    o
}

/// Options that open a file for appending, creating it with mode 0600.
pub fn private_append() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.append(true).create(true).mode(FILE_MODE);
    o
}

/// Makes a rename or a new entry in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `dir/name` whole or not at all: a 0600 temporary file
/// next to it (`.{name}.tmp`), fsync, rename over `name`, fsync of `dir`.
/// On any failure the temporary file is removed, so a full disk leaves
/// nothing behind but the previous content.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(dir, name, |f| f.write_all(bytes))
}

/// [`write_atomic`] with the content written by `fill`.
pub fn write_atomic_with(
    dir: &Path,
    name: &str,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut f = private_file().open(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        // Best effort: the error that matters is the one returned.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Why a directory is not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untrusted {
    /// It is owned by another user.
    Owner {
        /// Its owner.
        uid: u32,
        /// Warden's effective user.
        euid: u32,
    },
    /// Its group or others may write it.
    Writable {
        /// Its mode.
        mode: u32,
    },
    /// It is not a directory.
    NotADirectory,
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Untrusted::Owner { uid, euid } => write!(
                f,
                "it is owned by uid {uid}, not by the user Warden runs as (uid {euid}); `chown` it to that user"
            ),
            Untrusted::Writable { mode } => write!(
                f,
                "its mode {:04o} lets its group or others write it; `chmod go-w` it (Warden creates its directories 0700)",
                mode & 0o7777
            ),
            Untrusted::NotADirectory => f.write_str("it is not a directory"),
        }
    }
}

/// Checks that `dir` is a directory owned by the effective user that only
/// that user may write. Symbolic links are followed: the directory they
/// lead to is what is checked.
pub fn check_private_dir(dir: &Path) -> io::Result<Result<(), Untrusted>> {
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Ok(Err(Untrusted::NotADirectory));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Ok(Err(Untrusted::Owner {
            uid: meta.uid(),
            euid,
        }));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return Ok(Err(Untrusted::Writable { mode }));
    }
    Ok(Ok(()))
}

/// Creates `dir` (0700) if missing, then checks it as [`check_private_dir`]
/// does; the error names `what` and `dir` and says what to do.
pub fn ensure_private_dir(dir: &Path, what: &str) -> io::Result<()> {
    create_private_dir_all(dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("failed to create the {what} `{}`: {e}", dir.display()),
        )
    })?;
    match check_private_dir(dir) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing to use the {what} `{}`: {why}", dir.display()),
        )),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("failed to inspect the {what} `{}`: {e}", dir.display()),
        )),
    }
}

/// `N` bytes from the kernel's random number generator.
pub fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

/// Reads the secret in `path`, or creates it (0600, `N` random bytes) if the
/// file does not exist. A secret file readable or writable by others is
/// refused, as is one of the wrong length.
pub fn load_or_create_secret<const N: usize>(path: &Path) -> io::Result<[u8; N]> {
    match File::open(path) {
        Ok(mut f) => {
            let meta = f.metadata()?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "refusing the secret `{}`: its mode {:04o} lets others read or write it; `chmod 600` it",
                        path.display(),
                        meta.permissions().mode() & 0o7777
                    ),
                ));
            }
            let mut buf = [0u8; N];
            let mut extra = [0u8; 1];
            f.read_exact(&mut buf).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "the secret `{}` is shorter than {N} bytes: {e}",
                        path.display()
                    ),
                )
            })?;
            if f.read(&mut extra)? != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the secret `{}` is longer than {N} bytes", path.display()),
                ));
            }
            Ok(buf)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let secret = random_bytes::<N>()?;
            let dir = path.parent().unwrap_or(Path::new("."));
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| io::Error::other("a secret's path must end in a file name"))?;
            write_atomic(dir, name, &secret)?;
            Ok(secret)
        }
        Err(e) => Err(e),
    }
}

/// Reads the token in `path`, or creates one (0600: 32 random bytes as 64
/// hex digits) if the file does not exist. A token file others may read or
/// write is refused, as is an empty one.
pub fn load_or_create_token(path: &Path) -> io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "refusing the token `{}`: its mode {:04o} lets others read or write it; `chmod 600` it",
                        path.display(),
                        mode & 0o7777
                    ),
                ));
            }
            let token = text.trim();
            if token.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the token file `{}` is empty; delete it to have a new one made",
                        path.display()
                    ),
                ));
            }
            Ok(token.to_owned())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let bytes = random_bytes::<32>()?;
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let dir = path.parent().unwrap_or(Path::new("."));
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| io::Error::other("a token's path must end in a file name"))?;
            write_atomic(dir, name, format!("{token}\n").as_bytes())?;
            Ok(token)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_directories_and_files_are_private() {
        let tmp = tempfile_dir();
        let dir = tmp.join("a/b");
        create_private_dir_all(&dir).unwrap();
        for d in [tmp.join("a"), dir.clone()] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        write_atomic(&dir, "f", b"x").unwrap();
        let mode = std::fs::metadata(dir.join("f"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(check_private_dir(&dir).unwrap(), Ok(()));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert!(matches!(
            check_private_dir(&dir).unwrap(),
            Err(Untrusted::Writable { .. })
        ));
        let e = ensure_private_dir(&dir, "data directory").unwrap_err();
        assert!(e.to_string().contains("chmod go-w"), "{e}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_failed_atomic_write_leaves_no_temporary_file() {
        let tmp = tempfile_dir();
        // A directory in the way of the rename makes the last step fail.
        std::fs::create_dir(tmp.join("f")).unwrap();
        std::fs::write(tmp.join("f/inside"), b"").unwrap();
        assert!(write_atomic(&tmp, "f", b"x").is_err());
        assert!(!tmp.join(".f.tmp").exists());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn secrets_are_created_once_and_refused_when_others_can_read_them() {
        let tmp = tempfile_dir();
        let path = tmp.join("key");
        let a: [u8; 32] = load_or_create_secret(&path).unwrap();
        let b: [u8; 32] = load_or_create_secret(&path).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, [0; 32]);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_or_create_secret::<32>(&path).is_err());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    /// A fresh directory under the system's temporary directory (this crate
    /// has no dev-dependencies).
    fn tempfile_dir() -> std::path::PathBuf {
        let n: [u8; 8] = random_bytes().unwrap();
        let dir = std::env::temp_dir().join(format!(
            "warden-core-{}",
            n.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
        std::fs::create_dir(&dir).unwrap();
        dir
    }
}
