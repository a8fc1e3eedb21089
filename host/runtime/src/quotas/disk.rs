//! Disk usage for `disk-bytes` quotas: the space allocated to everything
//! under each path, walked from a descriptor pinned as cleanup scope roots
//! are (no symlink followed on the way but root's to root's, none inside,
//! no other mount entered), at most `budget` entries and [`STEP_TIME`] per
//! evaluation, so that a large tree is measured over several evaluations
//! and never stalls one.
//!
//! Usage is allocated blocks × 512, as `du` reports, not apparent length:
//! a sparse file counts what it takes, not what it claims. A file with
//! several links is counted once per walk. The usage in force is the last
//! finished walk's; a walk in progress only says how far it got.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use rustix::fs::{Dir, FileType};
use rustix::io::Errno;
use warden_core::records::TimestampMs;
use warden_policy::parse::DiskSource;

use crate::cleanup::node::{Node, open_dir_at};
use crate::cleanup::{Scope, ScopeError};

/// The longest one evaluation walks, whatever its budget: on a cold cache
/// each entry may be a disk read.
pub const STEP_TIME: Duration = Duration::from_secs(2);

/// Directories deeper than this below a path are not entered: a walk holds
/// one descriptor per level between evaluations.
pub const MAX_DEPTH: usize = 128;

/// What a walk met besides what it counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Entries looked at.
    pub entries: u64,
    /// Entries that could not be read (other than those that vanished).
    pub unreadable: u64,
    /// Directories on another mount, not entered (`du -x`).
    pub other_mounts: u64,
    /// Directories deeper than [`MAX_DEPTH`], not entered.
    pub too_deep: u64,
    /// Paths that do not exist (they hold nothing).
    pub missing: u64,
}

/// A finished walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    /// Bytes allocated under each path, in the source's order.
    pub bytes: Vec<u64>,
    /// What it met.
    pub tally: Tally,
    /// When it finished.
    pub finished_ms: TimestampMs,
    /// Evaluations it took.
    pub steps: u32,
}

/// One quota's disk usage: the last finished walk and the one in progress.
pub struct DiskUsage {
    source: DiskSource,
    walk: Option<Walk>,
    last: Option<Measured>,
}

impl fmt::Debug for DiskUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskUsage")
            .field("source", &self.source)
            .field("walking", &self.walk.is_some())
            .field("last", &self.last)
            .finish()
    }
}

/// A walk in progress.
struct Walk {
    scope: Scope,
    /// The position in the source's paths of each root of `scope`.
    owners: Vec<usize>,
    /// The root being walked, by position in `scope`.
    root: usize,
    /// The directories open from the root down to the one being listed.
    stack: Vec<Dir>,
    bytes: Vec<u64>,
    /// Files with several links seen so far, by device and inode.
    linked: HashSet<(u64, u64)>,
    tally: Tally,
    steps: u32,
}

impl DiskUsage {
    /// Usage of `source`, not measured yet.
    pub fn new(source: DiskSource) -> DiskUsage {
        DiskUsage {
            source,
            walk: None,
            last: None,
        }
    }

    /// Returns what is measured.
    pub fn source(&self) -> &DiskSource {
        &self.source
    }

    /// Returns the last finished walk.
    pub fn last(&self) -> Option<&Measured> {
        self.last.as_ref()
    }

    /// Walks on for at most the source's budget of entries and
    /// [`STEP_TIME`], starting a walk if none is in progress. Returns true
    /// if and only if a walk finished, making [`DiskUsage::last`] new.
    /// Fails if a path cannot be opened safely; the walk is then dropped.
    pub fn step(&mut self, now: TimestampMs) -> Result<bool, ScopeError> {
        if self.walk.is_none() {
            self.walk = Some(Walk::start(&self.source)?);
        }
        let Some(walk) = self.walk.as_mut() else {
            return Ok(false);
        };
        walk.steps += 1;
        if !walk.run(self.source.budget, Instant::now() + STEP_TIME) {
            return Ok(false);
        }
        let Some(done) = self.walk.take() else {
            return Ok(false);
        };
        self.last = Some(Measured {
            bytes: done.bytes,
            tally: done.tally,
            finished_ms: now,
            steps: done.steps,
        });
        Ok(true)
    }

    /// Drops the walk in progress: what it counted before a cleanup ran is
    /// no longer there, so the next evaluation starts afresh.
    pub fn restart(&mut self) {
        self.walk = None;
    }

    /// Returns the last finished walk's usage by owner: each path as
    /// written if `per_owner`, else everything under the one owner `""`.
    pub fn usage(&self, per_owner: bool) -> Option<HashMap<String, u64>> {
        let last = self.last.as_ref()?;
        Some(if per_owner {
            self.source
                .paths
                .iter()
                .zip(&last.bytes)
                .map(|(p, b)| (p.display().to_string(), *b))
                .collect()
        } else {
            HashMap::from([(String::new(), last.bytes.iter().sum())])
        })
    }

    /// Says what was measured, for the evaluation's record.
    pub fn describe(&self) -> String {
        let paths = self.source.paths.len();
        let mut line = match &self.last {
            Some(m) => {
                let t = &m.tally;
                let mut s = format!(
                    "disk usage under {paths} paths: {} bytes allocated, {} entries walked in {} evaluations",
                    m.bytes.iter().sum::<u64>(),
                    t.entries,
                    m.steps
                );
                for (n, what) in [
                    (t.unreadable, "unreadable"),
                    (t.other_mounts, "directories on other mounts not entered"),
                    (t.too_deep, "directories too deep not entered"),
                    (t.missing, "paths missing"),
                ] {
                    if n > 0 {
                        s.push_str(&format!(", {n} {what}"));
                    }
                }
                s
            }
            None => format!("disk usage under {paths} paths not measured yet"),
        };
        if let Some(w) = &self.walk {
            line.push_str(&format!(
                "; a walk is in progress ({} entries after {} evaluations of at most {} entries each)",
                w.tally.entries, w.steps, self.source.budget
            ));
        }
        line
    }
}

impl Walk {
    fn start(source: &DiskSource) -> Result<Walk, ScopeError> {
        let (scope, owners) = Scope::open_to_read(&source.paths)?;
        let tally = Tally {
            missing: (source.paths.len() - owners.len()) as u64,
            ..Tally::default()
        };
        Ok(Walk {
            scope,
            owners,
            root: 0,
            stack: Vec::new(),
            bytes: vec![0; source.paths.len()],
            linked: HashSet::new(),
            tally,
            steps: 0,
        })
    }

    /// Walks on for at most `budget` entries or until `deadline`; returns
    /// true if and only if every root is done.
    fn run(&mut self, budget: u64, deadline: Instant) -> bool {
        let mut left = budget;
        loop {
            // The clock is read every 256 entries: a `statx` costs about a
            // microsecond, the clock a few tens of nanoseconds.
            if left == 0 || (left.is_multiple_of(256) && Instant::now() >= deadline) {
                return false;
            }
            let Some(top) = self.stack.last_mut() else {
                if !self.enter_root() {
                    return true;
                }
                left -= 1;
                continue;
            };
            let entry = match top.read() {
                None => {
                    self.stack.pop();
                    continue;
                }
                Some(Err(_)) => {
                    self.tally.unreadable += 1;
                    self.stack.pop();
                    continue;
                }
                Some(Ok(e)) => e,
            };
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            left -= 1;
            self.visit(name);
        }
    }

    /// Starts the next root: counts the directory itself and opens its
    /// listing. Returns false when no root is left.
    fn enter_root(&mut self) -> bool {
        // Roots already walked: the stack emptied since the last start.
        while let Some(root) = self.scope.root(self.root) {
            self.root += 1;
            self.tally.entries += 1;
            self.bytes[self.owners[self.root - 1]] += root.node().allocated;
            match Dir::read_from(root.fd()) {
                Ok(d) => {
                    self.stack.push(d);
                    return true;
                }
                Err(_) => self.tally.unreadable += 1,
            }
        }
        false
    }

    /// Counts entry `name` of the directory on top of the stack, and
    /// enters it if it is a directory on the root's mount.
    fn visit(&mut self, name: &std::ffi::CStr) {
        self.tally.entries += 1;
        let Some(root) = self.scope.root(self.root - 1) else {
            return;
        };
        let Some(parent) = self.stack.last().and_then(|d| d.fd().ok()) else {
            return;
        };
        let node = match Node::at(parent, name) {
            Ok(n) => n,
            // Deleted since it was listed: it takes nothing now.
            Err(Errno::NOENT) => return,
            Err(_) => {
                self.tally.unreadable += 1;
                return;
            }
        };
        let dir = node.kind == FileType::Directory;
        if dir && !node.same_mount(root.node()) {
            self.tally.other_mounts += 1;
            return;
        }
        if !dir && node.links > 1 && !self.linked.insert((node.dev, node.ino)) {
            return;
        }
        self.bytes[self.owners[self.root - 1]] += node.allocated;
        if !dir {
            return;
        }
        if self.stack.len() >= MAX_DEPTH {
            self.tally.too_deep += 1;
            return;
        }
        // Opened without following a symlink; and it must be the directory
        // just looked at, not one moved into its place since.
        let opened = open_dir_at(parent, name).and_then(|fd| {
            let now = Node::of(&fd)?;
            if !now.same_file(&node) {
                return Err(Errno::STALE);
            }
            Dir::new(fd)
        });
        match opened {
            Ok(d) => self.stack.push(d),
            Err(Errno::NOENT) => {}
            Err(_) => self.tally.unreadable += 1,
        }
    }
}

#[cfg(test)]
mod tests;
