//! One process, read from `/proc`: its descriptors (one `readlinkat` each,
//! through a handle kept on the entry, see `Pins`: procfs'
//! `Process::fd` costs four syscalls a descriptor, most of a cycle on a
//! process with thousands),
//! its threads (`task/TID/stat`) and its children (`task/TID/children`,
//! then each child's `stat`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read as _};
use std::os::fd::OwnedFd;

use procfs::FromRead as _;
use procfs::process::Stat;
use rustix::fs::{Dir, Mode, OFlags};
use warden_core::records::TimestampMs;

use super::bpf::FdIter;
use super::{Child, Descriptor, Inventory, Limits, Socket, Thread};

/// What turns kernel ticks since boot into ms since the epoch.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    ticks_per_second: u64,
    boot_ms: TimestampMs,
}

impl Clock {
    /// Reads the tick rate and the boot time.
    pub fn read() -> Clock {
        Clock {
            ticks_per_second: procfs::ticks_per_second().max(1),
            boot_ms: procfs::boot_time_secs().map_or(0, |s| s as i64 * 1000),
        }
    }

    /// `ticks` since boot as ms since the epoch.
    pub fn at(&self, ticks: u64) -> TimestampMs {
        self.boot_ms + (ticks.saturating_mul(1000) / self.ticks_per_second) as i64
    }

    /// `ticks` as ms.
    pub fn ms(&self, ticks: u64) -> u64 {
        ticks.saturating_mul(1000) / self.ticks_per_second
    }
}

/// Reads `/proc/PID/stat`.
fn stat(path: &str, buf: &mut Vec<u8>) -> io::Result<Stat> {
    buf.clear();
    std::fs::File::open(path)?.take(64 << 10).read_to_end(buf)?;
    Stat::from_read(&buf[..]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads what `pid` holds; an error when it is gone or is a zombie. `pins`
/// (see `Pins`) and `budget` as for `descriptors`: the caller passes no
/// `pins` while `iter` is loaded, so that a reading which falls back to
/// /proc once leaves no handles behind.
pub(crate) fn read(
    pid: u32,
    process: &str,
    limits: &Limits,
    clock: &Clock,
    pins: Option<&mut Option<Pins>>,
    budget: &mut usize,
    iter: &mut Result<FdIter, String>,
) -> io::Result<Inventory> {
    let started = std::time::Instant::now();
    let mut buf = Vec::with_capacity(4096);
    let mut path = String::with_capacity(64);
    let _ = write!(path, "/proc/{pid}/stat");
    let st = stat(&path, &mut buf)?;
    if matches!(st.state, 'Z' | 'X') {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "a zombie: it has exited",
        ));
    }
    let mut inv = Inventory {
        process: process.to_owned(),
        pid,
        command: st.comm.clone(),
        started_ms: clock.at(st.starttime),
        fds: Vec::new(),
        sockets: Vec::new(),
        threads: Vec::new(),
        children: Vec::new(),
        truncated: Vec::new(),
        took_us: 0,
    };
    let through_bpf = match iter.as_mut() {
        Ok(it) => match with_iterator(pid, st.starttime, limits, &mut inv, it) {
            Ok(()) => true,
            // This kernel cannot bind an iterator to a process (before
            // 6.1: the attribute is unknown to it), or Warden may no longer
            // use it: /proc from now on.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(
                        libc::EINVAL | libc::E2BIG | libc::EOPNOTSUPP | libc::EPERM | libc::EACCES
                    )
                ) =>
            {
                tracing::warn!(error = %e, "discovery: the BPF iterator failed; reading /proc instead");
                *iter = Err(format!("the BPF iterator failed: {e}"));
                false
            }
            // Gone meanwhile, out of descriptors or memory for now: /proc
            // this time.
            Err(e) => {
                tracing::debug!(pid, error = %e, "discovery: the BPF iterator failed this time");
                false
            }
        },
        Err(_) => false,
    };
    if !through_bpf {
        descriptors(pid, st.starttime, limits, &mut inv, pins, budget);
    }
    tasks(pid, limits, clock, &mut inv, &mut buf);
    inv.took_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    Ok(inv)
}

/// What a descriptor's link says it is.
pub fn kind_of(target: &str) -> &'static str {
    if target.starts_with('/') {
        if target.starts_with("/memfd:") {
            "memfd"
        } else {
            "file"
        }
    } else if target.starts_with("socket:[") {
        "socket"
    } else if target.starts_with("pipe:[") {
        "pipe"
    } else if let Some(anon) = target.strip_prefix("anon_inode:") {
        match anon.trim_start_matches('[').trim_end_matches(']') {
            "eventfd" => "eventfd",
            "eventpoll" => "epoll",
            "timerfd" => "timerfd",
            "signalfd" => "signalfd",
            "inotify" => "inotify",
            _ => "anon_inode",
        }
    } else {
        "other"
    }
}

/// The inode of `socket:[N]`.
fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Handles on one process's descriptor entries, kept between cycles.
///
/// Reading a link by name (`readlinkat(/proc/PID/fd, "N")`) walks to the
/// entry first, and procfs revalidates it outside RCU, so every lookup
/// takes a reference on the shared `fd` directory: 2.7 µs a descriptor
/// here, and a second thread gains nothing. An `O_PATH | O_NOFOLLOW`
/// handle on the entry itself, kept from one cycle to the next, skips the
/// walk: `readlinkat(handle, "")` asks the kernel only for the link, still
/// through the same access check (ptrace rights, at each read), and two
/// threads read about 1.5 times as fast as one (they still share the
/// process's task lock). It names the entry, not the file: the
/// target is read afresh each time (a number closed and reused reads as
/// its new file), and it keeps no file open, so nothing the process
/// closes stays allocated because Warden watches it.
#[derive(Debug)]
pub(crate) struct Pins {
    /// The process's start time (ticks since boot): with the pid, who it
    /// is. A different one is a reused pid, whose handles are dropped.
    started: u64,
    /// `/proc/PID/fd`, open.
    dir: OwnedFd,
    /// Per descriptor number, the handle on its entry.
    by_fd: HashMap<i32, OwnedFd>,
}

impl Pins {
    /// Handles held.
    pub(crate) fn len(&self) -> usize {
        self.by_fd.len()
    }
}

/// From this many descriptors on (held handles, so known since the last
/// cycle), they are listed and read on several threads (each costs about
/// 30 µs to start).
const PARALLEL_FROM: usize = 2_048;

/// What reading one descriptor found.
enum Link {
    Target(String),
    /// Closed since it was listed.
    Gone,
    /// Reading needs the rights to trace the process.
    Denied,
}

fn read_link(
    dir: &OwnedFd,
    fd: i32,
    pin: Option<&OwnedFd>,
    name: &mut String,
    buf: &mut [u8],
) -> Link {
    let read = match pin {
        Some(pin) => rustix::fs::readlinkat_raw(pin, c"", &mut *buf),
        None => {
            name.clear();
            let _ = write!(name, "{fd}");
            rustix::fs::readlinkat_raw(dir, name.as_str(), &mut *buf)
        }
    };
    match read {
        Ok(len) => Link::Target(String::from_utf8_lossy(&buf[..len]).into_owned()),
        // Listing is allowed but reading needs ptrace rights (another
        // user's process).
        Err(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM) => Link::Denied,
        Err(_) => Link::Gone,
    }
}

/// One range of descriptor numbers, listed and read.
#[derive(Default)]
struct Part {
    /// The numbers listed, in order.
    listed: Vec<i32>,
    /// Each one read, with its target.
    found: Vec<(i32, String)>,
    /// Reading needs ptrace rights this process lacks.
    denied: bool,
    /// The directory could not be listed.
    error: Option<String>,
    /// A descriptor read through its handle was closed.
    gone: bool,
}

/// Reads the links of `fds`, each through its handle in `pins`.
fn read_known(pins: &Pins, fds: &[i32]) -> Part {
    let mut part = Part {
        listed: fds.to_vec(),
        ..Part::default()
    };
    let mut link = vec![0u8; 4096];
    let mut name = String::new();
    for &fd in fds {
        match read_link(&pins.dir, fd, pins.by_fd.get(&fd), &mut name, &mut link) {
            Link::Target(t) => part.found.push((fd, t)),
            Link::Gone => {
                part.gone = true;
                break;
            }
            Link::Denied => {
                part.denied = true;
                break;
            }
        }
    }
    part
}

/// Runs `f` over each of `jobs`, on a thread each when there are several.
fn on_threads<J: Sync, F: Fn(&J) -> Part + Sync>(jobs: &[J], f: F) -> Vec<Part> {
    if jobs.len() < 2 {
        return jobs.iter().map(&f).collect();
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs.iter().map(|j| s.spawn(move || f(j))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| Part {
                    error: Some("a reading thread failed".into()),
                    ..Part::default()
                })
            })
            .collect()
    })
}

/// Lists the descriptors of `pins`' process numbered from `lo` up to `hi`
/// (excluded; `None`: all the rest), at most `cap`, and reads each link,
/// through its handle where there is one.
fn read_range(pins: &Pins, lo: i32, hi: Option<i32>, cap: usize) -> Part {
    let mut part = Part::default();
    let mut entries = match Dir::read_from(&pins.dir) {
        Ok(d) => d,
        Err(e) => {
            part.error = Some(e.to_string());
            return part;
        }
    };
    if lo > 0
        && let Err(e) = entries.seek(i64::from(lo) + 2)
    {
        part.error = Some(e.to_string());
        return part;
    }
    let mut link = vec![0u8; 4096];
    let mut name = String::with_capacity(16);
    while let Some(entry) = entries.read() {
        let Ok(entry) = entry else { break };
        let Some(fd) = entry
            .file_name()
            .to_str()
            .ok()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue; // `.` and `..`
        };
        if hi.is_some_and(|hi| fd >= hi) {
            break;
        }
        // One past the cap tells the caller there were more.
        if part.listed.len() > cap {
            break;
        }
        part.listed.push(fd);
        if part.denied {
            continue;
        }
        match read_link(&pins.dir, fd, pins.by_fd.get(&fd), &mut name, &mut link) {
            Link::Target(t) => part.found.push((fd, t)),
            Link::Gone => {}
            Link::Denied => part.denied = true,
        }
    }
    part
}

/// Reads the descriptors of `pid` through the BPF iterator. The iterator
/// makes no ptrace access check and finds the process by number, so the
/// reading is checked with one `readlink` through `/proc/PID/fd` opened
/// before it (which names the process itself, not its number): denied, the
/// process may not be read; not found, it may have exited meanwhile and
/// another taken its number, and the reading is not used (the caller then
/// reads `/proc`). A path longer than the iterator keeps is read by
/// `readlink`.
fn with_iterator(
    pid: u32,
    started: u64,
    limits: &Limits,
    inv: &mut Inventory,
    it: &mut FdIter,
) -> io::Result<()> {
    let cap = limits.max_per_kind;
    let dir = open_fd_dir(pid)?;
    let mut entries = it.read(pid, started, cap)?;
    let Some(first) = entries.first() else {
        return Ok(());
    };
    let mut name = String::with_capacity(16);
    let mut link = vec![0u8; 4096];
    match read_link(&dir, first.fd, None, &mut name, &mut link) {
        Link::Target(_) => {}
        Link::Denied => {
            inv.truncated.push(DENIED.into());
            return Ok(());
        }
        Link::Gone => return Err(io::Error::from_raw_os_error(libc::ESRCH)),
    }
    if entries.len() > cap {
        inv.truncated.push(over_cap("descriptors", cap));
        entries.truncate(cap);
    }
    for e in entries {
        let target = match e.target {
            Ok(t) => t,
            Err(_) => match read_link(&dir, e.fd, None, &mut name, &mut link) {
                Link::Target(t) => t,
                _ => continue,
            },
        };
        push(inv, e.fd, target);
    }
    dedup_sockets(inv);
    Ok(())
}

/// Why a process's descriptors were not read: Warden may not trace it.
const DENIED: &str =
    "descriptors: their targets need the rights to trace the process (another user's)";

/// What was left out of `kind` past `resources.discovery.max_per_kind`.
fn over_cap(kind: &str, cap: usize) -> String {
    format!("{kind}: more than {cap} (resources.discovery.max_per_kind)")
}

/// Opens `/proc/PID/fd`: it names the process itself, not its number.
fn open_fd_dir(pid: u32) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        format!("/proc/{pid}/fd").as_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Adds descriptor `fd`, and the socket it is if it is one.
fn push(inv: &mut Inventory, fd: i32, target: String) {
    let kind = kind_of(&target);
    if let Some(inode) = socket_inode(&target) {
        inv.sockets.push(Socket {
            fd,
            protocol: "",
            state: "",
            local: String::new(),
            peer: String::new(),
            recv_queue: 0,
            send_queue: 0,
            inode,
        });
    }
    inv.fds.push(Descriptor { fd, kind, target });
}

/// A socket held by two descriptors (dup) is one socket, listed under the
/// first.
fn dedup_sockets(inv: &mut Inventory) {
    inv.sockets.sort_by_key(|s| (s.inode, s.fd));
    inv.sockets.dedup_by_key(|s| s.inode);
    inv.sockets.sort_unstable_by_key(|s| s.fd);
}

/// Reads the descriptors of `pid` (started at `started`, in ticks), through
/// `pins` where it has handles, opening handles for new descriptors while
/// `budget` (handles Warden may still open) allows. `pins` is `None` when
/// the process must not be pinned (Warden itself: each handle would be one
/// more descriptor of the process read).
fn descriptors(
    pid: u32,
    started: u64,
    limits: &Limits,
    inv: &mut Inventory,
    pins: Option<&mut Option<Pins>>,
    budget: &mut usize,
) {
    let mut own: Option<Pins> = None;
    let (slot, pinning) = match pins {
        Some(slot) => (slot, true),
        None => (&mut own, false),
    };
    if slot.as_ref().is_some_and(|p| p.started != started) {
        // A reused pid: its old handles name entries of the dead process.
        if let Some(old) = slot.take() {
            *budget += old.len();
        }
    }
    if slot.is_none() {
        match open_fd_dir(pid) {
            Ok(dir) => {
                *slot = Some(Pins {
                    started,
                    dir,
                    by_fd: HashMap::new(),
                });
            }
            Err(e) => {
                inv.truncated
                    .push(format!("descriptors: cannot list them: {e}"));
                return;
            }
        }
    }
    let Some(pins) = slot.as_mut() else { return };
    let cap = limits.max_per_kind;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let mut known: Vec<i32> = pins.by_fd.keys().copied().collect();
    known.sort_unstable();
    let split = known.len() >= PARALLEL_FROM && threads > 1;
    let pins_ref: &Pins = pins;
    // The size of `/proc/PID/fd` is how many descriptors are open (since
    // Linux 6.2; 0 before). When it is the number of handles and each reads
    // through, the descriptors are exactly those of the last cycle, and
    // listing them (about 1 µs each: procfs looks every entry up) is
    // skipped. A descriptor opened after the count is found next cycle, as
    // one opened after a listing would be.
    let open = rustix::fs::fstat(&pins.dir).map_or(0, |st| st.st_size);
    let mut parts: Vec<Part> = Vec::new();
    if !known.is_empty() && usize::try_from(open).is_ok_and(|n| n == known.len()) {
        let chunks: Vec<&[i32]> = if split {
            known.chunks(known.len().div_ceil(threads)).collect()
        } else {
            vec![&known[..]]
        };
        parts = on_threads(&chunks, |c| read_known(pins_ref, c));
        if parts.iter().any(|p| p.gone) {
            parts.clear();
        }
    }
    if parts.is_empty() {
        // Ranges of descriptor numbers, one per thread, cut where last
        // cycle's handles split evenly: a directory of `/proc/PID/fd` can be
        // read from any number on (its position is the number plus 2).
        let mut cuts: Vec<i32> = Vec::new();
        if split {
            cuts = (1..threads)
                .map(|k| known[k * known.len() / threads])
                .collect();
            cuts.dedup();
        }
        let ranges: Vec<(i32, Option<i32>)> = (0..=cuts.len())
            .map(|k| (if k == 0 { 0 } else { cuts[k - 1] }, cuts.get(k).copied()))
            .collect();
        parts = on_threads(&ranges, |&(lo, hi)| read_range(pins_ref, lo, hi, cap));
    }
    if let Some(e) = parts.iter().find_map(|p| p.error.clone()) {
        inv.truncated
            .push(format!("descriptors: cannot list them: {e}"));
        return;
    }
    let denied = parts.iter().any(|p| p.denied);
    let mut listed: Vec<i32> = Vec::new();
    for part in parts {
        listed.extend(part.listed);
        for (fd, target) in part.found {
            push(inv, fd, target);
        }
    }
    // Listed in order, so those past the cap are the highest numbers.
    if let Some(&first_out) = listed.get(cap) {
        inv.truncated.push(over_cap("descriptors", cap));
        listed.truncate(cap);
        inv.fds.retain(|d| d.fd < first_out);
        inv.sockets.retain(|d| d.fd < first_out);
    }
    if denied {
        inv.truncated.push(DENIED.into());
        // No point keeping handles that cannot be read through.
        *budget += pins.by_fd.len();
        *slot = None;
    } else {
        // Handles of descriptors closed since the last cycle go; new ones
        // get one, for the next cycle, while the budget lasts.
        let before = pins.by_fd.len();
        pins.by_fd.retain(|fd, _| listed.binary_search(fd).is_ok());
        *budget += before - pins.by_fd.len();
        if pinning {
            let mut name = String::with_capacity(16);
            for &fd in &listed {
                if *budget == 0 {
                    break;
                }
                if pins.by_fd.contains_key(&fd) {
                    continue;
                }
                name.clear();
                let _ = write!(name, "{fd}");
                if let Ok(h) = rustix::fs::openat(
                    &pins.dir,
                    name.as_str(),
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    pins.by_fd.insert(fd, h);
                    *budget -= 1;
                }
            }
        }
    }
    // The descriptors came in order (each part in order, the parts in
    // order).
    dedup_sockets(inv);
}

fn tasks(pid: u32, limits: &Limits, clock: &Clock, inv: &mut Inventory, buf: &mut Vec<u8>) {
    let tids = match std::fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(d) => d,
        Err(e) => {
            inv.truncated
                .push(format!("threads: cannot list them: {e}"));
            return;
        }
    };
    let mut children: Vec<u32> = Vec::new();
    let mut path = String::with_capacity(64);
    for t in tids.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if inv.threads.len() == limits.max_per_kind {
            inv.truncated.push(over_cap("threads", limits.max_per_kind));
            break;
        }
        path.clear();
        let _ = write!(path, "/proc/{pid}/task/{tid}/stat");
        let Ok(st) = stat(&path, buf) else { continue };
        inv.threads.push(Thread {
            tid,
            name: st.comm,
            state: st.state,
            cpu_ms: clock.ms(st.utime + st.stime),
        });
        // Each thread lists the children it forked.
        path.clear();
        let _ = write!(path, "/proc/{pid}/task/{tid}/children");
        buf.clear();
        if std::fs::File::open(&path)
            .and_then(|f| f.take(1 << 20).read_to_end(buf))
            .is_ok()
        {
            children.extend(
                buf.split(u8::is_ascii_whitespace)
                    .filter_map(|c| std::str::from_utf8(c).ok()?.parse::<u32>().ok()),
            );
        }
    }
    inv.threads.sort_unstable_by_key(|t| t.tid);
    children.sort_unstable();
    children.dedup();
    if children.len() > limits.max_per_kind {
        inv.truncated
            .push(over_cap("children", limits.max_per_kind));
        children.truncate(limits.max_per_kind);
    }
    for child in children {
        path.clear();
        let _ = write!(path, "/proc/{child}/stat");
        // Gone since listed: not a child any more.
        let Ok(st) = stat(&path, buf) else { continue };
        inv.children.push(Child {
            pid: child,
            command: st.comm,
            started_ms: clock.at(st.starttime),
            state: st.state,
        });
    }
}
