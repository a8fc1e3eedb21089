//! The scope roots of a run: opened once, pinned for the whole run, and
//! never left through a symlink or a mount point (bind mounts included);
//! every deletion is of the very file (device and inode) the scan found.

use std::path::PathBuf;

use super::super::*;
use super::{BindMount, open, plan_all, set_of};

#[test]
fn deletions_act_on_the_pinned_root_even_if_its_path_is_swapped() {
    // The run opened `scope`; then someone who can write its parent moves it
    // away and puts a symlink to another tree in its place.
    let tmp = tempfile::tempdir().unwrap();
    let scope = tmp.path().join("scope");
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&scope).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(scope.join("old"), "scanned").unwrap();
    std::fs::write(other.join("old"), "precious").unwrap();
    let s = open(&[&scope]);
    let found = walk::scan(&s);
    assert_eq!(found.len(), 1);
    std::fs::rename(&scope, tmp.path().join("moved")).unwrap();
    std::os::unix::fs::symlink(&other, &scope).unwrap();
    let rules = Rules::new(&[], None, false).unwrap();
    let run = execute("pinned", &rules, &s, &found, &plan_all(1));
    assert!(
        matches!(run.items[0].outcome, Outcome::Deleted { .. }),
        "{:?}",
        run.items
    );
    assert!(
        !tmp.path().join("moved/old").exists(),
        "the scanned file went"
    );
    assert_eq!(
        std::fs::read_to_string(other.join("old")).unwrap(),
        "precious"
    );
}

#[test]
fn a_file_with_the_inode_but_not_the_device_shown_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("f");
    std::fs::write(&f, "x").unwrap();
    let s = open(&[tmp.path()]);
    let mut c = set_of(&s, std::slice::from_ref(&f));
    // Same inode number, another device: another file.
    let shown = c.found(0).unwrap();
    c.set_found(
        0,
        Found {
            dev: shown.dev ^ 1,
            ..shown
        },
    );
    let rules = Rules::new(&[], None, false).unwrap();
    let run = execute("dev", &rules, &s, &c, &plan_all(1));
    assert!(
        matches!(&run.items[0].outcome, Outcome::Skipped { why } if why.contains("device")),
        "{:?}",
        run.items
    );
    assert!(f.exists());
}

#[test]
fn a_bind_mount_of_the_same_filesystem_is_not_crossed() {
    let tmp = tempfile::tempdir().unwrap();
    let scope = tmp.path().join("scope");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(scope.join("mnt")).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("precious"), "keep").unwrap();
    std::fs::write(scope.join("plain"), "x").unwrap();
    let _m = BindMount::new(&elsewhere, &scope.join("mnt"));
    let s = open(&[&scope]);
    let targets: Vec<PathBuf> = vec![scope.join("mnt/precious"), scope.join("plain")];
    let c = set_of(&s, &targets);
    let rules = Rules::new(&[], None, false).unwrap();
    let run = execute("bind", &rules, &s, &c, &plan_all(2));
    assert!(
        matches!(&run.items[0].outcome, Outcome::Refused { why } if why.contains("mount point")),
        "{:?}",
        run.items
    );
    assert!(matches!(run.items[1].outcome, Outcome::Deleted { .. }));
    assert!(elsewhere.join("precious").exists());
}
