//! The cleanup history: the newest runs in memory, and the same runs in a
//! file (`cleanup-history.jsonl`, one run per line, oldest first), appended
//! to and compacted, so it survives restarts.
//!
//! Every bound holds whatever a plugin planned: a run keeps its first
//! [`CLEANUP_ITEMS`] items and fits in [`MAX_LINE`] bytes of JSON (long texts
//! cut, then items left out and counted); the history keeps at most
//! [`CLEANUP_HISTORY`] runs and [`MAX_BYTES`] of them; the file is compacted
//! before it holds twice that, and at start it is read line by line, never
//! whole. A file that cannot be used — unreadable, larger than
//! the history can hold, or damaged elsewhere than a last line cut by a
//! crash — is moved aside and named in the log; what could be read of it is
//! kept and written afresh. It never stops the daemon from starting.

use std::collections::VecDeque;
use std::io::{BufRead, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::cleanup::Run;

/// How many cleanup runs the history keeps, newest first.
pub const CLEANUP_HISTORY: usize = 500;
/// How many items of each run the history keeps; the rest are counted.
pub const CLEANUP_ITEMS: usize = 1000;
/// The longest a run may be as one line of the file (JSON), and so roughly
/// what it takes in memory: 1,000 items with paths and reasons of 500 bytes.
pub(crate) const MAX_LINE: usize = 1 << 20;
/// The most the kept runs may take together (as JSON); older runs go first.
pub(crate) const MAX_BYTES: usize = 32 << 20;
/// The largest history file read: compaction keeps it under twice
/// [`MAX_BYTES`], plus the line that triggers it.
pub(crate) const MAX_FILE: u64 = 2 * MAX_BYTES as u64 + 2 * MAX_LINE as u64;

/// The history file, inside the state directory.
pub(crate) const FILE: &str = "cleanup-history.jsonl";

#[derive(Debug, Default)]
struct Runs {
    /// Newest first, each with its size as JSON.
    runs: VecDeque<(Run, usize)>,
    /// What the runs take together, as JSON.
    bytes: usize,
    /// Lines and bytes in the file, to know when to compact it.
    lines: usize,
    file_bytes: usize,
}

impl Runs {
    /// Adds the newest run, `size` bytes of JSON, dropping the oldest beyond
    /// the count and the bytes kept.
    fn push(&mut self, run: Run, size: usize) {
        self.runs.push_front((run, size));
        self.bytes += size;
        while self.runs.len() > CLEANUP_HISTORY || (self.bytes > MAX_BYTES && self.runs.len() > 1) {
            if let Some((_, s)) = self.runs.pop_back() {
                self.bytes -= s;
            }
        }
    }
}

/// The history, and where it is kept (nowhere when `None`).
#[derive(Debug, Default)]
pub(crate) struct History {
    runs: Mutex<Runs>,
    dir: Option<PathBuf>,
}

/// What reading the file gave, and what was wrong with it, if anything.
struct Read {
    runs: Runs,
    damage: Option<String>,
}

impl History {
    /// The history kept in `dir`, starting from what its file holds.
    pub(crate) fn open(dir: &Path) -> History {
        let path = dir.join(FILE);
        let history = History {
            runs: Mutex::default(),
            dir: Some(dir.to_path_buf()),
        };
        let (runs, damage) = match read(&path) {
            Ok(Read { runs, damage }) => (runs, damage),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return history,
            Err(e) => (Runs::default(), Some(e.to_string())),
        };
        let mut runs = runs;
        if let Some(why) = damage {
            // Named by the time, and never over an earlier one moved aside
            // in the same millisecond.
            let now = warden_core::clock::now_ms();
            let aside = (0..)
                .map(|n| match n {
                    0 => path.with_extension(format!("jsonl.unreadable-{now}")),
                    n => path.with_extension(format!("jsonl.unreadable-{now}-{n}")),
                })
                .find(|p| std::fs::symlink_metadata(p).is_err())
                .expect("a free name");
            match std::fs::rename(&path, &aside) {
                Ok(()) => {
                    tracing::error!(file = %path.display(), moved_to = %aside.display(), kept = runs.runs.len(), "the cleanup history cannot be used ({why}); moved aside, keeping the runs that could be read")
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "the cleanup history cannot be used ({why}) nor moved aside; it will be overwritten")
                }
            }
            // What was read, in a fresh file.
            match history.compact(&runs.runs) {
                Ok(()) => (runs.lines, runs.file_bytes) = (runs.runs.len(), runs.bytes),
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "cannot write the cleanup history afresh")
                }
            }
        }
        *history.runs.lock().unwrap_or_else(|p| p.into_inner()) = runs;
        history
    }

    /// Adds a run, bounded, dropping the oldest beyond [`CLEANUP_HISTORY`],
    /// and saves it; says how the save went, if there is a file.
    pub(crate) fn record(&self, mut run: Run) -> Option<std::io::Result<()>> {
        run.trim(CLEANUP_ITEMS);
        let line = run.fit(MAX_LINE);
        let mut h = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        h.push(run, line.len() + 1);
        self.save(&mut h, line)
    }

    /// The newest `limit` runs, newest first, of one policy or all.
    pub(crate) fn recent(&self, policy: Option<&str>, limit: usize) -> Vec<Run> {
        let h = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        h.runs
            .iter()
            .map(|(r, _)| r)
            .filter(|r| policy.is_none_or(|p| r.policy == p))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Appends `line` (the newest run) to the file, or compacts the file
    /// when it is long.
    fn save(&self, h: &mut Runs, mut line: Vec<u8>) -> Option<std::io::Result<()>> {
        let dir = self.dir.as_ref()?;
        let path = dir.join(FILE);
        let result = if h.lines + 1 >= 2 * CLEANUP_HISTORY
            || h.file_bytes + line.len() + 1 > 2 * MAX_BYTES
        {
            let kept = (h.runs.len(), h.bytes);
            self.compact(&h.runs)
                .map(|()| (h.lines, h.file_bytes) = kept)
        } else {
            line.push(b'\n');
            warden_core::fsx::private_append()
                .open(&path)
                .and_then(|mut f| {
                    // One write of a whole line: a crash leaves at most a cut
                    // last line, which the reader skips.
                    f.write_all(&line)?;
                    f.sync_data()
                })
                .map(|()| {
                    h.lines += 1;
                    h.file_bytes += line.len();
                })
        };
        if let Err(e) = &result {
            tracing::error!(file = %path.display(), error = %e, "cannot save the cleanup history; this run will be missing after a restart");
        }
        Some(result)
    }

    /// Writes `runs` (newest first) as the whole file, whole or not at all
    /// ([`warden_core::fsx::write_atomic_with`]).
    fn compact(&self, runs: &VecDeque<(Run, usize)>) -> std::io::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        warden_core::fsx::write_atomic_with(dir, FILE, |f| {
            let mut f = std::io::BufWriter::new(f);
            for (r, _) in runs.iter().rev() {
                serde_json::to_writer(&mut f, r).map_err(std::io::Error::other)?;
                f.write_all(b"\n")?;
            }
            f.flush()
        })
    }
}

/// Reads the history file at `path` line by line, each at most
/// [`MAX_LINE`] bytes, keeping the newest [`CLEANUP_HISTORY`] runs.
fn read(path: &Path) -> std::io::Result<Read> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    let mut out = Read {
        runs: Runs::default(),
        damage: None,
    };
    if meta.len() > MAX_FILE {
        out.damage = Some(format!(
            "{} bytes, more than the {MAX_FILE} the history can hold",
            meta.len()
        ));
        return Ok(out);
    }
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    let mut bad: Option<(usize, String)> = None;
    let mut n = 0usize;
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        n += 1;
        out.runs.lines += 1;
        out.runs.file_bytes += read;
        // A bad line followed by another is damage, not a cut last line.
        if let Some((at, why)) = bad.take() {
            out.damage = Some(format!("line {at}: {why}"));
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.len() > MAX_LINE {
            out.damage = Some(format!("line {n} is longer than {MAX_LINE} bytes"));
            // Skip the rest of the overlong line.
            let mut rest = Vec::new();
            let mut more = (&mut reader).take(MAX_FILE);
            more.read_until(b'\n', &mut rest)?;
            continue;
        }
        match serde_json::from_slice::<Run>(text) {
            Ok(run) => out.runs.push(run, read),
            Err(e) => bad = Some((n, e.to_string())),
        }
    }
    if let Some((at, why)) = bad {
        // A line cut short by a crash mid-append: the expected damage.
        tracing::warn!(file = %path.display(), line = at, error = %why, "skipping a cleanup run cut short");
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cleanup::{Item, Outcome};

    pub(crate) fn run(policy: &str) -> Run {
        Run {
            policy: policy.into(),
            acts_on: crate::cleanup::ActsOn::Files,
            started_ms: 1,
            finished_ms: 2,
            duration_ms: 1,
            dry_run: false,
            candidates: 0,
            planned: 0,
            cap_exceeded: None,
            timed_out: false,
            items: vec![],
            bytes_freed: 7,
            omitted: [0; 5],
        }
    }

    fn aside(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains("unreadable"))
            .count()
    }

    #[test]
    fn a_run_with_a_huge_reason_is_cut_to_fit_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path());
        let mut r = run("big");
        let reason: std::sync::Arc<str> = "why ".repeat(1 << 20).into();
        let long_path = "/p".repeat(1000);
        r.items = (0..CLEANUP_ITEMS + 10)
            .map(|i| Item {
                action: "delete".into(),
                target: Some(format!("{long_path}/{i}")),
                reason: std::sync::Arc::clone(&reason),
                outcome: Outcome::Deleted { bytes: 1 },
                attempts: 1,
            })
            .collect();
        h.record(r);
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(text.len() <= MAX_LINE + 1, "{} bytes", text.len());
        assert!(
            text.len() > 64 << 10,
            "{} bytes: cut more than needed",
            text.len()
        );
        let kept = &h.recent(Some("big"), 1)[0];
        assert!(kept.items[0].reason.len() <= 520, "the reason is cut");
        assert_eq!(kept.counts()[0], CLEANUP_ITEMS + 10, "everything counted");
        // Read back as written.
        drop(h);
        let h = History::open(dir.path());
        assert_eq!(h.recent(None, 10)[0].counts()[0], CLEANUP_ITEMS + 10);
        assert_eq!(aside(dir.path()), 0);

        // Many such runs: the history keeps what fits in its bytes.
        let mut big = run("many");
        big.items = (0..CLEANUP_ITEMS)
            .map(|i| Item {
                action: "delete".into(),
                target: Some(format!("{}/{i}", "/q".repeat(400))),
                reason: "old".into(),
                outcome: Outcome::Deleted { bytes: 1 },
                attempts: 1,
            })
            .collect();
        for _ in 0..50 {
            h.record(big.clone());
        }
        let kept = h.recent(None, usize::MAX);
        assert!(kept.len() < 50, "{} runs of ~800 KiB kept", kept.len());
        let total: usize = kept
            .iter()
            .map(|r| serde_json::to_vec(r).unwrap().len())
            .sum();
        assert!(total <= MAX_BYTES, "{total}");
        let file = std::fs::metadata(dir.path().join(FILE)).unwrap().len();
        assert!(file <= MAX_FILE, "{file}");
    }

    #[test]
    fn a_damaged_or_oversized_history_is_moved_aside_keeping_what_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let good = serde_json::to_string(&run("kept")).unwrap();
        // A cut last line alone is expected: skipped, nothing moved.
        std::fs::write(&path, format!("{good}\n{{\"policy\": \"cu")).unwrap();
        let h = History::open(dir.path());
        assert_eq!(h.recent(None, 10).len(), 1);
        assert_eq!(aside(dir.path()), 0);
        drop(h);

        // Garbage in the middle, an overlong line, and bytes that are not
        // UTF-8: moved aside, the readable runs kept and written afresh.
        let mut bad = format!("{good}\n\u{1}garbage\n").into_bytes();
        bad.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        bad.extend(b"\n\xff\xfe\n");
        bad.extend(format!("{good}\n").into_bytes());
        std::fs::write(&path, bad).unwrap();
        let h = History::open(dir.path());
        assert_eq!(h.recent(None, 10).len(), 2);
        assert_eq!(aside(dir.path()), 1);
        let fresh = std::fs::read_to_string(&path).unwrap();
        assert_eq!(fresh.lines().count(), 2, "{fresh}");
        drop(h);

        // Larger than any history: aside, without reading it.
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(MAX_FILE + 1).unwrap();
        let h = History::open(dir.path());
        assert!(h.recent(None, 10).is_empty());
        assert_eq!(aside(dir.path()), 2);

        // Not a file at all: aside too, and the daemon starts.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let h = History::open(dir.path());
        assert!(h.recent(None, 10).is_empty());
        assert_eq!(aside(dir.path()), 3);
    }
}
