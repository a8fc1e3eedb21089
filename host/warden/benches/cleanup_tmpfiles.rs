//! Age-based cleanup of a tree of files: Warden next to
//! `systemd-tmpfiles --clean` on an identical twin tree. Goal: Warden's wall
//! time at most 1.0× tmpfiles', judged twice: with the policy default of 4
//! workers, and at equal parallelism (1 worker; tmpfiles works on one
//! thread). CPU time per file is printed beside both, and a second,
//! scan-only pass over what is left (nothing old any more) compares the
//! steady state of a schedule that mostly finds nothing to do.
//!
//! Each round builds three identical trees in one temporary directory (same
//! filesystem): `WARDEN_BENCH_FILES` files (default 100,000) spread over up
//! to 100 directories, every other file with its atime and mtime set two days
//! back, the rest fresh. Then, rotating which goes first:
//!
//! - Warden, the way the scheduler runs a cleanup policy: the scope root
//!   resolved and pinned (`runtime::cleanup::Scope::open`), the host's
//!   candidate scan from it (`runtime::cleanup::walk::scan`), the shipped
//!   `temp-files` plugin planning through the real WASM runtime (`max_age:
//!   1d`), and `cleanup::execute` with the policy defaults (4 workers, every
//!   safety check: `O_NOFOLLOW` walk from the pinned root, same mount, same
//!   device and inode, flock). The plugin
//!   is loaded once beforehand, as the daemon does when a policy is loaded;
//!   its evaluation timeout is raised to 10 s, as a policy over this many
//!   files would set `timeout:` (the 100 ms default is for small snapshots).
//! - The same with `max_concurrent: 1`, for what the workers bring: tmpfiles
//!   works on one thread.
//! - `systemd-tmpfiles --clean <conf>` with `d <tree> - - - amAM:1d`, run as
//!   the current user, process start included.
//!
//! Wall time is the goal; CPU time (user + system, Warden's over all its
//! threads) is printed beside it. Warden makes more system calls per deleted
//! file than tmpfiles (a second stat at deletion time, and the open, flock
//! and close of the lock check), the price of its safety rules.
//!
//! Fairness: both judge a file by the newest of its atime and mtime. By
//! default tmpfiles (systemd 252) also counts ctime and btime, which cannot be
//! set back, so no freshly made file would ever be old to it; the age-by
//! prefix `amAM:` restricts it to atime and mtime (for files, and for
//! directories, which stay: they are not empty and were just written).
//! Warden's scan reports no birth time and `temp-files` ignores a missing
//! stamp, so it judges by the same two. Both must leave exactly the fresh
//! half: the bench checks the counts. Both trees were just written, so both
//! are equally in the page and dentry caches; dirty data is synced first.
//!
//! Run: `cargo bench -p warden --bench cleanup_tmpfiles`. Knobs:
//! `WARDEN_BENCH_FILES`, `WARDEN_BENCH_ROUNDS` (default 3). Under
//! `cargo test` it runs one round of 2,000 files as a smoke test. Without
//! `systemd-tmpfiles` it fails: there is nothing to compare with.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use warden::plugin::{Engine, EngineOptions, Evaluator, Kind, Limits, NoData};
use warden::runtime::cleanup::{self, walk};

const TMPFILES: &str = "systemd-tmpfiles";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

/// Builds `files` files under `root` in up to 100 directories; every other
/// one two days old. Returns how many are old.
fn build_tree(root: &Path, files: usize) -> usize {
    let dirs = (files / 1000).clamp(1, 100);
    for d in 0..dirs {
        std::fs::create_dir_all(root.join(format!("d{d:03}"))).unwrap();
    }
    let then = SystemTime::now() - Duration::from_secs(2 * 86_400);
    let old_times = std::fs::FileTimes::new()
        .set_accessed(then)
        .set_modified(then);
    let mut old = 0;
    for i in 0..files {
        let path = root.join(format!("d{:03}/f{i:06}.tmp", i % dirs));
        let f = std::fs::File::create(&path).unwrap();
        std::io::Write::write_all(&mut &f, b"scratch data\n").unwrap();
        if i % 2 == 0 {
            f.set_times(old_times).unwrap();
            old += 1;
        }
    }
    old
}

/// Counts the regular files left under `root`.
fn remaining(root: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                n += 1;
            }
        }
    }
    n
}

/// What one Warden run cost, by stage.
struct WardenTimes {
    scan: Duration,
    plan: Duration,
    execute: Duration,
    /// CPU time, all threads.
    cpu: Duration,
    deleted: usize,
}

impl WardenTimes {
    fn total(&self) -> Duration {
        self.scan + self.plan + self.execute
    }
}

/// CPU time (user + system) of this process, all threads, or of its
/// waited-for children.
fn cpu(who: i32) -> Duration {
    // SAFETY: an all-zero `rusage` is a valid value to be overwritten.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `r` is writable for the call.
    assert_eq!(unsafe { libc::getrusage(who, &mut r) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(r.ru_utime) + tv(r.ru_stime)
}

fn run_warden(policy: &Evaluator, root: &Path, workers: usize) -> WardenTimes {
    let cpu_before = cpu(libc::RUSAGE_SELF);
    let t = Instant::now();
    let protected = cleanup::Protected {
        data_dir: "/nonexistent/warden-data".into(),
        policies_dir: "/nonexistent/warden-policies".into(),
        allow_system_paths: false,
    };
    let scope = cleanup::Scope::open(&[root.to_path_buf()], &protected).unwrap();
    let mut set = walk::scan(&scope);
    let scan = t.elapsed();
    let t = Instant::now();
    // As the scheduler does: the candidates are lent to the plugin and back.
    let plan = policy.plan_over(false, &mut set.set).unwrap();
    let plan_time = t.elapsed();
    let t = Instant::now();
    let rules = cleanup::Rules::new(&[], None, false)
        .unwrap()
        .with_concurrency(workers);
    let run = cleanup::execute("bench", &rules, &scope, &set, &plan);
    let execute = t.elapsed();
    let cpu = cpu(libc::RUSAGE_SELF) - cpu_before;
    let [deleted, _, refused, skipped, failed] = run.counts();
    assert_eq!(
        (refused, skipped, failed),
        (0, 0, 0),
        "{:?}",
        run.items
            .iter()
            .find(|i| !matches!(i.outcome, cleanup::Outcome::Deleted { .. }))
    );
    WardenTimes {
        scan,
        plan: plan_time,
        execute,
        cpu,
        deleted,
    }
}

/// Runs tmpfiles; returns its wall time and its CPU time.
fn run_tmpfiles(conf: &Path) -> (Duration, Duration) {
    let cpu_before = cpu(libc::RUSAGE_CHILDREN);
    let t = Instant::now();
    let status = Command::new(TMPFILES)
        .arg("--clean")
        .arg(conf)
        .status()
        .unwrap_or_else(|e| panic!("running {TMPFILES}: {e} (Debian package `systemd`)"));
    let elapsed = t.elapsed();
    assert!(status.success(), "{TMPFILES} --clean failed: {status}");
    (elapsed, cpu(libc::RUSAGE_CHILDREN) - cpu_before)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One pass of each contender over its tree: wall and CPU time.
#[derive(Default)]
struct Pass {
    wall_ms: Vec<f64>,
    cpu_ms: Vec<f64>,
}

impl Pass {
    fn push(&mut self, wall: Duration, cpu: Duration) {
        self.wall_ms.push(ms(wall));
        self.cpu_ms.push(ms(cpu));
    }

    fn wall(&self) -> f64 {
        median(self.wall_ms.clone())
    }

    /// Median CPU microseconds per file of a tree of `files`.
    fn cpu_per_file_us(&self, files: usize) -> f64 {
        median(self.cpu_ms.clone()) * 1e3 / files as f64
    }
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let files = env_usize(
        "WARDEN_BENCH_FILES",
        if benchmarking { 100_000 } else { 2_000 },
    );
    let rounds = env_usize("WARDEN_BENCH_ROUNDS", if benchmarking { 3 } else { 1 }).max(1);
    if let Err(e) = Command::new(TMPFILES).arg("--version").output() {
        eprintln!(
            "cleanup_tmpfiles: cannot run `{TMPFILES}` ({e}): it is what this benchmark compares with; install the Debian package `systemd` (.ci/run does)"
        );
        std::process::exit(1);
    }

    let engine = Engine::new(&EngineOptions::default()).unwrap();
    let plugin = Arc::new(
        engine
            .load_builtin("temp-files", Some(Kind::Cleanup))
            .unwrap(),
    );
    let limits = Limits {
        timeout: Duration::from_secs(10),
        ..Limits::default()
    };
    let policy = Evaluator::new(
        plugin,
        "bench",
        &serde_json::json!({ "max_age": "1d" }),
        limits,
        Arc::new(NoData),
    );

    let workers = warden::policy::parse::DEFAULT_MAX_CONCURRENT;
    println!(
        "age-based cleanup of {files} files, half older than 1d: Warden (scan + temp-files plugin + execute) vs {TMPFILES} --clean"
    );
    let (mut w4, mut w1, mut t) = (Pass::default(), Pass::default(), Pass::default());
    let (mut w_scan, mut t_scan) = (Pass::default(), Pass::default());
    let mut left = 0;
    for round in 1..=rounds {
        let base = tempfile::tempdir().unwrap();
        let ours = base.path().join("warden");
        let serial = base.path().join("warden-serial");
        let theirs = base.path().join("tmpfiles");
        let old = build_tree(&ours, files);
        assert_eq!(build_tree(&serial, files), old);
        assert_eq!(build_tree(&theirs, files), old);
        let conf = base.path().join("bench.conf");
        std::fs::write(
            &conf,
            format!("d {} - - - amAM:1d\n", theirs.to_str().unwrap()),
        )
        .unwrap();
        // SAFETY: no arguments; flushes dirty data so writeback does not land
        // in any measurement.
        unsafe { libc::sync() };

        let (mut a, mut b, mut c) = (None, None, None);
        // Rotate who goes first, so none always meets a quieter disk.
        for step in 0..3 {
            match (round + step) % 3 {
                0 => a = Some(run_warden(&policy, &ours, workers)),
                1 => b = Some(run_warden(&policy, &serial, 1)),
                _ => c = Some(run_tmpfiles(&conf)),
            }
        }
        let (a, b, (c_wall, c_cpu)) = (a.unwrap(), b.unwrap(), c.unwrap());
        let [ours_left, serial_left, theirs_left] = [&ours, &serial, &theirs].map(|p| remaining(p));
        assert_eq!(
            (a.deleted, b.deleted),
            (old, old),
            "Warden deleted every old file"
        );
        assert_eq!(
            (ours_left, serial_left),
            (theirs_left, theirs_left),
            "all leave the same files"
        );
        assert_eq!(ours_left, files - old);
        left = ours_left;
        println!(
            "round {round}: Warden, {workers} workers {:7.1} ms (scan {:.1}, plan {:.1}, execute {:.1}; CPU {:.1}) | Warden, 1 worker {:7.1} ms (execute {:.1}; CPU {:.1}) | tmpfiles {:7.1} ms (CPU {:.1}) | files left {ours_left} / {theirs_left}",
            ms(a.total()),
            ms(a.scan),
            ms(a.plan),
            ms(a.execute),
            ms(a.cpu),
            ms(b.total()),
            ms(b.execute),
            ms(b.cpu),
            ms(c_wall),
            ms(c_cpu),
        );
        w4.push(a.total(), a.cpu);
        w1.push(b.total(), b.cpu);
        t.push(c_wall, c_cpu);

        // Again over what is left: nothing is old, both only look.
        let (mut a, mut c) = (None, None);
        for step in 0..2 {
            match (round + step) % 2 {
                0 => a = Some(run_warden(&policy, &ours, workers)),
                _ => c = Some(run_tmpfiles(&conf)),
            }
        }
        let (a, (c_wall, c_cpu)) = (a.unwrap(), c.unwrap());
        assert_eq!(a.deleted, 0);
        assert_eq!(
            [&ours, &theirs].map(|p| remaining(p)),
            [left, left],
            "nothing more removed"
        );
        println!(
            "round {round}, scan only: Warden {:7.1} ms (scan {:.1}, plan {:.1}; CPU {:.1}) | tmpfiles {:7.1} ms (CPU {:.1})",
            ms(a.total()),
            ms(a.scan),
            ms(a.plan),
            ms(a.cpu),
            ms(c_wall),
            ms(c_cpu),
        );
        w_scan.push(a.total(), a.cpu);
        t_scan.push(c_wall, c_cpu);
    }

    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let ratio_row = |what: &str, w: &Pass, t: &Pass| {
        let r = w.wall() / t.wall();
        println!(
            "| {what} | {:.1} ms vs {:.1} ms: {r:.2}× | ≤ 1.0× | {} |",
            w.wall(),
            t.wall(),
            verdict(r <= 1.0)
        );
    };
    println!(
        "\nmedians of {rounds} rounds; wall time is shared-machine noise-prone, CPU time less so\n"
    );
    println!("| {files} files, half old | Warden vs tmpfiles, wall | goal | |");
    println!("| --- | ---: | --- | --- |");
    ratio_row(
        &format!("cleanup, Warden with {workers} workers (the default)"),
        &w4,
        &t,
    );
    ratio_row(
        "cleanup at equal parallelism: Warden with 1 worker",
        &w1,
        &t,
    );
    ratio_row(
        &format!("scan-only pass over the {left} files left (nothing old)"),
        &w_scan,
        &t_scan,
    );
    println!();
    println!("| CPU time per file (user + system, all threads) | µs / file |");
    println!("| --- | ---: |");
    for (what, pass, n) in [
        (format!("cleanup: Warden, {workers} workers"), &w4, files),
        ("cleanup: Warden, 1 worker".to_owned(), &w1, files),
        ("cleanup: systemd-tmpfiles".to_owned(), &t, files),
        ("scan only: Warden".to_owned(), &w_scan, left),
        ("scan only: systemd-tmpfiles".to_owned(), &t_scan, left),
    ] {
        println!("| {what} | {:.2} |", pass.cpu_per_file_us(n));
    }
}
