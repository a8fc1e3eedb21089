//! What services send: a failed operation (`POST /api/v1/recovery/failures`)
//! and batches of outcomes (`POST /api/v1/recovery/outcomes`), read from
//! JSON field by field so that every refusal names its field — an unknown
//! class, a negative duration, a message too long, a label that carries
//! personal data — and nothing of a refused report is kept.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use warden_core::records::ErrorClass;
use warden_metrics::validate::{self, Invalid, PiiKeys};

use super::classify::RawError;

/// The longest operation name, in bytes.
pub const MAX_OPERATION: usize = 256;
/// The longest message, in bytes.
pub const MAX_MESSAGE: usize = 4 * 1024;
/// The longest exception type, in bytes.
pub const MAX_EXCEPTION: usize = 256;
/// The highest attempt number.
pub const MAX_ATTEMPT: u32 = 10_000;
/// The longest duration a call may report (a day), in ms.
pub const MAX_DURATION_MS: f64 = 86_400_000.0;
/// The most outcomes in one batch.
pub const MAX_OUTCOMES: usize = 1_000;

/// A failed operation, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailureReport {
    /// The operation, such as `db.query`.
    pub operation: String,
    /// The class, if the service classified it.
    pub class: Option<ErrorClass>,
    /// The raw error, classified by the host when `class` is absent.
    pub error: RawError,
    /// Which attempt failed, from 1.
    pub attempt: u32,
    /// How long the failed call took, ms.
    pub duration_ms: Option<u64>,
    /// True if and only if the call ran out of time.
    pub timed_out: bool,
    /// Labels: chosen by policies' `scope.labels` and `breaker.key_labels`.
    pub labels: BTreeMap<String, String>,
}

/// How a reported call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It worked.
    Success,
    /// It failed.
    Failure,
    /// It ran out of time.
    Timeout,
    /// It worked but slowly (without a duration to tell).
    Slow,
}

/// One outcome of a batch, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeReport {
    /// The operation.
    pub operation: String,
    /// How it ended.
    pub outcome: Ended,
    /// How long it took, ms.
    pub duration_ms: Option<u64>,
    /// A failure's class (counted per `record_classes`/`ignore_classes`).
    pub class: Option<ErrorClass>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// Every problem of a refused report, each naming its field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct Refused(pub Vec<Invalid>);

struct Reader<'a> {
    obj: &'a Map<String, Value>,
    at: String,
    problems: Vec<Invalid>,
}

impl<'a> Reader<'a> {
    fn new(v: &'a Value, at: &str) -> Result<Self, Refused> {
        match v.as_object() {
            Some(obj) => Ok(Reader {
                obj,
                at: at.to_owned(),
                problems: Vec::new(),
            }),
            None => Err(Refused(vec![Invalid::new(
                if at.is_empty() { "body" } else { at },
                "expected a JSON object",
            )])),
        }
    }

    fn field(&self, name: &str) -> String {
        if self.at.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.at)
        }
    }

    fn bad(&mut self, name: &str, problem: String) {
        let f = self.field(name);
        self.problems.push(Invalid::new(f, problem));
    }

    fn known(&mut self, names: &[&str]) {
        for k in self.obj.keys() {
            if !names.contains(&k.as_str()) {
                let shown: String = k.chars().take(64).collect();
                self.bad(
                    &shown,
                    format!("unknown field; the fields are {}", names.join(", ")),
                );
            }
        }
    }

    fn string(&mut self, name: &str, max: usize, required: bool) -> Option<String> {
        match self.obj.get(name) {
            None | Some(Value::Null) => {
                if required {
                    self.bad(name, "missing; it is required".into());
                }
                None
            }
            Some(Value::String(s)) if s.len() > max => {
                self.bad(
                    name,
                    format!(
                        "{} bytes long; the limit is {max}, send a shorter one",
                        s.len()
                    ),
                );
                None
            }
            Some(Value::String(s)) if s.chars().any(char::is_control) && name != "message" => {
                self.bad(name, "contains control characters".into());
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.bad(name, "expected a string".into());
                None
            }
        }
    }

    fn number(&mut self, name: &str) -> Option<f64> {
        match self.obj.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(_) => {
                self.bad(name, "expected a number".into());
                None
            }
        }
    }

    fn duration(&mut self, name: &str) -> Option<u64> {
        let v = self.number(name)?;
        if !(0.0..=MAX_DURATION_MS).contains(&v) {
            self.bad(
                name,
                format!("{v} is not a duration; give milliseconds from 0 to {MAX_DURATION_MS}"),
            );
            return None;
        }
        Some(v.round() as u64)
    }

    fn class(&mut self, name: &str) -> Option<ErrorClass> {
        let s = self.string(name, 64, false)?;
        match s.parse() {
            Ok(c) => Some(c),
            Err(e) => {
                self.bad(name, e);
                None
            }
        }
    }

    fn operation(&mut self) -> String {
        let op = self
            .string("operation", MAX_OPERATION, true)
            .unwrap_or_default();
        if self.obj.contains_key("operation") && op.trim().is_empty() && self.problems.is_empty() {
            self.bad(
                "operation",
                "is empty; name the operation, such as `db.query`".into(),
            );
        }
        op
    }

    fn labels(&mut self, pii: &PiiKeys) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match self.obj.get("labels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                let mut pairs = Vec::new();
                for (k, v) in m {
                    match v.as_str() {
                        Some(s) => pairs.push((k.as_str(), s)),
                        None => self.bad(
                            &format!("labels.{}", k.chars().take(64).collect::<String>()),
                            "a label's value is a string".into(),
                        ),
                    }
                }
                match validate::labels(&pairs, pii) {
                    Ok(()) => {
                        out = pairs
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .collect()
                    }
                    Err(e) => {
                        let at = self.at.clone();
                        self.problems
                            .push(if at.is_empty() { e } else { e.within(&at) });
                    }
                }
            }
            Some(_) => self.bad("labels", "expected an object of strings".into()),
        }
        out
    }

    fn finish<T>(self, value: T) -> Result<T, Vec<Invalid>> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(self.problems)
        }
    }
}

const FAILURE_FIELDS: &[&str] = &[
    "operation",
    "class",
    "errno",
    "http_status",
    "exception",
    "message",
    "attempt",
    "duration_ms",
    "timed_out",
    "labels",
];

/// Reads a failure report.
pub fn failure(v: &Value, pii: &PiiKeys) -> Result<FailureReport, Refused> {
    let mut r = Reader::new(v, "")?;
    r.known(FAILURE_FIELDS);
    let operation = r.operation();
    let class = r.class("class");
    let errno = r.string("errno", 32, false);
    if let Some(e) = &errno
        && !warden_policy::recovery::valid_errno(e)
    {
        r.bad(
            "errno",
            format!("`{e}` is not an errno name; write it like `ECONNREFUSED`"),
        );
    }
    let http_status = r.number("http_status").and_then(|s| {
        if s.fract() == 0.0 && (100.0..=599.0).contains(&s) {
            Some(s as u16)
        } else {
            r.bad(
                "http_status",
                format!("{s} is not an HTTP status (100 to 599)"),
            );
            None
        }
    });
    let exception = r.string("exception", MAX_EXCEPTION, false);
    let message = r.string("message", MAX_MESSAGE, false);
    let attempt = match r.number("attempt") {
        None => 1,
        Some(a) if a.fract() == 0.0 && (1.0..=f64::from(MAX_ATTEMPT)).contains(&a) => a as u32,
        Some(a) => {
            r.bad(
                "attempt",
                format!("{a} is not an attempt number; count from 1 to {MAX_ATTEMPT}"),
            );
            1
        }
    };
    let duration_ms = r.duration("duration_ms");
    let timed_out = match r.obj.get("timed_out") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            r.bad("timed_out", "expected true or false".into());
            false
        }
    };
    let labels = r.labels(pii);
    let report = FailureReport {
        operation,
        class,
        error: RawError {
            errno,
            http_status,
            exception,
            message,
        },
        attempt,
        duration_ms,
        timed_out,
        labels,
    };
    r.finish(report).map_err(Refused)
}

/// Reads a batch of outcomes: `{"outcomes": [...]}`, all or nothing.
pub fn outcomes(v: &Value, pii: &PiiKeys) -> Result<Vec<OutcomeReport>, Refused> {
    let mut top = Reader::new(v, "")?;
    top.known(&["outcomes"]);
    let list = match top.obj.get("outcomes") {
        Some(Value::Array(a)) if a.len() > MAX_OUTCOMES => {
            top.bad(
                "outcomes",
                format!(
                    "{} outcomes; send at most {MAX_OUTCOMES} per batch",
                    a.len()
                ),
            );
            &[][..]
        }
        Some(Value::Array(a)) => a.as_slice(),
        _ => {
            top.bad("outcomes", "missing; expected a list of outcomes".into());
            &[][..]
        }
    };
    let mut problems = top.problems;
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let mut r = match Reader::new(item, &format!("outcomes[{i}]")) {
            Ok(r) => r,
            Err(Refused(p)) => {
                problems.extend(p);
                continue;
            }
        };
        r.known(&["operation", "outcome", "duration_ms", "class", "labels"]);
        let operation = r.operation();
        let outcome = match r.string("outcome", 16, true).as_deref() {
            Some("success") => Some(Ended::Success),
            Some("failure") => Some(Ended::Failure),
            Some("timeout") => Some(Ended::Timeout),
            Some("slow") => Some(Ended::Slow),
            Some(other) => {
                r.bad(
                    "outcome",
                    format!("`{other}` is not an outcome; use success, failure, timeout or slow"),
                );
                None
            }
            None => None,
        };
        let duration_ms = r.duration("duration_ms");
        let class = r.class("class");
        let labels = r.labels(pii);
        match r.finish(()) {
            Ok(()) => out.push(OutcomeReport {
                operation,
                outcome: outcome.unwrap_or(Ended::Success),
                duration_ms,
                class,
                labels,
            }),
            Err(p) => problems.extend(p),
        }
        if problems.len() >= 50 {
            break;
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Refused(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(v: &Value) -> Vec<String> {
        failure(v, &PiiKeys::default())
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_good_report_reads_whole() {
        let r = failure(
            &json!({"operation": "db.query", "http_status": 503, "attempt": 2, "duration_ms": 12.4, "labels": {"region": "eu"}}),
            &PiiKeys::default(),
        )
        .unwrap();
        assert_eq!(r.error.http_status, Some(503));
        assert_eq!((r.attempt, r.duration_ms), (2, Some(12)));
        assert_eq!(r.labels["region"], "eu");
    }

    #[test]
    fn every_bad_field_is_named() {
        let e = refused(&json!({
            "operation": "db.query",
            "class": "meltdown",
            "duration_ms": -5,
            "message": "x".repeat(MAX_MESSAGE + 1),
            "labels": {"email": "a@b.c"},
            "attempt": 0,
            "colour": "red"
        }));
        let has = |s: &str| e.iter().any(|m| m.starts_with(s));
        assert!(has("class: `meltdown` is not an error class"), "{e:#?}");
        assert!(has("duration_ms: -5 is not a duration"), "{e:#?}");
        assert!(has("message: 4097 bytes long"), "{e:#?}");
        assert!(has("labels.email:"), "{e:#?}");
        assert!(has("attempt:"), "{e:#?}");
        assert!(has("colour: unknown field"), "{e:#?}");
        assert!(refused(&json!({}))[0].starts_with("operation: missing"));
    }

    #[test]
    fn a_batch_is_refused_whole_and_names_the_item() {
        let e = outcomes(
            &json!({"outcomes": [
                {"operation": "a", "outcome": "success"},
                {"operation": "a", "outcome": "exploded"}
            ]}),
            &PiiKeys::default(),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("outcomes[1].outcome:"), "{e}");
    }
}
