//! One process, read from `/proc`: its descriptors (one `readlinkat` each,
//! against the directory already open: procfs' `Process::fd` costs four
//! syscalls a descriptor, most of a cycle on a process with thousands),
//! its threads (`task/TID/stat`) and its children (`task/TID/children`,
//! then each child's `stat`).

use std::ffi::CStr;
use std::fmt::Write as _;
use std::io::{self, Read as _};

use procfs::FromRead as _;
use procfs::process::Stat;
use rustix::fs::{Dir, Mode, OFlags};
use warden_core::records::TimestampMs;

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

/// Reads what `pid` holds; an error when it is gone or is a zombie.
pub fn read(pid: u32, process: &str, limits: &Limits, clock: &Clock) -> io::Result<Inventory> {
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
    descriptors(pid, limits, &mut inv);
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

fn descriptors(pid: u32, limits: &Limits, inv: &mut Inventory) {
    let dir = match rustix::fs::open(
        format!("/proc/{pid}/fd").as_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) => {
            inv.truncated
                .push(format!("descriptors: cannot list them: {e}"));
            return;
        }
    };
    let mut entries = match Dir::read_from(&dir) {
        Ok(d) => d,
        Err(e) => {
            inv.truncated
                .push(format!("descriptors: cannot list them: {e}"));
            return;
        }
    };
    let mut link = [0u8; 4096];
    while let Some(entry) = entries.read() {
        let Ok(entry) = entry else { break };
        let name: &CStr = entry.file_name();
        let Some(fd) = name.to_str().ok().and_then(|n| n.parse::<i32>().ok()) else {
            continue; // `.` and `..`
        };
        if inv.fds.len() == limits.max_per_kind {
            inv.truncated.push(format!(
                "descriptors: more than {} (resources.discovery.max_per_kind)",
                limits.max_per_kind
            ));
            break;
        }
        let len = match rustix::fs::readlinkat_raw(&dir, name, &mut link[..]) {
            Ok(len) => len,
            // Listing is allowed but reading needs ptrace rights (another
            // user's process): no point trying every descriptor.
            Err(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM) => {
                inv.truncated.push(
                    "descriptors: their targets need the rights to trace the process (another user's)"
                        .into(),
                );
                break;
            }
            Err(_) => continue, // closed since listed
        };
        let target = String::from_utf8_lossy(&link[..len]).into_owned();
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
    inv.fds.sort_unstable_by_key(|d| d.fd);
    inv.sockets.sort_unstable_by_key(|s| s.fd);
    // A socket held by two descriptors (dup) is one socket.
    inv.sockets.sort_by_key(|s| s.inode);
    inv.sockets.dedup_by_key(|s| s.inode);
    inv.sockets.sort_unstable_by_key(|s| s.fd);
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
            inv.truncated.push(format!(
                "threads: more than {} (resources.discovery.max_per_kind)",
                limits.max_per_kind
            ));
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
        inv.truncated.push(format!(
            "children: more than {} (resources.discovery.max_per_kind)",
            limits.max_per_kind
        ));
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
