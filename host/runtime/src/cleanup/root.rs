//! A cleanup run's scope roots: each resolved once per run from `/`, one
//! component at a time with `O_NOFOLLOW` (the semantics of `openat2`'s
//! `RESOLVE_NO_SYMLINKS`), and pinned by the one descriptor kept for the
//! whole run. The scan starts from it and every deletion walks from it, so
//! whoever can write an ancestor of a scope path cannot redirect a run
//! elsewhere by swapping in a symlink.
//!
//! A symlink on the way is followed only if it and what it leads to both
//! belong to root: systemd-tmpfiles' rule against "unsafe path transitions"
//! (`/var/run -> /run` passes; a link a user made in their home does not).
//! Anything else is refused with an error naming the symlink. The real
//! directory reached is checked again against what no scope may cover
//! ([`Protected`]), since a root-owned link may lead into `/etc`.

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use warden_policy::cleanup::Protected;

use super::node::{Node, open_dir_at};

/// The most symlinks followed while resolving one scope path, as the kernel's
/// own limit (`ELOOP`).
const MAX_LINKS: usize = 40;

/// One scope path, opened and pinned for a run.
#[derive(Debug)]
pub struct Root {
    /// The scope path as the policy writes it; candidates are named under it.
    pub path: PathBuf,
    /// The directory it resolved to.
    pub real: PathBuf,
    fd: OwnedFd,
    node: Node,
}

impl Root {
    /// Returns the descriptor every walk of this run starts from.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Returns what the root is: its device, inode and mount.
    pub(crate) fn node(&self) -> &Node {
        &self.node
    }
}

/// Every root of a policy's scope that exists, opened once for a run.
#[derive(Debug, Default)]
pub struct Scope {
    roots: Vec<Root>,
}

/// Why a scope path cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeError {
    /// The scope path as the policy writes it.
    pub path: PathBuf,
    /// What is wrong.
    pub kind: ScopeErrorKind,
}

/// What is wrong with a scope path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeErrorKind {
    /// A symlink on the way that is not root's, or leads to what is not.
    UnsafeSymlink {
        /// The symlink.
        link: PathBuf,
        /// Its owner.
        owner: u32,
        /// The owner of what it leads to, if the link itself is root's.
        target_owner: Option<u32>,
    },
    /// More symlinks than the kernel would follow.
    TooManyLinks,
    /// Something on the way is not a directory.
    NotADirectory {
        /// What it is.
        at: PathBuf,
        /// Its type.
        kind: &'static str,
    },
    /// The real directory is one no scope may cover.
    Protected(String),
    /// A system call failed.
    Io {
        /// Where.
        at: PathBuf,
        /// The error.
        error: String,
    },
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scope path `{}`: ", self.path.display())?;
        match &self.kind {
            ScopeErrorKind::UnsafeSymlink {
                link,
                owner,
                target_owner: None,
            } => write!(
                f,
                "`{}` is a symlink owned by uid {owner}; a scope path follows only symlinks that root owns, so that nobody else can redirect a cleanup; write the real path in the policy",
                link.display()
            ),
            ScopeErrorKind::UnsafeSymlink {
                link,
                target_owner: Some(target),
                ..
            } => write!(
                f,
                "`{}` is a symlink to something owned by uid {target}; a scope path follows a symlink only if what it leads to is root's too; write the real path in the policy",
                link.display()
            ),
            ScopeErrorKind::TooManyLinks => {
                write!(f, "more than {MAX_LINKS} symlinks on the way")
            }
            ScopeErrorKind::NotADirectory { at, kind } => {
                write!(f, "`{}` is {kind}, not a directory", at.display())
            }
            ScopeErrorKind::Protected(why) => write!(f, "it resolves to {why}"),
            ScopeErrorKind::Io { at, error } => {
                write!(f, "failed to open `{}`: {error}", at.display())
            }
        }
    }
}

impl std::error::Error for ScopeError {}

impl Scope {
    /// Opens every path of `paths` that exists; a missing one has nothing to
    /// clean and is left out. Fails on the first path that is unsafe.
    pub fn open(paths: &[PathBuf], protected: &Protected) -> Result<Scope, ScopeError> {
        let mut roots = Vec::with_capacity(paths.len());
        for path in paths {
            if let Some(root) = open_root(path, Some(protected))? {
                roots.push(root);
            } else {
                tracing::debug!(path = %path.display(), "scope path does not exist; nothing to clean there");
            }
        }
        Ok(Scope { roots })
    }

    /// Opens every path of `paths` that exists, to be read and not acted
    /// on: as [`Scope::open`], symlinks are refused as unsafe the same way,
    /// but any directory may be opened (a disk quota measures the policies
    /// directory as well as any other). Returns, beside it, the position in
    /// `paths` of each root.
    pub fn open_to_read(paths: &[PathBuf]) -> Result<(Scope, Vec<usize>), ScopeError> {
        let mut roots = Vec::with_capacity(paths.len());
        let mut at = Vec::with_capacity(paths.len());
        for (i, path) in paths.iter().enumerate() {
            if let Some(root) = open_root(path, None)? {
                roots.push(root);
                at.push(i);
            }
        }
        Ok((Scope { roots }, at))
    }

    /// Returns the roots, in the policy's order (missing ones left out).
    pub fn roots(&self) -> &[Root] {
        &self.roots
    }

    /// Returns the root at `index`.
    pub(crate) fn root(&self, index: usize) -> Option<&Root> {
        self.roots.get(index)
    }
}

/// One step of the resolution: a name to open, or the check that what a
/// symlink led to belongs to root.
enum Step {
    Name(OsString),
    Parent,
    LinkEnd { link: PathBuf },
}

fn cstr(s: &OsStr) -> Result<CString, Errno> {
    CString::new(s.as_bytes()).map_err(|_| Errno::INVAL)
}

fn steps(path: &Path) -> impl Iterator<Item = Step> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(Step::Name(n.to_owned())),
        Component::ParentDir => Some(Step::Parent),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// Resolves `path` from `/` without following any symlink but root's to
/// root's; returns `None` if it does not exist.
fn open_root(path: &Path, protected: Option<&Protected>) -> Result<Option<Root>, ScopeError> {
    let err = |kind| ScopeError {
        path: path.to_owned(),
        kind,
    };
    let io = |at: &Path, e: Errno| {
        err(ScopeErrorKind::Io {
            at: at.to_owned(),
            error: std::io::Error::from(e).to_string(),
        })
    };
    let slash = || {
        rustix::fs::open(
            "/",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let mut fd = slash().map_err(|e| io(Path::new("/"), e))?;
    let mut real = PathBuf::from("/");
    let mut todo: VecDeque<Step> = steps(path).collect();
    let mut links = 0;
    while let Some(step) = todo.pop_front() {
        let name = match step {
            Step::LinkEnd { link } => {
                let node = Node::of(&fd).map_err(|e| io(&real, e))?;
                if node.uid != 0 {
                    return Err(err(ScopeErrorKind::UnsafeSymlink {
                        link,
                        owner: 0,
                        target_owner: Some(node.uid),
                    }));
                }
                continue;
            }
            Step::Parent => {
                fd = open_dir_at(&fd, c"..").map_err(|e| io(&real, e))?;
                real.pop();
                continue;
            }
            Step::Name(name) => name,
        };
        let c = cstr(&name).map_err(|e| io(&real.join(&name), e))?;
        match open_dir_at(&fd, &c) {
            Ok(next) => {
                fd = next;
                real.push(&name);
            }
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP | Errno::NOTDIR) => {
                let at = real.join(&name);
                let node = Node::at(&fd, &c).map_err(|e| io(&at, e))?;
                if node.kind != FileType::Symlink {
                    return Err(err(ScopeErrorKind::NotADirectory {
                        at,
                        kind: node.kind_name(),
                    }));
                }
                if node.uid != 0 {
                    return Err(err(ScopeErrorKind::UnsafeSymlink {
                        link: at,
                        owner: node.uid,
                        target_owner: None,
                    }));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(err(ScopeErrorKind::TooManyLinks));
                }
                let target = rustix::fs::readlinkat(&fd, &c, Vec::new()).map_err(|e| io(&at, e))?;
                let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                if target.is_absolute() {
                    fd = slash().map_err(|e| io(Path::new("/"), e))?;
                    real = PathBuf::from("/");
                }
                todo.push_front(Step::LinkEnd { link: at });
                for s in steps(&target).collect::<Vec<_>>().into_iter().rev() {
                    todo.push_front(s);
                }
            }
            Err(e) => return Err(io(&real.join(&name), e)),
        }
    }
    if let Some(why) = protected.and_then(|p| p.why(&real)) {
        return Err(err(ScopeErrorKind::Protected(why)));
    }
    let node = Node::of(&fd).map_err(|e| io(&real, e))?;
    Ok(Some(Root {
        path: path.to_owned(),
        real,
        fd,
        node,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn open(path: &Path) -> Result<Option<Root>, ScopeError> {
        open_root(path, Some(&unprotected()))
    }

    pub(crate) fn unprotected() -> Protected {
        Protected {
            data_dir: "/nonexistent/warden-data".into(),
            policies_dir: "/nonexistent/warden-policies".into(),
            allow_system_paths: false,
        }
    }

    /// Makes `path` (a symlink) belong to `uid` without following it.
    fn lchown(path: &Path, uid: u32) {
        std::os::unix::fs::lchown(path, Some(uid), None).unwrap();
    }

    #[test]
    fn a_symlink_a_user_owns_is_refused_and_named() {
        // /srv/home/alice/app -> other tree, made by alice.
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home/alice");
        let other = tmp.path().join("other/log");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("other"), home.join("app")).unwrap();
        lchown(&home.join("app"), 1000);
        let e = open(&home.join("app/log")).unwrap_err();
        assert!(
            matches!(&e.kind, ScopeErrorKind::UnsafeSymlink { link, owner: 1000, .. } if *link == home.join("app")),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains(&format!("`{}`", home.join("app").display())),
            "{e}"
        );
        // The same link made by root, to a directory of root's, is followed.
        lchown(&home.join("app"), 0);
        let root = open(&home.join("app/log")).unwrap().unwrap();
        assert_eq!(root.real, other.canonicalize().unwrap());
        let m = std::fs::metadata(&other).unwrap();
        assert_eq!((root.node().dev, root.node().ino), (m.dev(), m.ino()));
        // Root's link to a directory someone else owns is refused too.
        std::os::unix::fs::chown(tmp.path().join("other"), Some(1000), None).unwrap();
        let e = open(&home.join("app/log")).unwrap_err();
        assert!(
            matches!(
                &e.kind,
                ScopeErrorKind::UnsafeSymlink {
                    target_owner: Some(1000),
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn missing_paths_files_and_loops() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(open(&tmp.path().join("nope/deeper")).unwrap().is_none());
        std::fs::write(tmp.path().join("file"), "").unwrap();
        let e = open(&tmp.path().join("file")).unwrap_err();
        assert!(
            matches!(
                e.kind,
                ScopeErrorKind::NotADirectory {
                    kind: "a regular file",
                    ..
                }
            ),
            "{e}"
        );
        std::os::unix::fs::symlink("loop", tmp.path().join("loop")).unwrap();
        let e = open(&tmp.path().join("loop")).unwrap_err();
        assert_eq!(e.kind, ScopeErrorKind::TooManyLinks);
    }

    #[test]
    fn a_root_owned_link_into_the_system_is_still_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", tmp.path().join("conf")).unwrap();
        let e = open(&tmp.path().join("conf")).unwrap_err();
        assert!(
            matches!(&e.kind, ScopeErrorKind::Protected(why) if why.contains("`/etc`")),
            "{e}"
        );
    }
}
