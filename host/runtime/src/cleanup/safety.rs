//! The checks every deletion passes, and the system calls that make them:
//! a path inside the scope and outside its excludes, reached from the scope
//! root without following a symlink or crossing a mount point, still the file
//! the plugin was shown, and not locked by another process.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use warden_core::records::ResourceSet;

use super::{Outcome, Rules, refused, skipped};

/// The path checks that need no filesystem: returns the index of the scope
/// root candidate `index` is under and its path below that root.
pub(super) fn check<'a>(
    rules: &Rules,
    candidates: &'a ResourceSet,
    index: usize,
) -> Result<(usize, &'a Path), Outcome> {
    let Some(name) = candidates.name(index) else {
        return Err(refused(format!("candidate {index} does not exist")));
    };
    let path = Path::new(name);
    if !path.is_absolute() {
        return Err(refused(format!("`{name}` is not an absolute path")));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(refused(format!("`{name}` contains `.` or `..`")));
    }
    let Some((root, rel)) = rules
        .roots
        .iter()
        .enumerate()
        .find_map(|(i, r)| path.strip_prefix(r).ok().map(|rel| (i, rel)))
    else {
        return Err(refused(format!(
            "`{name}` is outside the policy's scope paths"
        )));
    };
    if rel.as_os_str().is_empty() {
        return Err(refused("a scope path itself is never deleted"));
    }
    if rules.exclude.is_match(path) {
        return Err(skipped("matches an exclude glob"));
    }
    Ok((root, rel))
}

/// A directory under a scope root, opened by [`open_dir`].
pub(super) struct OpenDir {
    /// Which scope root.
    pub(super) root: usize,
    /// Its path below the root.
    pub(super) rel: PathBuf,
    pub(super) fd: OwnedFd,
    /// The root's filesystem.
    pub(super) dev: libc::dev_t,
}

pub(super) enum Stop {
    Refuse(String),
    Skip(String),
    /// A system call failed; `errno` says whether trying again may help.
    Fail {
        message: String,
        errno: Option<i32>,
    },
}

fn io(what: &str, e: &std::io::Error) -> Stop {
    Stop::Fail {
        errno: e.raw_os_error(),
        message: format!("{what}: {e}"),
    }
}

pub(super) fn cstr(s: &OsStr) -> Result<CString, Stop> {
    CString::new(s.as_bytes()).map_err(|_| Stop::Refuse("a path with a NUL byte".into()))
}

fn fstatat(dir: &OwnedFd, name: &CString) -> std::io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is an open descriptor, `name` is NUL-terminated and `st`
    // is writable for the call.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(st)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn fstat(fd: &OwnedFd) -> std::io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` writable.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0 {
        Ok(st)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn openat(dir: Option<&OwnedFd>, name: &CString, flags: i32) -> std::io::Result<OwnedFd> {
    let at = dir.map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd);
    // SAFETY: `name` is NUL-terminated; the result is checked before use.
    let fd = unsafe { libc::openat(at, name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn kind_of(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFLNK => "a symlink",
        libc::S_IFDIR => "a directory",
        libc::S_IFSOCK => "a socket",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFCHR | libc::S_IFBLK => "a device",
        _ => "not a regular file",
    }
}

/// Opens `root/rel` (scope root number `index`) without following any
/// symlink below `root` and without leaving `root`'s filesystem.
pub(super) fn open_dir(index: usize, root: &Path, rel: &Path) -> Result<OpenDir, Stop> {
    let root_c = cstr(root.as_os_str())?;
    let mut dir = match openat(None, &root_c, libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(Stop::Skip("the scope path is gone".into()));
        }
        Err(e) => return Err(io("opening the scope path", &e)),
    };
    let root_dev = fstat(&dir)
        .map_err(|e| io("reading the scope path", &e))?
        .st_dev;
    for part in rel {
        let c = cstr(part)?;
        dir = match openat(
            Some(&dir),
            &c,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        ) {
            Ok(d) => d,
            Err(e)
                if e.raw_os_error() == Some(libc::ELOOP)
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                return Err(Stop::Refuse(format!(
                    "`{}` on the way is a symlink or not a directory; symlinks are never followed",
                    part.to_string_lossy()
                )));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Err(Stop::Skip("gone before it was reached".into()));
            }
            Err(e) => return Err(io("opening a directory on the way", &e)),
        };
        let st = fstat(&dir).map_err(|e| io("reading a directory on the way", &e))?;
        if st.st_dev != root_dev {
            return Err(Stop::Refuse(format!(
                "`{}` is on another filesystem; a mount point is never crossed",
                part.to_string_lossy()
            )));
        }
    }
    Ok(OpenDir {
        root: index,
        rel: rel.to_owned(),
        fd: dir,
        dev: root_dev,
    })
}

/// Stats `name` in `dir` without following it and checks it is still what
/// may be removed: of type `want` (`S_IFREG` or `S_IFDIR`), never a
/// symlink, on `root_dev` (so not a mount point), with inode `expect_inode`
/// (any, if 0).
fn judge(
    dir: &OwnedFd,
    root_dev: libc::dev_t,
    name: &CString,
    expect_inode: u64,
    want: libc::mode_t,
) -> Result<libc::stat, Stop> {
    let st = match fstatat(dir, name) {
        Ok(st) => st,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(Stop::Skip("already gone".into()));
        }
        Err(e) => return Err(io("reading it", &e)),
    };
    let kind = st.st_mode & libc::S_IFMT;
    if kind == libc::S_IFLNK {
        return Err(Stop::Refuse(
            "a symlink; symlinks are never followed or deleted through".into(),
        ));
    }
    if kind != want {
        return Err(Stop::Skip(if want == libc::S_IFDIR {
            "no longer a directory since the plan was made".into()
        } else {
            format!("{}; only regular files are deleted", kind_of(st.st_mode))
        }));
    }
    if st.st_dev != root_dev {
        return Err(Stop::Refuse(
            "on another filesystem; a mount point is never crossed".into(),
        ));
    }
    if expect_inode != 0 && st.st_ino != expect_inode {
        return Err(Stop::Skip(
            "replaced since the plan was made (another inode)".into(),
        ));
    }
    Ok(st)
}

/// Unlinks `name` in `dir` if it is a regular file on `root_dev` with inode
/// `expect_inode` (any, if 0) that no other process holds an `flock` on;
/// returns the file's size.
pub(super) fn unlink_in(
    dir: &OwnedFd,
    root_dev: libc::dev_t,
    name: &CString,
    expect_inode: u64,
    dry_run: bool,
) -> Result<u64, Stop> {
    let st = judge(dir, root_dev, name, expect_inode, libc::S_IFREG)?;
    // Another process's advisory lock means it is in use: leave it. The lock
    // is held across the unlink so nobody takes it in between.
    let file = match openat(
        Some(dir),
        name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
    ) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(Stop::Skip("already gone".into()));
        }
        Err(e) => return Err(io("opening the file to check its lock", &e)),
    };
    // The name may have been pointed at another file since the stat: the
    // lock must be checked on the file that was judged.
    match fstat(&file) {
        Ok(f) if f.st_ino == st.st_ino && f.st_dev == st.st_dev => {}
        Ok(_) => {
            return Err(Stop::Skip(
                "replaced while being checked (another inode)".into(),
            ));
        }
        Err(e) => return Err(io("reading the opened file", &e)),
    }
    // SAFETY: `file` is an open descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Stop::Skip("locked (flock) by another process".into())
        } else {
            io("locking the file", &e)
        });
    }
    let bytes = u64::try_from(st.st_size).unwrap_or(0);
    if dry_run {
        return Ok(bytes);
    }
    // SAFETY: `dir` is open and `name` NUL-terminated.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::ENOENT) {
            Stop::Skip("already gone".into())
        } else {
            io("deleting", &e)
        });
    }
    drop(file);
    Ok(bytes)
}

/// Removes the directory `name` in `dir` if it is empty, on `root_dev`,
/// and still inode `expect_inode` (any, if 0). Like systemd-tmpfiles, only
/// empty directories go: what is in one is judged file by file.
pub(super) fn rmdir_in(
    dir: &OwnedFd,
    root_dev: libc::dev_t,
    name: &CString,
    expect_inode: u64,
    dry_run: bool,
) -> Result<u64, Stop> {
    judge(dir, root_dev, name, expect_inode, libc::S_IFDIR)?;
    if dry_run {
        return Ok(0);
    }
    // SAFETY: `dir` is open and `name` NUL-terminated.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOTEMPTY | libc::EEXIST) => {
                Stop::Skip("not empty; only empty directories are removed".into())
            }
            Some(libc::ENOENT) => Stop::Skip("already gone".into()),
            _ => io("removing the directory", &e),
        });
    }
    Ok(0)
}
