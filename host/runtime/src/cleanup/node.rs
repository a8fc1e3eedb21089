//! The path-relative system calls the cleanup code makes, through `rustix`:
//! every name is looked up in a directory descriptor, never followed if it is
//! a symlink, and described by one `statx` that also says which mount it is
//! on (so a bind mount of the same device is told apart from its parent).

use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags};
use rustix::io::Errno;

/// What one `statx` says about a file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Node {
    /// Its device (as `st_dev`).
    pub(crate) dev: u64,
    /// Its inode.
    pub(crate) ino: u64,
    /// The mount it is on; `None` if the kernel does not say (before 5.8).
    pub(crate) mnt_id: Option<u64>,
    /// Its type.
    pub(crate) kind: FileType,
    /// Its permission bits (with setuid, setgid and sticky).
    pub(crate) perm: u32,
    /// Its owner.
    pub(crate) uid: u32,
    /// Its group.
    pub(crate) gid: u32,
    /// Its apparent length.
    pub(crate) len: u64,
    /// Its hard links.
    pub(crate) links: u32,
    /// The space it takes: 512-byte blocks allocated, times 512. A sparse
    /// file's length says nothing of what deleting it frees; this does.
    pub(crate) allocated: u64,
    /// Last content change, ms since the epoch.
    pub(crate) modified_ms: i64,
    /// Last access, ms since the epoch.
    pub(crate) accessed_ms: i64,
}

impl Node {
    /// Returns true if and only if `other` is the same file: same device and
    /// inode.
    pub(crate) fn same_file(&self, other: &Node) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }

    /// Returns true if and only if `other` is on the same mount as `self`:
    /// the same mount id where the kernel reports one, else the same device.
    pub(crate) fn same_mount(&self, other: &Node) -> bool {
        match (self.mnt_id, other.mnt_id) {
            (Some(a), Some(b)) => a == b && self.dev == other.dev,
            _ => self.dev == other.dev,
        }
    }

    /// Returns what is at `name` in `dir`, not following a symlink.
    pub(crate) fn at(dir: impl AsFd, name: &CStr) -> Result<Node, Errno> {
        statx(dir, name, AtFlags::SYMLINK_NOFOLLOW)
    }

    /// Returns what `fd` is open on.
    pub(crate) fn of(fd: impl AsFd) -> Result<Node, Errno> {
        statx(fd, c"", AtFlags::EMPTY_PATH)
    }

    /// Returns a short description of its type, for messages.
    pub(crate) fn kind_name(&self) -> &'static str {
        kind_name(self.kind)
    }
}

/// Returns a short description of a file type, for messages.
pub(crate) fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Symlink => "a symlink",
        FileType::Directory => "a directory",
        FileType::Socket => "a socket",
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        FileType::RegularFile => "a regular file",
        _ => "not a regular file",
    }
}

fn statx(dir: impl AsFd, name: &CStr, flags: AtFlags) -> Result<Node, Errno> {
    let want = StatxFlags::BASIC_STATS | StatxFlags::MNT_ID;
    let st = rustix::fs::statx(dir, name, flags, want)?;
    let ms = |t: rustix::fs::StatxTimestamp| {
        t.tv_sec
            .saturating_mul(1000)
            .saturating_add(i64::from(t.tv_nsec / 1_000_000))
    };
    let mode = u32::from(st.stx_mode);
    Ok(Node {
        dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
        mnt_id: (st.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(st.stx_mnt_id),
        kind: FileType::from_raw_mode(mode),
        perm: mode & 0o7777,
        uid: st.stx_uid,
        gid: st.stx_gid,
        len: st.stx_size,
        links: st.stx_nlink,
        allocated: st.stx_blocks.saturating_mul(512),
        modified_ms: ms(st.stx_mtime),
        accessed_ms: ms(st.stx_atime),
    })
}

/// Opens the directory `name` in `dir` without following it if it is a
/// symlink (`ELOOP`) and failing if it is not a directory (`ENOTDIR`).
pub(crate) fn open_dir_at(dir: impl AsFd, name: &CStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens the file `name` in `dir` for reading, without following a symlink,
/// blocking on a FIFO or taking a terminal.
pub(crate) fn open_file_at(dir: impl AsFd, name: &CStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}
