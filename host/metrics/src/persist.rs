//! Batch files: each batch is written whole or not at all (temporary file,
//! fsync, rename, fsync of the directory) as
//! `metrics_YYYYMMDD_HHMMSS_micros.json` (or `.json.zst`), holding
//! `{batch_id, batch_timestamp, total_records, records}`, mode 0600 in a 0700
//! directory (a temporary file a failed write leaves is removed at once).
//! Files older than the retention are deleted; on start the store is refilled
//! from recent files.
//!
//! The directory is read as hostile input: an entry that is not a regular file
//! (a directory or a link named like a batch) is skipped and reported, never
//! followed; a file is read and decompressed to at most [`MAX_BATCH_BYTES`] (a
//! zstd bomb is refused, not inflated); a record stamped beyond the allowed
//! clock skew is not put back into the store.
//!
//! A sample record is `{"timestamp_ms", "type": "gauge"|"counter"|"histogram",
//! "metric", "labels", "value"}` where a counter's value is its running total.
//! An operation record is `{"timestamp_ms", "type": "operation",
//! "operation_type", "operation_name", "duration_ms", "success",
//! "error_message"?, "metadata"?}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};

use super::config::Compression;
use super::ingest::Persisted;
use super::series::{Interner, Kind, SeriesKey};
use super::store::{Op, SeriesStore};
use super::validate::{MetaValue, Operation};
use warden_core::records::TimestampMs;

const PREFIX: &str = "metrics_";
const NAME_FORMAT: &str = "%Y%m%d_%H%M%S_%6f";

/// Writes batch files into one directory.
#[derive(Debug)]
pub struct Writer {
    dir: PathBuf,
    compression: Compression,
    level: i32,
    retention: Duration,
    /// Distinguishes this run's batch ids from every other run's.
    run: String,
    seq: u64,
    last_name: String,
    buf: Vec<u8>,
    last_expiry: Option<Instant>,
}

impl Writer {
    /// A writer into `dir` (created if missing). Temporary files a killed run
    /// left behind are removed; they never held a finished batch.
    pub fn open(
        dir: &Path,
        compression: Compression,
        level: i32,
        retention: Duration,
    ) -> std::io::Result<Writer> {
        warden_core::fsx::ensure_private_dir(dir, "metrics directory")?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".metrics_") && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Ok(Writer {
            dir: dir.to_owned(),
            compression,
            level,
            retention,
            run: format!(
                "{:x}{:05x}",
                started.as_secs(),
                std::process::id() & 0xfffff
            ),
            seq: 0,
            last_name: String::new(),
            buf: Vec::with_capacity(1 << 20),
            last_expiry: None,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one batch and returns the path of its (last) file. A batch
    /// whose JSON would exceed half of [`MAX_BATCH_BYTES`] is written as
    /// several files, so that every file stays readable on refill.
    pub(crate) fn write_batch(
        &mut self,
        records: &[Persisted],
        interner: &Interner,
    ) -> std::io::Result<PathBuf> {
        self.write_file(records, interner).or_else(|e| match e {
            TooBig::Split => {
                let (a, b) = records.split_at(records.len() / 2);
                self.write_batch(a, interner)?;
                self.write_batch(b, interner)
            }
            TooBig::Io(e) => Err(e),
        })
    }

    fn write_file(
        &mut self,
        records: &[Persisted],
        interner: &Interner,
    ) -> Result<PathBuf, TooBig> {
        let now = Utc::now();
        let mut name = format!("{PREFIX}{}", now.format(NAME_FORMAT));
        // Two batches in one microsecond still get two names, in order.
        if name <= self.last_name {
            name = bump(&self.last_name);
        }
        self.last_name.clone_from(&name);
        self.seq += 1;
        let batch_id = format!("{}-{:08}", self.run, self.seq);
        self.buf.clear();
        interner
            .with_keys(|keys| {
                let body = BatchOut {
                    batch_id: &batch_id,
                    batch_timestamp: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    total_records: records.len(),
                    records: RecordsOut { records, keys },
                };
                serde_json::to_writer(&mut self.buf, &body)
            })
            .map_err(|e| TooBig::Io(e.into()))?;
        if self.buf.len() as u64 > MAX_BATCH_BYTES / 2 && records.len() > 1 {
            // Not written: the name and sequence number are simply skipped.
            return Err(TooBig::Split);
        }
        let (file_name, bytes): (String, &[u8]) = match self.compression {
            Compression::None => (format!("{name}.json"), &self.buf),
            Compression::Zstd => {
                let compressed = zstd::bulk::compress(&self.buf, self.level).map_err(TooBig::Io)?;
                self.buf = compressed;
                (format!("{name}.json.zst"), &self.buf)
            }
        };
        let path = self.dir.join(&file_name);
        // Whole or not at all, durable once this returns; a failure (a full
        // disk) removes the temporary file at once.
        let written = warden_core::fsx::write_atomic(&self.dir, &file_name, bytes);
        if self.buf.capacity() > 64 << 20 {
            self.buf = Vec::with_capacity(1 << 20);
        }
        written.map(|()| path).map_err(TooBig::Io)
    }

    /// Deletes files past the retention, at most once a minute.
    pub fn expire_if_due(&mut self) {
        if self
            .last_expiry
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.expire_now();
    }

    /// Deletes files past the retention now. The writer calls it after every
    /// failed write too: retention must not wait for a write to succeed, since
    /// on a full disk deleting old batches is what makes room.
    pub fn expire_now(&mut self) {
        self.last_expiry = Some(Instant::now());
        match expire(&self.dir, self.retention, SystemTime::now()) {
            Ok(Expired {
                deleted,
                failed,
                odd,
            }) => {
                if deleted > 0 {
                    tracing::info!(files = deleted, dir = %self.dir.display(), "deleted expired metrics batches");
                }
                if failed > 0 {
                    tracing::warn!(files = failed, dir = %self.dir.display(), "could not delete some expired metrics batches; the others were deleted");
                }
                for path in odd {
                    tracing::warn!(path = %path.display(), "an entry named like a metrics batch is not a regular file; skipped (remove it)");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, dir = %self.dir.display(), "could not list the metrics directory to delete expired batches")
            }
        }
    }
}

/// Why one file of a batch was not written.
enum TooBig {
    /// Its records make too big a file: write them in two.
    Split,
    /// Writing failed.
    Io(std::io::Error),
}

fn bump(name: &str) -> String {
    // The name ends in six digits of microseconds; add one.
    let (head, micros) = name.split_at(name.len() - 6);
    let n: u32 = micros.parse().unwrap_or(0);
    if n < 999_999 {
        format!("{head}{:06}", n + 1)
    } else {
        format!("{name}1")
    }
}

/// When the batch in `name` was written, from its name.
pub fn file_time(name: &str) -> Option<DateTime<Utc>> {
    let stem = name.strip_prefix(PREFIX)?;
    let stem = stem
        .strip_suffix(".json.zst")
        .or_else(|| stem.strip_suffix(".json"))?;
    let t = NaiveDateTime::parse_from_str(stem.get(..22)?, NAME_FORMAT).ok()?;
    Some(t.and_utc())
}

/// What a directory holds, as far as batches go.
#[derive(Debug, Default)]
pub struct Listing {
    /// The batch files, oldest first.
    pub files: Vec<(PathBuf, DateTime<Utc>)>,
    /// Entries named like a batch that are not regular files (directories,
    /// links, devices): never read, never deleted, reported.
    pub odd: Vec<PathBuf>,
}

/// Lists the batch files in `dir`, oldest first, and the odd entries.
pub fn list(dir: &Path) -> std::io::Result<Listing> {
    let mut out = Listing::default();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(t) = file_time(&name.to_string_lossy()) else {
            continue;
        };
        // `file_type` does not follow links: a link named like a batch is odd.
        match entry.file_type() {
            Ok(ft) if ft.is_file() => out.files.push((entry.path(), t)),
            _ => out.odd.push(entry.path()),
        }
    }
    out.files.sort();
    out.odd.sort();
    Ok(out)
}

/// The batch files in `dir`, oldest first (regular files only).
pub fn batch_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, DateTime<Utc>)>> {
    list(dir).map(|l| l.files)
}

/// What one pass of retention did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Files deleted.
    pub deleted: usize,
    /// Expired files that could not be deleted (the pass went on).
    pub failed: usize,
    /// Entries named like a batch that are not regular files (skipped).
    pub odd: Vec<PathBuf>,
}

/// Deletes batch files older than `retention` at `now`. One file that cannot
/// be deleted, or an odd entry, never stops the others from going.
pub fn expire(dir: &Path, retention: Duration, now: SystemTime) -> std::io::Result<Expired> {
    let cutoff: DateTime<Utc> = now
        .checked_sub(retention)
        .unwrap_or(SystemTime::UNIX_EPOCH)
        .into();
    let listing = list(dir)?;
    let mut out = Expired {
        odd: listing.odd,
        ..Expired::default()
    };
    for (path, t) in listing.files {
        if t >= cutoff {
            // Sorted: the rest are newer.
            break;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => out.deleted += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot delete an expired metrics batch");
                out.failed += 1;
            }
        }
    }
    Ok(out)
}

struct BatchOut<'a> {
    batch_id: &'a str,
    batch_timestamp: String,
    total_records: usize,
    records: RecordsOut<'a>,
}

impl Serialize for BatchOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("batch_id", self.batch_id)?;
        m.serialize_entry("batch_timestamp", &self.batch_timestamp)?;
        m.serialize_entry("total_records", &self.total_records)?;
        m.serialize_entry("records", &self.records)?;
        m.end()
    }
}

struct RecordsOut<'a> {
    records: &'a [Persisted],
    keys: &'a [Arc<SeriesKey>],
}

impl Serialize for RecordsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.records.len()))?;
        for r in self.records {
            match r {
                Persisted::Sample { id, at_ms, value } => {
                    let key = &self.keys[*id as usize];
                    seq.serialize_element(&SampleOut {
                        at_ms: *at_ms,
                        key,
                        value: *value,
                    })?;
                }
                Persisted::Operation { at_ms, op } => {
                    seq.serialize_element(&OperationOut { at_ms: *at_ms, op })?;
                }
            }
        }
        seq.end()
    }
}

struct SampleOut<'a> {
    at_ms: TimestampMs,
    key: &'a SeriesKey,
    value: f64,
}

impl Serialize for SampleOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("timestamp_ms", &self.at_ms)?;
        m.serialize_entry("type", self.key.kind.name())?;
        m.serialize_entry("metric", &*self.key.metric)?;
        m.serialize_entry("labels", &LabelsOut(&self.key.labels))?;
        m.serialize_entry("value", &self.value)?;
        m.end()
    }
}

struct LabelsOut<'a>(&'a [(Box<str>, Box<str>)]);

impl Serialize for LabelsOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (&**k, &**v)))
    }
}

struct OperationOut<'a> {
    at_ms: TimestampMs,
    op: &'a Operation,
}

impl Serialize for OperationOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("timestamp_ms", &self.at_ms)?;
        m.serialize_entry("type", "operation")?;
        m.serialize_entry("operation_type", &self.op.operation_type)?;
        m.serialize_entry("operation_name", &self.op.operation_name)?;
        m.serialize_entry("duration_ms", &self.op.duration_ms)?;
        m.serialize_entry("success", &self.op.success)?;
        if let Some(e) = &self.op.error_message {
            m.serialize_entry("error_message", e)?;
        }
        if !self.op.metadata.is_empty() {
            m.serialize_entry("metadata", &self.op.metadata)?;
        }
        m.end()
    }
}

/// A batch file as read back.
#[derive(Debug, Clone, Deserialize)]
pub struct BatchFile {
    /// Unique per batch.
    pub batch_id: String,
    /// When it was written (RFC 3339).
    pub batch_timestamp: String,
    /// How many records it holds.
    pub total_records: usize,
    /// The records.
    pub records: Vec<RecordIn>,
}

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RecordIn {
    /// A gauge's value.
    Gauge(SampleIn),
    /// A counter's running total.
    Counter(SampleIn),
    /// One observation.
    Histogram(SampleIn),
    /// An operation.
    Operation(OperationIn),
}

/// A sample record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SampleIn {
    /// When.
    pub timestamp_ms: TimestampMs,
    /// The metric.
    pub metric: String,
    /// The labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// An operation record.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OperationIn {
    /// When.
    pub timestamp_ms: TimestampMs,
    /// The class of operation.
    pub operation_type: String,
    /// Which one.
    pub operation_name: String,
    /// How long it took.
    pub duration_ms: f64,
    /// Whether it worked.
    pub success: bool,
    /// Why not.
    #[serde(default)]
    pub error_message: Option<String>,
    /// Context.
    #[serde(default)]
    pub metadata: BTreeMap<String, MetaValue>,
}

/// The most bytes a batch file may hold, compressed or not, and the most its
/// content may inflate to. Warden's own batches are far smaller (16 groups of
/// `max_batch_size` records); anything bigger is refused, not read.
pub const MAX_BATCH_BYTES: u64 = 64 << 20;

/// Reads one batch file, compressed or not, and checks that it holds as many
/// records as it says. Reading and decompressing stop at [`MAX_BATCH_BYTES`].
pub fn read_batch(path: &Path) -> anyhow::Result<BatchFile> {
    use std::io::Read as _;
    let mut raw = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_BATCH_BYTES + 1)
        .read_to_end(&mut raw)?;
    anyhow::ensure!(
        raw.len() as u64 <= MAX_BATCH_BYTES,
        "{}: larger than {MAX_BATCH_BYTES} bytes; not a batch Warden wrote",
        path.display()
    );
    let compressed = path.extension().is_some_and(|e| e == "zst");
    parse_batch(&raw, compressed).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Parses the bytes of a batch file (`compressed`: zstd), decompressing to
/// at most [`MAX_BATCH_BYTES`].
pub fn parse_batch(raw: &[u8], compressed: bool) -> anyhow::Result<BatchFile> {
    use std::io::Read as _;
    let inflated;
    let json: &[u8] = if compressed {
        let mut out = Vec::new();
        zstd::stream::Decoder::new(raw)?
            .take(MAX_BATCH_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| anyhow::anyhow!("not zstd: {e}"))?;
        anyhow::ensure!(
            out.len() as u64 <= MAX_BATCH_BYTES,
            "inflates to more than {MAX_BATCH_BYTES} bytes; refused"
        );
        inflated = out;
        &inflated
    } else {
        raw
    };
    let batch: BatchFile =
        serde_json::from_slice(json).map_err(|e| anyhow::anyhow!("not a metrics batch: {e}"))?;
    anyhow::ensure!(
        batch.records.len() == batch.total_records,
        "holds {} records but says {}",
        batch.records.len(),
        batch.total_records
    );
    Ok(batch)
}

/// What a refill did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Refill {
    /// Files read.
    pub files: usize,
    /// Records put back into the store.
    pub records: usize,
    /// Files (and odd entries) that could not be read, with why.
    pub skipped: Vec<String>,
    /// Records left out because they are stamped too far in the future.
    pub future: usize,
}

/// Puts the records of batch files written within the store's retention back
/// into the store, oldest first. Records stamped more than `max_future`
/// ahead of `now` are left out (counted in [`Refill::future`]): one far in
/// the future would push every other sample of its series out of the store.
pub fn refill(
    dir: &Path,
    store: &SeriesStore,
    now: SystemTime,
    max_future: Duration,
) -> std::io::Result<Refill> {
    let mut report = Refill::default();
    if !dir.is_dir() {
        return Ok(report);
    }
    let window = Window::new(store, now, max_future);
    let cutoff = DateTime::<Utc>::from_timestamp_millis(window.oldest_ms).unwrap_or_default();
    let listing = list(dir)?;
    for path in listing.odd {
        tracing::warn!(path = %path.display(), "an entry named like a metrics batch is not a regular file; skipped on refill (remove it)");
        report
            .skipped
            .push(format!("{}: not a regular file; skipped", path.display()));
    }
    for (path, t) in listing.files {
        if t < cutoff {
            continue;
        }
        let batch = match read_batch(&path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a metrics batch on refill");
                report.skipped.push(e.to_string());
                continue;
            }
        };
        report.files += 1;
        put_back(batch, store, &window, &mut report);
    }
    Ok(report)
}

/// The times a refilled record must fall in: after the store's retention
/// and no further ahead than the allowed clock skew.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    oldest_ms: i64,
    latest_ms: i64,
}

impl Window {
    /// The window of `store` at `now`, records up to `max_future` ahead.
    pub fn new(store: &SeriesStore, now: SystemTime, max_future: Duration) -> Window {
        let now_ms = DateTime::<Utc>::from(now).timestamp_millis();
        let retention = i64::try_from(store.limits().retention.as_millis()).unwrap_or(i64::MAX);
        Window {
            oldest_ms: now_ms.saturating_sub(retention),
            latest_ms: now_ms
                .saturating_add(i64::try_from(max_future.as_millis()).unwrap_or(i64::MAX)),
        }
    }

    fn holds(&self, t: i64) -> bool {
        t > self.oldest_ms && t <= self.latest_ms
    }
}

/// Puts the records of one batch back into `store`: those in `window`,
/// whose names and labels pass the checks every recorded value gets;
/// operations also pass [`super::validate::operation`]. Counts in `report`.
pub fn put_back(batch: BatchFile, store: &SeriesStore, window: &Window, report: &mut Refill) {
    let interner = store.interner();
    let mut changes = Vec::new();
    let mut derived_ops = Vec::new();
    for r in batch.records {
        let (kind, s) = match r {
            RecordIn::Gauge(s) => (Kind::Gauge, s),
            RecordIn::Counter(s) => (Kind::Counter, s),
            RecordIn::Histogram(s) => (Kind::Histogram, s),
            RecordIn::Operation(o) => {
                if window.holds(o.timestamp_ms) {
                    derived_ops.push(o);
                } else if o.timestamp_ms > window.latest_ms {
                    report.future += 1;
                }
                continue;
            }
        };
        if !window.holds(s.timestamp_ms) {
            if s.timestamp_ms > window.latest_ms {
                report.future += 1;
            }
            continue;
        }
        if super::validate::value(s.value).is_err() {
            continue;
        }
        let labels: Vec<(&str, &str)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let Ok(id) = interner.intern(&s.metric, &labels, kind) else {
            continue;
        };
        let op = if kind == Kind::Histogram {
            Op::Observe
        } else {
            Op::Set
        };
        changes.push((id, op, s.timestamp_ms, s.value));
    }
    report.records += changes.len();
    store.apply(&changes, |_, _, _| {});
    changes.clear();
    for o in derived_ops {
        let op = Operation {
            operation_type: o.operation_type,
            operation_name: o.operation_name,
            duration_ms: o.duration_ms,
            success: o.success,
            error_message: o.error_message,
            metadata: o.metadata,
        };
        // What was refused when it was recorded is refused when read back.
        if super::validate::operation(&op, interner.pii()).is_err() {
            continue;
        }
        super::ingest::operation_series(
            interner,
            &op.operation_type,
            &op.operation_name,
            op.success,
            op.duration_ms,
            o.timestamp_ms,
            &mut changes,
        );
        report.records += 1;
    }
    store.apply(&changes, |_, _, _| {});
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreLimits;
    use crate::validate::PiiKeys;

    #[test]
    fn names_sort_in_time_order_and_parse_back() {
        let a = "metrics_20261123_101500_000001.json";
        let t = file_time(a).unwrap();
        assert_eq!(t.format(NAME_FORMAT).to_string(), "20261123_101500_000001");
        assert_eq!(
            bump("metrics_20261123_101500_000001"),
            "metrics_20261123_101500_000002"
        );
        assert!(file_time("metrics_20261123_101500_000001.json.zst").is_some());
        assert!(file_time(".metrics_20261123_101500_000001.json.tmp").is_none());
        assert!(file_time("notes.json").is_none());
    }

    #[test]
    fn a_batch_round_trips_in_both_encodings() {
        for compression in [Compression::None, Compression::Zstd] {
            let dir = tempfile::tempdir().unwrap();
            let store = SeriesStore::new(StoreLimits::default(), PiiKeys::default());
            let i = store.interner();
            let g = i.intern("temp", &[("room", "a")], Kind::Gauge).unwrap();
            let c = i.intern("reqs", &[], Kind::Counter).unwrap();
            let mut w =
                Writer::open(dir.path(), compression, 3, Duration::from_secs(3600)).unwrap();
            let mut op = Operation {
                operation_type: "db".into(),
                operation_name: "select \"x\"".into(),
                duration_ms: 1.5,
                success: false,
                error_message: Some("timeout".into()),
                metadata: BTreeMap::new(),
            };
            op.metadata.insert("rows".into(), MetaValue::Number(2.0));
            let records = vec![
                Persisted::Sample {
                    id: g,
                    at_ms: 10,
                    value: 21.5,
                },
                Persisted::Sample {
                    id: c,
                    at_ms: 11,
                    value: 7.0,
                },
                Persisted::Operation {
                    at_ms: 12,
                    op: Box::new(op),
                },
            ];
            let p1 = w.write_batch(&records, i).unwrap();
            let p2 = w.write_batch(&records[..1], i).unwrap();
            assert!(p1 < p2, "names must sort in write order");
            let b = read_batch(&p1).unwrap();
            assert_eq!(b.total_records, 3);
            assert_eq!(
                b.records[0],
                RecordIn::Gauge(SampleIn {
                    timestamp_ms: 10,
                    metric: "temp".into(),
                    labels: [("room".to_string(), "a".to_string())].into(),
                    value: 21.5
                })
            );
            assert!(matches!(&b.records[1], RecordIn::Counter(s) if s.value == 7.0));
            let RecordIn::Operation(o) = &b.records[2] else {
                panic!()
            };
            assert_eq!(o.operation_name, "select \"x\"");
            assert_eq!(o.error_message.as_deref(), Some("timeout"));
            assert_ne!(b.batch_id, read_batch(&p2).unwrap().batch_id);
        }
    }

    #[test]
    fn expiry_deletes_only_old_batches_and_open_removes_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "metrics_20200101_000000_000000.json",
            "metrics_20991231_000000_000000.json.zst",
            ".metrics_20991231_000000_000001.json.tmp",
            "keep.txt",
        ] {
            std::fs::write(dir.path().join(name), b"{}").unwrap();
        }
        Writer::open(dir.path(), Compression::None, 3, Duration::from_secs(60)).unwrap();
        assert_eq!(
            expire(dir.path(), Duration::from_secs(86400), SystemTime::now())
                .unwrap()
                .deleted,
            1
        );
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec!["keep.txt", "metrics_20991231_000000_000000.json.zst"]
        );
    }

    /// A `.json.zst` that inflates far beyond any batch (a zstd bomb), a
    /// directory and a link named like batch files: start-up (refill) skips
    /// and reports each, and retention still deletes the expired batch
    /// beside them.
    #[test]
    fn a_zstd_bomb_and_odd_entries_neither_stop_refill_nor_retention() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // 96 MiB of zeros compress to a few KiB.
        let mut bomb = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..96 {
            std::io::Write::write_all(&mut bomb, &zeros).unwrap();
        }
        let bomb = bomb.finish().unwrap();
        assert!(bomb.len() < 1 << 20);
        let now = Utc::now();
        let recent = |n: u32| {
            format!(
                "{PREFIX}{}",
                (now - chrono::Duration::seconds(i64::from(n))).format(NAME_FORMAT)
            )
        };
        std::fs::write(d.join(format!("{}.json.zst", recent(30))), &bomb).unwrap();
        std::fs::create_dir(d.join(format!("{}.json", recent(20)))).unwrap();
        std::fs::create_dir(d.join("metrics_20200101_000000_000000.json")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join(format!("{}.json", recent(10)))).unwrap();
        std::fs::write(d.join("metrics_20200101_000000_000001.json"), b"{}").unwrap();
        let store = SeriesStore::new(StoreLimits::default(), PiiKeys::default());
        let r = refill(d, &store, SystemTime::now(), Duration::from_secs(300)).unwrap();
        assert_eq!((r.files, r.records), (0, 0));
        assert_eq!(r.skipped.len(), 4, "{:#?}", r.skipped);
        assert!(
            r.skipped
                .iter()
                .any(|s| s.contains("inflates to more than")),
            "{:#?}",
            r.skipped
        );
        let e = expire(d, Duration::from_secs(86400), SystemTime::now()).unwrap();
        assert_eq!((e.deleted, e.failed, e.odd.len()), (1, 0, 3), "{e:?}");
        assert!(d.join("metrics_20200101_000000_000000.json").is_dir());
        assert!(std::fs::symlink_metadata(d.join(format!("{}.json", recent(10)))).is_ok());
    }

    /// A sample stamped at `i64::MAX` (pushed before timestamps were checked)
    /// would make every other sample of its series look expired: refill
    /// leaves it out and keeps the rest.
    #[test]
    fn refill_leaves_out_records_stamped_in_the_future() {
        let dir = tempfile::tempdir().unwrap();
        let now = warden_core::clock::now_ms();
        let batch = serde_json::json!({
            "batch_id": "x", "batch_timestamp": "", "total_records": 3,
            "records": [
                {"timestamp_ms": now - 1000, "type": "gauge", "metric": "m", "labels": {}, "value": 1.0},
                {"timestamp_ms": i64::MAX, "type": "gauge", "metric": "m", "labels": {}, "value": 2.0},
                {"timestamp_ms": i64::MAX, "type": "operation", "operation_type": "t",
                 "operation_name": "n", "duration_ms": 1.0, "success": true},
            ]
        });
        let name = format!("{PREFIX}{}.json", Utc::now().format(NAME_FORMAT));
        std::fs::write(dir.path().join(name), batch.to_string()).unwrap();
        let store = SeriesStore::new(StoreLimits::default(), PiiKeys::default());
        let r = refill(
            dir.path(),
            &store,
            SystemTime::now(),
            Duration::from_secs(300),
        )
        .unwrap();
        assert_eq!((r.records, r.future), (1, 2));
        let got = store.range(
            &warden_core::records::SeriesSelector {
                metric: "m".into(),
                matchers: vec![],
            },
            i64::MIN,
            i64::MAX,
        );
        assert_eq!(got[0].samples.len(), 1);
        assert_eq!(got[0].samples[0].value, 1.0);
    }
}
