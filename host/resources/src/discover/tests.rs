use std::io::Write as _;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use super::rows::{self, Process};
use super::*;
use warden_core::records::{ResourceFilter, ResourceKind, ResourceSet};

/// This test process, holding one of everything discovery tells apart.
struct Holding {
    file: std::path::PathBuf,
    listen: std::net::SocketAddr,
    client: std::net::SocketAddr,
    udp: std::net::SocketAddr,
    sleeper: std::process::Child,
    zombie: u32,
    /// The worker thread's name: each holding's own, as tests side by side
    /// hold one each.
    worker: String,
    _keep: Vec<Box<dyn std::any::Any>>,
}

fn holding(dir: &std::path::Path) -> Holding {
    let file = dir.join("held.log");
    let mut f = std::fs::File::create(&file).unwrap();
    f.write_all(b"x").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = listener.local_addr().unwrap();
    let client = TcpStream::connect(listen).unwrap();
    let (server, _) = listener.accept().unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    let (r, w) = std::io::pipe().unwrap();
    // SAFETY: eventfd takes no pointers; the result is checked.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(efd >= 0);
    // SAFETY: `efd` is a fresh descriptor nothing else owns.
    let efd: std::os::fd::OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(efd) };
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<i32>();
    static WORKERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "disc-w-{}",
        WORKERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let worker = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            // SAFETY: gettid cannot fail.
            let _ = started_tx.send(unsafe { libc::gettid() });
            let _ = stop_rx.recv();
        })
        .unwrap();
    // The thread names itself once it runs, and the test wants it asleep
    // in `recv`: wait for both.
    let tid = started_rx.recv().unwrap();
    while !std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .is_ok_and(|s| s.contains(&format!("({name}) S ")))
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    // Exits at once and is never waited for: a zombie until the test ends.
    let zombie = Command::new("true").stdout(Stdio::null()).spawn().unwrap();
    let zombie_pid = zombie.id();
    while std::fs::read_to_string(format!("/proc/{zombie_pid}/stat"))
        .is_ok_and(|s| !s.contains(") Z "))
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Holding {
        worker: name,
        file,
        listen,
        client: client.local_addr().unwrap(),
        udp: udp.local_addr().unwrap(),
        sleeper,
        zombie: zombie_pid,
        _keep: vec![
            Box::new(f),
            Box::new(listener),
            Box::new(client),
            Box::new(server),
            Box::new(udp),
            Box::new(a),
            Box::new(b),
            Box::new(r),
            Box::new(w),
            Box::new(efd),
            Box::new(StopOnDrop(Some(stop_tx), Some(worker))),
            Box::new(zombie),
        ],
    }
}

struct StopOnDrop(
    Option<std::sync::mpsc::Sender<()>>,
    Option<std::thread::JoinHandle<()>>,
);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        drop(self.0.take());
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

fn me() -> Vec<(String, Vec<u32>)> {
    vec![("me".to_owned(), vec![std::process::id()])]
}

/// A discoverer through the BPF iterator (which this machine kind has, and
/// the tests run as root), and one through `/proc`.
fn both(limits: Limits) -> [Discoverer; 2] {
    let bpf = Discoverer::new(limits);
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(bpf.method(), "bpf", "the BPF iterator must load here");
    } else {
        // Without the rights to load it, discovery says why it reads /proc.
        assert!(
            bpf.method()
                .starts_with("proc (the BPF iterator is unavailable: loading the iterator: "),
            "{}",
            bpf.method()
        );
    }
    [bpf, Discoverer::through_proc(limits, 100_000)]
}

#[test]
fn a_process_s_descriptors_sockets_threads_and_children_are_each_listed() {
    for d in both(Limits::default()) {
        each_is_listed(d);
    }
}

fn each_is_listed(mut d: Discoverer) {
    let dir = tempfile::tempdir().unwrap();
    let mut h = holding(dir.path());
    let snap = d.discover(&me(), 1_000);
    assert_eq!(snap.at_ms, 1_000);
    assert!(snap.skipped.is_empty(), "{:?}", snap.skipped);
    let inv = &snap.processes[0];
    assert_eq!((inv.process.as_str(), inv.pid), ("me", std::process::id()));
    assert!(inv.truncated.is_empty(), "{:?}", inv.truncated);

    let kinds: Vec<&str> = inv.fds.iter().map(|f| f.kind).collect();
    for k in ["file", "socket", "pipe", "eventfd"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let held = h.file.to_string_lossy().into_owned();
    assert!(
        inv.fds.iter().any(|f| f.kind == "file" && f.target == held),
        "{:?}",
        inv.fds
    );

    let find = |local: String| inv.sockets.iter().find(|s| s.local == local);
    // The accepted side shares the listener's address; the listener has no
    // peer (and need not have the lower descriptor).
    let l = inv
        .sockets
        .iter()
        .find(|s| s.local == h.listen.to_string() && s.peer.is_empty())
        .expect("the listener");
    assert_eq!((l.protocol, l.state), ("tcp", "listen"));
    let c = find(h.client.to_string()).expect("the client's side");
    assert_eq!(
        (c.protocol, c.state, c.peer.clone()),
        ("tcp", "established", h.listen.to_string())
    );
    let u = find(h.udp.to_string()).expect("the UDP socket");
    assert_eq!(u.protocol, "udp");
    // The socket pair (tests side by side may hold more).
    assert!(
        inv.sockets
            .iter()
            .filter(|s| s.protocol == "unix" && s.state == "connected")
            .count()
            >= 2,
        "{:?}",
        inv.sockets
    );
    // Every socket descriptor is one socket here (none is shared).
    assert_eq!(
        inv.sockets.len(),
        inv.fds.iter().filter(|f| f.kind == "socket").count()
    );

    let worker = inv
        .threads
        .iter()
        .find(|t| t.name == h.worker)
        .expect("the named thread");
    assert_eq!(worker.state, 'S');

    let sleeper = inv
        .children
        .iter()
        .find(|c| c.pid == h.sleeper.id())
        .expect("the sleeping child");
    assert_eq!(sleeper.command, "sleep");
    assert!(sleeper.started_ms >= inv.started_ms, "{sleeper:?} {inv:?}");
    let zombie = inv
        .children
        .iter()
        .find(|c| c.pid == h.zombie)
        .expect("the zombie");
    assert_eq!(zombie.state, 'Z');
    h.sleeper.kill().unwrap();
    h.sleeper.wait().unwrap();

    // As rows: sockets of this process, by name and by pid alike.
    let sockets = ResourceFilter {
        kinds: vec![ResourceKind::Socket],
        ..ResourceFilter::default()
    };
    let by_name = rows::rows(&snap, &sockets, &Process::parse(Some("me")));
    let by_pid = rows::rows(
        &snap,
        &sockets,
        &Process::parse(Some(&std::process::id().to_string())),
    );
    assert_eq!(by_name, by_pid);
    assert!(rows::rows(&snap, &sockets, &Process::parse(Some("them"))).is_empty());
    let listener = by_name
        .iter()
        .find(|r| r.name == format!("tcp {}", h.listen))
        .expect("the listener's row");
    assert_eq!(
        (
            listener.labels["state"].as_str(),
            listener.owner.as_str(),
            listener.source
        ),
        ("listen", "me", "discovered")
    );
    assert!(
        by_name
            .iter()
            .all(|r| r.handle >> 52 == 1 && r.kind == "socket")
    );
    let zombies: Vec<_> = rows::rows(
        &snap,
        &ResourceFilter {
            kinds: vec![ResourceKind::Process],
            ..ResourceFilter::default()
        },
        &Process::Any,
    )
    .into_iter()
    .filter(|r| r.labels["zombie"] == "true")
    .collect();
    // Tests run side by side in this process: others' zombies show too.
    assert!(
        zombies
            .iter()
            .any(|r| r.labels["child_pid"] == h.zombie.to_string()),
        "{zombies:?}"
    );

    // The same thing keeps its handle from one cycle to the next (only this
    // test's own: tests side by side open and close others meanwhile).
    let again = d.discover(&me(), 2_000);
    let again = rows::rows(&again, &sockets, &Process::Any);
    let same = again
        .iter()
        .find(|a| a.name == listener.name)
        .expect("the listener again");
    assert_eq!(same.handle, listener.handle);
}

#[test]
fn plugins_get_discovered_rows_only_when_they_ask_for_those_kinds_within_their_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let h = holding(dir.path());
    let snap = Discoverer::new(Limits::default()).discover(&me(), 1_000);

    let mut set = ResourceSet::default();
    rows::append(&mut set, &snap, &ResourceFilter::default(), usize::MAX).unwrap();
    assert_eq!(
        set.len(),
        0,
        "a filter of every kind gets no discovered row"
    );

    let threads = ResourceFilter {
        kinds: vec![ResourceKind::Thread],
        ..ResourceFilter::default()
    };
    rows::append(&mut set, &snap, &threads, usize::MAX).unwrap();
    assert_eq!(set.len(), snap.processes[0].threads.len());
    assert!((0..set.len()).all(|i| set.kind(i) == Some(ResourceKind::Thread)));
    assert!((0..set.len()).any(|i| set.name(i) == Some(h.worker.as_str())));

    let mut small = ResourceSet::default();
    let limited = ResourceFilter {
        kinds: vec![ResourceKind::FileDescriptor],
        limit: Some(2),
        ..ResourceFilter::default()
    };
    rows::append(&mut small, &snap, &limited, usize::MAX).unwrap();
    assert_eq!(small.len(), 2);
    let mut none = ResourceSet::default();
    let needed = rows::append(&mut none, &snap, &limited, 10).unwrap_err();
    assert!(needed > 10 && none.is_empty());
}

#[test]
fn limits_cut_what_one_process_contributes_and_say_so_and_a_gone_pid_is_skipped() {
    for d in both(Limits {
        max_per_kind: 3,
        ..Limits::default()
    }) {
        cut_and_skipped(d);
    }
}

fn cut_and_skipped(mut d: Discoverer) {
    let dir = tempfile::tempdir().unwrap();
    let _h = holding(dir.path());
    let gone = {
        let mut c = Command::new("true").spawn().unwrap();
        c.wait().unwrap();
        c.id()
    };
    let snap = d.discover(&[("me".to_owned(), vec![std::process::id(), gone])], 1_000);
    let inv = &snap.processes[0];
    assert_eq!(inv.fds.len(), 3);
    assert!(
        inv.truncated
            .iter()
            .any(|t| t.starts_with("descriptors: more than 3")),
        "{:?}",
        inv.truncated
    );
    assert_eq!(snap.processes.len(), 1);
    assert!(
        snap.skipped[0].starts_with(&format!("me pid {gone}: ")),
        "{:?}",
        snap.skipped
    );
}

/// A shell that holds what `steps` (one script each) open, running the next
/// step each time [`Shell::next`] is called.
struct Shell {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Shell {
    fn start(steps: &[&str]) -> Shell {
        let script: String = steps
            .iter()
            .map(|s| format!("{s}\necho ready\nread _\n"))
            .collect();
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut s = Shell { child, out };
        s.wait_ready();
        s
    }

    fn wait_ready(&mut self) {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut self.out, &mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the shell's step failed");
    }

    fn next(&mut self) {
        writeln!(self.child.stdin.as_mut().unwrap()).unwrap();
        self.wait_ready();
    }

    fn target(&self) -> Vec<(String, Vec<u32>)> {
        vec![("shell".to_owned(), vec![self.child.id()])]
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn target_of(snap: &Snapshot, fd: i32) -> Option<String> {
    snap.processes[0]
        .fds
        .iter()
        .find(|d| d.fd == fd)
        .map(|d| d.target.clone())
}

#[test]
fn through_proc_another_process_is_read_through_handles_that_follow_what_it_closes_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&a, "a").unwrap();
    std::fs::write(&b, "b").unwrap();
    let (a, b) = (a.display().to_string(), b.display().to_string());
    let mut sh = Shell::start(&[
        &format!("exec 7<{a}"),
        // The same number, another file; and one more descriptor.
        &format!("exec 7<{b} 8<{a}"),
        // As many open as before, but 8 is closed and 9 new: the count
        // alone cannot tell.
        &format!("exec 8<&- 9<{b}"),
    ]);
    let mut d = Discoverer::through_proc(Limits::default(), 100_000);
    let snap = d.discover(&sh.target(), 1_000);
    assert!(
        snap.processes[0].truncated.is_empty(),
        "{:?}",
        snap.processes[0].truncated
    );
    assert_eq!(target_of(&snap, 7).as_deref(), Some(a.as_str()));
    let held = snap.processes[0].fds.len();
    assert_eq!(d.handles(), held, "a handle on each descriptor");

    sh.next();
    let snap = d.discover(&sh.target(), 2_000);
    assert_eq!(
        target_of(&snap, 7).as_deref(),
        Some(b.as_str()),
        "read afresh"
    );
    assert_eq!(
        target_of(&snap, 8).as_deref(),
        Some(a.as_str()),
        "a new one found"
    );
    assert_eq!(d.handles(), held + 1);

    sh.next();
    let snap = d.discover(&sh.target(), 3_000);
    assert_eq!(
        target_of(&snap, 8),
        None,
        "closed: {:?}",
        snap.processes[0].fds
    );
    assert_eq!(target_of(&snap, 9).as_deref(), Some(b.as_str()));
    assert_eq!(d.handles(), held + 1);

    // Gone: its handles go with it.
    drop(sh);
    let snap = d.discover(
        &[("shell".to_owned(), vec![std::process::id() + 1_000_000])],
        4_000,
    );
    assert!(snap.processes.is_empty());
    assert_eq!(d.handles(), 0);
}

#[test]
fn through_proc_past_its_budget_of_handles_a_discoverer_reads_the_rest_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    std::fs::write(&a, "a").unwrap();
    let a = a.display().to_string();
    let sh = Shell::start(&[&format!("exec 5<{a} 6<{a} 7<{a} 8<{a}")]);
    let mut d = Discoverer::through_proc(Limits::default(), 2);
    for at in [1_000, 2_000] {
        let snap = d.discover(&sh.target(), at);
        for fd in 5..=8 {
            assert_eq!(target_of(&snap, fd).as_deref(), Some(a.as_str()), "fd {fd}");
        }
        assert_eq!(d.handles(), 2);
    }
    // Warden itself is never read through handles: each would be one more
    // descriptor of its own.
    let _ = d.discover(&me(), 3_000);
    assert_eq!(d.handles(), 0, "only this process was watched");
}

#[test]
fn through_proc_thousands_of_descriptors_are_listed_and_read_on_several_threads_as_one_would() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::write(&a, "a").unwrap();
    std::fs::write(&b, "b").unwrap();
    let (a, b) = (a.display().to_string(), b.display().to_string());
    let n = 3_000;
    let sh = Shell::start(&[
        &format!(
            "ulimit -n 4096; for i in $(seq 10 {}); do eval \"exec $i<{a}\"; done",
            n + 9
        ),
        // Close one in the middle and open one past the end: the same count.
        &format!("exec 1500<&- {}<{b}", n + 100),
    ]);
    let mut sh = sh;
    let mut d = Discoverer::through_proc(Limits::default(), 100_000);
    let first = d.discover(&sh.target(), 1_000);
    let again = d.discover(&sh.target(), 2_000);
    assert_eq!(first.processes[0].fds, again.processes[0].fds);
    let files = |s: &Snapshot| {
        s.processes[0]
            .fds
            .iter()
            .filter(|f| f.fd >= 10)
            .map(|f| (f.fd, f.target.clone()))
            .collect::<Vec<_>>()
    };
    let want: Vec<(i32, String)> = (10..n + 10).map(|fd| (fd, a.clone())).collect();
    assert_eq!(files(&again), want);

    sh.next();
    let after = d.discover(&sh.target(), 3_000);
    let mut want: Vec<(i32, String)> = want.into_iter().filter(|(fd, _)| *fd != 1500).collect();
    want.push((n + 100, b.clone()));
    assert_eq!(files(&after), want);
    assert_eq!(d.handles(), after.processes[0].fds.len());
}

#[test]
fn the_bpf_iterator_reads_what_proc_shows_and_a_path_too_long_for_it_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // Deeper than the iterator's buffer keeps: that one link is read by
    // name.
    let mut deep = dir.path().to_path_buf();
    while deep.as_os_str().len() <= super::bpf::PATH_MAX + 40 {
        deep.push("a-directory-name-of-some-length");
    }
    std::fs::create_dir_all(&deep).unwrap();
    let long = deep.join("held");
    std::fs::write(&long, "x").unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "x").unwrap();
    let mut sh = Shell::start(&[
        &format!(
            "exec 5<{} 6<{} 7<{}; exec 8<&5",
            short.display(),
            long.display(),
            short.display()
        ),
        "exec 6<&-",
    ]);
    let [mut bpf, mut proc] = both(Limits::default());
    let a = bpf.discover(&sh.target(), 1_000);
    let b = proc.discover(&sh.target(), 1_000);
    assert_eq!(a.method, bpf.method());
    assert!(b.method.starts_with("proc ("), "{}", b.method);
    assert_eq!(a.processes[0].fds, b.processes[0].fds);
    assert_eq!(
        target_of(&a, 6).as_deref(),
        Some(long.to_str().unwrap()),
        "read by name"
    );
    assert_eq!(target_of(&a, 8), target_of(&a, 5), "a dup reads the same");
    let links = |d: &Discoverer| d.iter.as_ref().map_or(1, |i| i.links());
    assert_eq!(links(&bpf), 1);

    sh.next();
    let a = bpf.discover(&sh.target(), 2_000);
    assert_eq!(target_of(&a, 6), None, "closed");
    assert_eq!(
        a.processes[0].fds,
        proc.discover(&sh.target(), 2_000).processes[0].fds
    );
    drop(sh);
    let _ = bpf.discover(&me(), 3_000);
    assert_eq!(
        links(&bpf),
        1,
        "the shell's link went with it; this process has its own"
    );
}
