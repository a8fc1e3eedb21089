//! The checks every deletion passes, and the system calls that make them:
//! a path inside the scope and outside its excludes, reached from the run's
//! pinned scope root without following a symlink or crossing a mount point
//! (a bind mount of the same device included), still the file the plugin was
//! shown (same device and inode), and not locked by another process.

use std::ffi::{CString, OsStr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, FlockOperation};
use rustix::io::Errno;

use super::node::{Node, open_dir_at, open_file_at};
use super::root::{Root, Scope};
use super::walk::{Candidates, Found};
use super::{Outcome, Rules, refused, skipped};

/// A deletion's target that passed the checks needing no filesystem.
pub(super) struct Target<'a> {
    /// Which scope root.
    pub(super) root: usize,
    /// Its path below the root.
    pub(super) rel: &'a Path,
    /// The file the plugin was shown.
    pub(super) found: Found,
}

/// The path checks that need no filesystem: candidate `index` exists, is an
/// absolute path without `.` or `..` under the root it was found in, is not
/// that root, and matches no exclude glob.
pub(super) fn check<'a>(
    rules: &Rules,
    scope: &'a Scope,
    candidates: &'a Candidates,
    index: usize,
) -> Result<Target<'a>, Outcome> {
    let (Some(name), Some(found)) = (candidates.set.name(index), candidates.found(index)) else {
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
    let Some(rel) = scope
        .root(found.root as usize)
        .and_then(|r| path.strip_prefix(&r.path).ok())
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
    Ok(Target {
        root: found.root as usize,
        rel,
        found,
    })
}

/// A directory under a scope root, opened by [`open_dir`].
pub(super) struct OpenDir {
    /// Which scope root.
    pub(super) root: usize,
    /// Its path below the root.
    pub(super) rel: PathBuf,
    pub(super) fd: OwnedFd,
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

fn io(what: &str, e: Errno) -> Stop {
    Stop::Fail {
        errno: Some(e.raw_os_error()),
        message: format!("{what}: {}", std::io::Error::from(e)),
    }
}

pub(super) fn cstr(s: &OsStr) -> Result<CString, Stop> {
    CString::new(s.as_bytes()).map_err(|_| Stop::Refuse("a path with a NUL byte".into()))
}

/// Opens `rel` below `root` (scope root number `index`) from the run's pinned
/// descriptor, without following any symlink and without leaving the root's
/// mount.
pub(super) fn open_dir(index: usize, root: &Root, rel: &Path) -> Result<OpenDir, Stop> {
    let mut dir = rustix::io::fcntl_dupfd_cloexec(root.fd(), 0)
        .map_err(|e| io("reusing the scope root", e))?;
    for part in rel {
        let c = cstr(part)?;
        dir = match open_dir_at(&dir, &c) {
            Ok(d) => d,
            Err(Errno::LOOP | Errno::NOTDIR) => {
                return Err(Stop::Refuse(format!(
                    "`{}` on the way is a symlink or not a directory; symlinks are never followed",
                    part.to_string_lossy()
                )));
            }
            Err(Errno::NOENT) => {
                return Err(Stop::Skip("gone before it was reached".into()));
            }
            Err(e) => return Err(io("opening a directory on the way", e)),
        };
        let node = Node::of(&dir).map_err(|e| io("reading a directory on the way", e))?;
        if !node.same_mount(root.node()) {
            return Err(Stop::Refuse(format!(
                "`{}` is a mount point (another filesystem, or a bind mount); a mount point is never crossed",
                part.to_string_lossy()
            )));
        }
    }
    Ok(OpenDir {
        root: index,
        rel: rel.to_owned(),
        fd: dir,
    })
}

/// Stats `name` in `dir` without following it and checks it is still what
/// may be removed: of type `want`, never a symlink, on the root's mount, and
/// the very file the plugin was shown.
fn judge(
    dir: &OwnedFd,
    root: &Node,
    name: &CString,
    shown: Found,
    want: FileType,
) -> Result<Node, Stop> {
    let node = match Node::at(dir, name) {
        Ok(n) => n,
        Err(Errno::NOENT) => return Err(Stop::Skip("already gone".into())),
        Err(e) => return Err(io("reading it", e)),
    };
    if node.kind == FileType::Symlink {
        return Err(Stop::Refuse(
            "a symlink; symlinks are never followed or deleted through".into(),
        ));
    }
    if node.kind != want {
        return Err(Stop::Skip(if want == FileType::Directory {
            "no longer a directory since the plan was made".into()
        } else {
            format!("{}; only regular files are deleted", node.kind_name())
        }));
    }
    // A directory on another mount (a bind mount of the same filesystem
    // included) is a mount point. A file on the root's filesystem that is
    // itself bind-mounted is not listed by the scan, and the kernel refuses
    // to unlink it (`EBUSY`, retried as a passing failure).
    let same = if want == FileType::Directory {
        node.same_mount(root)
    } else {
        node.dev == root.dev
    };
    if !same {
        return Err(Stop::Refuse(
            "a mount point (another filesystem, or a bind mount); a mount point is never crossed"
                .into(),
        ));
    }
    if node.dev != shown.dev || node.ino != shown.ino {
        return Err(Stop::Skip(
            "replaced since the plan was made (another device or inode)".into(),
        ));
    }
    Ok(node)
}

/// Unlinks `name` in `dir` if it is the regular file the plugin was shown, on
/// the root's mount, that no other process holds an `flock` on; returns the
/// space it took.
pub(super) fn unlink_in(
    dir: &OwnedFd,
    root: &Node,
    name: &CString,
    shown: Found,
    dry_run: bool,
) -> Result<u64, Stop> {
    let node = judge(dir, root, name, shown, FileType::RegularFile)?;
    // Another process's advisory lock means it is in use: leave it. The lock
    // is held across the unlink so nobody takes it in between.
    let file = match open_file_at(dir, name) {
        Ok(f) => f,
        Err(Errno::NOENT) => return Err(Stop::Skip("already gone".into())),
        Err(e) => return Err(io("opening the file to check its lock", e)),
    };
    // The name may have been pointed at another file since the stat: the
    // lock must be checked on the file that was judged.
    match Node::of(&file) {
        Ok(f) if f.same_file(&node) => {}
        Ok(_) => {
            return Err(Stop::Skip(
                "replaced while being checked (another inode)".into(),
            ));
        }
        Err(e) => return Err(io("reading the opened file", e)),
    }
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => {
            return Err(Stop::Skip("locked (flock) by another process".into()));
        }
        Err(e) => return Err(io("locking the file", e)),
    }
    // A file with other hard links keeps its blocks when this name goes:
    // deleting it frees nothing, and a quota's cleanup that counted its
    // size would stop before it had reclaimed what it must.
    if dry_run {
        return Ok(if node.links > 1 { 0 } else { node.allocated });
    }
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => {}
        Err(Errno::NOENT) => return Err(Stop::Skip("already gone".into())),
        Err(e) => return Err(io("deleting", e)),
    }
    // Links counted after the unlink, on the file still open: one made
    // since the check keeps the blocks too.
    let left = Node::of(&file).map_or(node.links.saturating_sub(1), |n| n.links);
    drop(file);
    Ok(if left > 0 { 0 } else { node.allocated })
}

/// Removes the directory `name` in `dir` if it is empty, on the root's mount,
/// and still the one the plugin was shown. Like systemd-tmpfiles, only empty
/// directories go: what is in one is judged file by file.
pub(super) fn rmdir_in(
    dir: &OwnedFd,
    root: &Node,
    name: &CString,
    shown: Found,
    dry_run: bool,
) -> Result<u64, Stop> {
    judge(dir, root, name, shown, FileType::Directory)?;
    if dry_run {
        return Ok(0);
    }
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) => Ok(0),
        Err(Errno::NOTEMPTY | Errno::EXIST) => Err(Stop::Skip(
            "not empty; only empty directories are removed".into(),
        )),
        Err(Errno::NOENT) => Err(Stop::Skip("already gone".into())),
        Err(e) => Err(io("removing the directory", e)),
    }
}
