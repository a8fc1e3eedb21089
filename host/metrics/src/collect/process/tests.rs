use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::super::tests::{VecSink, two_cycles};
use super::super::{CollectConfig, Collector, ProcessSelector, ProcessTarget};
use super::*;

fn config(selectors: &[(&str, ProcessTarget)]) -> CollectConfig {
    CollectConfig {
        processes: selectors
            .iter()
            .map(|(name, target)| ProcessSelector {
                name: (*name).to_owned(),
                target: target.clone(),
            })
            .collect(),
        ..CollectConfig::default()
    }
}

/// Kills and reaps the children even when an assertion fails.
struct Reap(Vec<Child>);
impl Drop for Reap {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Spawns `program args` and waits until it has exec'd (its comm is `comm`),
/// since right after fork it still carries the test binary's name.
fn spawn_until_comm(program: &Path, args: &[&str], comm: &str) -> Child {
    // Inside Reap from the start, so a timeout does not leave it running.
    let mut child = Reap(vec![Command::new(program).args(args).spawn().unwrap()]);
    let path = format!("/proc/{}/comm", child.0[0].id());
    for _ in 0..500 {
        if std::fs::read_to_string(&path).is_ok_and(|c| c.trim_end() == comm) {
            return child.0.pop().unwrap();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("{} never became {comm}", program.display());
}

fn sleep_path() -> PathBuf {
    ["/bin/sleep", "/usr/bin/sleep"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("sleep(1) is installed")
}

#[test]
fn own_pid_fds_sockets_children_threads() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let (pipe_r, mut pipe_w) = std::io::pipe().unwrap();
    pipe_w.write_all(b"x").unwrap();
    let file = tempfile::tempfile().unwrap();
    // A young test process may not have used one clock tick of CPU yet;
    // use a few so `process_cpu_seconds_total` has something to show.
    let spin = std::time::Instant::now();
    let mut x = 0u64;
    while spin.elapsed() < std::time::Duration::from_millis(50) {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }

    let children = Reap(vec![
        spawn_until_comm(&sleep_path(), &["5"], "sleep"),
        spawn_until_comm(&sleep_path(), &["5"], "sleep"),
    ]);
    const THREADS: usize = 3;
    let release = Arc::new(Barrier::new(THREADS + 1));
    let parked: Vec<_> = (0..THREADS)
        .map(|_| {
            let release = Arc::clone(&release);
            std::thread::spawn(move || {
                release.wait();
            })
        })
        .collect();

    let me = std::process::id();
    let mut c = Collector::new(&config(&[("me", ProcessTarget::Pid(me))]));
    let sink = two_cycles(&mut c);
    release.wait();
    for t in parked {
        t.join().unwrap();
    }
    drop(children);

    let me = [("process", "me")];
    assert_eq!(sink.one("process_up", &me), 1.0);
    assert_eq!(sink.one("process_count", &me), 1.0);
    assert!(sink.one("process_resident_memory_bytes", &me) > 1e6);
    let fd = |t| sink.one("process_open_fds", &[("process", "me"), ("type", t)]);
    assert!(fd("socket") >= 3.0, "socket fds {}", fd("socket"));
    assert!(fd("pipe") >= 2.0, "pipe fds {}", fd("pipe"));
    assert!(fd("file") >= 1.0, "file fds {}", fd("file"));
    fd("other");
    let tcp = |s| {
        sink.one(
            "process_tcp_connections",
            &[("process", "me"), ("state", s)],
        )
    };
    assert!(tcp("listen") >= 1.0);
    assert!(
        tcp("established") >= 2.0,
        "established {}",
        tcp("established")
    );
    assert_eq!(
        sink.find("process_tcp_connections", &me).len(),
        TCP_STATES.len()
    );
    assert!(sink.one("process_children", &me) >= 2.0);
    assert!(sink.one("process_threads", &me) >= (THREADS + 1) as f64);
    let cpu = sink.one("process_cpu_usage_ratio", &me);
    assert!(cpu >= 0.0 && cpu.is_finite(), "{cpu}");
    assert!(sink.one("process_cpu_seconds_total", &me) > 0.0);
    drop((client, server, listener, pipe_r, pipe_w, file));
}

/// The same counts whether they come from netlink or from /proc/net/tcp{,6}.
#[test]
fn tcp_states_agree_between_netlink_and_proc() {
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    // IPv6 may be off in a container; the IPv4 sockets still make the test.
    let v6 = TcpListener::bind("[::1]:0").ok();
    let client = TcpStream::connect(v4.local_addr().unwrap()).unwrap();
    let (server, _) = v4.accept().unwrap();
    let six = v6.as_ref().map(|l| {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (c, l.accept().unwrap().0)
    });

    let me = ProcessTarget::Pid(std::process::id());
    let read = |fallback: bool| {
        let mut c = Collector::new(&config(&[("me", me.clone())]));
        if fallback {
            c.process.sock_diag_failures = SOCK_DIAG_MAX_FAILURES;
        }
        let mut sink = VecSink::default();
        c.collect(&mut sink);
        let states: Vec<f64> = TCP_STATES
            .iter()
            .map(|st| {
                sink.one(
                    "process_tcp_connections",
                    &[("process", "me"), ("state", st)],
                )
            })
            .collect();
        (states, c.process.sock_diag.is_some())
    };
    let (netlink, used_netlink) = read(false);
    let (proc, _) = read(true);
    let listen = if v6.is_some() { 2.0 } else { 1.0 };
    assert!(netlink[1] >= listen, "listen {netlink:?}");
    assert!(netlink[0] >= 2.0 * listen, "established {netlink:?}");
    if used_netlink {
        // Other tests open and close sockets meanwhile, so compare ours only loosely.
        assert!(
            proc[1] >= listen && proc[0] >= 2.0 * listen,
            "{proc:?} vs {netlink:?}"
        );
    } else {
        println!("netlink sock_diag unavailable here; only /proc was checked");
    }
    drop((client, server, six, v4, v6));
}

#[test]
fn process_name_matches_comm_and_argv0_and_misses_emit_zeros() {
    // A symlink with a name longer than comm's 15 bytes: the kernel
    // truncates comm, so only argv[0]'s basename carries the full name.
    let dir = tempfile::tempdir().unwrap();
    let long = "warden-test-long-argv0-name";
    let link = dir.path().join(long);
    std::os::unix::fs::symlink(sleep_path(), &link).unwrap();
    let _children = Reap(vec![
        spawn_until_comm(&sleep_path(), &["5"], "sleep"),
        spawn_until_comm(&link, &["5"], &long[..15]),
    ]);

    let mut c = Collector::new(&config(&[
        ("sleepers", ProcessTarget::ProcessName("sleep".into())),
        ("long", ProcessTarget::ProcessName(long.into())),
        (
            "nobody",
            ProcessTarget::ProcessName("warden-no-such-proc".into()),
        ),
    ]));
    let mut first = VecSink::default();
    c.collect(&mut first);
    assert!(first.find("process_cpu_usage_ratio", &[]).is_empty());
    let sink = two_cycles(&mut c);

    let sleepers = [("process", "sleepers")];
    assert!(sink.one("process_count", &sleepers) >= 1.0);
    assert_eq!(sink.one("process_up", &sleepers), 1.0);
    assert!(sink.one("process_resident_memory_bytes", &sleepers) > 0.0);
    assert_eq!(sink.one("process_count", &[("process", "long")]), 1.0);

    let nobody = [("process", "nobody")];
    assert_eq!(sink.one("process_up", &nobody), 0.0);
    let of = |name: &str| -> Vec<_> {
        let name = ("process".to_owned(), name.to_owned());
        sink.0
            .iter()
            .filter(|p| p.labels.first() == Some(&name))
            .collect()
    };
    let series = of("nobody");
    // up, count, rss, cpu seconds, cpu ratio, threads, children, 4 fd types, 11 tcp states.
    assert_eq!(
        series.len(),
        7 + FD_TYPES.len() + TCP_STATES.len(),
        "{series:?}"
    );
    assert!(series.iter().all(|p| p.value == 0.0), "{series:?}");
    // The same fixed set for a selector that did match.
    assert_eq!(of("sleepers").len(), series.len());
}

#[test]
fn an_empty_argv0_is_read_again_a_few_times_before_it_is_believed() {
    // As a cycle that lands inside an exec sees it: the new comm, no argv yet.
    let mut names = Names::new();
    assert!(names.stale(b"worker"));
    names.generation = 1;
    for _ in 1..EMPTY_ARGV0_READS {
        names.refresh(b"worker", b"");
        assert!(names.stale(b"worker"));
    }
    names.refresh(b"worker", b"");
    // A kernel thread or a zombie: empty for good, and no longer read each cycle.
    assert!(!names.stale(b"worker"));
    // Once found, argv[0] is kept while comm stays.
    let mut names = Names::new();
    names.generation = 1;
    names.refresh(b"worker", b"");
    assert!(names.stale(b"worker"));
    names.refresh(b"worker", b"warden-worker-long");
    assert!(!names.stale(b"worker"));
    assert_eq!(&*names.argv0_base, b"warden-worker-long");
    // A new exec changes comm: read again, with a fresh count of empty reads.
    assert!(names.stale(b"other"));
    names.refresh(b"other", b"");
    assert_eq!(names.empty_reads, 1);
    assert!(names.stale(b"other"));
}

#[test]
fn vanished_pid_is_down_not_a_panic() {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let mut c = Collector::new(&config(&[("gone", ProcessTarget::Pid(pid))]));
    let sink = two_cycles(&mut c);
    // The pid could in principle be reused at once; only check it did not panic then.
    if !Path::new(&format!("/proc/{pid}")).exists() {
        assert_eq!(sink.one("process_up", &[("process", "gone")]), 0.0);
        assert_eq!(
            sink.one("process_cpu_usage_ratio", &[("process", "gone")]),
            0.0
        );
    }
}

#[test]
fn cgroup_selector_finds_our_pid() {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| {
            panic!("this test needs cgroup v2: /proc/self/cgroup has no `0::` line:\n{own}")
        });
    let root = cgroup2_root();
    let procs = root.join(path.trim_start_matches('/')).join("cgroup.procs");
    if let Err(e) = std::fs::read_to_string(&procs) {
        panic!(
            "this test needs a mounted cgroup v2 hierarchy (/sys/fs/cgroup or /sys/fs/cgroup/unified): cannot read {}: {e}",
            procs.display()
        );
    }
    let mut c = Collector::new(&config(&[("mine", ProcessTarget::Cgroup(path.into()))]));
    let mut sink = VecSink::default();
    c.collect(&mut sink);
    assert!(sink.one("process_count", &[("process", "mine")]) >= 1.0);
    assert_eq!(sink.one("process_up", &[("process", "mine")]), 1.0);
    let me = std::process::id();
    assert!(
        c.process.watched[0].pids.contains(&me),
        "{me} not in {path}"
    );
}

#[test]
fn missing_cgroup_is_down() {
    let target = ProcessTarget::Cgroup("/warden-test/no-such.service".into());
    let mut sink = VecSink::default();
    Collector::new(&config(&[("x", target)])).collect(&mut sink);
    assert_eq!(sink.one("process_up", &[("process", "x")]), 0.0);
}

#[test]
fn cpu_delta_counts_only_pids_seen_twice() {
    let t = |pid, start, ticks| PidTicks { pid, start, ticks };
    let prev = [t(1, 10, 100), t(5, 10, 50), t(9, 10, 7)];
    // pid 5 was reused (new start time), pid 9 exited, pid 12 is new.
    let now = [t(1, 10, 130), t(5, 99, 3), t(12, 10, 40)];
    assert_eq!(delta_ticks(&prev, &now), 30);
    assert_eq!(delta_ticks(&[], &now), 0);
}

#[test]
fn argv0_basename_of_cmdline() {
    assert_eq!(
        argv0_basename(b"/usr/sbin/nginx\0-g\0daemon off;\0"),
        b"nginx"
    );
    assert_eq!(argv0_basename(b"postgres\0"), b"postgres");
    assert_eq!(argv0_basename(b""), b"");
}
