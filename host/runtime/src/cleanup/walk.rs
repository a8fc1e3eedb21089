//! What a cleanup policy is shown: the files and directories under its scope
//! paths, found without following symlinks or crossing into other
//! filesystems, with the sizes and times the plugin judges them by. A
//! directory is listed after everything in it, so a plan that walks the
//! candidates in order empties a directory before it removes it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use warden_core::records::{NewResource, ResourceKind, ResourceSet};

/// At most this many candidates per run: a plan is made over a bounded set.
pub const MAX_CANDIDATES: usize = 200_000;

fn ms(secs: i64, nanos: i64) -> i64 {
    secs.saturating_mul(1000).saturating_add(nanos / 1_000_000)
}

/// Returns the regular files and directories under `roots` (not the roots
/// themselves). Symlinks are never followed, directories on another
/// filesystem than their root are neither entered nor listed, and sockets,
/// FIFOs and devices are not candidates. Directories have size 0, so size
/// budgets count file contents only.
pub fn scan(roots: &[impl AsRef<Path>]) -> ResourceSet {
    let mut set = ResourceSet::default();
    for root in roots {
        let root = root.as_ref();
        let Ok(meta) = std::fs::symlink_metadata(root) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let device = meta.dev();
        // Directories are listed on the way back up, after their contents.
        enum Step {
            Enter(std::path::PathBuf),
            List(std::path::PathBuf, std::fs::Metadata),
        }
        let mut stack = vec![Step::Enter(root.to_path_buf())];
        while let Some(step) = stack.pop() {
            let dir = match step {
                Step::Enter(dir) => dir,
                Step::List(path, m) => {
                    if set.len() >= MAX_CANDIDATES {
                        return set;
                    }
                    if let Some(name) = path.to_str() {
                        set.push(NewResource {
                            handle: m.ino(),
                            kind: Some(ResourceKind::Directory),
                            name,
                            size_bytes: 0,
                            created_ms: None,
                            modified_ms: Some(ms(m.mtime(), m.mtime_nsec())),
                            accessed_ms: Some(ms(m.atime(), m.atime_nsec())),
                            ..Default::default()
                        });
                    }
                    continue;
                }
            };
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if set.len() >= MAX_CANDIDATES {
                    return set;
                }
                let path = entry.path();
                let Ok(m) = std::fs::symlink_metadata(&path) else {
                    continue;
                };
                let ft = m.file_type();
                if ft.is_dir() {
                    if m.dev() == device {
                        stack.push(Step::List(path.clone(), m));
                        stack.push(Step::Enter(path));
                    }
                } else if ft.is_file() {
                    let Some(name) = path.to_str() else { continue };
                    set.push(NewResource {
                        handle: m.ino(),
                        kind: Some(ResourceKind::File),
                        name,
                        size_bytes: m.len(),
                        created_ms: None,
                        modified_ms: Some(ms(m.mtime(), m.mtime_nsec())),
                        accessed_ms: Some(ms(m.atime(), m.atime_nsec())),
                        ..Default::default()
                    });
                }
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_files_but_not_symlinks_or_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("a"), "1").unwrap();
        std::fs::write(d.join("sub/b"), "22").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("link")).unwrap();
        let fifo = std::ffi::CString::new(d.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: `mkfifo` with a valid NUL-terminated path and a mode.
        assert_eq!(unsafe { libc_mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let set = scan(&[d]);
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
    }

    unsafe extern "C" {
        #[link_name = "mkfifo"]
        fn libc_mkfifo(path: *const std::ffi::c_char, mode: u32) -> i32;
    }
}
