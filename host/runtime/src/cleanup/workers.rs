//! The threads that carry out deletions: batches of consecutive deletions in
//! one directory, results in plan order, retries of passing failures with
//! backoff and jitter, and the run's timeout.

use std::hash::BuildHasher;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use warden_core::records::{ResourceKind, ResourceSet};

use super::root::Scope;
use super::safety::{OpenDir, Stop, Target, check, cstr, open_dir, rmdir_in, unlink_in};
use super::walk::Candidates;
use super::{Outcome, Rules, refused, skipped};

/// The longest wait between two attempts at one action, whatever the
/// backoff and the attempt number.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The most consecutive actions in one directory a worker takes at once. The
/// walk to the directory is shared by them; small enough that several workers
/// share even a plan that lies in a single directory, and that a descriptor
/// is never reused for long.
const BATCH: usize = 128;

/// How one action ended.
#[derive(Debug)]
pub(super) struct Done {
    pub(super) outcome: Outcome,
    pub(super) attempts: u32,
    /// Not started because the run's timeout had passed.
    pub(super) late: bool,
}

impl Done {
    /// An outcome reached without touching the filesystem.
    pub(super) fn settled(outcome: Outcome) -> Done {
        Done::tried(outcome, 0)
    }

    /// An outcome reached after `attempts` tries at the filesystem.
    fn tried(outcome: Outcome, attempts: u32) -> Done {
        Done {
            outcome,
            attempts,
            late: false,
        }
    }
}

/// Splits `jobs` (candidates to delete) into batches of consecutive
/// deletions in one directory.
fn batches(candidates: &ResourceSet, jobs: &[usize]) -> Vec<Range<usize>> {
    let dir = |j: &usize| {
        candidates
            .name(*j)
            .and_then(|n| n.rsplit_once('/'))
            .map(|(d, _)| d)
    };
    let mut out = Vec::new();
    let mut start = 0;
    for end in 1..=jobs.len() {
        if end == jobs.len() || end - start == BATCH || dir(&jobs[end]) != dir(&jobs[start]) {
            out.push(start..end);
            start = end;
        }
    }
    out
}

/// Deletes `jobs` (candidates) under the roots of `scope` on up to
/// `workers` threads; returns their outcomes in the order of `jobs`.
pub(super) fn delete_all(
    rules: &Rules,
    scope: &Scope,
    candidates: &Candidates,
    jobs: &[usize],
    deadline: Option<Instant>,
    workers: usize,
) -> Vec<Done> {
    let batches = batches(&candidates.set, jobs);
    let workers = workers.clamp(1, batches.len().max(1));
    let next = AtomicUsize::new(0);
    let work = || {
        let mut worker = Worker {
            rules,
            scope,
            candidates,
            deadline,
            dir: None,
        };
        let mut out = Vec::new();
        while let Some(batch) = batches.get(next.fetch_add(1, Ordering::Relaxed)) {
            for j in batch.clone() {
                out.push((j, worker.delete(jobs[j])));
            }
            // A descriptor is only reused within its batch.
            worker.dir = None;
        }
        out
    };
    let mut slots: Vec<Option<Done>> = std::iter::repeat_with(|| None).take(jobs.len()).collect();
    std::thread::scope(|s| {
        // This thread is one of the workers, so a thread that cannot be
        // started only means less parallelism.
        let helpers: Vec<_> = (1..workers)
            .filter_map(|n| {
                std::thread::Builder::new()
                    .name(format!("warden-cleanup-{n}"))
                    .spawn_scoped(s, work)
                    .ok()
            })
            .collect();
        let mine = work();
        for part in std::iter::once(mine).chain(helpers.into_iter().map(|h| {
            h.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })) {
            for (j, done) in part {
                slots[j] = Some(done);
            }
        }
    });
    slots
        .into_iter()
        .map(|d| d.expect("every deletion is settled"))
        .collect()
}

/// One thread's state: the directory of its last deletion, reached by a
/// checked walk, kept for the next deletion in the same directory.
struct Worker<'a> {
    rules: &'a Rules,
    scope: &'a Scope,
    candidates: &'a Candidates,
    deadline: Option<Instant>,
    dir: Option<OpenDir>,
}

impl Worker<'_> {
    /// Deletes candidate `index` if every rule allows it, retrying as the
    /// rules say.
    fn delete(&mut self, index: usize) -> Done {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Done {
                outcome: skipped(format!(
                    "not started: the run timed out after {}",
                    humantime::format_duration(self.rules.run_timeout)
                )),
                attempts: 0,
                late: true,
            };
        }
        let target = match check(self.rules, self.scope, self.candidates, index) {
            Ok(target) => target,
            Err(outcome) => return Done::settled(outcome),
        };
        let dir = self.candidates.set.kind(index) == Some(ResourceKind::Directory);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (message, errno) = match self.unlink(&target, dir) {
                Ok(bytes) if self.rules.dry_run => {
                    return Done::tried(Outcome::WouldDelete { bytes }, attempts);
                }
                Ok(bytes) => return Done::tried(Outcome::Deleted { bytes }, attempts),
                Err(Stop::Refuse(why)) => return Done::tried(refused(why), attempts),
                Err(Stop::Skip(why)) => return Done::tried(skipped(why), attempts),
                Err(Stop::Fail { message, errno }) => (message, errno),
            };
            // Whatever failed, the next attempt walks again from the root.
            self.dir = None;
            let failed = |error: String| {
                let error = if attempts > 1 {
                    format!("{error} (after {attempts} attempts)")
                } else {
                    error
                };
                Done::tried(Outcome::Failed { error }, attempts)
            };
            let Some(retries) = &self.rules.retries else {
                return failed(message);
            };
            if attempts > retries.max || !errno.is_some_and(transient) {
                return failed(message);
            }
            let wait = backoff(retries.backoff.0, attempts - 1, retries.jitter, spread());
            if self
                .deadline
                .is_some_and(|d| Instant::now().checked_add(wait).is_none_or(|t| t >= d))
            {
                return failed(format!(
                    "{message}; not retried, as the next attempt would start after the run's timeout"
                ));
            }
            std::thread::sleep(wait);
        }
    }

    /// Unlinks `target` (removes it if `dir`), reusing the open directory if
    /// the last deletion was in the same one.
    fn unlink(&mut self, target: &Target<'_>, dir: bool) -> Result<u64, Stop> {
        let rel = target.rel;
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Err(Stop::Refuse(format!(
                "`{}` does not name a file",
                rel.display()
            )));
        };
        let name = cstr(name)?;
        let Some(root) = self.scope.root(target.root) else {
            return Err(Stop::Refuse("its scope root is not open".into()));
        };
        let reuse = self
            .dir
            .as_ref()
            .is_some_and(|d| d.root == target.root && d.rel == parent);
        if !reuse {
            self.dir = None;
            self.dir = Some(open_dir(target.root, root, parent)?);
        }
        let open = self.dir.as_ref().expect("opened above");
        let dry_run = self.rules.dry_run;
        if dir {
            rmdir_in(&open.fd, root.node(), &name, target.found, dry_run)
        } else {
            unlink_in(&open.fd, root.node(), &name, target.found, dry_run)
        }
    }
}

/// Whether a system call that failed with `errno` may succeed if tried again
/// soon. Interrupted calls, exhausted kernel memory or lock tables, a busy
/// or momentarily unavailable file and a stale or timed-out network
/// filesystem handle pass (the retry walks again from the root, which gets a
/// fresh handle). `EIO` does not: it reports a device or filesystem fault,
/// and hammering a failing disk helps nobody; the next run tries again. Nor
/// do the errors that say the action is not allowed or not possible (`EPERM`,
/// `EACCES`, `EROFS`, `ENOENT`, `ENOTDIR`, `ELOOP`…), which no wait changes.
pub(super) fn transient(errno: i32) -> bool {
    matches!(
        Errno::from_raw_os_error(errno),
        Errno::INTR
            | Errno::AGAIN
            | Errno::BUSY
            | Errno::TXTBSY
            | Errno::NOMEM
            | Errno::NOBUFS
            | Errno::NOLCK
            | Errno::STALE
            | Errno::TIMEDOUT
    )
}

/// The wait before retry `n` (0 for the first): `base`·2ⁿ, at most
/// [`MAX_BACKOFF`], moved by `jitter` (0 to 1) of itself in the direction and
/// share `spread` (-1 to 1) says, and still at most [`MAX_BACKOFF`]. The
/// jitter keeps many failing actions, or many hosts, from retrying in step.
pub(super) fn backoff(base: Duration, n: u32, jitter: f64, spread: f64) -> Duration {
    let doubled = base
        .saturating_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF);
    let factor = 1.0 + jitter.clamp(0.0, 1.0) * spread.clamp(-1.0, 1.0);
    doubled.mul_f64(factor).min(MAX_BACKOFF)
}

/// A random number between -1 and 1, for jitter.
pub(super) fn spread() -> f64 {
    // std's hasher is keyed at random per thread and per instance: random
    // enough for spreading retries, with no dependency for it.
    let bits = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}
