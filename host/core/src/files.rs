//! Reading the files Warden is handed — policy files, plugins, its config —
//! which may be anything: only regular files are read, never more than a
//! cap, and nothing that could block (a FIFO) or never end (`/dev/zero`) is
//! ever opened for long. Errors say what the file is instead, and never
//! repeat what is in it.

use std::fmt;
use std::io::Read;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags};

/// Why a file was not read.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadError {
    /// It is not a regular file.
    NotRegular {
        /// What it is, such as "a FIFO".
        kind: &'static str,
    },
    /// It is larger than the cap.
    TooLarge {
        /// Its size (at least).
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// The system refused (missing, no permission…).
    Io(std::io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NotRegular { kind } => write!(
                f,
                "is {kind}, not a regular file; Warden reads only regular files"
            ),
            ReadError::TooLarge { size, cap } => write!(
                f,
                "is {size} bytes, over the {cap} bytes Warden reads from such a file"
            ),
            ReadError::Io(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

impl ReadError {
    /// Returns true if and only if the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Returns a short description of a file type, for messages.
fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Directory => "a directory",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Symlink => "a symlink",
        _ => "not a regular file",
    }
}

/// Reads the regular file at `path` (symlinks followed), of at most `cap`
/// bytes. It is opened without blocking (a FIFO opens at once, and is then
/// refused), its type and size are checked on the open descriptor, and at
/// most `cap + 1` bytes are read, so a file that grows while read is
/// refused too.
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ReadError::Io(e.into()))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| ReadError::Io(e.into()))?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(ReadError::NotRegular {
            kind: kind_name(kind),
        });
    }
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size > cap {
        return Err(ReadError::TooLarge { size, cap });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    std::fs::File::from(fd)
        .take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            cap,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_regular_files_under_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "hello").unwrap();
        assert_eq!(read_regular(&f, 5).unwrap(), b"hello");
        assert!(matches!(
            read_regular(&f, 4),
            Err(ReadError::TooLarge { size: 5, cap: 4 })
        ));
        let e = read_regular(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(
            e.to_string(),
            "is a character device, not a regular file; Warden reads only regular files"
        );
        assert!(matches!(
            read_regular(dir.path(), 1 << 20),
            Err(ReadError::NotRegular {
                kind: "a directory"
            })
        ));
        assert!(
            read_regular(&dir.path().join("missing"), 1)
                .unwrap_err()
                .is_not_found()
        );
    }

    #[test]
    fn a_fifo_fails_at_once_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // Nobody writes to it: a plain open would wait for a writer forever.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(read_regular(&fifo, 1 << 20).map(drop)));
        let r = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("reading a FIFO blocked");
        assert!(
            matches!(r, Err(ReadError::NotRegular { kind: "a FIFO" })),
            "{r:?}"
        );
    }
}
