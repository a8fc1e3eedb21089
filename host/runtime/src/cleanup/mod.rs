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
//!
//! The module's files:
//! - [`walk`]: the scan of the scope paths into the candidates a plugin is shown;
//! - `safety`: the checks every deletion passes, and the system calls that make them;
//! - `workers`: the threads that carry out deletions, with retries and the run's timeout;
//! - [`report`]: what a run did, item by item, as the history keeps it;
//! - [`registered`]: the same plan carried out on registered resources (release).

pub mod registered;
mod report;
mod safety;
pub mod walk;
mod workers;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use globset::GlobSet;

use warden_core::records::{CleanupAction, CleanupPlan, ResourceKind, ResourceSet};
use warden_policy::parse::{DEFAULT_MAX_CONCURRENT, DEFAULT_RUN_TIMEOUT};
use warden_policy::schema::Retries;

pub use report::{Item, Outcome, Run, over_cap};
pub use warden_policy::cleanup::{Cap, exclude_set};
pub use workers::MAX_BACKOFF;

use workers::{Done, delete_all};

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
        if let Outcome::WouldDelete { bytes } = outcome {
            // Every action of a dry run is logged: the history keeps only the
            // first `state::CLEANUP_ITEMS` of a run, and a dry run is how an
            // operator reviews all of them before letting the policy act.
            tracing::info!(
                policy,
                path = target.as_deref().unwrap_or(""),
                reason = %reason,
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

#[cfg(test)]
mod tests;
