//! Recorded series for a replay, from the files an operator has:
//!
//! - a Warden data directory, or the batch directory inside it
//!   (`metrics_*.json[.zst]`): every record of every batch, as a restart
//!   refills the store, but none dropped for age;
//! - a CSV file with the header `timestamp,value`: one series, named after
//!   the file (`disk_used.csv` is `disk_used`), without labels;
//! - a JSON-lines file (`.jsonl`, `.ndjson`): one sample per line,
//!   `{"metric": "m", "labels": {"k": "v"}, "timestamp": T, "value": 1.5}`,
//!   where `metric` defaults to the file's name and `type` may say
//!   `counter` or `histogram` (default `gauge`); batch records
//!   (`timestamp_ms`) read as they are.
//!
//! Times are ISO 8601 (`2024-05-01T10:00:00Z`; without an offset, UTC) or
//! epoch seconds or milliseconds (a number below 10^11 is seconds).
//! Every error names the file and line.

use std::io::BufRead as _;
use std::path::Path;

use warden_core::records::TimestampMs;
use warden_metrics::SeriesStore;
use warden_metrics::series::Kind;
use warden_metrics::store::Op;

/// Numbers below this are epoch seconds; at or above, milliseconds. 10^11 s
/// is the year 5138; 10^11 ms is 1973.
const SECONDS_BELOW: f64 = 1e11;

/// Changes applied to the store at once while loading.
const CHUNK: usize = 64 * 1024;

/// Parses a time as a replay reads it: ISO 8601 or epoch seconds or
/// milliseconds. Returns ms since the epoch.
pub fn parse_time(text: &str) -> Result<TimestampMs, String> {
    let t = text.trim().trim_matches('"');
    if let Ok(n) = t.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return Err(format!("`{t}` is not a time after 1970"));
        }
        let ms = if n < SECONDS_BELOW { n * 1000.0 } else { n };
        return Ok(ms.round() as i64);
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(d.timestamp_millis());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(t, format) {
            return Ok(d.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .map_or(0, |d| d.and_utc().timestamp_millis()));
    }
    Err(format!(
        "`{t}` is not a time; write ISO 8601 (`2024-05-01T10:00:00Z`) or epoch seconds or milliseconds"
    ))
}

/// What loading put into the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Samples stored.
    pub samples: usize,
    /// Files read.
    pub files: usize,
}

/// Loads `path` (a data or batch directory, a CSV or a JSON-lines file) into
/// `store`.
pub fn load(path: &Path, store: &SeriesStore) -> Result<Loaded, String> {
    let shown = path.display();
    if path.is_dir() {
        let batches = path.join("metrics");
        let dir = if batches.is_dir() {
            batches
        } else {
            path.to_path_buf()
        };
        let files = warden_metrics::persist::batch_files(&dir)
            .map_err(|e| format!("{}: failed to list batch files: {e}", dir.display()))?;
        if files.is_empty() {
            return Err(format!(
                "{shown}: no batch files (`metrics_*.json` or `.json.zst`) here or in `metrics/`; give a data directory, a CSV or a JSON-lines file"
            ));
        }
        // The whole store keeps everything (see `replay::store`), so a refill
        // "now" reads every file and drops no record for age; a recording
        // may come from a machine whose clock ran ahead, so none is left out
        // for being ahead of this one either.
        let refilled = warden_metrics::persist::refill(
            &dir,
            store,
            std::time::SystemTime::now(),
            std::time::Duration::MAX,
        )
        .map_err(|e| format!("{}: failed to read batch files: {e}", dir.display()))?;
        if let Some(bad) = refilled.skipped.first() {
            return Err(format!(
                "{}: {} batch files could not be read; the first: {bad}",
                dir.display(),
                refilled.skipped.len()
            ));
        }
        return Ok(Loaded {
            samples: refilled.records,
            files: refilled.files,
        });
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{shown}: not a file name Warden can read"))?;
    let stem = name.split('.').next().unwrap_or(name);
    let file = std::fs::File::open(path).map_err(|e| format!("{shown}: failed to open: {e}"))?;
    let lines = std::io::BufReader::with_capacity(1 << 20, file).lines();
    let samples = if name.ends_with(".csv") {
        load_csv(&shown.to_string(), stem, lines, store)?
    } else if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
        load_jsonl(&shown.to_string(), stem, lines, store)?
    } else {
        return Err(format!(
            "{shown}: give a data directory, a `.csv` file (`timestamp,value`) or a `.jsonl` file"
        ));
    };
    Ok(Loaded { samples, files: 1 })
}

type Lines = std::io::Lines<std::io::BufReader<std::fs::File>>;
type Changes = Vec<(warden_metrics::series::SeriesId, Op, TimestampMs, f64)>;

fn flush(store: &SeriesStore, changes: &mut Changes, force: bool) -> usize {
    if changes.len() < CHUNK && !force {
        return 0;
    }
    let n = changes.len();
    store.apply(changes, |_, _, _| {});
    changes.clear();
    n
}

fn load_csv(file: &str, metric: &str, lines: Lines, store: &SeriesStore) -> Result<usize, String> {
    let id = store
        .interner()
        .intern(metric, &[], Kind::Gauge)
        .map_err(|e| {
            format!("{file}: the series is named after the file, and {e}; rename the file")
        })?;
    let mut changes = Vec::with_capacity(CHUNK);
    let mut stored = 0;
    let mut header = false;
    for (n, line) in lines.enumerate() {
        let at = n + 1;
        let line = line.map_err(|e| format!("{file}:{at}: failed to read: {e}"))?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if !header {
            let cols: Vec<String> = line
                .split(',')
                .map(|c| c.trim().trim_matches('"').to_ascii_lowercase())
                .collect();
            if cols != ["timestamp", "value"] {
                return Err(format!(
                    "{file}:{at}: the header must be `timestamp,value`, not `{line}`"
                ));
            }
            header = true;
            continue;
        }
        let (t, v) = line
            .split_once(',')
            .ok_or_else(|| format!("{file}:{at}: expected `timestamp,value`, found `{line}`"))?;
        let t = parse_time(t).map_err(|e| format!("{file}:{at}: {e}"))?;
        let v = parse_value(v).map_err(|e| format!("{file}:{at}: {e}"))?;
        changes.push((id, Op::Set, t, v));
        stored += flush(store, &mut changes, false);
    }
    if !header {
        return Err(format!(
            "{file}: empty; expected the header `timestamp,value`"
        ));
    }
    Ok(stored + flush(store, &mut changes, true))
}

fn parse_value(text: &str) -> Result<f64, String> {
    let t = text.trim().trim_matches('"');
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("`{t}` is not a finite number")),
    }
}

/// One JSON line.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    metric: Option<String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    timestamp: Option<serde_json::Value>,
    #[serde(default)]
    timestamp_ms: Option<i64>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    value: f64,
}

fn load_jsonl(file: &str, stem: &str, lines: Lines, store: &SeriesStore) -> Result<usize, String> {
    let mut changes = Vec::with_capacity(CHUNK);
    let mut stored = 0;
    for (n, line) in lines.enumerate() {
        let at = n + 1;
        let line = line.map_err(|e| format!("{file}:{at}: failed to read: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(&line).map_err(|e| format!("{file}:{at}: {e}"))?;
        let t = match (&l.timestamp, l.timestamp_ms) {
            (_, Some(ms)) => Ok(ms),
            (Some(serde_json::Value::String(s)), None) => parse_time(s),
            (Some(serde_json::Value::Number(n)), None) => parse_time(&n.to_string()),
            _ => Err("each line needs a `timestamp` (or `timestamp_ms`)".into()),
        }
        .map_err(|e| format!("{file}:{at}: {e}"))?;
        let (kind, op) = match l.kind.as_deref() {
            None | Some("gauge") => (Kind::Gauge, Op::Set),
            Some("counter") => (Kind::Counter, Op::Set),
            Some("histogram") => (Kind::Histogram, Op::Observe),
            Some(other) => {
                return Err(format!(
                    "{file}:{at}: `type: {other}`; use gauge, counter or histogram"
                ));
            }
        };
        if !l.value.is_finite() {
            return Err(format!("{file}:{at}: the value must be a finite number"));
        }
        let metric = l.metric.as_deref().unwrap_or(stem);
        let labels: Vec<(&str, &str)> = l
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let id = store
            .interner()
            .intern(metric, &labels, kind)
            .map_err(|e| format!("{file}:{at}: {e}"))?;
        changes.push((id, op, t, l.value));
        stored += flush(store, &mut changes, false);
    }
    Ok(stored + flush(store, &mut changes, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_iso_8601_seconds_or_milliseconds() {
        let ms = 1_714_557_600_000;
        for t in [
            "2024-05-01T10:00:00Z",
            "2024-05-01T12:00:00+02:00",
            "2024-05-01T10:00:00",
            "2024-05-01 10:00:00.000",
            "1714557600",
            "1714557600.0",
            "1714557600000",
            "\"1714557600\"",
        ] {
            assert_eq!(parse_time(t), Ok(ms), "{t}");
        }
        assert!(parse_time("yesterday").unwrap_err().contains("ISO 8601"));
        assert!(parse_time("-5").is_err());
    }
}
