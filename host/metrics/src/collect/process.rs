//! Watched processes: for each [`ProcessSelector`], the pids it matches this
//! cycle, with their figures summed under the selector's `process` label.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Instant;

use procfs::net::{TcpNetEntries, TcpState};
use procfs::process::{FDTarget, Stat};
use procfs::{FromBufReadSI, FromRead};

use super::{ProcessSelector, ProcessTarget, Scratch, Sink, read_into};
use crate::Kind::{Counter, Gauge};
use warden_core::sock_diag::SockDiag;

/// `type` label values of `process_open_fds`, in index order.
const FD_TYPES: [&str; 4] = ["file", "socket", "pipe", "other"];
const FD_FILE: usize = 0;
const FD_SOCKET: usize = 1;
const FD_PIPE: usize = 2;
const FD_OTHER: usize = 3;

/// `state` label values of `process_tcp_connections`, in index order.
const TCP_STATES: [&str; 11] = [
    "established",
    "listen",
    "time_wait",
    "close_wait",
    "syn_sent",
    "syn_recv",
    "fin_wait1",
    "fin_wait2",
    "last_ack",
    "closing",
    "close",
];

fn tcp_state_index(state: &TcpState) -> usize {
    match state {
        TcpState::Established => 0,
        TcpState::Listen => 1,
        TcpState::TimeWait => 2,
        TcpState::CloseWait => 3,
        TcpState::SynSent => 4,
        // NEW_SYN_RECV is the kernel's request-socket form of SYN_RECV.
        TcpState::SynRecv | TcpState::NewSynRecv => 5,
        TcpState::FinWait1 => 6,
        TcpState::FinWait2 => 7,
        TcpState::LastAck => 8,
        TcpState::Closing => 9,
        TcpState::Close => 10,
    }
}

/// Netlink failures in a row after which the /proc fallback is used for good
/// (netlink denied by a sandbox, say), rather than retrying every cycle.
const SOCK_DIAG_MAX_FAILURES: u32 = 3;

/// CPU ticks of one pid at one reading. The start time tells a reused pid
/// from the process that had it before.
#[derive(Clone, Copy)]
struct PidTicks {
    pid: u32,
    start: u64,
    ticks: u64,
}

/// One cycle's sums for a selector.
#[derive(Default)]
struct Totals {
    count: u64,
    rss_bytes: u64,
    ticks: u64,
    /// Ticks used since the previous cycle by pids present in both.
    delta_ticks: u64,
    threads: u64,
    children: u64,
    fds: [u64; FD_TYPES.len()],
    tcp: [u64; TCP_STATES.len()],
}

struct Watched {
    name: String,
    target: ProcessTarget,
    /// Matched this cycle, sorted and unique.
    pids: Vec<u32>,
    ticks: Vec<PidTicks>,
    prev_ticks: Vec<PidTicks>,
    totals: Totals,
}

/// What a process was called, kept while its `comm` stays the same so argv[0]
/// is read once per process rather than once per cycle. An exec changes
/// `comm`, which is what makes the entry stale.
struct Names {
    comm: Box<[u8]>,
    argv0_base: Box<[u8]>,
    generation: u32,
    /// Reads that found no argv[0], since `comm` last changed.
    empty_reads: u8,
}

/// How many cycles an empty argv[0] is read again before it is believed.
/// An exec sets the new `comm` before it lays out the new argv, so a cycle
/// can land between the two and read an empty command line for a process
/// that is about to have one; kernel threads and zombies keep theirs empty.
const EMPTY_ARGV0_READS: u8 = 3;

impl Names {
    fn new() -> Self {
        Self {
            comm: Box::default(),
            argv0_base: Box::default(),
            generation: 0,
            empty_reads: 0,
        }
    }

    /// Whether argv[0] must be read (again) for a process now called `comm`.
    fn stale(&self, comm: &[u8]) -> bool {
        // Generation 0: just inserted (an empty comm is possible, so
        // comparing comms alone would not tell).
        self.generation == 0
            || *self.comm != *comm
            || (self.argv0_base.is_empty() && self.empty_reads < EMPTY_ARGV0_READS)
    }

    fn refresh(&mut self, comm: &[u8], argv0_base: &[u8]) {
        if *self.comm != *comm {
            self.empty_reads = 0;
            self.comm = comm.into();
        }
        if argv0_base.is_empty() {
            self.empty_reads = self.empty_reads.saturating_add(1);
        }
        self.argv0_base = argv0_base.into();
    }
}

pub(super) struct ProcessCollector {
    watched: Vec<Watched>,
    by_name: bool,
    /// Where the cgroup2 hierarchy is mounted; only looked up if a selector needs it.
    cgroup_root: PathBuf,
    names: HashMap<u32, Names>,
    generation: u32,
    /// (socket inode, watched index) of every socket a watched pid holds.
    sockets: Vec<(u64, usize)>,
    /// Opened on first use, kept across cycles.
    sock_diag: Option<SockDiag>,
    /// Consecutive failed netlink dumps; past the limit /proc is used for good.
    sock_diag_failures: u32,
    last_cycle: Option<Instant>,
    page_size: u64,
    ticks_per_second: f64,
    /// Cgroup directories still to visit.
    dirs: Vec<PathBuf>,
}

impl ProcessCollector {
    pub(super) fn new(selectors: &[ProcessSelector]) -> Self {
        let watched: Vec<Watched> = selectors
            .iter()
            .map(|s| Watched {
                name: s.name.clone(),
                target: s.target.clone(),
                pids: Vec::new(),
                ticks: Vec::new(),
                prev_ticks: Vec::new(),
                totals: Totals::default(),
            })
            .collect();
        let by_name = watched
            .iter()
            .any(|w| matches!(w.target, ProcessTarget::ProcessName(_)));
        let by_cgroup = watched
            .iter()
            .any(|w| matches!(w.target, ProcessTarget::Cgroup(_)));
        Self {
            watched,
            by_name,
            cgroup_root: if by_cgroup {
                cgroup2_root()
            } else {
                PathBuf::new()
            },
            names: HashMap::new(),
            generation: 0,
            sockets: Vec::new(),
            sock_diag: None,
            sock_diag_failures: 0,
            last_cycle: None,
            page_size: procfs::page_size(),
            ticks_per_second: procfs::ticks_per_second() as f64,
            dirs: Vec::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.watched.len()
    }

    /// The pids each selector matched this cycle.
    pub(super) fn matched(&self) -> Vec<(String, Vec<u32>)> {
        self.watched
            .iter()
            .map(|w| (w.name.clone(), w.pids.clone()))
            .collect()
    }

    pub(super) fn collect(&mut self, s: &mut Scratch, sink: &mut dyn Sink) {
        if self.watched.is_empty() {
            return;
        }
        for w in &mut self.watched {
            w.pids.clear();
            w.totals = Totals::default();
            std::mem::swap(&mut w.ticks, &mut w.prev_ticks);
            w.ticks.clear();
        }
        self.match_pids(s);

        self.sockets.clear();
        for (i, w) in self.watched.iter_mut().enumerate() {
            // Taken out for the loop so read_pid can update the rest of `w`.
            let pids = std::mem::take(&mut w.pids);
            for &pid in &pids {
                read_pid(pid, i, w, &mut self.sockets, self.page_size, s);
            }
            w.pids = pids;
            w.totals.delta_ticks = delta_ticks(&w.prev_ticks, &w.ticks);
        }
        if !self.sockets.is_empty() {
            self.tcp_states(s);
        }

        let now = Instant::now();
        let elapsed = self.last_cycle.map(|t| now.duration_since(t).as_secs_f64());
        self.last_cycle = Some(now);
        for w in &self.watched {
            self.emit(w, elapsed, sink);
        }
    }

    fn match_pids(&mut self, s: &mut Scratch) {
        if self.by_name {
            self.match_names(s);
        }
        for i in 0..self.watched.len() {
            match &self.watched[i].target {
                ProcessTarget::Pid(pid) => {
                    let pid = *pid;
                    self.watched[i].pids.push(pid);
                }
                ProcessTarget::Cgroup(path) => {
                    let dir = self.cgroup_root.join(path.trim_start_matches('/'));
                    self.dirs.push(dir);
                    while let Some(dir) = self.dirs.pop() {
                        cgroup_pids(&dir, i, &mut self.watched[i].pids, &mut self.dirs, s);
                    }
                    let pids = &mut self.watched[i].pids;
                    pids.sort_unstable();
                    pids.dedup();
                }
                ProcessTarget::ProcessName(_) => {}
            }
        }
    }

    /// Compares each pid's `comm`, then (only where that fails) its argv[0]
    /// basename, against the name selectors.
    fn match_names(&mut self, s: &mut Scratch) {
        if !s.pids_ok {
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        let Scratch {
            buf,
            path,
            pids,
            quiet,
            ..
        } = s;
        let mut comm_buf = [0; 64];
        for &pid in pids.iter() {
            path.clear();
            let _ = write!(path, "/proc/{pid}/comm");
            let Ok(comm) = read_comm(path, &mut comm_buf) else {
                continue; // exited since /proc was listed
            };
            let by_comm_only = self.watched.iter().all(|w| match &w.target {
                ProcessTarget::ProcessName(want) => want.as_bytes() == comm,
                _ => true,
            });
            let argv0: &[u8] = if by_comm_only {
                &[]
            } else {
                let entry = self.names.entry(pid).or_insert_with(Names::new);
                if entry.stale(comm) {
                    path.clear();
                    let _ = write!(path, "/proc/{pid}/cmdline");
                    if let Err(e) = read_into(path, buf) {
                        quiet.skip("process.cmdline", 0, &e);
                        buf.clear();
                    }
                    entry.refresh(comm, argv0_basename(buf));
                }
                entry.generation = self.generation;
                &entry.argv0_base
            };
            for w in &mut self.watched {
                if let ProcessTarget::ProcessName(want) = &w.target {
                    let want = want.as_bytes();
                    if comm == want || (!argv0.is_empty() && argv0 == want) {
                        w.pids.push(pid);
                    }
                }
            }
        }
        let generation = self.generation;
        self.names.retain(|_, n| n.generation == generation);
        // /proc lists pids in ascending order already; delta_ticks depends on
        // it, so this does not rely on that.
        for w in &mut self.watched {
            if matches!(w.target, ProcessTarget::ProcessName(_)) {
                w.pids.sort_unstable();
            }
        }
    }

    /// Counts, per selector, the TCP connections whose socket inode one of
    /// its pids holds: one netlink dump, or /proc/net/tcp and tcp6 if netlink
    /// is not allowed here.
    fn tcp_states(&mut self, s: &mut Scratch) {
        self.sockets.sort_unstable();
        self.sockets.dedup();
        let Self {
            sockets,
            watched,
            sock_diag,
            sock_diag_failures,
            ..
        } = self;
        if *sock_diag_failures < SOCK_DIAG_MAX_FAILURES {
            let result = match sock_diag {
                Some(d) => Ok(d),
                None => SockDiag::new().map(|d| sock_diag.insert(d)),
            }
            .and_then(|d| d.tcp(|s| count_socket(sockets, watched, s.state, s.inode)));
            match result {
                Ok(()) => {
                    *sock_diag_failures = 0;
                    return;
                }
                Err(e) => {
                    s.quiet.skip("tcp.sock_diag", 0, &e);
                    *sock_diag_failures += 1;
                    // A fresh socket next time: this one may hold half a dump.
                    *sock_diag = None;
                    for w in watched.iter_mut() {
                        w.totals.tcp = Default::default();
                    }
                }
            }
        }

        for (i, path) in ["/proc/net/tcp", "/proc/net/tcp6"].into_iter().enumerate() {
            if let Err(e) = s.read(path) {
                // No tcp6 when IPv6 is disabled.
                s.quiet.skip("tcp.proc", i, &e);
                continue;
            }
            match TcpNetEntries::from_buf_read(&s.buf[..], procfs::current_system_info()) {
                Ok(entries) => {
                    for e in &entries.0 {
                        count_socket(sockets, watched, e.state.clone() as u8, e.inode);
                    }
                }
                Err(e) => s.quiet.skip("tcp.parse", i, &e),
            }
        }
    }

    fn emit(&self, w: &Watched, elapsed: Option<f64>, sink: &mut dyn Sink) {
        let t = &w.totals;
        let name = w.name.as_str();
        let labels = [("process", name)];
        let up = if t.count > 0 { 1.0 } else { 0.0 };
        sink.put("process_up", &labels, Gauge, up);
        sink.put("process_count", &labels, Gauge, t.count as f64);
        sink.put(
            "process_resident_memory_bytes",
            &labels,
            Gauge,
            t.rss_bytes as f64,
        );
        let seconds = t.ticks as f64 / self.ticks_per_second;
        sink.put("process_cpu_seconds_total", &labels, Counter, seconds);
        if let Some(elapsed) = elapsed.filter(|e| *e > 0.0) {
            let used = t.delta_ticks as f64 / self.ticks_per_second;
            sink.put("process_cpu_usage_ratio", &labels, Gauge, used / elapsed);
        }
        sink.put("process_threads", &labels, Gauge, t.threads as f64);
        sink.put("process_children", &labels, Gauge, t.children as f64);
        for (kind, n) in FD_TYPES.iter().zip(t.fds) {
            let labels = [("process", name), ("type", kind)];
            sink.put("process_open_fds", &labels, Gauge, n as f64);
        }
        for (state, n) in TCP_STATES.iter().zip(t.tcp) {
            let labels = [("process", name), ("state", state)];
            sink.put("process_tcp_connections", &labels, Gauge, n as f64);
        }
    }
}

/// Adds a TCP socket in `state` (the kernel's number) to every selector
/// holding `inode`; `sockets` is sorted.
fn count_socket(sockets: &[(u64, usize)], watched: &mut [Watched], state: u8, inode: u64) {
    // Inode 0: time-wait and request sockets, which no process holds.
    if inode == 0 {
        return;
    }
    let Some(state) = TcpState::from_u8(state) else {
        return;
    };
    let first = sockets.partition_point(|&(i, _)| i < inode);
    for &(i, w) in &sockets[first..] {
        if i != inode {
            break;
        }
        watched[w].totals.tcp[tcp_state_index(&state)] += 1;
    }
}

/// Reads one pid's figures into `w.totals`; a pid that has gone (or is a
/// zombie) is simply not counted.
///
/// procfs parses what is read here, but the reads are done directly, into
/// the shared buffers: its `Process::fd` costs four syscalls per descriptor
/// (open, readlink, stat, close) where a readlink is enough, and its
/// `Process::tasks` opens each thread's directory before reading the thread's
/// children file. On a process with thousands of descriptors or hundreds of
/// threads that is most of a cycle.
fn read_pid(
    pid: u32,
    index: usize,
    w: &mut Watched,
    sockets: &mut Vec<(u64, usize)>,
    page_size: u64,
    s: &mut Scratch,
) {
    let Scratch {
        buf, path, quiet, ..
    } = s;
    path.clear();
    let _ = write!(path, "/proc/{pid}/stat");
    if let Err(e) = read_into(path, buf) {
        return quiet.skip("process.gone", index, &e);
    }
    let stat = match Stat::from_read(&buf[..]) {
        Ok(stat) => stat,
        Err(e) => return quiet.skip("process.stat", index, &e),
    };
    if matches!(stat.state, 'Z' | 'X') {
        return;
    }
    let t = &mut w.totals;
    t.count += 1;
    t.rss_bytes += stat.rss * page_size;
    let ticks = stat.utime + stat.stime;
    t.ticks += ticks;
    t.threads += u64::try_from(stat.num_threads).unwrap_or(0);
    w.ticks.push(PidTicks {
        pid,
        start: stat.starttime,
        ticks,
    });

    path.clear();
    let _ = write!(path, "/proc/{pid}/fd");
    match std::fs::read_dir(&*path) {
        Ok(fds) => {
            path.push('/');
            let base = path.len();
            for fd in fds.flatten() {
                path.truncate(base);
                path.push_str(&fd.file_name().to_string_lossy());
                let target = match std::fs::read_link(&*path) {
                    Ok(target) => target,
                    // Listing is allowed but reading needs ptrace rights
                    // (another user's process): no point trying every fd.
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                        quiet.skip("process.fd", index, &e);
                        break;
                    }
                    Err(_) => continue, // closed since listed
                };
                let kind = match target.to_str().map(FDTarget::from_str) {
                    Some(Ok(FDTarget::Path(_))) => FD_FILE,
                    Some(Ok(FDTarget::Socket(inode))) => {
                        sockets.push((inode, index));
                        FD_SOCKET
                    }
                    Some(Ok(FDTarget::Pipe(_))) => FD_PIPE,
                    _ => FD_OTHER,
                };
                t.fds[kind] += 1;
            }
        }
        Err(e) => quiet.skip("process.fd", index, &e),
    }

    // Each thread lists the children it forked, so every thread is read.
    path.clear();
    let _ = write!(path, "/proc/{pid}/task");
    match std::fs::read_dir(&*path) {
        Ok(tasks) => {
            path.push('/');
            let base = path.len();
            for task in tasks.flatten() {
                path.truncate(base);
                path.push_str(&task.file_name().to_string_lossy());
                path.push_str("/children");
                if read_into(path, buf).is_ok() {
                    let children = buf.split(u8::is_ascii_whitespace).filter(|c| !c.is_empty());
                    t.children += children.count() as u64;
                }
            }
        }
        Err(e) => quiet.skip("process.tasks", index, &e),
    }
}

/// Ticks used between two readings by the processes present in both. A pid
/// seen for the first time adds nothing: its ticks before the previous
/// reading are unknown. Both slices are sorted by pid.
fn delta_ticks(prev: &[PidTicks], now: &[PidTicks]) -> u64 {
    let mut sum = 0;
    let mut p = prev.iter().peekable();
    for n in now {
        while p.next_if(|x| x.pid < n.pid).is_some() {}
        if let Some(x) = p.next_if(|x| x.pid == n.pid)
            && x.start == n.start
        {
            sum += n.ticks.saturating_sub(x.ticks);
        }
    }
    sum
}

/// The pids in `dir`'s cgroup.procs; `dir`'s child cgroups go on `todo`.
fn cgroup_pids(
    dir: &Path,
    index: usize,
    pids: &mut Vec<u32>,
    todo: &mut Vec<PathBuf>,
    s: &mut Scratch,
) {
    let procs = dir.join("cgroup.procs");
    let read = procs
        .to_str()
        .ok_or_else(|| std::io::Error::other("path is not UTF-8"))
        .and_then(|p| s.read(p));
    if let Err(e) = read {
        // Usually the cgroup does not exist (yet): the service is stopped.
        return s.quiet.skip("cgroup", index, &e);
    }
    let text = String::from_utf8_lossy(&s.buf);
    pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            todo.push(entry.path());
        }
    }
}

/// Pure cgroup v2 hosts mount the hierarchy at /sys/fs/cgroup; hybrid ones
/// (v1 controllers plus v2) at /sys/fs/cgroup/unified.
fn cgroup2_root() -> PathBuf {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.controllers").exists())
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
}

/// A /proc/PID/comm without its newline. It holds at most 16 bytes, so one
/// read() gets it all and spares the extra read that finds EOF.
fn read_comm<'b>(path: &str, buf: &'b mut [u8; 64]) -> std::io::Result<&'b [u8]> {
    let n = File::open(path)?.read(buf)?;
    let comm = &buf[..n];
    Ok(comm.strip_suffix(b"\n").unwrap_or(comm))
}

/// The file name of argv[0] in a raw /proc/PID/cmdline.
fn argv0_basename(cmdline: &[u8]) -> &[u8] {
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    argv0.rsplit(|&b| b == b'/').next().unwrap_or_default()
}

#[cfg(test)]
mod tests;
