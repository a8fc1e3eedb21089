//! Issue 12, the daemon under faults and abuse: thousands of idle and slow
//! connections, a full disk, a data directory others could write, and a
//! cleanup policy that goes live in the middle of an edit.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use crate::daemon::{Daemon, free_port};
use crate::http::{call, get, post, wait};

/// Files in `dir`, by name.
fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    n.sort();
    n
}

fn old_file(path: &Path) {
    std::fs::write(path, b"old").unwrap();
    let then = SystemTime::now() - Duration::from_secs(3 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(
            std::fs::FileTimes::new()
                .set_accessed(then)
                .set_modified(then),
        )
        .unwrap();
}

/// Open descriptors of process `pid` that are sockets.
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

/// 2,000 connections that never finish a request (half send nothing, half
/// trickle a header), held open: `/health` still answers, cleanup still
/// deletes, batches are still written, the daemon holds no more sockets than
/// its cap, and a connection that never finishes its headers is closed.
#[test]
fn r12_two_thousand_idle_slow_connections_stop_neither_health_nor_cleanup_nor_persistence() {
    let tree = tempfile::tempdir().unwrap();
    let scope = tree.path().join("scope");
    std::fs::create_dir(&scope).unwrap();
    for i in 0..3 {
        old_file(&scope.join(format!("{i}.tmp")));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/sweep.yaml"),
        format!(
            "policies:\n  - name: sweep\n    kind: cleanup\n    plugin: temp-files\n    trigger:\n      interval: 300ms\n    scope:\n      paths: [\"{}\"]\n    config:\n      max_age: 1d\n",
            scope.display()
        ),
    )
    .unwrap();
    let d = Daemon::start_in(
        dir,
        Some(
            "api:\n  max_connections: 64\n  header_timeout: 2s\nmetrics:\n  collect:\n    enabled: false\n  persist:\n    flush_interval: 50ms\n",
        ),
    );
    let pid = d.child.id();
    let mut held = Vec::with_capacity(2000);
    for i in 0..2000 {
        let mut s = TcpStream::connect(&d.addr).unwrap();
        if i % 2 == 1 {
            let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
        }
        held.push(s);
    }
    // Everything still works while the 2,000 are open.
    let started = Instant::now();
    assert_eq!(
        get(&d.addr, "/health")["subsystems"]["policies"]["score"],
        100
    );
    let health_after = started.elapsed();
    let (status, v) = post(
        &d.addr,
        "/api/v1/metrics",
        &json!({"samples": [{"metric": "during_flood", "value": 1}]}),
    );
    assert_eq!(status, 200, "{v}");
    let metrics_dir = d.dir.path().join("warden-data/metrics");
    wait("a batch written during the flood", 30, || {
        names(&metrics_dir)
            .iter()
            .any(|n| n.starts_with("metrics_"))
    });
    wait("the cleanup policy deleting during the flood", 30, || {
        names(&scope).is_empty()
    });
    // Idle connections beyond the cap were closed, not kept.
    let sockets = sockets_of(pid);
    assert!(
        sockets <= 64 + 16,
        "the daemon holds {sockets} sockets with a cap of 64"
    );
    // A connection that trickles a header is closed once the header
    // timeout passes (it gets a 408, or just the close).
    let mut slow = TcpStream::connect(&d.addr).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nX-Slow: ").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let closed = slow.read_to_end(&mut buf);
    assert!(
        closed.is_ok() && t.elapsed() < Duration::from_secs(30),
        "a half-sent request was kept open: {closed:?}"
    );
    drop(held);
    eprintln!("health answered in {health_after:?} with 2,000 idle connections open");
    d.stop();
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `mount` ({e}); this test needs it, as root"));
        assert!(
            out.status.success(),
            "cannot mount a {size} tmpfs at {} ({}): this test fills a small filesystem and needs root (or CAP_SYS_ADMIN) to mount one",
            at.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes to `path` until the filesystem is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    loop {
        if let Err(e) = f.write_all(&chunk) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
            break;
        }
    }
    // Any last pages too.
    let _ = f.write_all(&[0u8; 512]);
}

fn samples(n: usize, tag: &str) -> serde_json::Value {
    let pad = "p".repeat(200);
    json!({"samples": (0..n).map(|i| json!({
        "metric": "disk_full_probe",
        "labels": {"i": (i % 50).to_string(), "tag": tag, "pad": pad},
        "value": i,
    })).collect::<Vec<_>>()})
}

/// On a full disk: batch writes fail and are retried, the temporary files of
/// the failed writes are removed at once, retention still deletes expired
/// batches (and skips an odd entry), what does not fit in the queue is
/// dropped and counted, `/health` says so, and writing resumes once there is
/// room again.
#[test]
fn r12_a_full_disk_keeps_retention_running_and_writes_resume_with_room() {
    let base = tempfile::tempdir().unwrap();
    // Big enough for what the queue and the writer's hand-off hold (a few
    // MiB of batches) once it is empty again; filled up first.
    let fs = Tmpfs::mount(&base.path().join("small"), "16m");
    let data = fs.0.join("data");
    let metrics = data.join("metrics");
    std::fs::create_dir_all(&metrics).unwrap();
    // Expired batches, and a directory named like one.
    let expired: Vec<String> = (0..4)
        .map(|i| format!("metrics_20200101_00000{i}_000000.json"))
        .collect();
    for name in &expired {
        std::fs::write(metrics.join(name), b"{}").unwrap();
    }
    std::fs::create_dir(metrics.join("metrics_20200102_000000_000000.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let d = Daemon::start_with_data_dir(
        dir,
        "metrics:\n  collect:\n    enabled: false\n  persist:\n    flush_interval: 50ms\n    max_queue_size: 3000\n    retention: 1d\n",
        &data,
    );
    fill(&fs.0.join("filler"));
    // 500 records of ~250 bytes: a batch far larger than what retention
    // frees (four tiny files), so writes keep failing.
    for round in 0..3 {
        let (status, v) = post(
            &d.addr,
            "/api/v1/metrics",
            &samples(500, &format!("r{round}")),
        );
        assert_eq!(status, 200, "{v}");
    }
    wait("writes failing on the full disk", 30, || {
        !get(&d.addr, "/api/v1/metrics/stats")["write_failing"].is_null()
    });
    wait(
        "retention deleting expired batches while the disk is full",
        30,
        || {
            let left = names(&metrics);
            expired.iter().all(|e| !left.contains(e))
        },
    );
    let left = names(&metrics);
    assert!(
        left.contains(&"metrics_20200102_000000_000000.json".to_owned()),
        "the odd entry is skipped, not removed: {left:?}"
    );
    assert!(
        !left.iter().any(|n| n.ends_with(".tmp")),
        "a failed write left its temporary file: {left:?}"
    );
    // More than the writer's hand-off and the queue hold: the oldest are
    // dropped, and counted.
    let mut round = 3;
    while get(&d.addr, "/api/v1/metrics/stats")["dropped"].as_u64() == Some(0) {
        assert!(round < 200, "nothing dropped after {round} batches of 500");
        let (status, v) = post(
            &d.addr,
            "/api/v1/metrics",
            &samples(500, &format!("r{round}")),
        );
        assert_eq!(status, 200, "{v}");
        round += 1;
    }
    let health = get(&d.addr, "/health");
    let m = &health["subsystems"]["metrics"];
    assert_eq!(m["status"], "critical", "{health:#}");
    let detail = m["detail"].as_str().unwrap();
    assert!(
        detail.contains("cannot be written") && !detail.contains(" 0 dropped"),
        "{detail}"
    );
    let persisted = get(&d.addr, "/api/v1/metrics/stats")["total_persisted"]
        .as_u64()
        .unwrap();
    // Room again: writing resumes on its own.
    std::fs::remove_file(fs.0.join("filler")).unwrap();
    wait("writes resuming", 60, || {
        let s = get(&d.addr, "/api/v1/metrics/stats");
        s["write_failing"].is_null() && s["total_persisted"].as_u64() > Some(persisted)
    });
    wait("/health ok again", 60, || {
        get(&d.addr, "/health")["subsystems"]["metrics"]["status"] == "ok"
    });
    assert!(names(&metrics).iter().any(|n| n.starts_with("metrics_2")));
    d.stop();
}

/// A data directory (or its plugin cache) that another user owns, or that
/// others may write, is refused at start with a message that says what to do.
#[test]
fn r12_a_data_directory_others_could_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    // What the refusal tells to do, and how the data directory is spoilt.
    type Spoil<'a> = &'a dyn Fn(&Path);
    let cases: [(&str, Spoil<'_>); 3] = [
        ("chmod go-w", &|data: &Path| {
            std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o777)).unwrap();
        }),
        ("chown", &|data: &Path| {
            std::os::unix::fs::chown(data, Some(65534), Some(65534)).unwrap();
        }),
        ("chmod go-w", &|data: &Path| {
            let cache = data.join("cache/plugins");
            std::fs::create_dir_all(&cache).unwrap();
            std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o775)).unwrap();
        }),
    ];
    for (fix, spoil) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        spoil(&data);
        let out = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["run", "--listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--data-dir")
            .arg(&data)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "started anyway");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("refusing to use") && err.contains(fix),
            "{err}"
        );
    }
    // A fresh one is made private.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let d = Daemon::start_in(dir, Some("metrics:\n  collect:\n    enabled: false\n"));
    let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let data = d.dir.path().join("warden-data");
    for sub in ["", "cache", "cache/plugins", "state", "metrics"] {
        assert_eq!(mode(data.join(sub)), 0o700, "{sub}");
    }
    d.stop();
}

/// A cleanup policy edited from dry-run to acting is logged as such and
/// acts only once its file has settled: edited in two writes (the first
/// without its `dry_run: true`), it never deletes anything; left acting, it
/// deletes once the settle time has passed.
#[test]
fn r12_a_cleanup_policy_going_live_waits_for_its_file_to_settle() {
    let tree = tempfile::tempdir().unwrap();
    let scope = tree.path().join("scope");
    std::fs::create_dir(&scope).unwrap();
    for i in 0..3 {
        old_file(&scope.join(format!("{i}.tmp")));
    }
    let policy = |dry_run: bool| {
        format!(
            "policies:\n  - name: sweep\n    kind: cleanup\n    plugin: temp-files\n    trigger:\n      interval: 100ms\n    scope:\n      paths: [\"{}\"]\n{}    config:\n      max_age: 1d\n",
            scope.display(),
            if dry_run { "    dry_run: true\n" } else { "" }
        )
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let file = dir.path().join("policies/sweep.yaml");
    std::fs::write(&file, policy(true)).unwrap();
    let log = dir.path().join("warden.log");
    let d = Daemon::start_logged(dir, "metrics:\n  collect:\n    enabled: false\n", &log);
    let dry = |d: &Daemon| d.status()["policies"][0]["dry_run"].as_bool();
    // The edit's first write drops `dry_run`; the second puts it back.
    std::fs::write(&file, policy(false)).unwrap();
    let s = d.until("the acting version", |s| {
        s["policies"][0]["dry_run"] == false
    });
    assert!(
        s["policies"][0]["held_until_ms"].is_i64(),
        "not held: {s:#}"
    );
    std::fs::write(&file, policy(true)).unwrap();
    d.until("the dry-run version back", |s| {
        s["policies"][0]["dry_run"] == true
    });
    // Runs of the interval, and the settle time of the acting version, have
    // passed; none acted.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(names(&scope).len(), 3, "the half-written version deleted");
    let history = get(&d.addr, "/api/v1/cleanup/history?policy=sweep");
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["dry_run"] == true),
        "{history:#}"
    );
    // Left acting, it acts once settled.
    std::fs::write(&file, policy(false)).unwrap();
    d.until("the acting version again", |s| {
        s["policies"][0]["dry_run"] == false
    });
    assert_eq!(dry(&d), Some(false));
    wait("the settled version deleting", 30, || {
        names(&scope).is_empty()
    });
    let (status, _) = call("POST", &d.addr, "/api/v1/policies/sweep/run", None);
    assert_eq!(status, 200);
    let dir = d.stop();
    let logged = std::fs::read_to_string(dir.path().join("warden.log")).unwrap();
    assert!(
        logged.contains("goes from dry-run to acting"),
        "the change to acting was not logged:\n{logged}"
    );
}
