//! The rules every deletion obeys: scope, excludes, symlinks, mount points,
//! file types, locks, inodes, caps and dry runs.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use warden_core::records::{CleanupAction, CleanupPlan};

use super::super::*;
use super::{open, plan_all, set_of, trap};

/// The space `path` takes on disk, as the executor reports what it frees.
fn allocated(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).unwrap().blocks() * 512
}

#[test]
fn empty_directories_go_after_their_files_and_full_ones_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let scope = tmp.path().join("scope");
    let outside = tmp.path().join("outside");
    for d in ["a/b", "keep", "empty"] {
        std::fs::create_dir_all(scope.join(d)).unwrap();
    }
    std::fs::create_dir_all(outside.join("x")).unwrap();
    std::fs::write(scope.join("a/b/old"), "1").unwrap();
    std::fs::write(scope.join("keep/young"), "2").unwrap();
    std::os::unix::fs::symlink(outside.join("x"), scope.join("dirlink")).unwrap();
    // The host's own scan lists each directory after its contents.
    let s = open(&[&scope]);
    let set = crate::cleanup::walk::scan(&s);
    let index = |p: &str| {
        (0..set.len())
            .find(|i| set.set.name(*i) == scope.join(p).to_str())
            .unwrap_or_else(|| panic!("{p} not scanned"))
    };
    let freed = allocated(&scope.join("a/b/old"));
    // The plan names the directories first, to show the host reorders.
    let mut actions: Vec<(CleanupAction, u32)> = ["a", "a/b", "keep", "empty", "a/b/old"]
        .iter()
        .map(|p| (CleanupAction::DeletePath(index(p) as u32), 0))
        .collect();
    // A symlink to a directory is not a candidate; one named anyway is refused.
    let mut set = set;
    set.push_path(0, &scope.join("dirlink"));
    let link = set.len() as u32 - 1;
    actions.push((CleanupAction::DeletePath(link), 0));
    let plan = CleanupPlan {
        reasons: vec!["old".into()],
        actions,
    };
    let rules = Rules::new(&[], None, false).unwrap();
    let run = execute("dirs", &rules, &s, &set, &plan);
    let outcome = |i: usize| run.items[i].outcome.clone();
    assert!(
        matches!(outcome(0), Outcome::Deleted { .. }),
        "{:?}",
        run.items
    );
    assert!(
        matches!(outcome(1), Outcome::Deleted { .. }),
        "{:?}",
        run.items
    );
    assert!(
        matches!(outcome(2), Outcome::Skipped { ref why } if why.contains("not empty")),
        "{:?}",
        run.items
    );
    assert!(matches!(outcome(3), Outcome::Deleted { .. }));
    assert_eq!(outcome(4), Outcome::Deleted { bytes: freed });
    assert!(
        matches!(outcome(5), Outcome::Refused { .. }),
        "{:?}",
        run.items[5]
    );
    assert!(!scope.join("a").exists() && !scope.join("empty").exists());
    assert!(scope.join("keep/young").exists() && outside.join("x").exists());
}

#[test]
fn a_trap_tree_loses_only_the_two_plain_old_files() {
    let (t, targets) = trap();
    let s = open(&[&t.scope]);
    let set = set_of(&s, &targets);
    let (old, old2) = (allocated(&targets[0]), allocated(&targets[1]));
    let rules = Rules::new(&["*.lock".into()], None, false).unwrap();
    let run = execute("trap", &rules, &s, &set, &plan_all(targets.len()));
    let outcome = |i: usize| &run.items[i].outcome;
    assert_eq!(outcome(0), &Outcome::Deleted { bytes: old });
    assert_eq!(outcome(1), &Outcome::Deleted { bytes: old2 });
    let why = |i: usize| match outcome(i) {
        Outcome::Refused { why } => format!("refused: {why}"),
        Outcome::Skipped { why } => format!("skipped: {why}"),
        other => panic!("{}: {other:?}", targets[i].display()),
    };
    assert!(why(2).contains("exclude"), "{}", why(2));
    assert!(
        why(3).starts_with("refused") && why(3).contains("symlink"),
        "{}",
        why(3)
    );
    assert!(
        why(4).starts_with("refused") && why(4).contains("symlink"),
        "{}",
        why(4)
    );
    assert!(why(5).contains("locked"), "{}", why(5));
    assert!(why(6).contains("socket"), "{}", why(6));
    assert!(why(7).contains("FIFO"), "{}", why(7));
    assert!(
        why(8).starts_with("refused") && why(8).contains(".."),
        "{}",
        why(8)
    );
    assert!(
        why(9).starts_with("refused") && why(9).contains("outside"),
        "{}",
        why(9)
    );
    assert!(why(10).starts_with("refused"), "{}", why(10));
    assert!(why(11).starts_with("refused"), "{}", why(11));
    assert_eq!(run.bytes_freed, old + old2);
    // Everything but the two old files is still there.
    assert!(!t.scope.join("old").exists() && !t.scope.join("sub/old2").exists());
    for kept in ["app.lock", "locked", "sock", "fifo"] {
        assert!(
            std::fs::symlink_metadata(t.scope.join(kept)).is_ok(),
            "{kept}"
        );
    }
    assert!(std::fs::symlink_metadata(t.scope.join("link")).is_ok());
    assert_eq!(
        std::fs::read_to_string(t.outside.join("precious")).unwrap(),
        "keep"
    );
}

#[test]
fn dry_run_lists_everything_and_deletes_nothing() {
    let (t, targets) = trap();
    let s = open(&[&t.scope]);
    let set = set_of(&s, &targets);
    let (old, old2) = (allocated(&targets[0]), allocated(&targets[1]));
    let rules = Rules::new(&["*.lock".into()], None, true).unwrap();
    let run = execute("trap", &rules, &s, &set, &plan_all(targets.len()));
    assert!(run.dry_run);
    assert_eq!(
        run.items.len(),
        targets.len(),
        "every planned action is listed"
    );
    assert_eq!(run.items[0].outcome, Outcome::WouldDelete { bytes: old });
    assert_eq!(run.items[1].outcome, Outcome::WouldDelete { bytes: old2 });
    assert_eq!(run.counts()[1], 2);
    assert_eq!(&*run.items[0].reason, "old");
    assert!(t.scope.join("old").exists() && t.scope.join("sub/old2").exists());
}

#[test]
fn a_plan_over_the_cap_does_nothing_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (0..1000)
        .map(|i| dir.path().join(format!("f{i}")))
        .collect();
    for f in &files {
        std::fs::write(f, "x").unwrap();
    }
    let s = open(&[dir.path()]);
    let set = set_of(&s, &files);
    let rules = Rules::new(&[], Some(Cap::Percent(10.0)), false).unwrap();
    let run = execute("capped", &rules, &s, &set, &plan_all(1000));
    let why = run.cap_exceeded.as_deref().unwrap();
    assert!(
        why.contains("1000 actions") && why.contains("allows 100"),
        "{why}"
    );
    assert!(run.items.is_empty());
    assert!(files.iter().all(|f| f.exists()));
    // Within the cap, it acts.
    let plan = CleanupPlan {
        reasons: vec!["old".into()],
        actions: (0..100)
            .map(|i| (CleanupAction::DeletePath(i), 0))
            .collect(),
    };
    let run = execute("capped", &rules, &s, &set, &plan);
    assert_eq!(run.counts()[0], 100);
    assert_eq!(files.iter().filter(|f| f.exists()).count(), 900);
}

#[test]
fn a_mount_point_inside_the_scope_is_not_crossed() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .output()
        .unwrap_or_else(|e| panic!("this test needs `mount` (util-linux): {e}"));
    assert!(
        out.status.success(),
        "this test needs to mount a tmpfs (root with CAP_SYS_ADMIN): {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let _unmount = UnmountOnDrop(mnt.clone());
    std::fs::write(mnt.join("inner"), "on another filesystem").unwrap();
    let s = open(&[dir.path()]);
    let set = set_of(&s, &[mnt.join("inner")]);
    let rules = Rules::new(&[], None, false).unwrap();
    let run = execute("mounts", &rules, &s, &set, &plan_all(1));
    assert!(mnt.join("inner").exists());
    assert!(
        matches!(&run.items[0].outcome, Outcome::Refused { why } if why.contains("mount point")),
        "{:?}",
        run.items[0]
    );
}

struct UnmountOnDrop(PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_file_replaced_since_the_plan_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a");
    std::fs::write(&f, "1").unwrap();
    let s = open(&[dir.path()]);
    let set = set_of(&s, std::slice::from_ref(&f));
    // Moved aside, not removed: the judged inode stays alive, so the new
    // file cannot reuse its number.
    std::fs::rename(&f, dir.path().join("judged")).unwrap();
    std::fs::write(&f, "new").unwrap();
    assert_ne!(
        Some(std::fs::metadata(&f).unwrap().ino()),
        set.found(0).map(|f| f.ino)
    );
    let rules = Rules::new(&[], None, false).unwrap();
    let run = execute("p", &rules, &s, &set, &plan_all(1));
    // Same path, another inode: never delete what was not judged.
    assert!(
        matches!(run.items[0].outcome, Outcome::Skipped { .. }),
        "{:?}",
        run.items
    );
    assert!(f.exists());
}

#[test]
fn a_name_whose_file_has_other_links_frees_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let scope = tmp.path().join("scope");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&scope).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let data = vec![7u8; 64 << 10];
    std::fs::write(scope.join("linked"), &data).unwrap();
    std::fs::hard_link(scope.join("linked"), elsewhere.join("kept")).unwrap();
    std::fs::write(scope.join("alone"), &data).unwrap();
    let alone = allocated(&scope.join("alone"));
    assert!(alone > 0);
    let targets = [scope.join("linked"), scope.join("alone")];
    let s = open(&[&scope]);
    let set = set_of(&s, &targets);
    // A dry run says the same as the run that follows.
    for dry_run in [true, false] {
        let rules = Rules::new(&[], None, dry_run).unwrap();
        let run = execute("links", &rules, &s, &set, &plan_all(targets.len()));
        let bytes: Vec<u64> = run
            .items
            .iter()
            .map(|i| match i.outcome {
                Outcome::Deleted { bytes } | Outcome::WouldDelete { bytes } => bytes,
                ref other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(bytes, [0, alone], "dry run: {dry_run}");
        assert_eq!(run.bytes_freed, alone, "dry run: {dry_run}");
    }
    // The blocks are still held, by the other name.
    assert_eq!(std::fs::read(elsewhere.join("kept")).unwrap(), data);
    assert!(!scope.join("linked").exists());
}
