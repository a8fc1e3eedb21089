use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;

fn source(paths: &[&Path], budget: u64) -> DiskSource {
    DiskSource {
        paths: paths.iter().map(|p| p.to_path_buf()).collect(),
        budget,
    }
}

/// What `du -sx` says `path` takes, in bytes: the reference a disk quota
/// must agree with.
fn du(path: &Path) -> u64 {
    let out = std::process::Command::new("du")
        .args(["-s", "-x", "-B1"])
        .arg(path)
        .output()
        .expect("du runs");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

fn write(path: &Path, bytes: usize) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&vec![7u8; bytes]).unwrap();
    f.sync_all().unwrap();
}

/// Walks `source` to the end in one step with an unbounded budget.
fn measure(paths: &[&Path]) -> DiskUsage {
    let mut d = DiskUsage::new(source(paths, u64::MAX));
    assert!(d.step(1).unwrap(), "one step walks a small tree");
    d
}

/// A tree with what a naive sum gets wrong: a sparse file, a hard link, a
/// symlink to a large file outside, nested directories.
fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let top = tempfile::tempdir().unwrap();
    let root = top.path().join("measured");
    let outside = top.path().join("outside");
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    write(&root.join("a/data"), 300_000);
    write(&root.join("a/b/c/deep"), 5_000);
    std::fs::hard_link(root.join("a/data"), root.join("a/b/again")).unwrap();
    let sparse = std::fs::File::create(root.join("sparse")).unwrap();
    sparse.set_len(1 << 30).unwrap();
    write(&outside.join("big"), 2_000_000);
    std::os::unix::fs::symlink(outside.join("big"), root.join("link")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("a/dirlink")).unwrap();
    (top, root, outside)
}

#[test]
fn a_walk_agrees_with_du_on_sparse_files_hard_links_and_symlinks() {
    let (_top, root, _outside) = tree();
    let d = measure(&[&root]);
    let m = d.last().unwrap();
    assert_eq!(m.bytes, vec![du(&root)]);
    // The data is counted once (300 kB and 5 kB, in blocks), not the
    // sparse file's length, not the link's target.
    assert!(m.bytes[0] >= 305_000, "{m:?}");
    assert!(m.bytes[0] < 1_000_000, "{m:?}");
    // Root, 3 directories, 2 files, a second link, the sparse file, two
    // symlinks.
    assert_eq!(m.tally.entries, 10, "{m:?}");
    assert_eq!(m.tally.unreadable + m.tally.missing + m.tally.too_deep, 0);
    assert_eq!(m.steps, 1);
}

#[test]
fn a_small_budget_spreads_the_walk_over_evaluations_with_the_same_result() {
    let top = tempfile::tempdir().unwrap();
    for d in 0..10 {
        let dir = top.path().join(format!("d{d}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..100 {
            write(&dir.join(format!("f{f}")), 100 * f);
        }
    }
    let whole = measure(&[top.path()]).last().unwrap().clone();
    let mut d = DiskUsage::new(source(&[top.path()], 100));
    let mut steps = 0;
    while !d.step(5).unwrap() {
        steps += 1;
        assert!(
            d.last().is_none(),
            "usage is only what a finished walk says"
        );
        assert!(d.describe().contains("a walk is in progress"));
        assert!(steps < 100, "the walk never ends");
    }
    let m = d.last().unwrap();
    assert_eq!(m.bytes, whole.bytes);
    assert_eq!(m.bytes, vec![du(top.path())]);
    assert_eq!(m.tally.entries, 1 + 10 + 1_000);
    // 1,011 entries at 100 per evaluation.
    assert_eq!(m.steps, 11);
    assert_eq!(m.finished_ms, 5);
}

#[test]
fn usage_is_per_path_or_summed_and_a_missing_path_holds_nothing() {
    let (_top, root, outside) = tree();
    let gone = outside.join("not-there");
    let d = measure(&[&root, &outside, &gone]);
    let m = d.last().unwrap();
    assert_eq!(m.bytes, vec![du(&root), du(&outside), 0]);
    assert_eq!(m.tally.missing, 1);
    let per = d.usage(true).unwrap();
    assert_eq!(per[&root.display().to_string()], du(&root));
    assert_eq!(per[&gone.display().to_string()], 0);
    assert_eq!(per.len(), 3);
    let all = d.usage(false).unwrap();
    assert_eq!(all[""], du(&root) + du(&outside));
}

#[test]
fn a_restart_drops_what_a_walk_counted_before_a_cleanup() {
    let top = tempfile::tempdir().unwrap();
    for f in 0..500 {
        write(&top.path().join(format!("f{f}")), 4096);
    }
    let mut d = DiskUsage::new(source(&[top.path()], 100));
    assert!(!d.step(1).unwrap());
    // The files already counted go; a walk that kept its count would
    // report them.
    for f in 0..500 {
        std::fs::remove_file(top.path().join(format!("f{f}"))).unwrap();
    }
    d.restart();
    assert!(d.step(2).unwrap());
    let m = d.last().unwrap();
    assert_eq!(m.steps, 1);
    assert_eq!(m.bytes, vec![du(top.path())]);
    assert_eq!(m.tally.entries, 1);
}

#[test]
fn a_path_through_a_symlink_another_user_owns_is_refused() {
    let top = tempfile::tempdir().unwrap();
    let real = top.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = top.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(65_534), Some(65_534)).unwrap();
    let mut d = DiskUsage::new(source(&[&link], 100));
    let e = d.step(1).unwrap_err();
    assert!(
        e.to_string().contains("is a symlink owned by uid 65534"),
        "{e}"
    );
    assert!(d.last().is_none());
}
