//! Batch files: each batch is written whole or not at all (temporary file,
//! fsync, rename, fsync of the directory) as
//! `metrics_YYYYMMDD_HHMMSS_micros.json` (or `.json.zst`), holding
//! `{batch_id, batch_timestamp, total_records, records}`. Files older than the
//! retention are deleted; on start the store is refilled from recent files.
//!
//! A sample record is `{"timestamp_ms", "type": "gauge"|"counter"|"histogram",
//! "metric", "labels", "value"}` where a counter's value is its running total.
//! An operation record is `{"timestamp_ms", "type": "operation",
//! "operation_type", "operation_name", "duration_ms", "success",
//! "error_message"?, "metadata"?}`.

use std::collections::BTreeMap;
use std::io::Write;
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
        std::fs::create_dir_all(dir)?;
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

    /// Writes one batch and returns its path.
    pub(crate) fn write_batch(
        &mut self,
        records: &[Persisted],
        interner: &Interner,
    ) -> std::io::Result<PathBuf> {
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
        interner.with_keys(|keys| {
            let body = BatchOut {
                batch_id: &batch_id,
                batch_timestamp: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                total_records: records.len(),
                records: RecordsOut { records, keys },
            };
            serde_json::to_writer(&mut self.buf, &body)
        })?;
        let (file_name, bytes): (String, &[u8]) = match self.compression {
            Compression::None => (format!("{name}.json"), &self.buf),
            Compression::Zstd => {
                let compressed = zstd::bulk::compress(&self.buf, self.level)?;
                self.buf = compressed;
                (format!("{name}.json.zst"), &self.buf)
            }
        };
        let tmp = self.dir.join(format!(".{file_name}.tmp"));
        let path = self.dir.join(&file_name);
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        // The rename is only durable once the directory is.
        std::fs::File::open(&self.dir)?.sync_all()?;
        if self.buf.capacity() > 64 << 20 {
            self.buf = Vec::with_capacity(1 << 20);
        }
        Ok(path)
    }

    /// Deletes files past the retention, at most once a minute.
    pub fn expire_if_due(&mut self) {
        if self
            .last_expiry
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.last_expiry = Some(Instant::now());
        match expire(&self.dir, self.retention, SystemTime::now()) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(files = n, dir = %self.dir.display(), "deleted expired metrics batches")
            }
            Err(e) => {
                tracing::warn!(error = %e, dir = %self.dir.display(), "could not delete expired metrics batches")
            }
        }
    }
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

/// The batch files in `dir`, oldest first.
pub fn batch_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, DateTime<Utc>)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(t) = file_time(&name.to_string_lossy()) {
            files.push((entry.path(), t));
        }
    }
    files.sort();
    Ok(files)
}

/// Deletes batch files older than `retention` at `now`; returns how many.
pub fn expire(dir: &Path, retention: Duration, now: SystemTime) -> std::io::Result<usize> {
    let cutoff: DateTime<Utc> = now
        .checked_sub(retention)
        .unwrap_or(SystemTime::UNIX_EPOCH)
        .into();
    let mut n = 0;
    for (path, t) in batch_files(dir)? {
        if t < cutoff {
            std::fs::remove_file(path)?;
            n += 1;
        }
    }
    Ok(n)
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

/// Reads one batch file, compressed or not, and checks that it holds as many
/// records as it says.
pub fn read_batch(path: &Path) -> anyhow::Result<BatchFile> {
    let raw = std::fs::read(path)?;
    let json = if path.extension().is_some_and(|e| e == "zst") {
        zstd::stream::decode_all(&raw[..])?
    } else {
        raw
    };
    let batch: BatchFile = serde_json::from_slice(&json)
        .map_err(|e| anyhow::anyhow!("{}: not a metrics batch: {e}", path.display()))?;
    anyhow::ensure!(
        batch.records.len() == batch.total_records,
        "{}: holds {} records but says {}",
        path.display(),
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
    /// Files that could not be read, with why.
    pub skipped: Vec<String>,
}

/// Puts the records of batch files written within the store's retention back
/// into the store, oldest first.
pub fn refill(dir: &Path, store: &SeriesStore, now: SystemTime) -> std::io::Result<Refill> {
    let mut report = Refill::default();
    if !dir.is_dir() {
        return Ok(report);
    }
    let retention = store.limits().retention;
    let cutoff: DateTime<Utc> = now
        .checked_sub(retention)
        .unwrap_or(SystemTime::UNIX_EPOCH)
        .into();
    let cutoff_ms = cutoff.timestamp_millis();
    let interner = store.interner();
    let mut changes = Vec::new();
    let mut derived_ops = Vec::new();
    for (path, t) in batch_files(dir)? {
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
        changes.clear();
        for r in batch.records {
            let (kind, s) = match r {
                RecordIn::Gauge(s) => (Kind::Gauge, s),
                RecordIn::Counter(s) => (Kind::Counter, s),
                RecordIn::Histogram(s) => (Kind::Histogram, s),
                RecordIn::Operation(o) => {
                    if o.timestamp_ms > cutoff_ms {
                        derived_ops.push(o);
                    }
                    continue;
                }
            };
            if s.timestamp_ms <= cutoff_ms {
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
        for o in derived_ops.drain(..) {
            super::ingest::operation_series(
                interner,
                &o.operation_type,
                &o.operation_name,
                o.success,
                o.duration_ms,
                o.timestamp_ms,
                &mut changes,
            );
            report.records += 1;
        }
        store.apply(&changes, |_, _, _| {});
    }
    Ok(report)
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
            expire(dir.path(), Duration::from_secs(86400), SystemTime::now()).unwrap(),
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
}
