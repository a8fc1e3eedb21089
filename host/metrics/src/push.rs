//! A batch pushed over HTTP (`POST /api/v1/metrics`), checked whole before
//! anything of it is recorded:
//! `{"samples": [{"metric", "labels"?, "value", "type"?, "timestamp_ms"?}], "operations": [...]}`
//! where `type` is `gauge` (the default: set), `counter` (add `value`) or
//! `histogram` (one observation).
//!
//! A batch is all or nothing: if any record is refused, none is recorded and
//! every problem is listed by field. Refused records are counted by
//! [`Reason`] (`warden_metrics_refused_total{reason}` on `/metrics`). Beyond
//! the checks every recorded value gets ([`validate`](super::validate)):
//!
//! - names Warden writes itself are refused ([`validate::pushed_metric_name`]);
//! - a sample's or operation's `timestamp_ms` may be at most
//!   [`PushLimits::max_future`] ahead of this machine's clock and no older
//!   than the store's retention (a time far ahead would push every other
//!   sample of its series out of the store).

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;

use super::ingest::{Metrics, RecordError};
use super::series::{Kind, SeriesError, SeriesId};
use super::store::Op;
use super::validate::{self, Invalid, Operation};
use warden_core::values::HumanDuration;

/// How many problems one refusal lists.
pub const MAX_LISTED: usize = 50;

/// What pushes may do beyond the checks every value gets.
#[derive(Debug, Clone, Copy)]
pub struct PushLimits {
    /// How far ahead of this machine's clock a pushed timestamp may be.
    pub max_future: Duration,
}

impl Default for PushLimits {
    fn default() -> Self {
        PushLimits {
            max_future: Duration::from_secs(300),
        }
    }
}

/// Why a pushed record was refused, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Reason {
    /// A malformed name, label, value or field.
    Invalid,
    /// A name Warden writes itself, or its `warden_` prefix.
    Reserved,
    /// A label or metadata key that carries personal data.
    PersonalData,
    /// A timestamp too far ahead of the clock.
    TooFarAhead,
    /// A timestamp older than the store keeps.
    TooOld,
    /// A metric pushed as another kind than it is.
    KindMismatch,
    /// A new series beyond the store's cap.
    SeriesCap,
    /// Valid, but in a batch with refused records.
    WithBatch,
}

impl Reason {
    /// Every reason, in counter order.
    pub const ALL: [Reason; 8] = [
        Reason::Invalid,
        Reason::Reserved,
        Reason::PersonalData,
        Reason::TooFarAhead,
        Reason::TooOld,
        Reason::KindMismatch,
        Reason::SeriesCap,
        Reason::WithBatch,
    ];

    /// The `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Invalid => "invalid",
            Reason::Reserved => "reserved",
            Reason::PersonalData => "personal_data",
            Reason::TooFarAhead => "too_far_ahead",
            Reason::TooOld => "too_old",
            Reason::KindMismatch => "kind_mismatch",
            Reason::SeriesCap => "series_cap",
            Reason::WithBatch => "with_batch",
        }
    }

    /// The reason of a validation failure, from what it says.
    fn of(invalid: &Invalid) -> Reason {
        if invalid.problem.contains("personal data") {
            Reason::PersonalData
        } else if invalid.problem.contains("Warden itself")
            || invalid.problem.contains("Warden's own metrics")
        {
            Reason::Reserved
        } else {
            Reason::Invalid
        }
    }
}

/// Why a batch was refused.
#[derive(Debug)]
pub enum Refusal {
    /// The body is not a batch at all.
    NotABatch(String),
    /// Some records are not acceptable; none was recorded.
    Invalid(Vec<Invalid>),
}

/// A batch that passed every check, its new series created, ready to queue.
#[derive(Debug)]
pub struct Checked {
    samples: Vec<(SeriesId, Op, i64, f64)>,
    operations: Vec<(i64, Operation)>,
}

impl Checked {
    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.samples.len() + self.operations.len()
    }

    /// Returns true if and only if it holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues every record; on failure, how many went in before it and why.
    pub fn enqueue(self, m: &Metrics) -> Result<usize, (usize, RecordError)> {
        let mut n = 0;
        for (id, op, at, v) in self.samples {
            m.push_sample(id, op, at, v).map_err(|e| (n, e))?;
            n += 1;
        }
        for (at, op) in self.operations {
            m.push_operation(at, op).map_err(|e| (n, e))?;
            n += 1;
        }
        Ok(n)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody<'a> {
    #[serde(default, borrow)]
    samples: Vec<PushSample<'a>>,
    #[serde(default)]
    operations: Vec<PushOperation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushSample<'a> {
    #[serde(borrow)]
    metric: Cow<'a, str>,
    #[serde(default, borrow)]
    labels: Labels<'a>,
    value: f64,
    #[serde(default, rename = "type")]
    kind: PushKind,
    #[serde(default)]
    timestamp_ms: Option<i64>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum PushKind {
    #[default]
    Gauge,
    Counter,
    Histogram,
}

impl PushKind {
    /// The series kind, and how a pushed value changes it: a gauge is set, a
    /// counter is added to, a histogram observes.
    fn kind_op(self) -> (Kind, Op) {
        match self {
            PushKind::Gauge => (Kind::Gauge, Op::Set),
            PushKind::Counter => (Kind::Counter, Op::Add),
            PushKind::Histogram => (Kind::Histogram, Op::Observe),
        }
    }
}

/// An operation as pushed: the fields of [`Operation`] and an optional time.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushOperation {
    #[serde(default)]
    timestamp_ms: Option<i64>,
    operation_type: String,
    operation_name: String,
    duration_ms: f64,
    #[serde(default = "yes")]
    success: bool,
    #[serde(default)]
    error_message: Option<String>,
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, super::MetaValue>,
}

fn yes() -> bool {
    true
}

impl PushOperation {
    fn split(self) -> (Option<i64>, Operation) {
        (
            self.timestamp_ms,
            Operation {
                operation_type: self.operation_type,
                operation_name: self.operation_name,
                duration_ms: self.duration_ms,
                success: self.success,
                error_message: self.error_message,
                metadata: self.metadata,
            },
        )
    }
}

/// Labels as a JSON object, kept in the order given and borrowed from the body.
#[derive(Default)]
struct Labels<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Labels<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Labels<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of label names to string values")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Labels<'a>, M::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(4).min(64));
                while let Some((k, v)) = m.next_entry::<Cow<'de, str>, Cow<'de, str>>()? {
                    out.push((k, v));
                }
                Ok(Labels(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// The time window a pushed record must fall in.
struct Window {
    now: i64,
    oldest: i64,
    latest: i64,
    retention: Duration,
    max_future: Duration,
}

impl Window {
    /// The record's time (`now` when not given), or why it is refused.
    fn check(&self, t: Option<i64>, field: &str) -> Result<i64, (Reason, Invalid)> {
        match t {
            None => Ok(self.now),
            Some(t) if t < self.oldest => Err((
                Reason::TooOld,
                Invalid::new(
                    field,
                    format!(
                        "{t} is older than the store keeps ({}); leave it out to mean now",
                        HumanDuration(self.retention)
                    ),
                ),
            )),
            Some(t) if t > self.latest => Err((
                Reason::TooFarAhead,
                Invalid::new(
                    field,
                    format!(
                        "{t} is more than {} ahead of this machine's clock ({}); leave it out to mean now",
                        HumanDuration(self.max_future),
                        self.now
                    ),
                ),
            )),
            Some(t) => Ok(t),
        }
    }
}

/// Problems found so far, each with its reason.
#[derive(Default)]
struct Problems(Vec<(Reason, Invalid)>);

impl Problems {
    fn push(&mut self, reason: Reason, invalid: Invalid) {
        self.0.push((reason, invalid));
    }
    fn invalid(&mut self, invalid: Invalid) {
        self.push(Reason::of(&invalid), invalid);
    }
    fn full(&self) -> bool {
        self.0.len() >= MAX_LISTED
    }
}

/// Parses and checks a pushed batch against `metrics`' store at `now_ms`;
/// creates its new series once the whole batch is known to be good. A
/// refusal is counted in `metrics`' stats.
pub fn check(
    body: &[u8],
    metrics: &Metrics,
    limits: &PushLimits,
    now_ms: i64,
) -> Result<Checked, Refusal> {
    let parsed: PushBody<'_> = serde_json::from_slice(body).map_err(|e| {
        metrics.count_refused(Reason::Invalid, 1);
        Refusal::NotABatch(format!(
            "the body is not a metrics batch: {e}; send {{\"samples\": [{{\"metric\": \"name\", \"labels\": {{}}, \"value\": 1}}], \"operations\": [...]}}"
        ))
    })?;
    let total = parsed.samples.len() + parsed.operations.len();
    let store = metrics.store();
    let interner = store.interner();
    let retention = store.limits().retention;
    let window = Window {
        now: now_ms,
        oldest: now_ms.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX)),
        latest: now_ms
            .saturating_add(i64::try_from(limits.max_future.as_millis()).unwrap_or(i64::MAX)),
        retention,
        max_future: limits.max_future,
    };
    let mut problems = Problems::default();
    let mut resolved = Vec::with_capacity(parsed.samples.len());
    let mut label_buf: Vec<(&str, &str)> = Vec::with_capacity(8);
    for (i, sample) in parsed.samples.iter().enumerate() {
        if problems.full() {
            break;
        }
        let at = || format!("samples[{i}]");
        label_buf.clear();
        label_buf.extend(sample.labels.0.iter().map(|(k, v)| (&**k, &**v)));
        let (kind, op) = sample.kind.kind_op();
        let checked = if op == Op::Add {
            validate::increment(sample.value)
        } else {
            validate::value(sample.value)
        };
        if let Err(e) = checked {
            problems.invalid(e.within(&at()));
            continue;
        }
        let at_ms = match window.check(sample.timestamp_ms, &format!("{}.timestamp_ms", at())) {
            Ok(t) => t,
            Err((reason, e)) => {
                problems.push(reason, e);
                continue;
            }
        };
        if let Err(e) = validate::pushed_metric_name(&sample.metric) {
            problems.invalid(e.within(&at()));
            continue;
        }
        // Known series are resolved now; new ones are only checked, and
        // created once the whole batch is known to be valid.
        match interner.lookup(&sample.metric, &label_buf) {
            Some((id, k)) if k == kind => resolved.push((Some(id), i, op, at_ms, sample.value)),
            Some((_, k)) => problems.push(
                Reason::KindMismatch,
                Invalid::new(
                    format!("{}.type", at()),
                    format!(
                        "`{}` is a {} and cannot also be recorded as a {}",
                        sample.metric,
                        k.name(),
                        kind.name()
                    ),
                ),
            ),
            None => match validate::labels(&label_buf, interner.pii()) {
                Ok(()) => resolved.push((None, i, op, at_ms, sample.value)),
                Err(e) => problems.invalid(e.within(&at())),
            },
        }
    }
    let mut operations = Vec::with_capacity(parsed.operations.len());
    for (i, o) in parsed.operations.into_iter().enumerate() {
        if problems.full() {
            break;
        }
        let at = format!("operations[{i}]");
        let (t, op) = o.split();
        let at_ms = match window.check(t, &format!("{at}.timestamp_ms")) {
            Ok(t) => t,
            Err((reason, e)) => {
                problems.push(reason, e);
                continue;
            }
        };
        if let Err(e) = validate::operation(&op, interner.pii()) {
            problems.invalid(e.within(&at));
            continue;
        }
        operations.push((at_ms, op));
    }
    if problems.0.is_empty() {
        for r in &mut resolved {
            if r.0.is_some() {
                continue;
            }
            let sample = &parsed.samples[r.1];
            label_buf.clear();
            label_buf.extend(sample.labels.0.iter().map(|(k, v)| (&**k, &**v)));
            match interner.intern(&sample.metric, &label_buf, sample.kind.kind_op().0) {
                Ok(id) => r.0 = Some(id),
                Err(e) => {
                    let reason = match &e {
                        SeriesError::TooManySeries { .. } => Reason::SeriesCap,
                        SeriesError::KindMismatch { .. } => Reason::KindMismatch,
                        SeriesError::Invalid(i) => Reason::of(i),
                    };
                    problems.push(
                        reason,
                        Invalid::new(format!("samples[{}]", r.1), e.to_string()),
                    );
                }
            }
            if problems.full() {
                break;
            }
        }
    }
    if !problems.0.is_empty() {
        let mut refused = 0u64;
        for (reason, _) in &problems.0 {
            metrics.count_refused(*reason, 1);
            refused += 1;
        }
        metrics.count_refused(Reason::WithBatch, (total as u64).saturating_sub(refused));
        let mut list: Vec<Invalid> = problems.0.into_iter().map(|(_, i)| i).collect();
        list.truncate(MAX_LISTED);
        return Err(Refusal::Invalid(list));
    }
    Ok(Checked {
        samples: resolved
            .into_iter()
            .map(|(id, _, op, at, v)| (id.expect("every sample was resolved"), op, at, v))
            .collect(),
        operations,
    })
}
