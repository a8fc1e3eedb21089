//! Cleanup end to end through `warden run`: a shipped plugin plans over a
//! real tree, the host deletes only what the scope allows, a plan over the cap
//! does nothing, a dry run lists every action (in the log; the history keeps
//! the first 1,000 of a run), and the history says what was done.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::daemon::Daemon;
use crate::http::{call, get};

fn old_file(path: &Path, bytes: usize) {
    std::fs::write(path, vec![b'x'; bytes]).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    let then = SystemTime::now() - Duration::from_secs(3 * 86_400);
    f.set_times(
        std::fs::FileTimes::new()
            .set_accessed(then)
            .set_modified(then),
    )
    .unwrap();
}

fn policy(scope: &Path, extra: &str) -> String {
    format!(
        "policies:\n  - name: sweep\n    kind: cleanup\n    plugin: temp-files\n    trigger: manual\n    scope:\n      paths: [\"{}\"]\n      exclude: [\"*.lock\"]\n{extra}    config:\n      max_age: 1d\n",
        scope.display()
    )
}

fn daemon_with(policy_text: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/sweep.yaml"), policy_text).unwrap();
    Daemon::start_in(
        dir,
        Some("metrics:\n  collect:\n    enabled: false\n  persist:\n    enabled: false\n"),
    )
}

fn run(d: &Daemon) -> Value {
    call("POST", &d.addr, "/api/v1/policies/sweep/run", None).1
}

fn history(d: &Daemon) -> Value {
    get(&d.addr, "/api/v1/cleanup/history?policy=sweep")
}

#[test]
fn old_files_go_and_every_trap_stays() {
    let tree = tempfile::tempdir().unwrap();
    let scope = tree.path().join("scope");
    let outside = tree.path().join("outside");
    std::fs::create_dir_all(scope.join("sub")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    old_file(&scope.join("a.tmp"), 100);
    old_file(&scope.join("sub/b.tmp"), 50);
    old_file(&scope.join("keep.lock"), 10);
    old_file(&outside.join("precious"), 10);
    std::os::unix::fs::symlink(&outside, scope.join("out")).unwrap();
    std::os::unix::fs::symlink(outside.join("precious"), scope.join("p")).unwrap();
    old_file(&scope.join("held"), 10);
    let held = std::fs::File::open(scope.join("held")).unwrap();
    // SAFETY: `held` is an open descriptor.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&held), libc::LOCK_EX) },
        0
    );
    std::fs::write(scope.join("fresh.tmp"), "new").unwrap();

    // What deleting them frees: the space they take on disk.
    let space =
        |p: &Path| std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(p).unwrap()) * 512;
    let freed = space(&scope.join("a.tmp")) + space(&scope.join("sub/b.tmp"));
    let d = daemon_with(&policy(&scope, ""));
    let record = run(&d);
    assert_eq!(record["ok"], true, "{record}");
    assert!(
        record["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("deleted 2 ({freed} bytes freed)")),
        "{record}"
    );
    assert!(!scope.join("a.tmp").exists() && !scope.join("sub/b.tmp").exists());
    for kept in ["keep.lock", "held", "fresh.tmp"] {
        assert!(scope.join(kept).exists(), "{kept}");
    }
    assert!(std::fs::symlink_metadata(scope.join("out")).is_ok());
    assert_eq!(
        std::fs::read_to_string(outside.join("precious"))
            .unwrap()
            .len(),
        10
    );
    let h = history(&d);
    let items = h[0]["items"].as_array().unwrap();
    let of = |name: &str| {
        items
            .iter()
            .find(|i| i["target"].as_str().is_some_and(|t| t.ends_with(name)))
            .unwrap_or_else(|| panic!("{name} in {h:#}"))
    };
    assert_eq!(of("a.tmp")["outcome"], "deleted");
    assert_eq!(of("held")["outcome"], "skipped");
    assert!(of("held")["why"].as_str().unwrap().contains("locked"));
    assert_eq!(h[0]["bytes_freed"], freed);
    drop(held);
    d.stop();
}

#[test]
fn over_the_cap_nothing_is_deleted() {
    let tree = tempfile::tempdir().unwrap();
    let scope = tree.path().join("scope");
    std::fs::create_dir(&scope).unwrap();
    for i in 0..1000 {
        old_file(&scope.join(format!("f{i:04}")), 1);
    }
    let d = daemon_with(&policy(&scope, "    max_actions: 10%\n"));
    let record = run(&d);
    let detail = record["detail"].as_str().unwrap();
    assert!(
        detail.contains("1000 actions") && detail.contains("allows 100"),
        "{detail}"
    );
    assert_eq!(std::fs::read_dir(&scope).unwrap().count(), 1000);
    assert!(history(&d)[0]["cap_exceeded"].is_string());
    d.stop();
}

/// More files than the history keeps items of one run.
const OVER_HISTORY: usize = warden::runtime::state::CLEANUP_ITEMS + 1;

#[test]
fn a_dry_run_lists_every_action_in_the_log_and_the_first_thousand_in_the_history() {
    let tree = tempfile::tempdir().unwrap();
    let scope = tree.path().join("scope");
    std::fs::create_dir(&scope).unwrap();
    let names: Vec<String> = (0..OVER_HISTORY).map(|i| format!("f{i:04}")).collect();
    for name in &names {
        old_file(&scope.join(name), 1);
    }
    // What each file takes on disk (its blocks), which is what deleting it frees.
    let bytes: u64 = names
        .iter()
        .map(|n| {
            std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(scope.join(n)).unwrap()) * 512
        })
        .sum();
    let d = daemon_with(&policy(&scope, "    dry_run: true\n"));
    let record = run(&d);
    assert!(
        record["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("would delete {OVER_HISTORY} ({bytes} bytes)")),
        "{record}"
    );
    assert_eq!(std::fs::read_dir(&scope).unwrap().count(), OVER_HISTORY);

    // The history keeps the first 1,000 items and counts the rest by outcome.
    let h = history(&d);
    assert_eq!(h[0]["dry_run"], true);
    let items = h[0]["items"].as_array().unwrap();
    assert_eq!(items.len(), OVER_HISTORY - 1);
    assert!(items.iter().all(|i| i["outcome"] == "would_delete"));
    assert_eq!(
        h[0]["omitted"],
        serde_json::json!([0, 1, 0, 0, 0]),
        "{}",
        h[0]["omitted"]
    );

    // The log has every one: one line per action, naming the policy and the path.
    let log = d.log();
    let listed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("dry run: would delete") && l.contains("policy=\"sweep\""))
        .collect();
    assert_eq!(
        listed.len(),
        OVER_HISTORY,
        "{}",
        &log[..log.len().min(2000)]
    );
    for name in &names {
        let path = scope.join(name).display().to_string();
        assert_eq!(
            listed
                .iter()
                .filter(|l| l.contains(&format!("\"{path}\"")))
                .count(),
            1,
            "{path} listed once"
        );
    }
    d.stop();
}

#[test]
fn a_scope_through_a_symlink_a_user_made_deletes_nothing_and_names_it() {
    // `scope.paths: [.../home/alice/app/log]`, where `app` is a symlink that
    // alice (who owns her home) pointed at another tree.
    let tree = tempfile::tempdir().unwrap();
    let home = tree.path().join("srv/home/alice");
    let other = tree.path().join("other");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(other.join("log")).unwrap();
    old_file(&other.join("log/precious.tmp"), 100);
    std::os::unix::fs::chown(&home, Some(1000), None).unwrap();
    std::os::unix::fs::symlink(&other, home.join("app")).unwrap();
    std::os::unix::fs::lchown(home.join("app"), Some(1000), None).unwrap();

    let d = daemon_with(&policy(&home.join("app/log"), ""));
    let record = run(&d);
    assert_eq!(record["ok"], false, "{record}");
    let detail = record["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!(
            "`{}` is a symlink owned by uid 1000",
            home.join("app").display()
        )),
        "{detail}"
    );
    assert!(other.join("log/precious.tmp").exists());
    d.stop();
}

#[test]
fn a_sparse_file_does_not_make_temp_files_evict_the_others() {
    // Others' files, two days old; then one user's fresh sparse file of
    // 10 TiB that takes no space. The budget is about space on disk.
    let tree = tempfile::tempdir().unwrap();
    let scope = tree.path().join("shared");
    std::fs::create_dir(&scope).unwrap();
    for i in 0..10 {
        old_file(&scope.join(format!("theirs-{i}")), 4096);
    }
    let sparse = std::fs::File::create(scope.join("mine")).unwrap();
    sparse.set_len(10 << 40).unwrap();
    let d = daemon_with(&format!(
        "policies:\n  - name: sweep\n    kind: cleanup\n    plugin: temp-files\n    trigger: manual\n    scope:\n      paths: [\"{}\"]\n    config:\n      max_age: 30d\n      max_total_bytes: 1048576\n",
        scope.display()
    ));
    let record = run(&d);
    assert_eq!(record["ok"], true, "{record}");
    assert!(
        record["detail"].as_str().unwrap().contains("deleted 0 "),
        "{record}"
    );
    assert_eq!(std::fs::read_dir(&scope).unwrap().count(), 11);
    d.stop();
}
