//! Carrying out a cleanup plan, inside the policy's scope and by
//! systemd-tmpfiles' rules: a plugin decides, this module acts, and only on
//! what the scope grants.
//!
//! Every deletion reaches its directory by a walk from the scope root with
//! `O_NOFOLLOW` directory descriptors (one walk shared by a short batch of
//! deletions in that directory, see below), so no symlink anywhere on the way
//! is followed and nothing can be swapped in between the check and the
//! unlink. A target must:
//! - be an absolute path without `.` or `..`, under one of the scope's paths,
//!   and match none of its exclude globs;
//! - be on the scope root's filesystem (no mount point is crossed);
//! - be a regular file (sockets, FIFOs, devices, symlinks and directories are
//!   skipped), the same file the plugin was shown (same inode);
//! - not be held by another process's `flock` (tested with a non-blocking
//!   exclusive lock, held across the unlink).
//!
//! A plan that asks for more than the policy's cap (a count or a percentage
//! of the candidates) acts on nothing and says why. A dry run reports what
//! each action would do and does nothing.
//!
//! Deletions run on up to `max_concurrent` threads. Each takes a short run of
//! consecutive actions in one directory and walks to that directory once for
//! them, so a plan of thousands of files costs one walk per directory and
//! batch, not one per file; every file check above is still made per file.
//! Results are reported in plan order whatever thread did the work. An action
//! not started when the run's timeout has passed is skipped and says so; one
//! that failed for a passing reason (a busy file, an interrupted call, the
//! kernel short of memory…) is retried with exponential backoff and jitter,
//! never past the deadline; one refused for good (no permission, a read-only
//! filesystem…) is not.

use std::ffi::{CString, OsStr};
use std::hash::BuildHasher;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::plugin::records::{CleanupAction, CleanupPlan, ResourceKind, ResourceSet};
use crate::policy::parse::{DEFAULT_MAX_CONCURRENT, DEFAULT_RUN_TIMEOUT};
use crate::policy::schema::Retries;

/// The longest wait between two attempts at one action, whatever the
/// backoff and the attempt number.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The most consecutive actions in one directory a worker takes at once. The
/// walk to the directory is shared by them; small enough that several workers
/// share even a plan that lies in a single directory, and that a descriptor
/// is never reused for long.
const BATCH: usize = 128;

/// The most actions a run may take, as a number or a share of candidates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cap {
    /// At most this many.
    Count(u64),
    /// At most this percentage of the candidates (rounded down).
    Percent(f64),
}

impl Cap {
    /// The number of actions allowed among `candidates`.
    pub fn allowed(self, candidates: usize) -> u64 {
        match self {
            Cap::Count(n) => n,
            Cap::Percent(p) => ((candidates as f64) * p / 100.0).floor() as u64,
        }
    }
}

impl std::fmt::Display for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cap::Count(n) => write!(f, "{n}"),
            Cap::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for Cap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("`{s}` is not a percentage; write it like `10%`"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("`{s}`: a percentage is between 0% and 100%"));
            }
            Ok(Cap::Percent(p))
        } else {
            t.parse().map(Cap::Count).map_err(|_| {
                format!("`{s}` is not a cap; write a number of actions (`100`) or a share of candidates (`10%`)")
            })
        }
    }
}

/// What a policy's scope lets the executor do, and how it goes about it.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The scope's paths.
    pub roots: Vec<PathBuf>,
    /// Paths never touched.
    pub exclude: GlobSet,
    /// The most actions per run.
    pub cap: Option<Cap>,
    /// Report, do nothing.
    pub dry_run: bool,
    /// Actions carried out at once (0 counts as 1).
    pub max_concurrent: usize,
    /// The longest a run may act; actions not started by then are skipped.
    pub run_timeout: Duration,
    /// Retries of actions that failed for a passing reason; none if `None`.
    pub retries: Option<Retries>,
}

impl Rules {
    /// Rules for `roots` with exclude `globs` (invalid globs are an error
    /// naming the glob), with the default concurrency and run timeout and
    /// no retries.
    pub fn new(
        roots: Vec<PathBuf>,
        globs: &[String],
        cap: Option<Cap>,
        dry_run: bool,
    ) -> Result<Rules, String> {
        Ok(Rules {
            roots,
            exclude: exclude_set(globs)?,
            cap,
            dry_run,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            run_timeout: DEFAULT_RUN_TIMEOUT,
            retries: None,
        })
    }

    /// These rules, carrying out up to `n` actions at once.
    pub fn with_concurrency(mut self, n: usize) -> Rules {
        self.max_concurrent = n;
        self
    }

    /// These rules, starting no action once `timeout` has passed.
    pub fn with_run_timeout(mut self, timeout: Duration) -> Rules {
        self.run_timeout = timeout;
        self
    }

    /// These rules, retrying failed actions as `retries` says.
    pub fn with_retries(mut self, retries: Option<Retries>) -> Rules {
        self.retries = retries;
        self
    }
}

/// Compiles exclude globs; `*` does not cross `/`, `**` does.
pub fn exclude_set(globs: &[String]) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = globset::GlobBuilder::new(g)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("`{g}` is not a glob: {e}"))?;
        b.add(glob);
    }
    // A pattern without a slash means a name anywhere, like `*.lock`.
    for g in globs.iter().filter(|g| !g.contains('/')) {
        b.add(Glob::new(&format!("**/{g}")).map_err(|e| format!("`{g}` is not a glob: {e}"))?);
    }
    b.build().map_err(|e| e.to_string())
}

/// What happened to one planned action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Deleted; its size is freed.
    Deleted {
        /// Bytes freed.
        bytes: u64,
    },
    /// Dry run: it would have been deleted.
    WouldDelete {
        /// Bytes it would free.
        bytes: u64,
    },
    /// Outside what the scope grants; never touched.
    Refused {
        /// Why.
        why: String,
    },
    /// In scope, but left alone by a safety rule (locked, a socket, gone…).
    Skipped {
        /// Why.
        why: String,
    },
    /// The deletion failed.
    Failed {
        /// The error.
        error: String,
    },
}

/// One planned action and its outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    /// The action, as text.
    pub action: String,
    /// Its target, if it has one.
    pub target: Option<String>,
    /// The plugin's reason.
    pub reason: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// How many times the filesystem was acted on for it: 0 if it never got
    /// that far (refused, excluded, a notice, or not started before the
    /// run's timeout), more than 1 if it was retried. (Absent from history
    /// saved before it was recorded: 0.)
    #[serde(default)]
    pub attempts: u32,
}

/// One run of a cleanup policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// The policy.
    pub policy: String,
    /// When it started and ended (ms since the epoch).
    pub started_ms: i64,
    /// When it ended.
    pub finished_ms: i64,
    /// How long it took, by the monotonic clock (the wall clock may jump).
    #[serde(default)]
    pub duration_ms: u64,
    /// Nothing was acted on by design.
    pub dry_run: bool,
    /// Candidates shown to the plugin.
    pub candidates: usize,
    /// Actions the plugin planned.
    pub planned: usize,
    /// Set if the run acted on nothing because the plan exceeded the cap.
    pub cap_exceeded: Option<String>,
    /// Set if the run's timeout passed before every action was started; the
    /// ones left are skipped and say so.
    #[serde(default)]
    pub timed_out: bool,
    /// Every planned action with its outcome, in plan order.
    pub items: Vec<Item>,
    /// Bytes freed (or that would be, in a dry run).
    pub bytes_freed: u64,
    /// Items left out of `items` to bound the history ([`Run::trim`]),
    /// counted by outcome as [`Run::counts`] orders them.
    #[serde(default)]
    pub omitted: [usize; 5],
}

/// The outcome's place in [`Run::counts`].
fn slot(o: &Outcome) -> usize {
    match o {
        Outcome::Deleted { .. } => 0,
        Outcome::WouldDelete { .. } => 1,
        Outcome::Refused { .. } => 2,
        Outcome::Skipped { .. } => 3,
        Outcome::Failed { .. } => 4,
    }
}

impl Run {
    /// How many actions ended in each outcome: deleted, would delete,
    /// refused, skipped, failed.
    pub fn counts(&self) -> [usize; 5] {
        let mut c = self.omitted;
        for i in &self.items {
            c[slot(&i.outcome)] += 1;
        }
        c
    }

    /// Keeps the first `keep` items and counts the rest in `omitted`, so a
    /// run over 100,000 files does not keep 100,000 items in the history.
    pub fn trim(&mut self, keep: usize) {
        for i in self.items.iter().skip(keep) {
            self.omitted[slot(&i.outcome)] += 1;
        }
        self.items.truncate(keep);
    }
}

impl Run {
    /// A run starting now, with nothing done yet.
    pub fn begin(policy: &str, dry_run: bool, candidates: usize, planned: usize) -> Run {
        let started_ms = crate::clock::now_ms();
        Run {
            policy: policy.to_owned(),
            started_ms,
            finished_ms: started_ms,
            duration_ms: 0,
            dry_run,
            candidates,
            planned,
            cap_exceeded: None,
            timed_out: false,
            items: Vec::with_capacity(planned),
            bytes_freed: 0,
            omitted: [0; 5],
        }
    }

    /// The run, ended now; `started` is when it began by the monotonic clock.
    pub fn end(mut self, started: Instant) -> Run {
        self.finished_ms = crate::clock::now_ms();
        self.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self
    }
}

/// Why `plan` may not run under `cap` over `candidates`, if it asks for
/// more actions (notices aside) than the cap allows; logged with the policy.
pub fn over_cap(
    policy: &str,
    cap: Option<Cap>,
    plan: &CleanupPlan,
    candidates: usize,
) -> Option<String> {
    let cap = cap?;
    let acting = plan
        .actions
        .iter()
        .filter(|(a, _)| !matches!(a, CleanupAction::Notify(_)))
        .count() as u64;
    let allowed = cap.allowed(candidates);
    if acting <= allowed {
        return None;
    }
    tracing::warn!(
        policy,
        planned = acting,
        allowed,
        "cleanup plan exceeds its cap; nothing done"
    );
    Some(format!(
        "the plan asks for {acting} actions over {candidates} candidates; the cap `{cap}` allows {allowed}, so nothing was done"
    ))
}

/// Carries out `plan` over `candidates` under `rules`.
pub fn execute(policy: &str, rules: &Rules, candidates: &ResourceSet, plan: &CleanupPlan) -> Run {
    let started = Instant::now();
    // `None`: a timeout too long for the clock, which is no timeout.
    let deadline = started.checked_add(rules.run_timeout);
    let mut run = Run::begin(policy, rules.dry_run, candidates.len(), plan.actions.len());
    let finish = |run: Run| run.end(started);
    if let Some(why) = over_cap(policy, rules.cap, plan, candidates.len()) {
        run.cap_exceeded = Some(why);
        return finish(run);
    }
    // Deletions go to the workers; everything else is settled here. Files
    // go first, in parallel; then directories, one at a time and deepest
    // first, so a directory emptied by this run can go in the same run.
    let is_dir = |t: usize| candidates.kind(t) == Some(ResourceKind::Directory);
    let deletes = plan
        .actions
        .iter()
        .enumerate()
        .filter_map(|(i, (a, _))| match a {
            CleanupAction::DeletePath(t) => Some((i, *t as usize)),
            _ => None,
        });
    // (action, candidate) pairs.
    type Jobs = Vec<(usize, usize)>;
    let (mut dirs, files): (Jobs, Jobs) = deletes.partition(|(_, t)| is_dir(*t));
    let mut results: Vec<Option<Done>> = std::iter::repeat_with(|| None)
        .take(plan.actions.len())
        .collect();
    let file_jobs: Vec<usize> = files.iter().map(|(_, t)| *t).collect();
    for ((i, _), done) in files.iter().zip(delete_all(
        rules,
        candidates,
        &file_jobs,
        deadline,
        rules.max_concurrent,
    )) {
        results[*i] = Some(done);
    }
    let depth = |t: usize| candidates.name(t).map_or(0, |n| n.matches('/').count());
    dirs.sort_by_key(|(_, t)| std::cmp::Reverse(depth(*t)));
    let dir_jobs: Vec<usize> = dirs.iter().map(|(_, t)| *t).collect();
    for ((i, _), done) in dirs
        .iter()
        .zip(delete_all(rules, candidates, &dir_jobs, deadline, 1))
    {
        results[*i] = Some(done);
    }
    let mut not_started = 0usize;
    for (i, (action, _)) in plan.actions.iter().enumerate() {
        let reason = plan.reason(i).to_owned();
        let target = action
            .target()
            .and_then(|t| candidates.name(t as usize))
            .map(str::to_owned);
        let done = match action {
            CleanupAction::DeletePath(_) => results[i].take().expect("one result per deletion"),
            CleanupAction::Notify(message) => {
                tracing::info!(policy, "{message}");
                Done::settled(skipped("a notice; nothing to act on"))
            }
            other => Done::settled(refused(format!(
                "{} is not carried out for files yet",
                action_name(other)
            ))),
        };
        if done.late {
            not_started += 1;
        }
        let outcome = done.outcome;
        if let Outcome::Deleted { bytes } | Outcome::WouldDelete { bytes } = outcome {
            run.bytes_freed += bytes;
        }
        if let Outcome::Refused { why } = &outcome {
            tracing::warn!(
                policy,
                target = target.as_deref().unwrap_or(""),
                "refused: {why}"
            );
        }
        run.items.push(Item {
            action: action_name(action).into(),
            target,
            reason,
            outcome,
            attempts: done.attempts,
        });
    }
    if not_started > 0 {
        run.timed_out = true;
        tracing::warn!(
            policy,
            not_started,
            "cleanup run reached its timeout of {}; the rest was skipped",
            humantime::format_duration(rules.run_timeout)
        );
    }
    finish(run)
}

fn action_name(a: &CleanupAction) -> &'static str {
    match a {
        CleanupAction::DeletePath(_) => "delete",
        CleanupAction::CloseResource(_) => "close",
        CleanupAction::KillProcess { .. } => "kill",
        CleanupAction::Release(_) => "release",
        CleanupAction::EvictCache(_) => "evict",
        CleanupAction::Notify(_) => "notify",
    }
}

fn refused(why: impl Into<String>) -> Outcome {
    Outcome::Refused { why: why.into() }
}

fn skipped(why: impl Into<String>) -> Outcome {
    Outcome::Skipped { why: why.into() }
}

/// How one action ended.
#[derive(Debug)]
struct Done {
    outcome: Outcome,
    attempts: u32,
    /// Not started because the run's timeout had passed.
    late: bool,
}

impl Done {
    /// An outcome reached without touching the filesystem.
    fn settled(outcome: Outcome) -> Done {
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

/// Deletes `jobs` (candidates) on up to `rules.max_concurrent` threads;
/// returns their outcomes in the order of `jobs`.
fn delete_all(
    rules: &Rules,
    candidates: &ResourceSet,
    jobs: &[usize],
    deadline: Option<Instant>,
    workers: usize,
) -> Vec<Done> {
    let batches = batches(candidates, jobs);
    let workers = workers.clamp(1, batches.len().max(1));
    let next = AtomicUsize::new(0);
    let work = || {
        let mut worker = Worker {
            rules,
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
    candidates: &'a ResourceSet,
    deadline: Option<Instant>,
    dir: Option<OpenDir>,
}

/// A directory under a scope root, opened by [`open_dir`].
struct OpenDir {
    /// Which scope root.
    root: usize,
    /// Its path below the root.
    rel: PathBuf,
    fd: OwnedFd,
    /// The root's filesystem.
    dev: libc::dev_t,
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
        let (root, rel) = match check(self.rules, self.candidates, index) {
            Ok(target) => target,
            Err(outcome) => return Done::settled(outcome),
        };
        let expect_inode = self.candidates.handle(index).unwrap_or(0);
        let dir = self.candidates.kind(index) == Some(ResourceKind::Directory);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (message, errno) = match self.unlink(root, rel, expect_inode, dir) {
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

    /// Unlinks `rel` under scope root `root` (removes it if `dir`), reusing
    /// the open directory if the last deletion was in the same one.
    fn unlink(
        &mut self,
        root: usize,
        rel: &Path,
        expect_inode: u64,
        dir: bool,
    ) -> Result<u64, Stop> {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Err(Stop::Refuse(format!(
                "`{}` does not name a file",
                rel.display()
            )));
        };
        let name = cstr(name)?;
        let reuse = self
            .dir
            .as_ref()
            .is_some_and(|d| d.root == root && d.rel == parent);
        if !reuse {
            self.dir = None;
            self.dir = Some(open_dir(root, &self.rules.roots[root], parent)?);
        }
        let open = self.dir.as_ref().expect("opened above");
        if dir {
            rmdir_in(&open.fd, open.dev, &name, expect_inode, self.rules.dry_run)
        } else {
            unlink_in(&open.fd, open.dev, &name, expect_inode, self.rules.dry_run)
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
fn transient(errno: i32) -> bool {
    matches!(
        errno,
        libc::EINTR
            | libc::EAGAIN
            | libc::EBUSY
            | libc::ETXTBSY
            | libc::ENOMEM
            | libc::ENOBUFS
            | libc::ENOLCK
            | libc::ESTALE
            | libc::ETIMEDOUT
    )
}

/// The wait before retry `n` (0 for the first): `base`·2ⁿ, at most
/// [`MAX_BACKOFF`], moved by `jitter` (0 to 1) of itself in the direction and
/// share `spread` (-1 to 1) says, and still at most [`MAX_BACKOFF`]. The
/// jitter keeps many failing actions, or many hosts, from retrying in step.
fn backoff(base: Duration, n: u32, jitter: f64, spread: f64) -> Duration {
    let doubled = base
        .saturating_mul(1u32.checked_shl(n).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF);
    let factor = 1.0 + jitter.clamp(0.0, 1.0) * spread.clamp(-1.0, 1.0);
    doubled.mul_f64(factor).min(MAX_BACKOFF)
}

/// A random number between -1 and 1, for jitter.
fn spread() -> f64 {
    // std's hasher is keyed at random per thread and per instance: random
    // enough for spreading retries, with no dependency for it.
    let bits = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// The path checks that need no filesystem: returns the index of the scope
/// root candidate `index` is under and its path below that root.
fn check<'a>(
    rules: &Rules,
    candidates: &'a ResourceSet,
    index: usize,
) -> Result<(usize, &'a Path), Outcome> {
    let Some(name) = candidates.name(index) else {
        return Err(refused(format!("candidate {index} does not exist")));
    };
    let path = Path::new(name);
    if !path.is_absolute() {
        return Err(refused(format!("`{name}` is not an absolute path")));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(refused(format!("`{name}` contains `.` or `..`")));
    }
    let Some((root, rel)) = rules
        .roots
        .iter()
        .enumerate()
        .find_map(|(i, r)| path.strip_prefix(r).ok().map(|rel| (i, rel)))
    else {
        return Err(refused(format!(
            "`{name}` is outside the policy's scope paths"
        )));
    };
    if rel.as_os_str().is_empty() {
        return Err(refused("a scope path itself is never deleted"));
    }
    if rules.exclude.is_match(path) {
        return Err(skipped("matches an exclude glob"));
    }
    Ok((root, rel))
}

enum Stop {
    Refuse(String),
    Skip(String),
    /// A system call failed; `errno` says whether trying again may help.
    Fail {
        message: String,
        errno: Option<i32>,
    },
}

fn io(what: &str, e: &std::io::Error) -> Stop {
    Stop::Fail {
        errno: e.raw_os_error(),
        message: format!("{what}: {e}"),
    }
}

fn cstr(s: &OsStr) -> Result<CString, Stop> {
    CString::new(s.as_bytes()).map_err(|_| Stop::Refuse("a path with a NUL byte".into()))
}

fn fstatat(dir: &OwnedFd, name: &CString) -> std::io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is an open descriptor, `name` is NUL-terminated and `st`
    // is writable for the call.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(st)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn fstat(fd: &OwnedFd) -> std::io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` writable.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0 {
        Ok(st)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn openat(dir: Option<&OwnedFd>, name: &CString, flags: i32) -> std::io::Result<OwnedFd> {
    let at = dir.map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd);
    // SAFETY: `name` is NUL-terminated; the result is checked before use.
    let fd = unsafe { libc::openat(at, name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn kind_of(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFLNK => "a symlink",
        libc::S_IFDIR => "a directory",
        libc::S_IFSOCK => "a socket",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFCHR | libc::S_IFBLK => "a device",
        _ => "not a regular file",
    }
}

/// Opens `root/rel` (scope root number `index`) without following any
/// symlink below `root` and without leaving `root`'s filesystem.
fn open_dir(index: usize, root: &Path, rel: &Path) -> Result<OpenDir, Stop> {
    let root_c = cstr(root.as_os_str())?;
    let mut dir = match openat(None, &root_c, libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(Stop::Skip("the scope path is gone".into()));
        }
        Err(e) => return Err(io("opening the scope path", &e)),
    };
    let root_dev = fstat(&dir)
        .map_err(|e| io("reading the scope path", &e))?
        .st_dev;
    for part in rel {
        let c = cstr(part)?;
        dir = match openat(
            Some(&dir),
            &c,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        ) {
            Ok(d) => d,
            Err(e)
                if e.raw_os_error() == Some(libc::ELOOP)
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                return Err(Stop::Refuse(format!(
                    "`{}` on the way is a symlink or not a directory; symlinks are never followed",
                    part.to_string_lossy()
                )));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Err(Stop::Skip("gone before it was reached".into()));
            }
            Err(e) => return Err(io("opening a directory on the way", &e)),
        };
        let st = fstat(&dir).map_err(|e| io("reading a directory on the way", &e))?;
        if st.st_dev != root_dev {
            return Err(Stop::Refuse(format!(
                "`{}` is on another filesystem; a mount point is never crossed",
                part.to_string_lossy()
            )));
        }
    }
    Ok(OpenDir {
        root: index,
        rel: rel.to_owned(),
        fd: dir,
        dev: root_dev,
    })
}

/// Stats `name` in `dir` without following it and checks it is still what
/// may be removed: of type `want` (`S_IFREG` or `S_IFDIR`), never a
/// symlink, on `root_dev` (so not a mount point), with inode `expect_inode`
/// (any, if 0).
fn judge(
    dir: &OwnedFd,
    root_dev: libc::dev_t,
    name: &CString,
    expect_inode: u64,
    want: libc::mode_t,
) -> Result<libc::stat, Stop> {
    let st = match fstatat(dir, name) {
        Ok(st) => st,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(Stop::Skip("already gone".into()));
        }
        Err(e) => return Err(io("reading it", &e)),
    };
    let kind = st.st_mode & libc::S_IFMT;
    if kind == libc::S_IFLNK {
        return Err(Stop::Refuse(
            "a symlink; symlinks are never followed or deleted through".into(),
        ));
    }
    if kind != want {
        return Err(Stop::Skip(if want == libc::S_IFDIR {
            "no longer a directory since the plan was made".into()
        } else {
            format!("{}; only regular files are deleted", kind_of(st.st_mode))
        }));
    }
    if st.st_dev != root_dev {
        return Err(Stop::Refuse(
            "on another filesystem; a mount point is never crossed".into(),
        ));
    }
    if expect_inode != 0 && st.st_ino != expect_inode {
        return Err(Stop::Skip(
            "replaced since the plan was made (another inode)".into(),
        ));
    }
    Ok(st)
}

/// Unlinks `name` in `dir` if it is a regular file on `root_dev` with inode
/// `expect_inode` (any, if 0) that no other process holds an `flock` on;
/// returns the file's size.
fn unlink_in(
    dir: &OwnedFd,
    root_dev: libc::dev_t,
    name: &CString,
    expect_inode: u64,
    dry_run: bool,
) -> Result<u64, Stop> {
    let st = judge(dir, root_dev, name, expect_inode, libc::S_IFREG)?;
    // Another process's advisory lock means it is in use: leave it. The lock
    // is held across the unlink so nobody takes it in between.
    let file = match openat(
        Some(dir),
        name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
    ) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(Stop::Skip("already gone".into()));
        }
        Err(e) => return Err(io("opening the file to check its lock", &e)),
    };
    // The name may have been pointed at another file since the stat: the
    // lock must be checked on the file that was judged.
    match fstat(&file) {
        Ok(f) if f.st_ino == st.st_ino && f.st_dev == st.st_dev => {}
        Ok(_) => {
            return Err(Stop::Skip(
                "replaced while being checked (another inode)".into(),
            ));
        }
        Err(e) => return Err(io("reading the opened file", &e)),
    }
    // SAFETY: `file` is an open descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Stop::Skip("locked (flock) by another process".into())
        } else {
            io("locking the file", &e)
        });
    }
    let bytes = u64::try_from(st.st_size).unwrap_or(0);
    if dry_run {
        return Ok(bytes);
    }
    // SAFETY: `dir` is open and `name` NUL-terminated.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::ENOENT) {
            Stop::Skip("already gone".into())
        } else {
            io("deleting", &e)
        });
    }
    drop(file);
    Ok(bytes)
}

/// Removes the directory `name` in `dir` if it is empty, on `root_dev`,
/// and still inode `expect_inode` (any, if 0). Like systemd-tmpfiles, only
/// empty directories go: what is in one is judged file by file.
fn rmdir_in(
    dir: &OwnedFd,
    root_dev: libc::dev_t,
    name: &CString,
    expect_inode: u64,
    dry_run: bool,
) -> Result<u64, Stop> {
    judge(dir, root_dev, name, expect_inode, libc::S_IFDIR)?;
    if dry_run {
        return Ok(0);
    }
    // SAFETY: `dir` is open and `name` NUL-terminated.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOTEMPTY | libc::EEXIST) => {
                Stop::Skip("not empty; only empty directories are removed".into())
            }
            Some(libc::ENOENT) => Stop::Skip("already gone".into()),
            _ => io("removing the directory", &e),
        });
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::records::NewResource;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn caps_parse_and_apply() {
        assert_eq!("10%".parse::<Cap>(), Ok(Cap::Percent(10.0)));
        assert_eq!("250".parse::<Cap>(), Ok(Cap::Count(250)));
        assert!("ten".parse::<Cap>().unwrap_err().contains("`10%`"));
        assert!("150%".parse::<Cap>().is_err());
        assert_eq!(Cap::Percent(10.0).allowed(1000), 100);
        assert_eq!(Cap::Percent(10.0).allowed(9), 0);
    }

    #[test]
    fn excludes_match_names_anywhere_and_paths() {
        let g = exclude_set(&["*.lock".into(), "/data/keep/**".into()]).unwrap();
        assert!(g.is_match("/data/a/b/c.lock"));
        assert!(g.is_match("/data/keep/x/y"));
        assert!(!g.is_match("/data/a/c.log"));
        assert!(exclude_set(&["a[".into()]).unwrap_err().contains("`a[`"));
    }

    fn set_of(paths: &[PathBuf]) -> ResourceSet {
        let mut set = ResourceSet::default();
        for p in paths {
            let ino = std::fs::symlink_metadata(p).map(|m| m.ino()).unwrap_or(0);
            set.push(NewResource {
                handle: ino,
                name: p.to_str().unwrap(),
                ..Default::default()
            });
        }
        set
    }

    #[test]
    fn empty_directories_go_after_their_files_and_full_ones_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let scope = tmp.path().join("scope");
        let outside = tmp.path().join("outside");
        for d in ["a/b", "keep", "empty"] {
            std::fs::create_dir_all(scope.join(d)).unwrap();
        }
        std::fs::create_dir_all(outside.join("x")).unwrap();
        std::fs::write(scope.join("a/b/old"), "1").unwrap();
        std::fs::write(scope.join("keep/young"), "2").unwrap();
        std::os::unix::fs::symlink(outside.join("x"), scope.join("dirlink")).unwrap();
        // The host's own scan lists each directory after its contents.
        let set = crate::runtime::candidates::scan(&[&scope]);
        let index = |p: &str| {
            (0..set.len())
                .find(|i| set.name(*i) == scope.join(p).to_str())
                .unwrap_or_else(|| panic!("{p} not scanned"))
        };
        // The plan names the directories first, to show the host reorders.
        let mut actions: Vec<(CleanupAction, u32)> = ["a", "a/b", "keep", "empty", "a/b/old"]
            .iter()
            .map(|p| (CleanupAction::DeletePath(index(p) as u32), 0))
            .collect();
        // A symlink to a directory is not a candidate; one named anyway is refused.
        let mut set = set;
        let link = set.push(NewResource {
            handle: 0,
            kind: Some(ResourceKind::Directory),
            name: scope.join("dirlink").to_str().unwrap(),
            ..Default::default()
        });
        actions.push((CleanupAction::DeletePath(link), 0));
        let plan = CleanupPlan {
            reasons: vec!["old".into()],
            actions,
        };
        let rules = Rules::new(vec![scope.clone()], &[], None, false).unwrap();
        let run = execute("dirs", &rules, &set, &plan);
        let outcome = |i: usize| run.items[i].outcome.clone();
        assert!(
            matches!(outcome(0), Outcome::Deleted { .. }),
            "{:?}",
            run.items
        );
        assert!(
            matches!(outcome(1), Outcome::Deleted { .. }),
            "{:?}",
            run.items
        );
        assert!(
            matches!(outcome(2), Outcome::Skipped { ref why } if why.contains("not empty")),
            "{:?}",
            run.items
        );
        assert!(matches!(outcome(3), Outcome::Deleted { .. }));
        assert!(matches!(outcome(4), Outcome::Deleted { bytes: 1 }));
        assert!(
            matches!(outcome(5), Outcome::Refused { .. }),
            "{:?}",
            run.items[5]
        );
        assert!(!scope.join("a").exists() && !scope.join("empty").exists());
        assert!(scope.join("keep/young").exists() && outside.join("x").exists());
    }

    fn plan_all(n: usize) -> CleanupPlan {
        CleanupPlan {
            reasons: vec!["old".into()],
            actions: (0..n as u32)
                .map(|i| (CleanupAction::DeletePath(i), 0))
                .collect(),
        }
    }

    /// A scope holding one of every trap, and files outside it.
    struct Trap {
        _tmp: tempfile::TempDir,
        scope: PathBuf,
        outside: PathBuf,
        _listener: std::os::unix::net::UnixListener,
        _lock: std::fs::File,
    }

    fn trap() -> (Trap, Vec<PathBuf>) {
        let tmp = tempfile::tempdir().unwrap();
        let scope = tmp.path().join("scope");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(scope.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("precious"), "keep").unwrap();
        std::fs::write(scope.join("old"), "delete me").unwrap();
        std::fs::write(scope.join("sub/old2"), "delete me too").unwrap();
        std::fs::write(scope.join("app.lock"), "excluded").unwrap();
        // A symlink to a file outside, and a symlinked directory leading out.
        std::os::unix::fs::symlink(outside.join("precious"), scope.join("link")).unwrap();
        std::os::unix::fs::symlink(&outside, scope.join("linkdir")).unwrap();
        // A file another process holds an flock on (another descriptor is
        // enough: flock locks belong to the open file description).
        std::fs::write(scope.join("locked"), "in use").unwrap();
        let lock = std::fs::File::open(scope.join("locked")).unwrap();
        // SAFETY: `lock` is an open descriptor.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        let listener = std::os::unix::net::UnixListener::bind(scope.join("sock")).unwrap();
        let fifo = CString::new(scope.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path and a mode.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let targets = vec![
            scope.join("old"),
            scope.join("sub/old2"),
            scope.join("app.lock"),
            scope.join("link"),
            scope.join("linkdir/precious"),
            scope.join("locked"),
            scope.join("sock"),
            scope.join("fifo"),
            scope.join("sub/../../outside/precious"),
            outside.join("precious"),
            scope.clone(),
            PathBuf::from("relative/path"),
        ];
        (
            Trap {
                _tmp: tmp,
                scope,
                outside,
                _listener: listener,
                _lock: lock,
            },
            targets,
        )
    }

    #[test]
    fn a_trap_tree_loses_only_the_two_plain_old_files() {
        let (t, targets) = trap();
        let set = set_of(&targets);
        let rules = Rules::new(vec![t.scope.clone()], &["*.lock".into()], None, false).unwrap();
        let run = execute("trap", &rules, &set, &plan_all(targets.len()));
        let outcome = |i: usize| &run.items[i].outcome;
        assert!(
            matches!(outcome(0), Outcome::Deleted { bytes: 9 }),
            "{:?}",
            outcome(0)
        );
        assert!(matches!(outcome(1), Outcome::Deleted { bytes: 13 }));
        let why = |i: usize| match outcome(i) {
            Outcome::Refused { why } => format!("refused: {why}"),
            Outcome::Skipped { why } => format!("skipped: {why}"),
            other => panic!("{}: {other:?}", targets[i].display()),
        };
        assert!(why(2).contains("exclude"), "{}", why(2));
        assert!(
            why(3).starts_with("refused") && why(3).contains("symlink"),
            "{}",
            why(3)
        );
        assert!(
            why(4).starts_with("refused") && why(4).contains("symlink"),
            "{}",
            why(4)
        );
        assert!(why(5).contains("locked"), "{}", why(5));
        assert!(why(6).contains("socket"), "{}", why(6));
        assert!(why(7).contains("FIFO"), "{}", why(7));
        assert!(
            why(8).starts_with("refused") && why(8).contains(".."),
            "{}",
            why(8)
        );
        assert!(
            why(9).starts_with("refused") && why(9).contains("outside"),
            "{}",
            why(9)
        );
        assert!(why(10).starts_with("refused"), "{}", why(10));
        assert!(why(11).starts_with("refused"), "{}", why(11));
        assert_eq!(run.bytes_freed, 22);
        // Everything but the two old files is still there.
        assert!(!t.scope.join("old").exists() && !t.scope.join("sub/old2").exists());
        for kept in ["app.lock", "locked", "sock", "fifo"] {
            assert!(
                std::fs::symlink_metadata(t.scope.join(kept)).is_ok(),
                "{kept}"
            );
        }
        assert!(std::fs::symlink_metadata(t.scope.join("link")).is_ok());
        assert_eq!(
            std::fs::read_to_string(t.outside.join("precious")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn dry_run_lists_everything_and_deletes_nothing() {
        let (t, targets) = trap();
        let set = set_of(&targets);
        let rules = Rules::new(vec![t.scope.clone()], &["*.lock".into()], None, true).unwrap();
        let run = execute("trap", &rules, &set, &plan_all(targets.len()));
        assert!(run.dry_run);
        assert_eq!(
            run.items.len(),
            targets.len(),
            "every planned action is listed"
        );
        assert!(matches!(
            run.items[0].outcome,
            Outcome::WouldDelete { bytes: 9 }
        ));
        assert!(matches!(
            run.items[1].outcome,
            Outcome::WouldDelete { bytes: 13 }
        ));
        assert_eq!(run.counts()[1], 2);
        assert_eq!(run.items[0].reason, "old");
        assert!(t.scope.join("old").exists() && t.scope.join("sub/old2").exists());
    }

    #[test]
    fn a_plan_over_the_cap_does_nothing_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (0..1000)
            .map(|i| dir.path().join(format!("f{i}")))
            .collect();
        for f in &files {
            std::fs::write(f, "x").unwrap();
        }
        let set = set_of(&files);
        let rules = Rules::new(
            vec![dir.path().to_owned()],
            &[],
            Some(Cap::Percent(10.0)),
            false,
        )
        .unwrap();
        let run = execute("capped", &rules, &set, &plan_all(1000));
        let why = run.cap_exceeded.as_deref().unwrap();
        assert!(
            why.contains("1000 actions") && why.contains("allows 100"),
            "{why}"
        );
        assert!(run.items.is_empty());
        assert!(files.iter().all(|f| f.exists()));
        // Within the cap, it acts.
        let plan = CleanupPlan {
            reasons: vec!["old".into()],
            actions: (0..100)
                .map(|i| (CleanupAction::DeletePath(i), 0))
                .collect(),
        };
        let run = execute("capped", &rules, &set, &plan);
        assert_eq!(run.counts()[0], 100);
        assert_eq!(files.iter().filter(|f| f.exists()).count(), 900);
    }

    #[test]
    fn a_mount_point_inside_the_scope_is_not_crossed() {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&mnt)
            .stderr(std::process::Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("not checked here: mounting a tmpfs needs CAP_SYS_ADMIN");
            return;
        }
        std::fs::write(mnt.join("inner"), "on another filesystem").unwrap();
        let set = set_of(&[mnt.join("inner")]);
        let rules = Rules::new(vec![dir.path().to_owned()], &[], None, false).unwrap();
        let run = execute("mounts", &rules, &set, &plan_all(1));
        let kept = mnt.join("inner").exists();
        let _ = std::process::Command::new("umount").arg(&mnt).status();
        assert!(kept);
        assert!(
            matches!(&run.items[0].outcome, Outcome::Refused { why } if why.contains("another filesystem")),
            "{:?}",
            run.items[0]
        );
    }

    #[test]
    fn a_file_replaced_since_the_plan_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        std::fs::write(&f, "1").unwrap();
        let set = set_of(std::slice::from_ref(&f));
        std::fs::remove_file(&f).unwrap();
        std::fs::write(dir.path().join("b"), "keep the inode busy").unwrap();
        std::fs::write(&f, "new").unwrap();
        let rules = Rules::new(vec![dir.path().to_owned()], &[], None, false).unwrap();
        let run = execute("p", &rules, &set, &plan_all(1));
        // Same path, possibly another inode: never delete what was not judged.
        if Some(std::fs::metadata(&f).unwrap().ino()) != set.handle(0) {
            assert!(
                matches!(run.items[0].outcome, Outcome::Skipped { .. }),
                "{:?}",
                run.items
            );
            assert!(f.exists());
        }
    }

    /// A bind mount of a file on itself: unlinking it fails with `EBUSY`, a
    /// real passing failure, until it is unmounted (on drop). `None` where
    /// mounting is not allowed.
    struct Busy(PathBuf);

    impl Busy {
        fn new(path: &Path) -> Option<Busy> {
            let ok = std::process::Command::new("mount")
                .arg("--bind")
                .arg(path)
                .arg(path)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("not checked here: a bind mount needs CAP_SYS_ADMIN");
            }
            ok.then(|| Busy(path.to_owned()))
        }
    }

    impl Drop for Busy {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }

    fn retries(max: u32, backoff_ms: u64, jitter: f64) -> Option<Retries> {
        Some(Retries {
            max,
            backoff: crate::policy::values::HumanDuration(Duration::from_millis(backoff_ms)),
            jitter,
        })
    }

    #[test]
    fn many_deletions_on_four_workers_come_back_in_plan_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for d in 0..6 {
            std::fs::create_dir(dir.path().join(format!("d{d}"))).unwrap();
            for f in 0..300 {
                let p = dir.path().join(format!("d{d}/f{f}"));
                std::fs::write(&p, vec![b'x'; d + 1]).unwrap();
                files.push(p);
            }
        }
        files.push(PathBuf::from("/etc/passwd"));
        let set = set_of(&files);
        // Directories interleaved, with a notice and a refusal among the
        // deletions: many small batches, all settled back in their slots.
        let mut order: Vec<u32> = (0..1800u32).map(|i| (i % 6) * 300 + i / 6).collect();
        order.insert(7, 1800);
        let mut actions: Vec<(CleanupAction, u32)> = order
            .iter()
            .map(|&i| (CleanupAction::DeletePath(i), 0))
            .collect();
        actions.insert(3, (CleanupAction::Notify("hello".into()), 1));
        let plan = CleanupPlan {
            reasons: vec!["old".into(), "note".into()],
            actions,
        };
        let rules = Rules::new(vec![dir.path().to_owned()], &[], None, false)
            .unwrap()
            .with_concurrency(4);
        let run = execute("many", &rules, &set, &plan);
        assert_eq!(run.items.len(), plan.actions.len());
        for (item, (action, _)) in run.items.iter().zip(&plan.actions) {
            let want = action.target().map(|t| files[t as usize].to_str().unwrap());
            assert_eq!(item.target.as_deref(), want);
        }
        assert_eq!(run.items[3].action, "notify");
        assert_eq!(run.items[3].attempts, 0);
        assert!(matches!(run.items[8].outcome, Outcome::Refused { .. }));
        assert_eq!(run.counts(), [1800, 0, 1, 1, 0]);
        for item in run.items.iter().filter(|i| i.action == "delete") {
            if let Outcome::Deleted { bytes } = item.outcome {
                assert_eq!(item.attempts, 1);
                // Each directory's files have their own size: the outcome
                // is the one of this item's file.
                let d = item.target.as_deref().unwrap().split("/d").last().unwrap();
                assert_eq!(bytes, d[..1].parse::<u64>().unwrap() + 1);
            }
        }
        assert_eq!(run.bytes_freed, 300 * (1 + 2 + 3 + 4 + 5 + 6));
        assert!(files[..1800].iter().all(|f| !f.exists()));
        assert!(!run.timed_out);
        let json = serde_json::to_value(&run).unwrap();
        assert_eq!(json["items"][0]["attempts"], 1);
        assert!(json["duration_ms"].is_u64() && json["timed_out"] == false);
        // History is read back, also from before attempts were recorded.
        let back: Run = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back.items[0].outcome, run.items[0].outcome);
        assert_eq!(back.items[0].attempts, 1);
        let mut old = json;
        old.as_object_mut().unwrap().remove("timed_out");
        old["items"][0].as_object_mut().unwrap().remove("attempts");
        let back: Run = serde_json::from_value(old).unwrap();
        assert_eq!(back.items[0].attempts, 0);
        assert!(!back.timed_out);
    }

    #[test]
    fn four_workers_wait_out_their_retries_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for d in 0..4 {
            std::fs::create_dir(dir.path().join(format!("d{d}"))).unwrap();
            let f = dir.path().join(format!("d{d}/busy"));
            std::fs::write(&f, "x").unwrap();
            files.push(f);
        }
        let mut busy = Vec::new();
        for f in &files {
            match Busy::new(f) {
                Some(b) => busy.push(b),
                None => return,
            }
        }
        let set = set_of(&files);
        // Each action fails, waits 300 ms and fails again: one after the
        // other that is 1.2 s, on four workers about 0.3 s.
        let time = |workers| {
            let rules = Rules::new(vec![dir.path().to_owned()], &[], None, false)
                .unwrap()
                .with_concurrency(workers)
                .with_retries(retries(1, 300, 0.0));
            let t = Instant::now();
            let run = execute("busy", &rules, &set, &plan_all(4));
            assert!(run.items.iter().all(|i| i.attempts == 2), "{:?}", run.items);
            t.elapsed()
        };
        let serial = time(1);
        let parallel = time(4);
        assert!(serial >= Duration::from_millis(1200), "{serial:?}");
        assert!(parallel < Duration::from_millis(900), "{parallel:?}");
        drop(busy);
    }

    #[test]
    fn a_run_past_its_timeout_starts_nothing_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (0..20).map(|i| dir.path().join(format!("f{i}"))).collect();
        for f in &files {
            std::fs::write(f, "x").unwrap();
        }
        let set = set_of(&files);
        let rules = Rules::new(vec![dir.path().to_owned()], &[], None, false)
            .unwrap()
            .with_run_timeout(Duration::ZERO);
        let run = execute("late", &rules, &set, &plan_all(20));
        assert!(run.timed_out);
        assert_eq!(run.counts(), [0, 0, 0, 20, 0]);
        for item in &run.items {
            assert!(
                matches!(&item.outcome, Outcome::Skipped { why } if why.contains("timed out after 0s")),
                "{item:?}"
            );
            assert_eq!(item.attempts, 0);
        }
        assert!(files.iter().all(|f| f.exists()));
        // With time to spare, the same plan is carried out.
        let run = execute(
            "late",
            &rules.with_run_timeout(Duration::from_secs(60)),
            &set,
            &plan_all(20),
        );
        assert!(!run.timed_out);
        assert_eq!(run.counts()[0], 20);
    }

    #[test]
    fn a_busy_file_is_retried_with_backoff_until_it_can_go() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("busy");
        std::fs::write(&f, "x").unwrap();
        let Some(busy) = Busy::new(&f) else { return };
        let set = set_of(std::slice::from_ref(&f));
        let rules = |r| {
            Rules::new(vec![dir.path().to_owned()], &[], None, false)
                .unwrap()
                .with_retries(r)
        };

        // Without retries, one attempt.
        let run = execute("busy", &rules(None), &set, &plan_all(1));
        assert_eq!(run.items[0].attempts, 1);
        assert!(
            matches!(&run.items[0].outcome, Outcome::Failed { error } if error.contains("busy")),
            "{:?}",
            run.items[0]
        );

        // Two retries, 40 ms then 80 ms apart, and it still fails.
        let t = Instant::now();
        let run = execute("busy", &rules(retries(2, 40, 0.0)), &set, &plan_all(1));
        assert!(
            t.elapsed() >= Duration::from_millis(120),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(run.items[0].attempts, 3);
        assert!(
            matches!(&run.items[0].outcome, Outcome::Failed { error } if error.contains("after 3 attempts")),
            "{:?}",
            run.items[0]
        );

        // A wait that would end past the run's timeout is not waited.
        let t = Instant::now();
        let short = rules(retries(3, 1000, 0.0)).with_run_timeout(Duration::from_millis(200));
        let run = execute("busy", &short, &set, &plan_all(1));
        assert!(t.elapsed() < Duration::from_millis(1000));
        assert_eq!(run.items[0].attempts, 1);
        assert!(
            matches!(&run.items[0].outcome, Outcome::Failed { error } if error.contains("timeout")),
            "{:?}",
            run.items[0]
        );

        // Unmounted while it waits: a later attempt deletes it.
        let unmount = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(60));
            drop(busy);
        });
        let run = execute("busy", &rules(retries(6, 40, 0.0)), &set, &plan_all(1));
        unmount.join().unwrap();
        assert!(
            matches!(run.items[0].outcome, Outcome::Deleted { bytes: 1 }),
            "{:?}",
            run.items[0]
        );
        assert!(run.items[0].attempts >= 2, "{:?}", run.items[0]);
        assert!(!f.exists());
    }

    /// Makes `dir` refuse deletions for good: read-only by its mode, or for
    /// root (whom modes do not stop) by a read-only bind mount.
    struct ReadOnly(PathBuf, bool);

    impl ReadOnly {
        fn new(dir: &Path) -> Option<ReadOnly> {
            use std::os::unix::fs::PermissionsExt;
            // SAFETY: no arguments, no side effects.
            if unsafe { libc::geteuid() } != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
                return Some(ReadOnly(dir.to_owned(), false));
            }
            let mount = |args: &[&str]| {
                std::process::Command::new("mount")
                    .args(args)
                    .arg(dir)
                    .arg(dir)
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if !mount(&["--bind"]) {
                eprintln!("not checked here: root without CAP_SYS_ADMIN");
                return None;
            }
            let guard = ReadOnly(dir.to_owned(), true);
            mount(&["-o", "remount,ro,bind"]).then_some(guard)
        }
    }

    impl Drop for ReadOnly {
        fn drop(&mut self) {
            use std::os::unix::fs::PermissionsExt;
            if self.1 {
                let _ = std::process::Command::new("umount").arg(&self.0).status();
            } else {
                let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
            }
        }
    }

    #[test]
    fn a_permanent_failure_is_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let scope = dir.path().join("scope");
        std::fs::create_dir(&scope).unwrap();
        let f = scope.join("kept");
        std::fs::write(&f, "x").unwrap();
        let set = set_of(std::slice::from_ref(&f));
        let Some(ro) = ReadOnly::new(&scope) else {
            return;
        };
        let rules = Rules::new(vec![scope.clone()], &[], None, false)
            .unwrap()
            .with_retries(retries(3, 1000, 0.0));
        let t = Instant::now();
        let run = execute("ro", &rules, &set, &plan_all(1));
        drop(ro);
        assert!(
            t.elapsed() < Duration::from_millis(1000),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(run.items[0].attempts, 1);
        assert!(
            matches!(&run.items[0].outcome, Outcome::Failed { error }
                if error.contains("Read-only") || error.contains("Permission denied")),
            "{:?}",
            run.items[0]
        );
        assert!(f.exists());
    }

    #[test]
    fn passing_failures_are_told_from_lasting_ones() {
        for e in [
            libc::EINTR,
            libc::EAGAIN,
            libc::EBUSY,
            libc::ENOMEM,
            libc::ESTALE,
        ] {
            assert!(transient(e), "{e}");
        }
        for e in [
            libc::ENOENT,
            libc::EPERM,
            libc::EACCES,
            libc::EROFS,
            libc::EIO,
            libc::ELOOP,
            libc::ENOTDIR,
            libc::EISDIR,
        ] {
            assert!(!transient(e), "{e}");
        }
    }

    #[test]
    fn backoff_doubles_stops_at_its_cap_and_jitters_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(backoff(ms(100), 0, 0.0, 0.7), ms(100));
        assert_eq!(backoff(ms(100), 3, 0.0, -0.7), ms(800));
        assert_eq!(backoff(ms(100), 20, 0.0, 0.0), MAX_BACKOFF);
        assert_eq!(backoff(ms(100), 40, 0.0, 0.0), MAX_BACKOFF);
        assert_eq!(backoff(ms(100), 0, 0.2, -1.0), ms(80));
        assert_eq!(backoff(ms(100), 0, 0.2, 1.0), ms(120));
        // Jitter never lifts a wait over the cap.
        assert_eq!(backoff(Duration::from_secs(20), 1, 0.5, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(Duration::from_secs(20), 1, 0.5, -1.0), ms(15_000));
        let spreads: Vec<f64> = (0..2000).map(|_| spread()).collect();
        assert!(spreads.iter().all(|s| (-1.0..=1.0).contains(s)));
        assert!(spreads.iter().any(|s| *s < -0.5) && spreads.iter().any(|s| *s > 0.5));
        for s in spreads {
            let d = backoff(Duration::from_secs(1), 0, 0.25, s);
            assert!(d >= ms(750) && d <= ms(1250), "{d:?}");
        }
    }
}
