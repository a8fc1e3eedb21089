//! Discovery: what each watched process holds — every descriptor and its
//! target, every socket (protocol, state, addresses, queues), every thread
//! and every child — read from `/proc` and `NETLINK_SOCK_DIAG` at an
//! interval, and served as resources: to plugins through `list-resources`
//! (when a filter names their kind), and to operators through
//! `GET /api/v1/resources?kind=socket&process=…`.
//!
//! - `bpf`: a process's descriptors in one pass, through a BPF iterator
//!   Warden assembles and loads (where it runs as root on Linux 6.1 or
//!   later, with kernel BTF).
//! - [`proc`]: one process's descriptors (where the iterator is not
//!   available), threads and children.
//! - [`sockets`]: the sockets of the whole network namespace, by inode.
//! - [`rows`]: inventories as resource rows (kind, name, owner, labels).
//!
//! Cost: a cycle reads each watched process's descriptors (through the
//! iterator: one stream for the whole table, and one `readlink` to check
//! Warden's right to it; else one `readlinkat` per descriptor, through a
//! handle kept on its entry since the last cycle: `proc::Pins`), its
//! tasks' `stat` and `children`, and dumps TCP and UDP sockets once through
//! netlink and unix sockets once from `/proc/net/unix`, whatever the number
//! of processes. [`Limits`] caps what one process may contribute and how
//! long a cycle may take; what is left out is said ([`Inventory::truncated`],
//! [`Snapshot::skipped`]).

mod bpf;
pub mod proc;
pub mod rows;
pub mod sockets;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use warden_core::records::TimestampMs;
use warden_core::sock_diag::SockDiag;

/// How much one cycle may gather.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Descriptors, threads or children listed per process, each.
    pub max_per_kind: usize,
    /// Past this, the processes left are skipped this cycle (and named).
    pub max_cycle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_per_kind: 100_000,
            max_cycle: Duration::from_secs(2),
        }
    }
}

/// One open descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Descriptor {
    /// Its number.
    pub fd: i32,
    /// What it is: `file`, `socket`, `pipe`, `eventfd`, `epoll`, `timerfd`,
    /// `signalfd`, `inotify`, `memfd`, `anon_inode` or `other`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// What the link says: a path (` (deleted)` when unlinked),
    /// `socket:[N]`, `pipe:[N]`, `anon_inode:[eventfd]`, …
    pub target: String,
}

/// One socket a process holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Socket {
    /// The descriptor that holds it (the first, when several do).
    pub fd: i32,
    /// `tcp`, `tcp6`, `udp`, `udp6` or `unix`.
    pub protocol: &'static str,
    /// `established`, `listen`, `close_wait`, … (unix: `connected`,
    /// `unconnected`, `listen`, …).
    pub state: &'static str,
    /// Local address (`127.0.0.1:8080`, a unix path, or empty).
    pub local: String,
    /// Peer address (empty when none).
    pub peer: String,
    /// Bytes waiting to be read (a listener: connections waiting to be
    /// accepted).
    pub recv_queue: u32,
    /// Bytes waiting to be sent.
    pub send_queue: u32,
    /// Its inode.
    pub inode: u64,
}

/// One thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Thread {
    /// Its id.
    pub tid: u32,
    /// Its name.
    pub name: String,
    /// `R` running, `S` sleeping, `D` waiting on I/O, `Z` zombie, …
    pub state: char,
    /// CPU time used, user and system, in ms.
    pub cpu_ms: u64,
}

/// One child process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Child {
    /// Its pid.
    pub pid: u32,
    /// Its command (`comm`).
    pub command: String,
    /// When it started, ms since the epoch.
    pub started_ms: TimestampMs,
    /// Its state; `Z` is a zombie its parent has not reaped.
    pub state: char,
}

/// What one process holds, at one reading.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inventory {
    /// The selector that watches it (its `process` label).
    pub process: String,
    /// Its pid.
    pub pid: u32,
    /// Its command (`comm`).
    pub command: String,
    /// When it started, ms since the epoch: with the pid, who it is.
    pub started_ms: TimestampMs,
    /// Its descriptors, by number.
    pub fds: Vec<Descriptor>,
    /// The sockets among them.
    pub sockets: Vec<Socket>,
    /// Its threads.
    pub threads: Vec<Thread>,
    /// Its children.
    pub children: Vec<Child>,
    /// Kinds cut at [`Limits::max_per_kind`], or unreadable (another user's
    /// process without the rights), with why.
    pub truncated: Vec<String>,
    /// How long reading it took, µs.
    pub took_us: u64,
}

/// One cycle's inventories.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// When the cycle ran, ms since the epoch (0: never).
    pub at_ms: TimestampMs,
    /// How long it took, µs.
    pub took_us: u64,
    /// Each watched process read.
    pub processes: Vec<Inventory>,
    /// Processes not read, with why (gone, or past the cycle's budget).
    pub skipped: Vec<String>,
    /// How descriptors were read: `bpf`, or `proc` and why not `bpf`.
    pub method: String,
}

/// Reads inventories, keeping between cycles its netlink socket and, per
/// process read, handles on its descriptor entries (`proc::Pins`: a
/// cycle then reads each link without walking to it, on several threads
/// for a process with thousands).
#[derive(Debug)]
pub struct Discoverer {
    limits: Limits,
    diag: Option<SockDiag>,
    clock: proc::Clock,
    pins: HashMap<u32, Option<proc::Pins>>,
    /// Handles it may still open: each is a descriptor of Warden's own.
    budget: usize,
    /// The BPF iterator that reads a process's descriptors in one pass,
    /// or why there is none (this kernel or Warden's rights).
    iter: Result<bpf::FdIter, String>,
}

/// Descriptors kept free of handles whatever the limit: the API's
/// connections, plugins, the files cleanups open.
const RESERVED_FDS: u64 = 4_096;
/// Handles held at most, whatever the limit. Each holds about 1.1 KB of
/// kernel memory (its open file, 220 B, and the entry's dentry and inode,
/// which without it the kernel could reclaim): 70 MB at most.
const MAX_HANDLES: u64 = 65_536;

impl Discoverer {
    /// A discoverer within `limits`. It may hold handles up to three
    /// quarters of the open-file limit it starts under, less
    /// `RESERVED_FDS` (none under the usual 1,024; the daemon raises its
    /// limit to the hard one first), and `MAX_HANDLES` at most; past
    /// that, links are read by name, as before handles.
    pub fn new(limits: Limits) -> Self {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid, writable rlimit for the call.
        let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            lim.rlim_cur
        } else {
            0
        };
        let budget = (soft - soft / 4)
            .saturating_sub(RESERVED_FDS)
            .min(MAX_HANDLES);
        let mut d = Discoverer::through_proc(limits, usize::try_from(budget).unwrap_or(usize::MAX));
        d.iter = bpf::FdIter::load().map_err(|e| format!("the BPF iterator is unavailable: {e}"));
        d
    }

    /// A discoverer that reads `/proc` only (never the BPF iterator),
    /// holding at most `budget` handles.
    pub fn through_proc(limits: Limits, budget: usize) -> Self {
        Discoverer {
            limits,
            diag: None,
            clock: proc::Clock::read(),
            pins: HashMap::new(),
            budget,
            iter: Err("asked to read /proc".into()),
        }
    }

    /// How it reads descriptors: `bpf` (the iterator), or `proc` and why.
    pub fn method(&self) -> String {
        match &self.iter {
            Ok(_) => "bpf".into(),
            Err(why) => format!("proc ({why})"),
        }
    }

    /// Handles held on descriptor entries, over every process.
    pub fn handles(&self) -> usize {
        self.pins.values().flatten().map(proc::Pins::len).sum()
    }

    /// Reads what each of `targets` (selector name, pids) holds.
    pub fn discover(&mut self, targets: &[(String, Vec<u32>)], now_ms: TimestampMs) -> Snapshot {
        let started = Instant::now();
        let mut snap = Snapshot {
            at_ms: now_ms,
            ..Snapshot::default()
        };
        for (name, pids) in targets {
            for &pid in pids {
                if started.elapsed() > self.limits.max_cycle {
                    snap.skipped.push(format!(
                        "{name} pid {pid}: the cycle passed its budget of {:?}",
                        self.limits.max_cycle
                    ));
                    continue;
                }
                // Handles only where the iterator is not to be had (one
                // reading that falls back to /proc must not leave thousands
                // behind), and never on Warden itself: each would be one more
                // descriptor of the process read.
                let pins = (self.iter.is_err() && pid != std::process::id())
                    .then(|| self.pins.entry(pid).or_default());
                match proc::read(
                    pid,
                    name,
                    &self.limits,
                    &self.clock,
                    pins,
                    &mut self.budget,
                    &mut self.iter,
                ) {
                    Ok(inv) => snap.processes.push(inv),
                    Err(e) => snap.skipped.push(format!("{name} pid {pid}: {e}")),
                }
            }
        }
        // Handles and links of processes gone or no longer watched go.
        if let Ok(iter) = &mut self.iter {
            iter.retain(|pid| snap.processes.iter().any(|p| p.pid == pid));
        }
        let budget = &mut self.budget;
        self.pins.retain(|pid, held| {
            let keep = snap.processes.iter().any(|p| p.pid == *pid) && held.is_some();
            if !keep {
                *budget += held.as_ref().map_or(0, proc::Pins::len);
            }
            keep
        });
        let mut wanted: Vec<u64> = snap
            .processes
            .iter()
            .flat_map(|p| p.sockets.iter().map(|s| s.inode))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if !wanted.is_empty() {
            let found = sockets::Table::read(&mut self.diag, &wanted);
            for p in &mut snap.processes {
                found.fill(&mut p.sockets);
                if let Some(why) = &found.problem {
                    p.truncated.push(why.clone());
                }
            }
        }
        snap.method = self.method();
        snap.took_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        snap
    }
}

/// The latest inventories, shared by the discovery loop (writer), the API
/// and plugins (readers).
#[derive(Debug, Default)]
pub struct Discovered {
    current: RwLock<Arc<Snapshot>>,
}

impl Discovered {
    /// Returns the latest snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces it.
    pub fn replace(&self, snap: Snapshot) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snap);
    }
}

#[cfg(test)]
mod tests;
