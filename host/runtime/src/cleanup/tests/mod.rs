//! Tests of the executor, by what they exercise: [`safety`] the rules every
//! deletion obeys, [`retries`] the workers, retries and timeouts.

mod retries;
mod safety;

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use warden_core::records::{CleanupAction, CleanupPlan, NewResource, ResourceSet};

pub(super) fn set_of(paths: &[PathBuf]) -> ResourceSet {
    let mut set = ResourceSet::default();
    for p in paths {
        let ino = std::fs::symlink_metadata(p).map(|m| m.ino()).unwrap_or(0);
        set.push(NewResource {
            handle: ino,
            name: p.to_str().unwrap(),
            ..Default::default()
        });
    }
    set
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
