//! Carrying out a cleanup plan, inside the policy's scope and by
//! systemd-tmpfiles' rules: a plugin decides, this module acts, and only on
//! what the scope grants.
//!
//! Each scope root is resolved once per run, refusing symlinks that are not
//! root's on the way, and pinned by one descriptor for the whole run
//! ([`root`]): the scan starts from it, and every deletion reaches its
//! directory by a walk from it with `O_NOFOLLOW` directory descriptors (one
//! walk shared by a short batch of deletions in that directory, see below),
//! so no symlink anywhere on the way is followed and nothing can be swapped
//! in between the check and the unlink. A target must:
//! - be an absolute path without `.` or `..`, under the scope root it was
//!   found in, and match none of its exclude globs;
//! - be on the scope root's mount (no mount point is crossed, a bind mount
//!   of the same filesystem included);
//! - be a regular file (sockets, FIFOs, devices, symlinks and directories are
//!   skipped), the same file the plugin was shown (same device and inode);
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
//!
//! Notices (`notify`) are logged, at most [`MAX_NOTICES`] per plan and each
//! cut to [`MAX_NOTICE_BYTES`]; a plan's reasons are shared by its items,
//! never copied per item.
//!
//! The module's files:
//! - [`root`]: resolving and pinning the scope roots of a run;
//! - [`walk`]: the scan of the scope roots into the candidates a plugin is shown;
//! - `node`: the path-relative system calls, through `rustix`;
//! - `safety`: the checks every deletion passes, and the system calls that make them;
//! - `workers`: the threads that carry out deletions, with retries and the run's timeout;
//! - [`report`]: what a run did, item by item, as the history keeps it;
//! - [`registered`]: the same plan carried out on registered resources (release).

pub(crate) mod node;
pub mod processes;
pub mod registered;
mod report;
pub mod root;
mod safety;
pub mod walk;
mod workers;

use std::borrow::Cow;
use std::time::{Duration, Instant};

use globset::GlobSet;

use warden_core::records::{CleanupAction, CleanupPlan, ResourceKind};
use warden_policy::parse::{DEFAULT_MAX_CONCURRENT, DEFAULT_RUN_TIMEOUT};
use warden_policy::schema::Retries;

pub use report::{ActsOn, Item, Outcome, Run, over_cap};
pub use root::{Root, Scope, ScopeError, ScopeErrorKind};
pub use walk::{Candidates, Found};
pub use warden_policy::cleanup::{Cap, Protected, exclude_set};
pub use workers::MAX_BACKOFF;

/// The most `notify` actions one plan may carry: notices are logged, and a
/// plan is not a way to flood the log. A plan with more is refused by the
/// evaluator (`output_too_large`).
pub const MAX_NOTICES: usize = warden_plugin_host::MAX_NOTICES;

/// Longer notices are logged cut to this many bytes.
pub const MAX_NOTICE_BYTES: usize = 4096;

use workers::{Done, delete_all};

/// What a policy's scope lets the executor do, and how it goes about it.
/// The roots themselves are opened for each run ([`Scope::open`]).
#[derive(Debug, Clone)]
pub struct Rules {
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
    /// Rules with exclude `globs` (invalid globs are an error naming the
    /// glob), with the default concurrency and run timeout and no retries.
    pub fn new(globs: &[String], cap: Option<Cap>, dry_run: bool) -> Result<Rules, String> {
        Ok(Rules {
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

/// Carries out `plan` over `candidates`, found under the roots of `scope`,
/// under `rules`.
pub fn execute(
    policy: &str,
    rules: &Rules,
    scope: &Scope,
    candidates: &Candidates,
    plan: &CleanupPlan,
) -> Run {
    let started = Instant::now();
    // `None`: a timeout too long for the clock, which is no timeout.
    let deadline = started.checked_add(rules.run_timeout);
    let mut run = Run::begin(
        policy,
        ActsOn::Files,
        rules.dry_run,
        candidates.len(),
        plan.actions.len(),
    );
    let finish = |run: Run| run.end(started);
    if let Some(why) = over_cap(policy, rules.cap, plan, candidates.len()) {
        run.cap_exceeded = Some(why);
        return finish(run);
    }
    // Deletions go to the workers; everything else is settled here. Files
    // go first, in parallel; then directories, one at a time and deepest
    // first, so a directory emptied by this run can go in the same run.
    let is_dir = |t: usize| candidates.set.kind(t) == Some(ResourceKind::Directory);
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
        scope,
        candidates,
        &file_jobs,
        deadline,
        rules.max_concurrent,
    )) {
        results[*i] = Some(done);
    }
    let depth = |t: usize| candidates.set.name(t).map_or(0, |n| n.matches('/').count());
    dirs.sort_by_key(|(_, t)| std::cmp::Reverse(depth(*t)));
    let dir_jobs: Vec<usize> = dirs.iter().map(|(_, t)| *t).collect();
    for ((i, _), done) in dirs
        .iter()
        .zip(delete_all(rules, scope, candidates, &dir_jobs, deadline, 1))
    {
        results[*i] = Some(done);
    }
    let mut not_started = 0usize;
    let mut notices = 0usize;
    for (i, (action, _)) in plan.actions.iter().enumerate() {
        let target = action
            .target()
            .and_then(|t| candidates.set.name(t as usize))
            .map(str::to_owned);
        let done = match action {
            CleanupAction::DeletePath(_) => results[i].take().expect("one result per deletion"),
            CleanupAction::Notify(message) => {
                notices += 1;
                if notices <= MAX_NOTICES {
                    tracing::info!(policy, "{}", notice(message));
                }
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
        let reason = plan.shared_reason(i).cloned().unwrap_or_else(|| "".into());
        if let Outcome::WouldDelete { bytes } = outcome {
            // Every action of a dry run is logged: the history keeps only the
            // first `history::CLEANUP_ITEMS` of a run, and a dry run is how an
            // operator reviews all of them before letting the policy act.
            tracing::info!(
                policy,
                path = target.as_deref().unwrap_or(""),
                // A reason is the plugin's text, shared by every action of
                // the plan: logged cut, or a long one would fill the log.
                reason = clip(&reason, 256),
                bytes,
                "dry run: would delete"
            );
        }
        if let Outcome::Refused { why } = &outcome {
            tracing::warn!(
                policy,
                target = target.as_deref().unwrap_or(""),
                "refused: {why}"
            );
        }
        run.items.push(Item {
            action: Cow::Borrowed(action_name(action)),
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

/// `message`, cut to [`MAX_NOTICE_BYTES`] on a character boundary.
pub(crate) fn notice(message: &str) -> Cow<'_, str> {
    if message.len() <= MAX_NOTICE_BYTES {
        return Cow::Borrowed(message);
    }
    let mut end = MAX_NOTICE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{} … ({} bytes)", &message[..end], message.len()))
}

pub(crate) fn action_name(a: &CleanupAction) -> &'static str {
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

/// `s` cut to at most `max` bytes, at a character boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
