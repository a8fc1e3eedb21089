//! What a cleanup policy is shown: the files and directories under its scope
//! roots, found from the run's pinned root descriptors without following
//! symlinks or crossing into another mount (bind mounts of the same device
//! included), with the sizes and times the plugin judges them by. A
//! directory is listed after everything in it, so a plan that walks the
//! candidates in order empties a directory before it removes it.
//!
//! Each candidate's device and inode are recorded beside it ([`Found`]), and
//! a deletion acts only on the file with both.
//!
//! The size of a file is the space it takes on disk (allocated blocks × 512),
//! not its apparent length: that is what deleting it frees, and one user's
//! sparse file (`truncate -s 10T`) must not weigh on a byte budget as if it
//! filled the disk.

use std::ffi::{CStr, CString};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Dir, FileType};
use warden_core::records::{NewResource, ResourceKind, ResourceSet};

use super::node::{Node, open_dir_at};
use super::root::{Root, Scope};

/// At most this many candidates per run: a plan is made over a bounded set.
pub const MAX_CANDIDATES: usize = 200_000;

/// At most this many bytes of candidate paths per run (the string table the
/// plugin is sent): with [`MAX_CANDIDATES`], a bound on what a scan holds
/// however long the names someone made in the scope.
pub const MAX_CANDIDATE_BYTES: usize = 64 << 20;

/// Directories deeper than this below a root are not entered: a walk holds
/// one descriptor per level, and nobody keeps scratch files 256 levels down.
pub const MAX_DEPTH: usize = 256;

/// Which root a candidate was found under, and which file it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// Its scope root, by position in [`Scope::roots`].
    pub root: u32,
    /// Its device.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
}

/// The candidates of a run: what the plugin is shown, and beside it, what
/// each one is.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    /// What the plugin is shown.
    pub set: ResourceSet,
    found: Vec<Found>,
}

impl Candidates {
    /// Returns how many there are.
    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// Returns true if and only if there are none.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// Returns where candidate `index` was found and what it is.
    pub fn found(&self, index: usize) -> Option<Found> {
        self.found.get(index).copied()
    }

    /// Adds a candidate named `name` (a path under root `root`) that is the
    /// file `node`, as a directory if `dir`. Returns false, adding nothing,
    /// when the set is full.
    fn add(&mut self, root: u32, name: &str, node: &Node, dir: bool) -> bool {
        if self.found.len() >= MAX_CANDIDATES
            || self.set.strings_len() + name.len() > MAX_CANDIDATE_BYTES
        {
            return false;
        }
        let pushed = self.set.try_push(NewResource {
            handle: node.ino,
            kind: Some(if dir {
                ResourceKind::Directory
            } else {
                ResourceKind::File
            }),
            name,
            size_bytes: if dir { 0 } else { node.allocated },
            created_ms: None,
            modified_ms: Some(node.modified_ms),
            accessed_ms: Some(node.accessed_ms),
            ..Default::default()
        });
        if pushed.is_none() {
            return false;
        }
        self.found.push(Found {
            root,
            dev: node.dev,
            ino: node.ino,
        });
        true
    }

    /// Replaces what candidate `index` is recorded to be, for tests of what
    /// the executor does with a file that is not it.
    #[cfg(test)]
    pub(crate) fn set_found(&mut self, index: usize, found: Found) {
        self.found[index] = found;
    }

    /// Adds `path` as a candidate under root `root` of `scope`, as the scan
    /// would have found it now, for tests that name their own targets. A path
    /// that cannot be read is added as no file at all (device and inode 0),
    /// which no deletion matches.
    #[doc(hidden)]
    pub fn push_path(&mut self, root: u32, path: &Path) {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path).ok();
        let node = Node {
            dev: meta.as_ref().map_or(0, MetadataExt::dev),
            ino: meta.as_ref().map_or(0, MetadataExt::ino),
            mnt_id: None,
            kind: FileType::RegularFile,
            perm: 0,
            uid: 0,
            gid: 0,
            len: meta.as_ref().map_or(0, MetadataExt::size),
            links: meta.as_ref().map_or(1, |m| m.nlink() as u32),
            allocated: meta.as_ref().map_or(0, |m| m.blocks() * 512),
            modified_ms: 0,
            accessed_ms: 0,
        };
        let dir = meta.as_ref().is_some_and(std::fs::Metadata::is_dir);
        let name = path.to_str().expect("a UTF-8 path");
        assert!(self.add(root, name, &node, dir), "the set is full");
    }
}

/// A directory being listed: its descriptor, its path, and the directories
/// in it still to enter.
struct Frame {
    fd: OwnedFd,
    /// Its path, as candidates name it.
    path: String,
    /// What it is (to list it once its contents are done).
    node: Node,
    /// Subdirectories still to enter: name and what the scan saw.
    pending: Vec<(CString, Node)>,
}

/// Returns the regular files and directories under the roots of `scope` (not
/// the roots themselves). Symlinks are never followed, directories on
/// another mount than their root are neither entered nor listed, and sockets,
/// FIFOs and devices are not candidates. Directories have size 0, so size
/// budgets count file contents only. Names that are not UTF-8 are left out.
pub fn scan(scope: &Scope) -> Candidates {
    let mut out = Candidates::default();
    for (i, root) in scope.roots().iter().enumerate() {
        if !scan_root(&mut out, i as u32, root) {
            tracing::warn!(
                root = %root.path.display(),
                "the scope holds more than {MAX_CANDIDATES} candidates or {} MiB of names; the plugin is shown the first ones",
                MAX_CANDIDATE_BYTES >> 20
            );
            break;
        }
    }
    out
}

/// Lists the directory open on `fd` at `path`: its files go into `out`, its
/// subdirectories (same mount) into the returned list. Returns `None` when
/// `out` is full.
fn list(
    out: &mut Candidates,
    root_index: u32,
    root: &Node,
    fd: &OwnedFd,
    path: &str,
) -> Option<Vec<(CString, Node)>> {
    let mut dirs = Vec::new();
    // A listing of its own (the kernel keeps one read position per open
    // file), so `fd` stays free for the `statx` of each entry.
    let Ok(listing) = Dir::read_from(fd) else {
        return Some(dirs);
    };
    for entry in listing.flatten() {
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let Ok(node) = Node::at(fd, name) else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(name.to_bytes()) else {
            continue;
        };
        match node.kind {
            FileType::Directory if node.same_mount(root) => {
                dirs.push((name.to_owned(), node));
            }
            FileType::RegularFile if node.same_mount(root) => {
                let full = join(path, text);
                if !out.add(root_index, &full, &node, false) {
                    return None;
                }
            }
            _ => {}
        }
    }
    Some(dirs)
}

fn join(dir: &str, name: &str) -> String {
    let mut s = String::with_capacity(dir.len() + 1 + name.len());
    s.push_str(dir);
    if !dir.ends_with('/') {
        s.push('/');
    }
    s.push_str(name);
    s
}

/// Scans one root depth first, holding one descriptor per level; returns
/// false when `out` is full.
fn scan_root(out: &mut Candidates, index: u32, root: &Root) -> bool {
    let Some(root_path) = root.path.to_str() else {
        return true;
    };
    let root_node = *root.node();
    let Ok(fd) = rustix::io::fcntl_dupfd_cloexec(root.fd(), 0) else {
        return true;
    };
    let Some(pending) = list(out, index, &root_node, &fd, root_path) else {
        return false;
    };
    let mut stack = vec![Frame {
        fd,
        path: root_path.to_owned(),
        node: root_node,
        pending,
    }];
    while !stack.is_empty() {
        let depth_full = stack.len() > MAX_DEPTH;
        let top = stack.last_mut().expect("just seen");
        let Some((name, seen)) = top.pending.pop() else {
            let done = stack.pop().expect("the top frame");
            // The root itself is never a candidate.
            if !stack.is_empty() && !out.add(index, &done.path, &done.node, true) {
                return false;
            }
            continue;
        };
        if depth_full {
            continue;
        }
        // The directory may have been swapped since it was listed: enter
        // only the one that was seen.
        let Ok(fd) = open_dir_at(&top.fd, &name) else {
            continue;
        };
        match Node::of(&fd) {
            Ok(now) if now.same_file(&seen) && now.same_mount(&root_node) => {}
            _ => continue,
        }
        let path = join(&top.path, name_str(&name));
        let Some(pending) = list(out, index, &root_node, &fd, &path) else {
            return false;
        };
        stack.push(Frame {
            fd,
            path,
            node: seen,
            pending,
        });
    }
    true
}

fn name_str(name: &CStr) -> &str {
    // Checked to be UTF-8 when listed.
    std::str::from_utf8(name.to_bytes()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cleanup::root::Scope;

    fn scope(path: &Path) -> Scope {
        Scope::open(&[path.to_owned()], &crate::cleanup::tests::unprotected()).unwrap()
    }

    #[test]
    fn finds_files_but_not_symlinks_or_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("a"), "1").unwrap();
        std::fs::write(d.join("sub/b"), "22").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("link")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.join("fifo"),
            FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let c = scan(&scope(d));
        let set = &c.set;
        let names: Vec<&str> = (0..set.len()).map(|i| set.name(i).unwrap()).collect();
        let at = |p: &str| {
            let p = d.join(p);
            names.iter().position(|n| *n == p.to_str().unwrap())
        };
        assert_eq!(names.len(), 3, "{names:?}");
        let (a, b, sub) = (at("a").unwrap(), at("sub/b").unwrap(), at("sub").unwrap());
        assert!(b < sub, "a directory comes after its contents: {names:?}");
        assert_eq!(set.kind(sub), Some(ResourceKind::Directory));
        assert_eq!(set.kind(a), Some(ResourceKind::File));
        assert_eq!(set.size_bytes(sub), Some(0));
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(d.join("sub/b")).unwrap();
        assert_eq!(
            c.found(b),
            Some(Found {
                root: 0,
                dev: m.dev(),
                ino: m.ino()
            })
        );
    }

    #[test]
    fn a_sparse_file_weighs_what_it_takes_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("sparse")).unwrap();
        f.set_len(10 << 40).unwrap();
        let c = scan(&scope(dir.path()));
        assert_eq!(
            c.set.size_bytes(0),
            Some(0),
            "10 TiB apparent, nothing allocated"
        );
    }

    #[test]
    fn a_bind_mount_inside_the_scope_is_not_entered() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("scope/mnt")).unwrap();
        std::fs::create_dir_all(d.join("elsewhere")).unwrap();
        std::fs::write(d.join("elsewhere/precious"), "keep").unwrap();
        let _mount =
            crate::cleanup::tests::BindMount::new(&d.join("elsewhere"), &d.join("scope/mnt"));
        let c = scan(&scope(&d.join("scope")));
        assert!(c.is_empty(), "{:?}", c.set);
    }
}
