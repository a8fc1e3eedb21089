//! A durable registry: its state directory, what is in it, and how it is
//! loaded and saved.
//!
//! The directory (0700, refused if others may write it) holds:
//!
//! - `handles.key`: the 16-byte key of the handle permutation (0600), so
//!   that a handle names the same resource after a restart;
//! - `snapshot`: the whole registry as of one moment, JSON lines: a head
//!   (format, generation, sequence counter), one line per resource, per
//!   dependency between resources (after all resources: one may depend on
//!   a newer one), per remembered policy release and per audit event, and
//!   an end line with
//!   the count, so a short file is told from a whole one;
//! - `log`: the changes since that snapshot, JSON lines after a head naming
//!   the snapshot's generation. [`Registry::flush`] appends what changed
//!   since the last flush and fsyncs; register, touch and release only
//!   buffer in memory, so a crash loses the changes since the last flush.
//!
//! A log whose last line is cut short (a crash mid-append) loads up to that
//! line; the rest is dropped, cut from the file and reported
//! ([`OpenReport::torn_tail`]). Anything else that does not load (a bad
//! line before the end, a snapshot that does not parse or ends early) is
//! moved aside with the key, whole, and named in the error: nothing is
//! dropped silently, and the next start begins empty with a new key, so no
//! old handle can name a new resource.
//!
//! Past [`RegistryOptions::compact_records`] records or
//! [`RegistryOptions::compact_bytes`] of log (or, for a large registry, a
//! record per resource and the snapshot's size), a flush writes a new snapshot
//! (`snapshot.new`, fsync, read back whole, renamed over `snapshot`) and
//! starts a new log of the next generation; a log older than the snapshot
//! is stale (a crash between the two) and ignored.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use warden_core::fsx;
use warden_core::records::{ResourceKind, TimestampMs};

use super::audit::{Action, Event};
use super::store::{self, Entry, NEVER, NO_TTL, NOT_ORPHAN, Text, TextRef};
use super::{Handles, Inner, Pending, Registry, RegistryLimits, RegistryOptions, TOMBSTONES};

mod records;
mod report;

use records::{Rec, RegRec, apply, audit_rec, push_line, take_changes, write_changes};
pub use report::{FlushError, FlushReport, OpenError, OpenReport, TornTail};

/// The key file.
pub const KEY_FILE: &str = "handles.key";
/// The snapshot.
pub const SNAPSHOT_FILE: &str = "snapshot";
/// The log.
pub const LOG_FILE: &str = "log";
/// A snapshot being written.
const NEW_SNAPSHOT: &str = "snapshot.new";
/// The format written in the head line.
const FORMAT: u32 = 1;
/// The longest line read: a resource's text is bounded by `max_bytes`, but
/// the API takes names and labels of a few KiB; a longer line is damage.
const MAX_LINE: usize = 1 << 20;

/// The files of a durable registry, locked apart from its entries so that
/// the disk is never waited for under the entries' lock.
#[derive(Debug)]
pub(super) struct Store {
    dir: PathBuf,
    /// The log, for appending; `None` after a failure to start a new one.
    pub(super) log: Option<File>,
    generation: u64,
    log_records: u64,
    log_bytes: u64,
    /// The size of the snapshot in place.
    snapshot_bytes: u64,
    /// Lines a failed flush did not write, written first next time.
    retry: Vec<u8>,
    retry_records: u64,
    /// Run by a flush after it took the changes and released the lock,
    /// before it takes an image: what another thread may do then.
    #[cfg(test)]
    pub(super) between: Option<fn(&Registry)>,
    /// Run by a compaction on the new snapshot once written, before it is
    /// read back: what the disk may do to it.
    #[cfg(test)]
    pub(super) written: Option<fn(&Path)>,
}

/// A writer that keeps the CRC-32 and the length of what went through it:
/// of a snapshot as it is written, and of the file as it is read back.
struct Tally<W> {
    inner: W,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<W> Tally<W> {
    fn new(inner: W) -> Self {
        Tally {
            inner,
            crc: crc32fast::Hasher::new(),
            bytes: 0,
        }
    }

    /// The CRC-32 and the length so far.
    fn sum(self) -> (u32, u64) {
        (self.crc.finalize(), self.bytes)
    }
}

impl<W: Write> Write for Tally<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The CRC-32 and the length of the file at `path`.
fn checksum(path: &Path) -> io::Result<(u32, u64)> {
    let mut tally = Tally::new(io::sink());
    // Read in large blocks: a snapshot can be hundreds of MB.
    let mut file = BufReader::with_capacity(1 << 20, File::open(path)?);
    io::copy(&mut file, &mut tally)?;
    Ok(tally.sum())
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> OpenError + 'a {
    move |source| OpenError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

/// Refuses a file (if it exists) that is not a regular file owned by the
/// directory's owner, or that its group or others may write: whoever could
/// write it could plant resources or handles.
fn check_file(path: &Path, dir_uid: u32) -> Result<bool, OpenError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(path, "inspect")(e)),
    };
    let why = if !meta.file_type().is_file() {
        "it is not a regular file (a link or a directory); move it aside".to_owned()
    } else if meta.uid() != dir_uid {
        format!(
            "it is owned by uid {}, not by the user Warden runs as (uid {dir_uid}); `chown` it to that user",
            meta.uid()
        )
    } else if meta.permissions().mode() & 0o022 != 0 {
        format!(
            "its mode {:04o} lets its group or others write it; `chmod 600` it (Warden creates its files 0600)",
            meta.permissions().mode() & 0o7777
        )
    } else {
        return Ok(true);
    };
    Err(OpenError::Untrusted {
        path: path.to_owned(),
        why,
    })
}

/// How a file's lines ended.
enum Ending {
    /// With a whole line.
    Whole { bytes: u64 },
    /// With a partial line (no newline, or one that does not parse) of
    /// `dropped` bytes after `kept`.
    Torn { kept: u64, dropped: u64 },
}

/// Reads the JSON lines of `path` (at most `bound` bytes), handing each to
/// `each`. A bad line before the last is an error (`Err(why)`); a bad last
/// line is a torn ending.
fn read_lines(
    path: &Path,
    bound: u64,
    mut each: impl FnMut(Rec<'_>) -> Result<(), String>,
) -> Result<Result<Ending, String>, OpenError> {
    let f = File::open(path).map_err(io_err(path, "open"))?;
    let len = f.metadata().map_err(io_err(path, "inspect"))?.len();
    if len > bound {
        return Err(OpenError::TooLarge {
            path: path.to_owned(),
            len,
            bound,
        });
    }
    let mut r = BufReader::with_capacity(1 << 16, f.take(bound));
    let mut line = Vec::new();
    let mut offset = 0u64;
    let mut n = 0u64;
    loop {
        line.clear();
        let read = (&mut r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(io_err(path, "read"))?;
        if read == 0 {
            return Ok(Ok(Ending::Whole { bytes: offset }));
        }
        n += 1;
        let whole = line.last() == Some(&b'\n');
        let at_end = r.fill_buf().map_err(io_err(path, "read"))?.is_empty();
        let parsed = if whole {
            serde_json::from_slice::<Rec<'_>>(&line[..line.len() - 1]).map_err(|e| e.to_string())
        } else if line.len() > MAX_LINE {
            Err(format!("a line longer than {MAX_LINE} bytes"))
        } else {
            Err("a line without its end".to_owned())
        };
        match parsed {
            Ok(rec) => {
                if let Err(why) = each(rec) {
                    return Ok(Err(format!("line {n} (byte {offset}): {why}")));
                }
            }
            Err(_) if at_end => {
                return Ok(Ok(Ending::Torn {
                    kept: offset,
                    dropped: line.len() as u64,
                }));
            }
            Err(why) => return Ok(Err(format!("line {n} (byte {offset}): {why}"))),
        }
        offset += line.len() as u64;
    }
}

/// The most a snapshot of a registry within `limits` can be: every
/// resource at its text plus a generous line overhead, every remembered
/// release and audit event at a few KiB.
fn snapshot_bound(limits: &RegistryLimits, opts: &RegistryOptions) -> u64 {
    let per_line = 4096u64;
    (limits.max_bytes as u64)
        .saturating_mul(2)
        .saturating_add((limits.max_tracked as u64).saturating_mul(512))
        .saturating_add(((TOMBSTONES + opts.audit_events) as u64).saturating_mul(per_line))
        // A dependency line is some 40 bytes.
        .saturating_add((opts.max_edges as u64).saturating_mul(64))
        .saturating_add(1 << 20)
}

/// The most a log can be: past `compact_bytes` it is compacted at the
/// next flush, so it is that plus what piles up between two flushes (at
/// most `max_pending` records, plus the audit trail).
fn log_bound(limits: &RegistryLimits, opts: &RegistryOptions) -> u64 {
    opts.compact_bytes
        .saturating_add(snapshot_bound(limits, opts))
        .saturating_add((opts.max_pending as u64).saturating_mul(8192))
}

/// Moves the state files aside (as `NAME.bad-MS`), the key with them so
/// that the next start numbers handles afresh.
fn move_aside(dir: &Path, now_ms: TimestampMs) -> Vec<PathBuf> {
    let mut moved = Vec::new();
    for name in [SNAPSHOT_FILE, LOG_FILE, KEY_FILE] {
        let from = dir.join(name);
        let to = dir.join(format!("{name}.bad-{now_ms}"));
        if from.exists() && std::fs::rename(&from, &to).is_ok() {
            moved.push(to);
        }
    }
    let _ = fsx::sync_dir(dir);
    moved
}

fn head_line(generation: u64, next: u64) -> Vec<u8> {
    let mut b = serde_json::to_vec(&Rec::Head {
        v: FORMAT,
        generation,
        next,
    })
    .unwrap_or_default();
    b.push(b'\n');
    b
}

/// Starts a new log of `generation`, read back before it is used.
fn new_log(dir: &Path, generation: u64, next: u64) -> io::Result<File> {
    let head = head_line(generation, next);
    fsx::write_atomic(dir, LOG_FILE, &head)?;
    let path = dir.join(LOG_FILE);
    if std::fs::read(&path)? != head {
        return Err(io::Error::other("the new log did not read back as written"));
    }
    fsx::private_append().open(path)
}

impl Registry {
    /// Opens (or creates) the durable registry in `dir`: loads its snapshot
    /// and log, so the resources registered before a restart are there with
    /// their handles. `now_ms` names files moved aside. See [`super::persist`]
    /// for what the directory holds and what a crash can lose.
    pub fn open(
        dir: &Path,
        limits: RegistryLimits,
        opts: RegistryOptions,
        now_ms: TimestampMs,
    ) -> Result<(Registry, OpenReport), OpenError> {
        let started = Instant::now();
        fsx::ensure_private_dir(dir, "resource registry directory").map_err(OpenError::Dir)?;
        let dir_uid = std::fs::metadata(dir)
            .map_err(io_err(dir, "inspect"))?
            .uid();
        let key_path = dir.join(KEY_FILE);
        let snap_path = dir.join(SNAPSHOT_FILE);
        let log_path = dir.join(LOG_FILE);
        check_file(&key_path, dir_uid)?;
        let has_snapshot = check_file(&snap_path, dir_uid)?;
        let has_log = check_file(&log_path, dir_uid)?;
        // A stray `snapshot.new` is a compaction that did not finish: the
        // snapshot and log it would have replaced are whole.
        let _ = std::fs::remove_file(dir.join(NEW_SNAPSHOT));
        let key: [u8; 16] =
            fsx::load_or_create_secret(&key_path).map_err(|e| OpenError::Untrusted {
                path: key_path.clone(),
                why: e.to_string(),
            })?;

        let mut g = Inner::new(&opts);
        let mut report = OpenReport::default();
        let corrupt = |path: &Path, why: String| OpenError::Corrupt {
            path: path.to_owned(),
            why,
            moved: move_aside(dir, now_ms),
        };

        let mut generation = 0;
        let mut snapshot_bytes = 0;
        if has_snapshot {
            let mut head = None;
            let mut end = None;
            let mut records = 0u64;
            let ending = read_lines(&snap_path, snapshot_bound(&limits, &opts), |rec| {
                if end.is_some() {
                    return Err("a line after the end line".into());
                }
                records += 1;
                match rec {
                    Rec::Head {
                        v,
                        generation,
                        next,
                    } if head.is_none() && records == 1 => {
                        if v != FORMAT {
                            return Err(format!("format {v}, this Warden reads {FORMAT}"));
                        }
                        head = Some(generation);
                        g.next = next;
                        Ok(())
                    }
                    _ if head.is_none() => Err("no head line".into()),
                    Rec::End { records: n } => {
                        end = Some(n);
                        // Not counting the head and the end line itself.
                        if n != records - 2 {
                            return Err(format!(
                                "the end line counts {n} lines, not {}",
                                records - 2
                            ));
                        }
                        Ok(())
                    }
                    rec => apply(&mut g, rec),
                }
            })?;
            match ending {
                Ok(Ending::Whole { .. }) if end.is_some() => {}
                Ok(_) => return Err(corrupt(&snap_path, "it ends early: no end line".into())),
                Err(why) => return Err(corrupt(&snap_path, why)),
            }
            generation = head.unwrap_or(0);
            report.snapshot_records = records;
            snapshot_bytes = std::fs::metadata(&snap_path).map_or(0, |m| m.len());
        }

        let mut log = None;
        let mut log_bytes = 0;
        if has_log {
            let mut log_gen = None;
            let mut records = 0u64;
            let ending = read_lines(&log_path, log_bound(&limits, &opts), |rec| {
                records += 1;
                match rec {
                    Rec::Head { v, generation, .. } if records == 1 => {
                        if v != FORMAT {
                            return Err(format!("format {v}, this Warden reads {FORMAT}"));
                        }
                        log_gen = Some(generation);
                        Ok(())
                    }
                    _ if log_gen.is_none() => Err("no head line".into()),
                    // Stale: already in the snapshot.
                    _ if log_gen < Some(generation) => Ok(()),
                    rec => apply(&mut g, rec),
                }
            })?;
            let ending = match ending {
                Ok(e) => e,
                Err(why) => return Err(corrupt(&log_path, why)),
            };
            match log_gen {
                Some(lg) if lg > generation && !has_snapshot => {
                    return Err(OpenError::MissingSnapshot {
                        path: log_path,
                        generation: lg,
                    });
                }
                Some(lg) if lg > generation => {
                    return Err(corrupt(
                        &log_path,
                        format!(
                            "it continues snapshot generation {lg}, the snapshot is {generation}"
                        ),
                    ));
                }
                Some(lg) if lg < generation => report.stale_log = true,
                Some(_) => {
                    report.log_records = records.saturating_sub(1);
                    let kept = match ending {
                        Ending::Whole { bytes } => bytes,
                        Ending::Torn { kept, dropped } => {
                            report.torn_tail = Some(TornTail {
                                path: log_path.clone(),
                                kept_bytes: kept,
                                dropped_bytes: dropped,
                            });
                            kept
                        }
                    };
                    // Cut a torn tail off, so the next record starts a line.
                    let f = fsx::private_append()
                        .open(&log_path)
                        .map_err(io_err(&log_path, "open"))?;
                    if report.torn_tail.is_some() {
                        f.set_len(kept)
                            .map_err(io_err(&log_path, "cut the torn tail of"))?;
                        f.sync_all().map_err(io_err(&log_path, "sync"))?;
                    }
                    log_bytes = kept;
                    log = Some(f);
                }
                // A log cut before its head line ended: nothing in it.
                None => {}
            }
        }
        let log_records = report.log_records;
        let log = match log {
            Some(f) => f,
            None => {
                log_bytes = head_line(generation, g.next).len() as u64;
                new_log(dir, generation, g.next).map_err(io_err(&log_path, "create"))?
            }
        };
        g.trail.unsaved = 0;
        g.pending = Some(Vec::new());
        report.resources = g.entries.len();
        report.elapsed = started.elapsed();
        let registry = Registry {
            inner: RwLock::new(g),
            handles: Handles::with_key(key),
            limits,
            opts,
            store: Some(Mutex::new(Store {
                dir: dir.to_owned(),
                log: Some(log),
                generation,
                log_records,
                log_bytes,
                snapshot_bytes,
                retry: Vec::new(),
                retry_records: 0,
                #[cfg(test)]
                between: None,
                #[cfg(test)]
                written: None,
            })),
            listeners: Arc::default(),
            counters: super::requests::Counters::default(),
        };
        Ok((registry, report))
    }

    /// Writes the changes since the last flush to the log and fsyncs it;
    /// past the log's bound, writes a new snapshot instead and starts a new
    /// log. The daemon calls it on an interval and at shutdown. A registry
    /// in memory has nothing to flush. On failure the changes stay in
    /// memory for the next flush.
    ///
    /// The registry's lock is held only to take copies: of the changes for
    /// the log, and for a compaction of the whole registry, which the
    /// snapshot is then written from (so a compaction briefly holds the
    /// registry twice in memory). Serializing them, about ten times the
    /// cost of copying them, is done after the lock is released, so that
    /// registrations and releases meanwhile wait for the copy only.
    pub fn flush(&self) -> Result<FlushReport, FlushError> {
        let Some(store) = &self.store else {
            return Ok(FlushReport::default());
        };
        let mut st = store.lock().unwrap_or_else(|p| p.into_inner());
        let changes = take_changes(&mut self.write());
        let mut lines = std::mem::take(&mut st.retry);
        let mut records = std::mem::take(&mut st.retry_records);
        records += write_changes(&changes, &mut lines);
        drop(changes);
        let resources = self.read().entries.len() as u64;
        // Past the bounds, and past the snapshot's own size: a snapshot
        // costs its whole size to write, so a log as long as the snapshot
        // pays for it, and a restart replays at most about twice the
        // registry. (A fixed bound would rewrite a registry of a million
        // resources every few seconds under load.)
        let due = st.log_records + records > self.opts.compact_records.max(resources)
            || st.log_bytes + lines.len() as u64 > self.opts.compact_bytes.max(st.snapshot_bytes)
            || st.log.is_none();
        #[cfg(test)]
        if let Some(between) = st.between {
            between(self);
        }
        if due {
            // The image holds what changed since the changes above were
            // taken; those later changes are taken with it, to be logged
            // only if the image does not become the snapshot.
            let (later, image) = {
                let mut g = self.write();
                (take_changes(&mut g), Image::of(&g))
            };
            match st.compact(image) {
                Ok(()) => {
                    return Ok(FlushReport {
                        records: 0,
                        compacted: true,
                    });
                }
                Err(e) if st.log.is_none() => {
                    // The snapshot is in place but no log follows it: these
                    // lines wait for one.
                    records += write_changes(&later, &mut lines);
                    st.retry = lines;
                    st.retry_records = records;
                    return Err(e);
                }
                // The old snapshot and log stand: the lines go to the log.
                Err(e) => {
                    tracing::warn!(error = %e, "the resource registry was not compacted; its changes go to the log, and the next flush tries again");
                    records += write_changes(&later, &mut lines);
                }
            }
        }
        if lines.is_empty() {
            return Ok(FlushReport::default());
        }
        match st.append(&lines) {
            Ok(()) => {
                st.log_records += records;
                st.log_bytes += lines.len() as u64;
                Ok(FlushReport {
                    records,
                    compacted: false,
                })
            }
            Err(e) => {
                st.retry = lines;
                st.retry_records = records;
                Err(e)
            }
        }
    }
}

/// The registry as of one moment, copied under its lock for a snapshot to
/// be written from after the lock is released.
struct Image {
    next: u64,
    /// The entries without their names and labels, which are in `text`,
    /// each ending at its `ends`: one buffer, not an allocation per entry
    /// (with which the longest wait in the registry bench, the copy of
    /// 1.1 million entries, was 115-120 ms, against 84-91 ms).
    entries: Vec<Entry>,
    text: Vec<u8>,
    ends: Vec<usize>,
    deps: Vec<(u64, u64)>,
    tombs: Vec<(u64, TimestampMs, String)>,
    trail: Vec<Event>,
}

impl Image {
    fn of(g: &Inner) -> Image {
        let mut image = Image {
            next: g.next,
            entries: Vec::with_capacity(g.entries.len()),
            text: Vec::with_capacity(g.bytes),
            ends: Vec::with_capacity(g.entries.len()),
            deps: g.graph.iter().collect(),
            tombs: g
                .released
                .iter()
                .map(|(seq, r)| (*seq, r.at_ms, r.by_policy.clone()))
                .collect(),
            trail: g.trail.iter().cloned().collect(),
        };
        for e in g.entries.iter() {
            image.entries.push(e.without_text());
            image.text.extend_from_slice(e.text.as_ref().0);
            image.ends.push(image.text.len());
        }
        image
    }

    /// Each entry with its name and labels.
    fn entries(&self) -> impl Iterator<Item = (&Entry, TextRef<'_>)> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        self.entries
            .iter()
            .zip(starts.zip(&self.ends))
            .map(|(e, (start, &end))| (e, TextRef(&self.text[start..end])))
    }
}

impl Store {
    fn err(&self, action: &'static str) -> impl FnOnce(io::Error) -> FlushError + '_ {
        move |source| FlushError {
            dir: self.dir.clone(),
            action,
            source,
        }
    }

    /// Appends `lines` to the log and fsyncs it; on failure cuts the log
    /// back to where it was, so a half-written line cannot glue itself to
    /// the next.
    fn append(&mut self, lines: &[u8]) -> Result<(), FlushError> {
        let Some(log) = self.log.as_mut() else {
            return Err(FlushError {
                dir: self.dir.clone(),
                action: "append to the log",
                source: io::Error::other("no log: the last compaction did not start one"),
            });
        };
        let result = log.write_all(lines).and_then(|()| log.sync_data());
        if let Err(e) = result {
            let _ = log.set_len(self.log_bytes);
            let _ = log.seek(io::SeekFrom::End(0));
            return Err(self.err("append to the log")(e));
        }
        Ok(())
    }

    /// Writes a snapshot of `image`, reads it back whole, puts it in place
    /// and starts a new log.
    ///
    /// The read-back compares the file's CRC-32 and length with those of
    /// the bytes written: a write the disk lost or changed is found before
    /// the snapshot replaces the old one. (It parsed every record before,
    /// which under a growing registry was the larger half of a compaction's
    /// cost; the records are the log's, written by the same encoder, which
    /// the tests hold to reading back as written.)
    fn compact(&mut self, image: Image) -> Result<(), FlushError> {
        let generation = self.generation + 1;
        let mut count = 0u64;
        let mut sum = None;
        let next = image.next;
        let written = fsx::write_atomic_with(&self.dir, NEW_SNAPSHOT, |f| {
            let mut w = io::BufWriter::with_capacity(1 << 20, Tally::new(f));
            let mut buf = head_line(generation, next);
            let mut put =
                |buf: &mut Vec<u8>, rec: &Rec<'_>, w: &mut io::BufWriter<Tally<&mut File>>| {
                    push_line(buf, rec);
                    count += 1;
                    let r = w.write_all(buf);
                    buf.clear();
                    r
                };
            w.write_all(&buf)?;
            buf.clear();
            for (e, text) in image.entries() {
                put(&mut buf, &Rec::Reg(RegRec::with_text(e, text)), &mut w)?;
            }
            for &(seq, on) in &image.deps {
                put(&mut buf, &Rec::Dep { seq, on }, &mut w)?;
            }
            for (seq, at, policy) in &image.tombs {
                put(
                    &mut buf,
                    &Rec::Tomb {
                        seq: *seq,
                        at: *at,
                        policy: Cow::Borrowed(policy),
                    },
                    &mut w,
                )?;
            }
            for e in &image.trail {
                put(&mut buf, &audit_rec(e), &mut w)?;
            }
            push_line(&mut buf, &Rec::End { records: count });
            w.write_all(&buf)?;
            sum = Some(
                w.into_inner()
                    .map_err(io::IntoInnerError::into_error)?
                    .sum(),
            );
            Ok(())
        })
        .map_err(self.err("write a new snapshot"));
        // The copy is let go of before the read-back, which holds no more.
        drop(image);
        written?;
        let new = self.dir.join(NEW_SNAPSHOT);
        #[cfg(test)]
        if let Some(written) = self.written {
            written(&new);
        }
        // Read back whole before it replaces the old one; a snapshot that
        // cannot be read back, or reads back otherwise, is not kept.
        let snapshot_bytes = match checksum(&new) {
            Ok(read) if Some(read) == sum => read.1,
            read => {
                let _ = std::fs::remove_file(&new);
                let e = read
                    .err()
                    .unwrap_or_else(|| io::Error::other("it did not read back as written"));
                return Err(self.err("read back the new snapshot")(e));
            }
        };
        std::fs::rename(&new, self.dir.join(SNAPSHOT_FILE))
            .and_then(|()| fsx::sync_dir(&self.dir))
            .map_err(self.err("put the new snapshot in place"))?;
        // From here the old log is stale whatever happens.
        self.generation = generation;
        self.snapshot_bytes = snapshot_bytes;
        self.log = None;
        self.log_records = 0;
        let log = new_log(&self.dir, generation, next).map_err(self.err("start a new log"))?;
        self.log_bytes = log.metadata().map(|m| m.len()).unwrap_or(0);
        self.log = Some(log);
        Ok(())
    }
}
