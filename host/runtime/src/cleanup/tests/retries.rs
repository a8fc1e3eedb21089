//! The workers: plan order across threads, retries with backoff, timeouts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use warden_core::records::{CleanupAction, CleanupPlan};
use warden_policy::schema::Retries;

use super::super::workers::{backoff, spread, transient};
use super::super::*;
use super::{open, plan_all, set_of};

/// Runs `mount ARGS... dir dir`; fails the test, saying what is missing, if
/// it cannot.
fn mount_on_itself(args: &[&str], dir: &Path) {
    let out = std::process::Command::new("mount")
        .args(args)
        .arg(dir)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("this test needs `mount` (util-linux): {e}"));
    assert!(
        out.status.success(),
        "this test needs to mount (root with CAP_SYS_ADMIN): `mount {} {dir:?} {dir:?}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A bind mount of a file on itself: unlinking it fails with `EBUSY`, a
/// real passing failure, until it is unmounted (on drop).
struct Busy(PathBuf);

impl Busy {
    fn new(path: &Path) -> Busy {
        mount_on_itself(&["--bind"], path);
        Busy(path.to_owned())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Waits until nobody holds an `flock` on `path`, as `/proc/locks` says
/// (opening the file to try would make a descriptor of our own). A run
/// takes one on the file it deletes and drops it on failure, but a child
/// another test spawns at that moment holds a copy of the descriptor until
/// it execs (`O_CLOEXEC` closes it only then), and the lock with it; the
/// next run would then skip the file as locked by another process, without
/// retrying.
fn wait_unlocked(path: &Path) {
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap());
    let locked = || {
        std::fs::read_to_string("/proc/locks")
            .unwrap()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .any(|id| id.rsplit(':').next() == Some(ino.to_string().as_str()))
    };
    let t = Instant::now();
    while locked() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "`{}` stays locked",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn retries(max: u32, backoff_ms: u64, jitter: f64) -> Option<Retries> {
    Some(Retries {
        max,
        backoff: warden_core::values::HumanDuration(Duration::from_millis(backoff_ms)),
        jitter,
    })
}

#[test]
fn many_deletions_on_four_workers_come_back_in_plan_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for d in 0..6 {
        std::fs::create_dir(dir.path().join(format!("d{d}"))).unwrap();
        for f in 0..300 {
            let p = dir.path().join(format!("d{d}/f{f}"));
            // Each directory's files take their own space on disk.
            std::fs::write(&p, vec![b'x'; (d + 1) * 8192]).unwrap();
            files.push(p);
        }
    }
    files.push(PathBuf::from("/etc/passwd"));
    let space: Vec<u64> = files
        .iter()
        .map(|f| std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(f).unwrap()) * 512)
        .collect();
    let s = open(&[dir.path()]);
    let set = set_of(&s, &files);
    // Directories interleaved, with a notice and a refusal among the
    // deletions: many small batches, all settled back in their slots.
    let mut order: Vec<u32> = (0..1800u32).map(|i| (i % 6) * 300 + i / 6).collect();
    order.insert(7, 1800);
    let mut actions: Vec<(CleanupAction, u32)> = order
        .iter()
        .map(|&i| (CleanupAction::DeletePath(i), 0))
        .collect();
    actions.insert(3, (CleanupAction::Notify("hello".into()), 1));
    let plan = CleanupPlan {
        reasons: vec!["old".into(), "note".into()],
        actions,
    };
    let rules = Rules::new(&[], None, false).unwrap().with_concurrency(4);
    let run = execute("many", &rules, &s, &set, &plan);
    assert_eq!(run.items.len(), plan.actions.len());
    for (item, (action, _)) in run.items.iter().zip(&plan.actions) {
        let want = action.target().map(|t| files[t as usize].to_str().unwrap());
        assert_eq!(item.target.as_deref(), want);
    }
    assert_eq!(run.items[3].action, "notify");
    assert_eq!(run.items[3].attempts, 0);
    assert!(matches!(run.items[8].outcome, Outcome::Refused { .. }));
    assert_eq!(run.counts(), [1800, 0, 1, 1, 0]);
    for (item, (action, _)) in run.items.iter().zip(&plan.actions) {
        if let Outcome::Deleted { bytes } = item.outcome {
            assert_eq!(item.attempts, 1);
            // The outcome is the one of this item's file.
            let t = action.target().unwrap() as usize;
            assert_eq!(bytes, space[t], "{item:?}");
        }
    }
    assert_eq!(run.bytes_freed, space[..1800].iter().sum::<u64>());
    assert!(files[..1800].iter().all(|f| !f.exists()));
    assert!(!run.timed_out);
    let json = serde_json::to_value(&run).unwrap();
    assert_eq!(json["items"][0]["attempts"], 1);
    assert!(json["duration_ms"].is_u64() && json["timed_out"] == false);
    // History is read back, also from before attempts were recorded.
    let back: Run = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back.items[0].outcome, run.items[0].outcome);
    assert_eq!(back.items[0].attempts, 1);
    let mut old = json;
    old.as_object_mut().unwrap().remove("timed_out");
    old["items"][0].as_object_mut().unwrap().remove("attempts");
    let back: Run = serde_json::from_value(old).unwrap();
    assert_eq!(back.items[0].attempts, 0);
    assert!(!back.timed_out);
}

#[test]
fn four_workers_wait_out_their_retries_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for d in 0..4 {
        std::fs::create_dir(dir.path().join(format!("d{d}"))).unwrap();
        let f = dir.path().join(format!("d{d}/busy"));
        std::fs::write(&f, "x").unwrap();
        files.push(f);
    }
    let busy: Vec<Busy> = files.iter().map(|f| Busy::new(f)).collect();
    let s = open(&[dir.path()]);
    let set = set_of(&s, &files);
    // Each action fails, waits 300 ms and fails again: one after the
    // other that is 1.2 s, on four workers about 0.3 s.
    let time = |workers| {
        let rules = Rules::new(&[], None, false)
            .unwrap()
            .with_concurrency(workers)
            .with_retries(retries(1, 300, 0.0));
        let t = Instant::now();
        let run = execute("busy", &rules, &s, &set, &plan_all(4));
        assert!(run.items.iter().all(|i| i.attempts == 2), "{:?}", run.items);
        t.elapsed()
    };
    let serial = time(1);
    let parallel = time(4);
    // The serial run sleeps 1.2 s by itself; the parallel one 0.3 s. Compared
    // with each other rather than with a fixed bound, so that a loaded
    // machine, which slows both, does not fail the test.
    assert!(serial >= Duration::from_millis(1200), "{serial:?}");
    assert!(parallel < serial / 2, "{parallel:?} vs {serial:?}");
    drop(busy);
}

#[test]
fn a_run_past_its_timeout_starts_nothing_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (0..20).map(|i| dir.path().join(format!("f{i}"))).collect();
    for f in &files {
        std::fs::write(f, "x").unwrap();
    }
    let s = open(&[dir.path()]);
    let set = set_of(&s, &files);
    let rules = Rules::new(&[], None, false)
        .unwrap()
        .with_run_timeout(Duration::ZERO);
    let run = execute("late", &rules, &s, &set, &plan_all(20));
    assert!(run.timed_out);
    assert_eq!(run.counts(), [0, 0, 0, 20, 0]);
    for item in &run.items {
        assert!(
            matches!(&item.outcome, Outcome::Skipped { why } if why.contains("timed out after 0s")),
            "{item:?}"
        );
        assert_eq!(item.attempts, 0);
    }
    assert!(files.iter().all(|f| f.exists()));
    // With time to spare, the same plan is carried out.
    let run = execute(
        "late",
        &rules.with_run_timeout(Duration::from_secs(60)),
        &s,
        &set,
        &plan_all(20),
    );
    assert!(!run.timed_out);
    assert_eq!(run.counts()[0], 20);
}

#[test]
fn a_busy_file_is_retried_with_backoff_until_it_can_go() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("busy");
    std::fs::write(&f, "x").unwrap();
    let space = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&f).unwrap()) * 512;
    let busy = Busy::new(&f);
    let s = open(&[dir.path()]);
    let set = set_of(&s, std::slice::from_ref(&f));
    let rules = |r| Rules::new(&[], None, false).unwrap().with_retries(r);

    // Without retries, one attempt.
    let run = execute("busy", &rules(None), &s, &set, &plan_all(1));
    assert_eq!(run.items[0].attempts, 1);
    assert!(
        matches!(&run.items[0].outcome, Outcome::Failed { error } if error.contains("busy")),
        "{:?}",
        run.items[0]
    );

    // Two retries, 40 ms then 80 ms apart, and it still fails.
    wait_unlocked(&f);
    let t = Instant::now();
    let run = execute("busy", &rules(retries(2, 40, 0.0)), &s, &set, &plan_all(1));
    assert!(
        t.elapsed() >= Duration::from_millis(120),
        "{:?}: {:?}",
        t.elapsed(),
        run.items
    );
    assert_eq!(run.items[0].attempts, 3);
    assert!(
        matches!(&run.items[0].outcome, Outcome::Failed { error } if error.contains("after 3 attempts")),
        "{:?}",
        run.items[0]
    );

    // A wait that would end past the run's timeout is not waited.
    // A waited backoff would take 10 s; not waiting takes milliseconds, so
    // 5 s tells the two apart even on a loaded machine.
    wait_unlocked(&f);
    let t = Instant::now();
    let short = rules(retries(3, 10_000, 0.0)).with_run_timeout(Duration::from_millis(200));
    let run = execute("busy", &short, &s, &set, &plan_all(1));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(run.items[0].attempts, 1);
    assert!(
        matches!(&run.items[0].outcome, Outcome::Failed { error } if error.contains("timeout")),
        "{:?}",
        run.items[0]
    );

    // Unmounted while it waits: a later attempt deletes it.
    wait_unlocked(&f);
    let unmount = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(60));
        drop(busy);
    });
    let run = execute("busy", &rules(retries(6, 40, 0.0)), &s, &set, &plan_all(1));
    unmount.join().unwrap();
    assert_eq!(
        run.items[0].outcome,
        Outcome::Deleted { bytes: space },
        "{:?}",
        run.items[0]
    );
    assert!(run.items[0].attempts >= 2, "{:?}", run.items[0]);
    assert!(!f.exists());
}

/// Makes `dir` refuse deletions for good: read-only by its mode, or for
/// root (whom modes do not stop) by a read-only bind mount.
struct ReadOnly(PathBuf, bool);

impl ReadOnly {
    fn new(dir: &Path) -> ReadOnly {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: no arguments, no side effects.
        if unsafe { libc::geteuid() } != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
            return ReadOnly(dir.to_owned(), false);
        }
        mount_on_itself(&["--bind"], dir);
        let guard = ReadOnly(dir.to_owned(), true);
        mount_on_itself(&["-o", "remount,ro,bind"], dir);
        guard
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.1 {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        } else {
            let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
        }
    }
}

#[test]
fn a_permanent_failure_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let scope = dir.path().join("scope");
    std::fs::create_dir(&scope).unwrap();
    let f = scope.join("kept");
    std::fs::write(&f, "x").unwrap();
    let ro = ReadOnly::new(&scope);
    // Opened as a run does, after the scope was made read-only (a root
    // opened before stays pinned to the writable mount).
    let s = open(&[&scope]);
    let set = set_of(&s, std::slice::from_ref(&f));
    let rules = Rules::new(&[], None, false)
        .unwrap()
        .with_retries(retries(3, 10_000, 0.0));
    // A waited backoff would take 10 s; 5 s tells it from none on a loaded
    // machine.
    let t = Instant::now();
    let run = execute("ro", &rules, &s, &set, &plan_all(1));
    drop(ro);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(run.items[0].attempts, 1);
    assert!(
        matches!(&run.items[0].outcome, Outcome::Failed { error }
            if error.contains("Read-only") || error.contains("Permission denied")),
        "{:?}",
        run.items[0]
    );
    assert!(f.exists());
}

#[test]
fn passing_failures_are_told_from_lasting_ones() {
    for e in [
        libc::EINTR,
        libc::EAGAIN,
        libc::EBUSY,
        libc::ENOMEM,
        libc::ESTALE,
    ] {
        assert!(transient(e), "{e}");
    }
    for e in [
        libc::ENOENT,
        libc::EPERM,
        libc::EACCES,
        libc::EROFS,
        libc::EIO,
        libc::ELOOP,
        libc::ENOTDIR,
        libc::EISDIR,
    ] {
        assert!(!transient(e), "{e}");
    }
}

#[test]
fn backoff_doubles_stops_at_its_cap_and_jitters_within_bounds() {
    let ms = Duration::from_millis;
    assert_eq!(backoff(ms(100), 0, 0.0, 0.7), ms(100));
    assert_eq!(backoff(ms(100), 3, 0.0, -0.7), ms(800));
    assert_eq!(backoff(ms(100), 20, 0.0, 0.0), MAX_BACKOFF);
    assert_eq!(backoff(ms(100), 40, 0.0, 0.0), MAX_BACKOFF);
    assert_eq!(backoff(ms(100), 0, 0.2, -1.0), ms(80));
    assert_eq!(backoff(ms(100), 0, 0.2, 1.0), ms(120));
    // Jitter never lifts a wait over the cap.
    assert_eq!(backoff(Duration::from_secs(20), 1, 0.5, 1.0), MAX_BACKOFF);
    assert_eq!(backoff(Duration::from_secs(20), 1, 0.5, -1.0), ms(15_000));
    let spreads: Vec<f64> = (0..2000).map(|_| spread()).collect();
    assert!(spreads.iter().all(|s| (-1.0..=1.0).contains(s)));
    assert!(spreads.iter().any(|s| *s < -0.5) && spreads.iter().any(|s| *s > 0.5));
    for s in spreads {
        let d = backoff(Duration::from_secs(1), 0, 0.25, s);
        assert!(d >= ms(750) && d <= ms(1250), "{d:?}");
    }
}
