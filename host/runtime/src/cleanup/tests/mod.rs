//! Tests of the executor, by what they exercise: [`safety`] the rules every
//! deletion obeys, [`retries`] the workers, retries and timeouts, [`roots`]
//! the scope roots of a run (symlinks, pinning, bind mounts).

mod retries;
mod roots;
mod safety;

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use warden_core::records::{CleanupAction, CleanupPlan};

use super::{Candidates, Protected, Scope};

/// Nothing protected but paths that do not exist: the tests' scopes live in
/// temporary directories.
pub(crate) fn unprotected() -> Protected {
    Protected {
        data_dir: "/nonexistent/warden-data".into(),
        policies_dir: "/nonexistent/warden-policies".into(),
        allow_system_paths: false,
    }
}

/// Opens `roots` as a run does.
pub(crate) fn open(roots: &[&Path]) -> Scope {
    let roots: Vec<PathBuf> = roots.iter().map(|r| r.to_path_buf()).collect();
    Scope::open(&roots, &unprotected()).unwrap()
}

/// Candidates for `paths` as a scan of `scope` would record them now, each
/// under the first root it lies in (the first root if none: the executor
/// refuses it).
pub(super) fn set_of(scope: &Scope, paths: &[PathBuf]) -> Candidates {
    let mut c = Candidates::default();
    for p in paths {
        let root = scope
            .roots()
            .iter()
            .position(|r| p.starts_with(&r.path))
            .unwrap_or(0);
        c.push_path(root as u32, p);
    }
    c
}

/// A bind mount of `from` on `to`, unmounted on drop. Bind mounts need
/// CAP_SYS_ADMIN: without it the test fails, saying so.
pub(crate) struct BindMount(PathBuf);

impl BindMount {
    pub(crate) fn new(from: &Path, to: &Path) -> BindMount {
        let out = std::process::Command::new("mount")
            .arg("--bind")
            .arg(from)
            .arg(to)
            .output()
            .expect("`mount` (util-linux) is needed for this test");
        assert!(
            out.status.success(),
            "this test needs to bind-mount `{}` (CAP_SYS_ADMIN): {}",
            to.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        BindMount(to.to_owned())
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

pub(super) fn plan_all(n: usize) -> CleanupPlan {
    CleanupPlan {
        reasons: vec!["old".into()],
        actions: (0..n as u32)
            .map(|i| (CleanupAction::DeletePath(i), 0))
            .collect(),
    }
}

/// A scope holding one of every trap, and files outside it.
pub(super) struct Trap {
    _tmp: tempfile::TempDir,
    pub(super) scope: PathBuf,
    pub(super) outside: PathBuf,
    _listener: std::os::unix::net::UnixListener,
    _lock: std::fs::File,
}

pub(super) fn trap() -> (Trap, Vec<PathBuf>) {
    let tmp = tempfile::tempdir().unwrap();
    let scope = tmp.path().join("scope");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(scope.join("sub")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("precious"), "keep").unwrap();
    std::fs::write(scope.join("old"), "delete me").unwrap();
    std::fs::write(scope.join("sub/old2"), "delete me too").unwrap();
    std::fs::write(scope.join("app.lock"), "excluded").unwrap();
    // A symlink to a file outside, and a symlinked directory leading out.
    std::os::unix::fs::symlink(outside.join("precious"), scope.join("link")).unwrap();
    std::os::unix::fs::symlink(&outside, scope.join("linkdir")).unwrap();
    // A file another process holds an flock on (another descriptor is
    // enough: flock locks belong to the open file description).
    std::fs::write(scope.join("locked"), "in use").unwrap();
    let lock = std::fs::File::open(scope.join("locked")).unwrap();
    // SAFETY: `lock` is an open descriptor.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let listener = std::os::unix::net::UnixListener::bind(scope.join("sock")).unwrap();
    let fifo = CString::new(scope.join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path and a mode.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let targets = vec![
        scope.join("old"),
        scope.join("sub/old2"),
        scope.join("app.lock"),
        scope.join("link"),
        scope.join("linkdir/precious"),
        scope.join("locked"),
        scope.join("sock"),
        scope.join("fifo"),
        scope.join("sub/../../outside/precious"),
        outside.join("precious"),
        scope.clone(),
        PathBuf::from("relative/path"),
    ];
    (
        Trap {
            _tmp: tmp,
            scope,
            outside,
            _listener: listener,
            _lock: lock,
        },
        targets,
    )
}
