//! Inventories as resources: one row per descriptor (`file-descriptor`),
//! socket (`socket`), thread (`thread`) and child (`process`), in the shape
//! registered resources have, so plugins read both through one
//! `list-resources` and the API lists both the same way.
//!
//! A row's owner is the selector that watches the process (its `process`
//! label), its pid the process's, and its labels carry the details
//! (`fd`, `type`, `protocol`, `state`, `local`, `peer`, `recv_queue`,
//! `send_queue`, `tid`, `cpu_ms`, `child_pid`). Its handle is stable for as
//! long as the process holds the same thing (a hash of the process's pid and
//! start time and the row's identity) and lies above 2^52, where no
//! registered handle is, so the two never meet.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use serde::Serialize;
use warden_core::records::{NewResource, ResourceFilter, ResourceKind, ResourceSet, TimestampMs};

use super::{Inventory, Snapshot};

/// The kinds discovery finds.
pub const KINDS: [ResourceKind; 4] = [
    ResourceKind::FileDescriptor,
    ResourceKind::Socket,
    ResourceKind::Thread,
    ResourceKind::Process,
];

/// One discovered resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Its handle (above 2^52).
    pub handle: u64,
    /// Its kind.
    pub kind: &'static str,
    /// Its name: a descriptor's target, a socket's addresses, a thread's or
    /// child's name.
    pub name: String,
    /// The selector watching the process.
    pub owner: String,
    /// The process.
    pub pid: u32,
    /// When it started (children), ms since the epoch.
    pub created_ms: Option<TimestampMs>,
    /// The details.
    pub labels: BTreeMap<String, String>,
    /// `discovered`, to tell it from registered resources.
    pub source: &'static str,
}

/// Which processes a listing is about: a selector's name or a pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Process {
    /// Every process watched.
    Any,
    /// The processes of the selector with this name.
    Named(String),
    /// This pid.
    Pid(u32),
}

impl Process {
    /// Reads `?process=`: a number is a pid, anything else a selector name.
    pub fn parse(text: Option<&str>) -> Process {
        match text {
            None | Some("") => Process::Any,
            Some(t) => t
                .parse::<u32>()
                .map_or_else(|_| Process::Named(t.to_owned()), Process::Pid),
        }
    }

    fn matches(&self, inv: &Inventory) -> bool {
        match self {
            Process::Any => true,
            Process::Named(n) => inv.process == *n,
            Process::Pid(p) => inv.pid == *p,
        }
    }
}

fn handle(inv: &Inventory, kind: ResourceKind, id: u64) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    (inv.pid, inv.started_ms, kind as u8, id).hash(&mut h);
    (1 << 52) | (h.finish() & ((1 << 52) - 1))
}

/// Calls `each` with every row of `snap` that `filter` (its kinds and name
/// prefix; every discovered kind when it names none) and `process` keep,
/// until it returns false.
fn each_row(
    snap: &Snapshot,
    filter: &ResourceFilter,
    process: &Process,
    mut each: impl FnMut(ResourceKind, &Inventory, Row) -> bool,
) {
    let wants = |k: ResourceKind| filter.kinds.is_empty() || filter.kinds.contains(&k);
    let named = |name: &str| {
        filter
            .name_prefix
            .as_deref()
            .is_none_or(|p| name.starts_with(p))
    };
    for inv in snap.processes.iter().filter(|i| process.matches(i)) {
        let row = |kind: ResourceKind, id: u64, name: String, labels: Vec<(&str, String)>| Row {
            handle: handle(inv, kind, id),
            kind: kind.name(),
            name,
            owner: inv.process.clone(),
            pid: inv.pid,
            created_ms: None,
            labels: labels.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            source: "discovered",
        };
        if wants(ResourceKind::FileDescriptor) {
            for d in inv.fds.iter().filter(|d| named(&d.target)) {
                let r = row(
                    ResourceKind::FileDescriptor,
                    d.fd as u64,
                    d.target.clone(),
                    vec![("fd", d.fd.to_string()), ("type", d.kind.to_owned())],
                );
                if !each(ResourceKind::FileDescriptor, inv, r) {
                    return;
                }
            }
        }
        if wants(ResourceKind::Socket) {
            for s in &inv.sockets {
                let name = if s.peer.is_empty() {
                    format!("{} {}", s.protocol, s.local)
                } else {
                    format!("{} {} -> {}", s.protocol, s.local, s.peer)
                };
                if !named(&name) {
                    continue;
                }
                let r = row(
                    ResourceKind::Socket,
                    s.inode,
                    name,
                    vec![
                        ("fd", s.fd.to_string()),
                        ("protocol", s.protocol.to_owned()),
                        ("state", s.state.to_owned()),
                        ("local", s.local.clone()),
                        ("peer", s.peer.clone()),
                        ("recv_queue", s.recv_queue.to_string()),
                        ("send_queue", s.send_queue.to_string()),
                        ("inode", s.inode.to_string()),
                    ],
                );
                if !each(ResourceKind::Socket, inv, r) {
                    return;
                }
            }
        }
        if wants(ResourceKind::Thread) {
            for t in inv.threads.iter().filter(|t| named(&t.name)) {
                let r = row(
                    ResourceKind::Thread,
                    u64::from(t.tid),
                    t.name.clone(),
                    vec![
                        ("tid", t.tid.to_string()),
                        ("state", t.state.to_string()),
                        ("cpu_ms", t.cpu_ms.to_string()),
                    ],
                );
                if !each(ResourceKind::Thread, inv, r) {
                    return;
                }
            }
        }
        if wants(ResourceKind::Process) {
            for c in inv.children.iter().filter(|c| named(&c.command)) {
                let mut r = row(
                    ResourceKind::Process,
                    u64::from(c.pid),
                    c.command.clone(),
                    vec![
                        ("child_pid", c.pid.to_string()),
                        ("state", c.state.to_string()),
                        ("zombie", (c.state == 'Z').to_string()),
                    ],
                );
                r.created_ms = Some(c.started_ms);
                if !each(ResourceKind::Process, inv, r) {
                    return;
                }
            }
        }
    }
}

/// The rows of `snap` that `filter` and `process` keep, at most
/// `filter.limit` of them.
pub fn rows(snap: &Snapshot, filter: &ResourceFilter, process: &Process) -> Vec<Row> {
    let limit = filter.limit.map_or(usize::MAX, |l| l as usize);
    let mut out = Vec::new();
    if limit == 0 {
        return out;
    }
    each_row(snap, filter, process, |_, _, r| {
        out.push(r);
        out.len() < limit
    });
    out
}

/// Appends to `set` the rows a plugin's `filter` asks for: only when it
/// names a discovered kind (a filter of every kind is a cleanup strategy's
/// listing of files or registered objects, and a process's thousands of
/// descriptors would drown them). Stops at `filter.limit` rows in `set`, or
/// when the next row would pass `max_bytes`: returns the bytes that row
/// needed then.
pub fn append(
    set: &mut ResourceSet,
    snap: &Snapshot,
    filter: &ResourceFilter,
    max_bytes: usize,
) -> Result<(), usize> {
    if !filter.kinds.iter().any(|k| KINDS.contains(k)) {
        return Ok(());
    }
    let limit = filter.limit.map_or(usize::MAX, |l| l as usize);
    let mut over = None;
    each_row(snap, filter, &Process::Any, |kind, inv, r| {
        if set.len() >= limit {
            return false;
        }
        let labels: Vec<(&str, &str)> = r
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let needed = set.bytes().saturating_add(
            128 + r.name.len()
                + r.owner.len()
                + labels
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 16)
                    .sum::<usize>(),
        );
        if needed > max_bytes {
            over = Some(needed);
            return false;
        }
        set.try_push(NewResource {
            handle: r.handle,
            kind: Some(kind),
            name: &r.name,
            owner: &inv.process,
            size_bytes: 0,
            created_ms: r.created_ms,
            modified_ms: None,
            accessed_ms: None,
            pid: Some(inv.pid),
            labels: &labels,
        })
        .is_some()
    });
    over.map_or(Ok(()), Err)
}
