//! Watching the policies directory: filesystem events, debounced, trigger a
//! reload. Editors' save patterns (write to a temp file then rename, backup and
//! swap files) all end in a rescan that compares content hashes, so whatever
//! sequence of events a save produces, the result is the file's final content.

use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use super::live::{PolicyDir, is_policy_file};

/// How long the directory must be quiet before a reload: long enough to merge
/// the several events of one save, short enough that a change is live at once.
pub const DEBOUNCE: Duration = Duration::from_millis(20);

/// How long a cleanup policy that was made more dangerous — from dry-run to
/// acting, or with a wider scope — must stay unchanged before it acts. Much
/// longer than [`DEBOUNCE`]: a file edited in two writes (its `dry_run: true`
/// line not yet written back) can load between them, and must not delete
/// anything in that state. Until then its runs are dry runs.
pub const SETTLE: Duration = Duration::from_secs(2);

/// A running watch; dropping it stops watching.
pub struct Watch {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

/// Starts reloading `dir` whenever a policy file in it changes.
pub fn watch(dir: Arc<PolicyDir>) -> notify::Result<Watch> {
    let target = dir.dir().to_path_buf();
    let mut debouncer = new_debouncer(
        DEBOUNCE,
        Some(Duration::from_millis(5)),
        move |result: DebounceEventResult| match result {
            Ok(events) => {
                // Renames report the old and the new name; any policy file among
                // them, or an event on the directory itself, means rescan.
                let relevant = events
                    .iter()
                    .any(|e| e.paths.iter().any(|p| is_policy_file(p) || p == dir.dir()));
                if relevant {
                    dir.reload();
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::warn!(error = %e, "policy directory watch error; rescanning");
                }
                dir.reload();
            }
        },
    )?;
    debouncer.watch(&target, RecursiveMode::NonRecursive)?;
    Ok(Watch {
        _debouncer: debouncer,
    })
}
