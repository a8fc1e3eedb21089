//! What opening and flushing a durable registry report, and why they
//! fail: each error names the file and what to do.

use super::*;

/// Why a durable registry did not open. Each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory could not be made or is not safe to use.
    #[error("the resource registry's state directory: {0}")]
    Dir(io::Error),
    /// A file in it others could have written.
    #[error("refusing the resource registry's file `{}`: {why}", path.display())]
    Untrusted {
        /// The file.
        path: PathBuf,
        /// Why, and what to do.
        why: String,
    },
    /// A file could not be read or written.
    #[error("failed to {action} the resource registry's file `{}`: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The error.
        source: io::Error,
    },
    /// A file did not load; it was moved aside (with the rest of the state).
    #[error(
        "the resource registry's file `{}` does not load ({why}); the registry's state was moved aside to {} and the next start begins empty with a new handle key: restore the files from a backup to keep the resources, or delete them once inspected",
        path.display(),
        moved.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", ")
    )]
    Corrupt {
        /// The file that did not load.
        path: PathBuf,
        /// What was wrong, where.
        why: String,
        /// Where the state files went.
        moved: Vec<PathBuf>,
    },
    /// A log that continues a snapshot that is not there.
    #[error(
        "the resource registry's log `{}` continues snapshot generation {generation}, but there is no `{SNAPSHOT_FILE}` next to it; restore the snapshot, or move the log and `{KEY_FILE}` aside to start empty",
        path.display()
    )]
    MissingSnapshot {
        /// The log.
        path: PathBuf,
        /// The generation it continues.
        generation: u64,
    },
    /// A file larger than the registry's limits allow it to be.
    #[error(
        "the resource registry's file `{}` is {len} bytes, more than the {bound} its limits (`resources.max_tracked`, `resources.max_bytes`) allow; raise them, or move the file aside",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The most it may be.
        bound: u64,
    },
}

/// What opening found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Resources registered after loading.
    pub resources: usize,
    /// Lines read from the snapshot.
    pub snapshot_records: u64,
    /// Lines read from the log.
    pub log_records: u64,
    /// A log cut short by a crash: where its good part ends and how many
    /// bytes after it were dropped.
    pub torn_tail: Option<TornTail>,
    /// True if the log was older than the snapshot (a crash between writing
    /// one and starting the other) and was replaced.
    pub stale_log: bool,
    /// How long loading took.
    pub elapsed: Duration,
}

/// The end of a log cut short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The log.
    pub path: PathBuf,
    /// Bytes before the cut, kept.
    pub kept_bytes: u64,
    /// Bytes after it, dropped.
    pub dropped_bytes: u64,
}

impl std::fmt::Display for TornTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the resource registry's log `{}` ended in a partial record (a crash while writing it): the {} bytes before it were loaded and the {} after dropped; the changes in them are lost",
            self.path.display(),
            self.kept_bytes,
            self.dropped_bytes
        )
    }
}

/// Why a flush did not save everything.
#[derive(Debug, thiserror::Error)]
#[error(
    "failed to save the resource registry in `{}` ({action}): {source}; the changes stay in memory and the next flush tries again",
    dir.display()
)]
pub struct FlushError {
    /// The state directory.
    pub dir: PathBuf,
    /// What was being done.
    pub action: &'static str,
    /// The error.
    pub source: io::Error,
}

/// What a flush did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Records written to the log.
    pub records: u64,
    /// True if it wrote a new snapshot and started a new log.
    pub compacted: bool,
}
