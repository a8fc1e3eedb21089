//! What the ingest path accepts: metric and label names, finite values,
//! operation records within size limits, and no personal data in metadata
//! keys or label names. Each error names the field it is about.

use std::collections::BTreeMap;

/// The longest metric name accepted.
pub const MAX_METRIC_NAME: usize = 200;
/// The longest label name accepted.
pub const MAX_LABEL_NAME: usize = 100;
/// The longest label value accepted, in bytes.
pub const MAX_LABEL_VALUE: usize = 1024;
/// The most labels one series may carry.
pub const MAX_LABELS: usize = 32;
/// The most metadata entries one operation may carry.
pub const MAX_METADATA_KEYS: usize = 32;
/// The largest metadata of one operation, keys and values as JSON, in bytes.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// The longest `operation_type` or `operation_name`.
pub const MAX_OPERATION_FIELD: usize = 256;
/// The longest `error_message`.
pub const MAX_ERROR_MESSAGE: usize = 4 * 1024;

/// Metadata keys refused by default because they carry personal data. The
/// comparison ignores case and every character but ASCII letters and digits,
/// so `user_id`, `userId`, `User-ID` and `user.id` are one key. Label names
/// are held to the same list: a label is persisted and exposed just like
/// metadata; so are the labels of resources applications register.
pub const DEFAULT_PII_KEYS: &[&str] = &[
    "email",
    "name",
    "username",
    "password",
    "token",
    "key",
    "secret",
    "api_key",
    "user_id",
    "client_id",
    "session_id",
];

/// The metric-name prefix kept for Warden's own metrics, so an ingested series
/// cannot shadow one of them on `/metrics`.
pub const RESERVED_PREFIX: &str = "warden_";

/// Checks the name of a pushed metric: a valid name ([`metric_name`]) that
/// none of Warden's own writers uses — the collectors
/// ([`crate::collect::COLLECTED`]) and the series operations feed
/// ([`crate::ingest::OPERATION_SERIES`]). A push under one of those would
/// feed every policy and alert that reads it.
pub fn pushed_metric_name(name: &str) -> Result<(), Invalid> {
    metric_name(name)?;
    if crate::collect::COLLECTED.contains(&name) || crate::ingest::OPERATION_SERIES.contains(&name)
    {
        return Err(Invalid::new(
            "metric",
            format!(
                "`{name}` is written by Warden itself (its collectors or operations); push under another name"
            ),
        ));
    }
    Ok(())
}

/// Why a record was refused. `field` says where, for example
/// `samples[3].labels.email` or `metadata.password`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Invalid {
    /// Where the problem is.
    pub field: String,
    /// What it is, and what to do.
    pub problem: String,
}

impl Invalid {
    /// Returns the problem `problem` with the field at `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// Prefixes the field with where the record sits, such as `samples[3]`.
    pub fn within(mut self, at: &str) -> Self {
        self.field = if self.field.is_empty() {
            at.to_owned()
        } else {
            format!("{at}.{}", self.field)
        };
        self
    }
}

/// The metadata keys refused as personal data. Shared, not copied: the
/// API's state (cloned for every request) holds one.
#[derive(Debug, Clone)]
pub struct PiiKeys(std::sync::Arc<[String]>);

impl Default for PiiKeys {
    fn default() -> Self {
        PiiKeys::new(DEFAULT_PII_KEYS.iter().copied())
    }
}

impl PiiKeys {
    /// A list of refused keys.
    pub fn new<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        PiiKeys(
            keys.into_iter()
                .map(|k| normalized(k).map(char::from).collect::<String>())
                .filter(|k| !k.is_empty())
                .collect::<Vec<_>>()
                .into(),
        )
    }

    /// Returns true if and only if `key` is on the list, ignoring case and
    /// any character but ASCII letters and digits.
    pub fn contains(&self, key: &str) -> bool {
        // Compared in place: no allocation on the record path.
        self.0.iter().any(|k| k.bytes().eq(normalized(key)))
    }

    /// Looks for personal data in free text, such as a registered resource's
    /// name or a label value: a `key=value` or `key:value` part whose key is
    /// on the list (`sessions/session_id=ab12`), or an email address. Parts
    /// are separated by `/`, `?`, `&`, `;`, `,`, `|` and whitespace. Returns
    /// what was found, to name in the refusal.
    pub fn find_in_text(&self, text: &str) -> Option<String> {
        text.split(|c: char| matches!(c, '/' | '?' | '&' | ';' | ',' | '|') || c.is_whitespace())
            .find_map(|part| {
                if let Some((key, _)) = part.split_once(['=', ':'])
                    && self.contains(key)
                {
                    return Some(format!("`{key}=…`"));
                }
                looks_like_email(part).then(|| "an email address".to_owned())
            })
    }
}

/// The bytes of `key` that count: ASCII letters (lowercased) and digits.
fn normalized(key: &str) -> impl Iterator<Item = u8> + '_ {
    key.bytes()
        .filter(u8::is_ascii_alphanumeric)
        .map(|b| b.to_ascii_lowercase())
}

/// `local@domain.tld` with a letters-only top-level domain of two or more.
fn looks_like_email(part: &str) -> bool {
    let Some((local, domain)) = part.rsplit_once('@') else {
        return false;
    };
    let Some((host, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    !local.is_empty()
        && !host.is_empty()
        && tld.len() >= 2
        && tld.bytes().all(|b| b.is_ascii_alphabetic())
}

/// Checks a metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`, as Prometheus requires,
/// and not in Warden's reserved prefix.
pub fn metric_name(name: &str) -> Result<(), Invalid> {
    if name.is_empty() {
        return Err(Invalid::new("metric", "the metric name is empty"));
    }
    if name.len() > MAX_METRIC_NAME {
        return Err(Invalid::new(
            "metric",
            format!(
                "the metric name is {} characters long; the limit is {MAX_METRIC_NAME}",
                name.len()
            ),
        ));
    }
    let ok = name.bytes().enumerate().all(|(i, b)| {
        b.is_ascii_alphabetic() || b == b'_' || b == b':' || (i > 0 && b.is_ascii_digit())
    });
    if !ok {
        return Err(Invalid::new(
            "metric",
            format!(
                "`{}` is not a valid metric name; use letters, digits, `_` and `:`, not starting with a digit",
                truncate(name)
            ),
        ));
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(Invalid::new(
            "metric",
            format!("`{name}`: the prefix `{RESERVED_PREFIX}` is kept for Warden's own metrics"),
        ));
    }
    Ok(())
}

/// Checks a set of labels: names, values, count, duplicates, personal data.
pub fn labels(labels: &[(&str, &str)], pii: &PiiKeys) -> Result<(), Invalid> {
    if labels.len() > MAX_LABELS {
        return Err(Invalid::new(
            "labels",
            format!(
                "{} labels; a series may carry at most {MAX_LABELS}",
                labels.len()
            ),
        ));
    }
    for (i, (name, value)) in labels.iter().enumerate() {
        let field = || format!("labels.{}", truncate(name));
        label_name(name).map_err(|problem| Invalid::new(field(), problem))?;
        if pii.contains(name) {
            return Err(Invalid::new(
                field(),
                format!(
                    "`{name}` is a label name that carries personal data and is refused; record an anonymous value under another name"
                ),
            ));
        }
        if value.len() > MAX_LABEL_VALUE {
            return Err(Invalid::new(
                field(),
                format!(
                    "the value is {} bytes long; the limit is {MAX_LABEL_VALUE}",
                    value.len()
                ),
            ));
        }
        if labels[..i].iter().any(|(n, _)| n == name) {
            return Err(Invalid::new(field(), "this label is given twice"));
        }
    }
    Ok(())
}

fn label_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a label name is empty".into());
    }
    if name.len() > MAX_LABEL_NAME {
        return Err(format!(
            "the label name is {} characters long; the limit is {MAX_LABEL_NAME}",
            name.len()
        ));
    }
    let ok = name
        .bytes()
        .enumerate()
        .all(|(i, b)| b.is_ascii_alphabetic() || b == b'_' || (i > 0 && b.is_ascii_digit()));
    if !ok {
        return Err(format!(
            "`{}` is not a valid label name; use letters, digits and `_`, not starting with a digit",
            truncate(name)
        ));
    }
    if name.starts_with("__") {
        return Err(format!(
            "`{name}`: label names starting with `__` are reserved"
        ));
    }
    Ok(())
}

/// Checks a sample's value.
pub fn value(v: f64) -> Result<(), Invalid> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Invalid::new(
            "value",
            format!("{v} is not a finite number; NaN and infinities are refused"),
        ))
    }
}

/// A counter only goes up.
pub fn increment(by: f64) -> Result<(), Invalid> {
    value(by)?;
    if by < 0.0 {
        return Err(Invalid::new(
            "value",
            format!("a counter only goes up; an increment of {by} is refused (use a gauge)"),
        ));
    }
    Ok(())
}

/// A scalar metadata value, as an operation carries it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum MetaValue {
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(f64),
    /// Text.
    Text(String),
}

/// An operation's outcome, as an application records it: what ran, how long
/// it took, whether it worked.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// A class of operation, such as `api_request` or `db_query`.
    pub operation_type: String,
    /// Which one, such as `GET /users`.
    pub operation_name: String,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
    /// Whether it succeeded.
    #[serde(default = "yes")]
    pub success: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Context. Keys that carry personal data are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, MetaValue>,
}

fn yes() -> bool {
    true
}

/// Checks an operation record.
pub fn operation(op: &Operation, pii: &PiiKeys) -> Result<(), Invalid> {
    for (field, text) in [
        ("operation_type", &op.operation_type),
        ("operation_name", &op.operation_name),
    ] {
        if text.trim().is_empty() {
            return Err(Invalid::new(field, "must not be empty"));
        }
        if text.len() > MAX_OPERATION_FIELD {
            return Err(Invalid::new(
                field,
                format!(
                    "{} bytes long; the limit is {MAX_OPERATION_FIELD}",
                    text.len()
                ),
            ));
        }
    }
    if !op.duration_ms.is_finite() {
        return Err(Invalid::new(
            "duration_ms",
            format!("{} is not a finite number", op.duration_ms),
        ));
    }
    if op.duration_ms < 0.0 {
        return Err(Invalid::new(
            "duration_ms",
            format!("{} is negative; a duration is 0 or more", op.duration_ms),
        ));
    }
    if let Some(m) = &op.error_message
        && m.len() > MAX_ERROR_MESSAGE
    {
        return Err(Invalid::new(
            "error_message",
            format!("{} bytes long; the limit is {MAX_ERROR_MESSAGE}", m.len()),
        ));
    }
    if op.metadata.len() > MAX_METADATA_KEYS {
        return Err(Invalid::new(
            "metadata",
            format!(
                "{} entries; the limit is {MAX_METADATA_KEYS}",
                op.metadata.len()
            ),
        ));
    }
    let mut bytes = 0;
    for (key, value) in &op.metadata {
        if pii.contains(key) {
            return Err(Invalid::new(
                format!("metadata.{}", truncate(key)),
                format!(
                    "`{key}` carries personal data and is refused; record an anonymous value (a hash, a region) under another key"
                ),
            ));
        }
        if let MetaValue::Number(n) = value
            && !n.is_finite()
        {
            return Err(Invalid::new(
                format!("metadata.{}", truncate(key)),
                "not a finite number",
            ));
        }
        bytes += key.len()
            + match value {
                MetaValue::Text(t) => t.len(),
                _ => 8,
            };
    }
    if bytes > MAX_METADATA_BYTES {
        return Err(Invalid::new(
            "metadata",
            format!("{bytes} bytes; the limit is {MAX_METADATA_BYTES}"),
        ));
    }
    Ok(())
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> Operation {
        Operation {
            operation_type: "api_request".into(),
            operation_name: "GET /users".into(),
            duration_ms: 4.5,
            success: true,
            error_message: None,
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn metric_names_follow_prometheus() {
        for ok in ["a", "http_requests_total", "ns:rule_1", "_x"] {
            metric_name(ok).unwrap();
        }
        for bad in ["", "1abc", "a-b", "a b", "é", "warden_policy_evaluations"] {
            assert_eq!(metric_name(bad).unwrap_err().field, "metric", "{bad}");
        }
        assert!(metric_name(&"a".repeat(201)).is_err());
    }

    #[test]
    fn labels_are_checked_by_name_value_count_and_personal_data() {
        let pii = PiiKeys::default();
        labels(&[("route", "/a"), ("code", "200")], &pii).unwrap();
        let e = labels(&[("route", "/a"), ("Email", "x@y")], &pii).unwrap_err();
        assert_eq!(e.field, "labels.Email");
        assert!(e.problem.contains("personal data"), "{e}");
        assert!(labels(&[("a", "1"), ("a", "2")], &pii).is_err());
        assert!(labels(&[("__name__", "x")], &pii).is_err());
        assert!(labels(&[("9a", "x")], &pii).is_err());
        assert!(labels(&[("a", &"v".repeat(1025))], &pii).is_err());
        let many: Vec<(String, String)> = (0..33).map(|i| (format!("l{i}"), "v".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert!(labels(&many, &pii).is_err());
    }

    #[test]
    fn every_default_pii_key_is_refused_in_metadata_whatever_its_case() {
        let pii = PiiKeys::default();
        for key in DEFAULT_PII_KEYS {
            for spelled in [key.to_string(), key.to_uppercase(), key.replace('_', "-")] {
                let mut o = op();
                o.metadata
                    .insert(spelled.clone(), MetaValue::Text("x".into()));
                let e = operation(&o, &pii).unwrap_err();
                assert_eq!(e.field, format!("metadata.{spelled}"));
            }
        }
        let mut o = op();
        o.metadata
            .insert("user_hash".into(), MetaValue::Text("ab12".into()));
        o.metadata.insert("rows".into(), MetaValue::Number(3.0));
        operation(&o, &pii).unwrap();
        let custom = PiiKeys::new(["ssn"]);
        let mut o = op();
        o.metadata.insert("SSN".into(), MetaValue::Text("1".into()));
        assert!(operation(&o, &custom).is_err());
        o.metadata.clear();
        o.metadata
            .insert("email".into(), MetaValue::Text("1".into()));
        operation(&o, &custom).unwrap();
    }

    #[test]
    fn operations_are_checked_field_by_field() {
        let pii = PiiKeys::default();
        type Change = Box<dyn Fn(&mut Operation)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|o| o.duration_ms = -1.0), "duration_ms"),
            (Box::new(|o| o.duration_ms = f64::NAN), "duration_ms"),
            (Box::new(|o| o.duration_ms = f64::INFINITY), "duration_ms"),
            (
                Box::new(|o| o.operation_type = " ".into()),
                "operation_type",
            ),
            (
                Box::new(|o| o.operation_name = "x".repeat(257)),
                "operation_name",
            ),
            (
                Box::new(|o| o.error_message = Some("e".repeat(5000))),
                "error_message",
            ),
            (
                Box::new(|o| {
                    o.metadata
                        .insert("blob".into(), MetaValue::Text("b".repeat(9000)));
                }),
                "metadata",
            ),
            (
                Box::new(|o| {
                    for i in 0..33 {
                        o.metadata.insert(format!("k{i}"), MetaValue::Bool(true));
                    }
                }),
                "metadata",
            ),
        ];
        for (change, field) in cases {
            let mut o = op();
            change(&mut o);
            assert_eq!(operation(&o, &pii).unwrap_err().field, field);
        }
    }

    #[test]
    fn values_must_be_finite_and_increments_not_negative() {
        value(1.5).unwrap();
        assert!(value(f64::NAN).is_err());
        assert!(value(f64::NEG_INFINITY).is_err());
        increment(0.0).unwrap();
        assert!(increment(-1.0).is_err());
    }

    #[test]
    fn personal_data_keys_match_whatever_their_case_and_separators() {
        let pii = PiiKeys::default();
        for key in [
            "user_id",
            "userId",
            "USER-ID",
            "user.id",
            "User Id",
            "e-mail",
            "EMAIL",
            "apiKey",
            "API-KEY",
            "Session_ID",
            "clientId",
        ] {
            assert!(pii.contains(key), "{key}");
        }
        for key in [
            "route",
            "user_hash",
            "hostname",
            "operation_name",
            "region",
            "",
        ] {
            assert!(!pii.contains(key), "{key}");
        }
        let custom = PiiKeys::new(["S.S.N", "national-id"]);
        assert!(custom.contains("ssn") && custom.contains("NationalID"));
        assert!(!custom.contains("email"));
    }

    #[test]
    fn personal_data_is_found_in_names_and_values() {
        let pii = PiiKeys::default();
        for text in [
            "sessions/session_id=ab12",
            "cache?userId=42&x=1",
            "upload/jane.doe@example.com.tmp",
            "owner: Email:x",
        ] {
            assert!(pii.find_in_text(text).is_some(), "{text}");
        }
        for text in ["cache/42", "lease/a=b", "root@10.0.0.1", "v1:build", "a@b"] {
            assert_eq!(pii.find_in_text(text), None, "{text}");
        }
    }

    #[test]
    fn collector_and_operation_names_cannot_be_pushed() {
        for name in [
            "memory_used_ratio",
            "cpu_usage_ratio",
            "operations_total",
            "warden_x",
        ] {
            assert_eq!(
                pushed_metric_name(name).unwrap_err().field,
                "metric",
                "{name}"
            );
        }
        pushed_metric_name("app_memory_used_ratio").unwrap();
    }
}
