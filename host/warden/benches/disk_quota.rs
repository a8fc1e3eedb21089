//! A disk quota's measurement next to `du -sx`, doing the same work on the
//! same tree: every entry looked at once (`statx` here, `fstatat` there),
//! allocated blocks summed, hard links once, no symlink followed, no other
//! mount entered. Both must arrive at the same total; the bench checks it.
//!
//! The tree is `WARDEN_BENCH_FILES` files (default 100,000) of 0–4 KiB in
//! directories of 100, written once and synced, so both walk a warm dentry
//! and inode cache, as a quota evaluated every minute does. Each round
//! times, in rotating order:
//!
//! - Warden: `DiskUsage::step` with a budget over the whole tree, the path
//!   a `disk-bytes` evaluation takes (the path opened from `/` as a scope
//!   root, then the walk);
//! - `du -sx -B1 <tree>`, process start included (a cron job pays it too);
//!
//! and then one evaluation at the default budget (100,000 entries), the
//! cost an operator's default quota adds to each evaluation.
//!
//! Run: `cargo bench -p warden --bench disk_quota`. Knobs:
//! `WARDEN_BENCH_FILES`, `WARDEN_BENCH_ROUNDS` (default 5). Under
//! `cargo test` it runs one round over 2,000 files as a smoke test.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use warden::policy::parse::{DEFAULT_DISK_BUDGET, DiskSource};
use warden::runtime::quotas::disk::DiskUsage;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn build(root: &Path, files: usize) {
    let mut data = vec![0u8; 4096];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i * 31 % 251) as u8;
    }
    for i in 0..files {
        let dir = root.join(format!("d{:04}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let mut f = std::fs::File::create(dir.join(format!("f{i}"))).unwrap();
        f.write_all(&data[..(i * 977) % 4097]).unwrap();
    }
    Command::new("sync").status().unwrap();
}

fn warden(root: &Path, budget: u64) -> (Duration, u64, bool) {
    let mut d = DiskUsage::new(DiskSource {
        paths: vec![root.to_path_buf()],
        budget,
    });
    let t = Instant::now();
    let done = d.step(1).unwrap();
    let took = t.elapsed();
    let total = d.last().map_or(0, |m| m.bytes[0]);
    (took, total, done)
}

fn du(root: &Path) -> (Duration, u64) {
    let t = Instant::now();
    let out = Command::new("du")
        .args(["-s", "-x", "-B1"])
        .arg(root)
        .output()
        .expect("du runs");
    let took = t.elapsed();
    assert!(out.status.success(), "{out:?}");
    let total = String::from_utf8(out.stdout).unwrap();
    let total = total.split_whitespace().next().unwrap().parse().unwrap();
    (took, total)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let files = env_usize(
        "WARDEN_BENCH_FILES",
        if benchmarking { 100_000 } else { 2_000 },
    );
    let rounds = env_usize("WARDEN_BENCH_ROUNDS", if benchmarking { 5 } else { 1 });
    let top = tempfile::tempdir().unwrap();
    let root = top.path().join("tree");
    build(&root, files);
    let entries = files + files.div_ceil(100) + 1;
    // One of each first, so that both start from the same warm cache.
    let (_, reference) = du(&root);
    let _ = warden(&root, u64::MAX);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut run = |first: bool| {
            if first {
                let (t, total, done) = warden(&root, u64::MAX);
                assert!(done);
                assert_eq!(total, reference, "Warden and du disagree");
                ours.push(t);
            } else {
                let (t, total) = du(&root);
                assert_eq!(total, reference, "du changed its mind");
                theirs.push(t);
            }
        };
        run(round % 2 == 0);
        run(round % 2 == 1);
    }
    let (w, d) = (median(ours), median(theirs));
    let per_s = |t: Duration| entries as f64 / t.as_secs_f64();
    println!(
        "disk usage of {entries} entries ({} bytes allocated), median of {rounds} rounds, warm cache",
        reference
    );
    println!(
        "  Warden disk-bytes walk   {:>8.1} ms   {:>10.0} entries/s",
        w.as_secs_f64() * 1e3,
        per_s(w)
    );
    println!(
        "  du -sx -B1               {:>8.1} ms   {:>10.0} entries/s   Warden at {:.2}x du's time",
        d.as_secs_f64() * 1e3,
        per_s(d),
        w.as_secs_f64() / d.as_secs_f64()
    );
    let budget = DEFAULT_DISK_BUDGET.min(entries as u64);
    let steps: Vec<Duration> = (0..rounds).map(|_| warden(&root, budget).0).collect();
    println!(
        "  one evaluation at a budget of {budget} entries: {:.1} ms (median)",
        median(steps).as_secs_f64() * 1e3
    );
}
