//! Recorded failures for a replay of recovery policies: a JSON-lines file
//! where each line is what a service sent to the recovery API, with the time
//! it was sent.
//!
//! ```text
//! {"timestamp": "2024-05-01T10:00:00Z", "operation": "db.query", "errno": "ECONNREFUSED", "attempt": 1}
//! {"timestamp": 1714557601, "outcomes": [{"operation": "db.query", "outcome": "success", "duration_ms": 12}]}
//! ```
//!
//! A line with `outcomes` is a batch of outcomes (`POST
//! /api/v1/recovery/outcomes`); any other is a failure report (`POST
//! /api/v1/recovery/failures`), read by the same code as the API reads it,
//! so a report the daemon would refuse is refused here, naming the file,
//! the line and the field. Times read as the series' do
//! ([`parse_time`](super::load::parse_time)).

use std::io::{BufRead as _, Read as _};
use std::path::Path;

use serde_json::Value;
use warden_metrics::validate::PiiKeys;

use crate::recovery::report::{self, FailureReport, OutcomeReport};

/// The longest line read: a report is bounded far below this by its own
/// field limits and the outcome batch cap.
const MAX_LINE: usize = 1 << 20;

/// One recorded report.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// When it was sent, ms since the epoch.
    pub at_ms: i64,
    /// What was sent.
    pub what: Sent,
    /// Where it was read: `file:line`.
    pub from: String,
}

/// What a service sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    /// A failed call.
    Failure(FailureReport),
    /// A batch of outcomes.
    Outcomes(Vec<OutcomeReport>),
}

/// Reads the recorded reports of `path`, in time order (a stable sort: equal
/// times keep the file's order).
pub fn load(path: &Path) -> Result<Vec<Record>, String> {
    let file = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| format!("{file}: failed to open: {e}"))?;
    if f.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(format!(
            "{file}: is a directory; give a JSON-lines file of failure reports"
        ));
    }
    let pii = PiiKeys::default();
    let mut records = Vec::new();
    let mut reader = std::io::BufReader::new(f);
    let mut line = String::new();
    for at in 1.. {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
            .map_err(|e| format!("{file}:{at}: failed to read: {e}"))?;
        if read == 0 {
            break;
        }
        if line.len() > MAX_LINE {
            return Err(format!(
                "{file}:{at}: the line is longer than {MAX_LINE} bytes"
            ));
        }
        if line.trim().is_empty() {
            continue;
        }
        records.push(record(&line, &pii).map_err(|e| format!("{file}:{at}: {e}"))?);
        if let Some(r) = records.last_mut() {
            r.from = format!("{file}:{at}");
        }
    }
    records.sort_by_key(|r| r.at_ms);
    Ok(records)
}

/// Reads one line.
fn record(line: &str, pii: &PiiKeys) -> Result<Record, String> {
    let mut v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let Some(obj) = v.as_object_mut() else {
        return Err("expected an object: a failure report or `{\"outcomes\": [...]}`".into());
    };
    let at_ms = match obj.remove("timestamp") {
        Some(Value::String(s)) => super::load::parse_time(&s),
        Some(Value::Number(n)) => super::load::parse_time(&n.to_string()),
        Some(_) => {
            Err("`timestamp` must be a time (ISO 8601 or epoch seconds or milliseconds)".into())
        }
        None => Err("each line needs a `timestamp`: when the service sent it".into()),
    }
    .map_err(|e| format!("timestamp: {e}"))?;
    let what = if obj.contains_key("outcomes") {
        Sent::Outcomes(report::outcomes(&v, pii).map_err(|e| e.to_string())?)
    } else {
        Sent::Failure(report::failure(&v, pii).map_err(|e| e.to_string())?)
    };
    Ok(Record {
        at_ms,
        what,
        from: String::new(),
    })
}

/// The times of the first and last records.
pub fn extent(records: &[Record]) -> super::Extent {
    Some((records.first()?.at_ms, records.last()?.at_ms))
}
