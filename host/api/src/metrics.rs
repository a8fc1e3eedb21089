//! Metrics over HTTP: push a JSON batch, read ingest stats, query a range or
//! aggregates of series.
//!
//! `POST /api/v1/metrics` takes
//! `{"samples": [{"metric", "labels"?, "value", "type"?, "timestamp_ms"?}], "operations": [...]}`
//! where `type` is `gauge` (the default: set), `counter` (add `value`) or
//! `histogram` (one observation). A batch is all or nothing: if any record is
//! invalid, none is recorded and every problem is listed by field.

use std::borrow::Cow;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState};
use warden_core::records::SeriesSelector;
use warden_core::values::HumanDuration;
use warden_metrics::config::FullQueue;
use warden_metrics::store::Op;
use warden_metrics::validate::{self, Invalid, Operation};
use warden_metrics::{Aggregation, Kind, RecordError};

/// The largest push body.
pub(crate) const MAX_PUSH_BYTES: usize = 32 << 20;
/// How far in the future a pushed timestamp may be (clock skew).
const MAX_FUTURE_MS: i64 = 5 * 60 * 1000;
/// How many problems one refusal lists.
const MAX_LISTED: usize = 50;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/metrics",
            post(push).layer(axum::extract::DefaultBodyLimit::max(MAX_PUSH_BYTES)),
        )
        .route("/api/v1/metrics/stats", get(stats))
        .route("/api/v1/series", get(series))
        .route("/api/v1/series/aggregate", get(aggregate))
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

/// An operation as pushed: the fields of [`Operation`] and an optional time.
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
    metadata: std::collections::BTreeMap<String, warden_metrics::MetaValue>,
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
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(4));
                while let Some((k, v)) = m.next_entry::<Cow<'de, str>, Cow<'de, str>>()? {
                    out.push((k, v));
                }
                Ok(Labels(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

async fn push(State(s): State<AppState>, body: Bytes) -> Response {
    let Some(pipeline) = s.metrics.clone() else {
        return ApiError(
            StatusCode::NOT_FOUND,
            "metrics are not enabled in this daemon".into(),
        )
        .into_response();
    };
    let parsed: PushBody<'_> = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body is not a metrics batch: {e}; send {{\"samples\": [{{\"metric\": \"name\", \"labels\": {{}}, \"value\": 1}}], \"operations\": [...]}}"
                ),
            )
            .into_response();
        }
    };
    let metrics = pipeline.metrics();
    let store = metrics.store();
    let interner = store.interner();
    let now = warden_core::clock::now_ms();
    let oldest = now - i64::try_from(store.limits().retention.as_millis()).unwrap_or(i64::MAX);
    let mut problems: Vec<Invalid> = Vec::new();
    let mut resolved = Vec::with_capacity(parsed.samples.len());
    let mut label_buf: Vec<(&str, &str)> = Vec::with_capacity(8);
    for (i, sample) in parsed.samples.iter().enumerate() {
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
            problems.push(e.within(&at()));
            continue;
        }
        let at_ms = match sample.timestamp_ms {
            None => now,
            Some(t) if t < oldest => {
                problems.push(Invalid::new(
                    format!("{}.timestamp_ms", at()),
                    format!(
                        "{t} is older than the store keeps ({}); leave it out to mean now",
                        HumanDuration(store.limits().retention)
                    ),
                ));
                continue;
            }
            Some(t) if t > now + MAX_FUTURE_MS => {
                problems.push(Invalid::new(
                    format!("{}.timestamp_ms", at()),
                    format!("{t} is more than 5 minutes ahead of this machine's clock ({now})"),
                ));
                continue;
            }
            Some(t) => t,
        };
        // Known series are resolved now; new ones are only checked, and
        // created once the whole batch is known to be valid.
        match interner.lookup(&sample.metric, &label_buf) {
            Some((id, k)) if k == kind => resolved.push((Some(id), i, op, at_ms, sample.value)),
            Some((_, k)) => problems.push(Invalid::new(
                format!("{}.type", at()),
                format!(
                    "`{}` is a {} and cannot also be recorded as a {}",
                    sample.metric,
                    k.name(),
                    kind.name()
                ),
            )),
            None => match validate::metric_name(&sample.metric)
                .and_then(|()| validate::labels(&label_buf, interner.pii()))
            {
                Ok(()) => resolved.push((None, i, op, at_ms, sample.value)),
                Err(e) => problems.push(e.within(&at())),
            },
        }
        if problems.len() >= MAX_LISTED {
            break;
        }
    }
    let mut ops = Vec::with_capacity(parsed.operations.len());
    for (i, o) in parsed.operations.into_iter().enumerate() {
        let (at, op) = o.split();
        if let Err(e) = validate::operation(&op, interner.pii()) {
            problems.push(e.within(&format!("operations[{i}]")));
            continue;
        }
        ops.push((at.unwrap_or(now), op));
    }
    if problems.is_empty() {
        for r in &mut resolved {
            if r.0.is_some() {
                continue;
            }
            let sample = &parsed.samples[r.1];
            label_buf.clear();
            label_buf.extend(sample.labels.0.iter().map(|(k, v)| (&**k, &**v)));
            match interner.intern(&sample.metric, &label_buf, sample.kind.kind_op().0) {
                Ok(id) => r.0 = Some(id),
                Err(e) => problems.push(Invalid::new(format!("samples[{}]", r.1), e.to_string())),
            }
            if problems.len() >= MAX_LISTED {
                break;
            }
        }
    }
    if !problems.is_empty() {
        problems.truncate(MAX_LISTED);
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": format!("{} invalid record(s); nothing in this batch was recorded", problems.len()),
                "errors": problems.iter().map(|p| json!({"field": p.field, "problem": p.problem})).collect::<Vec<_>>(),
            })),
        )
            .into_response();
    }
    let total = resolved.len() + ops.len();
    if metrics.full_queue() == FullQueue::Reject && metrics.free() < total {
        return ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the metrics queue has room for {} records and this batch holds {total}; nothing was recorded, retry shortly",
                metrics.free()
            ),
        )
        .into_response();
    }
    let m = metrics.clone();
    let enqueue = move || -> Result<usize, (usize, RecordError)> {
        let mut n = 0;
        for (id, _, op, at, v) in resolved {
            let id = id.expect("every sample was resolved");
            m.push_sample(id, op, at, v).map_err(|e| (n, e))?;
            n += 1;
        }
        for (at, op) in ops {
            m.push_operation(at, op).map_err(|e| (n, e))?;
            n += 1;
        }
        Ok(n)
    };
    // Waiting for room blocks; keep it off the async workers.
    let result = if metrics.full_queue() == FullQueue::Wait {
        match tokio::task::spawn_blocking(enqueue).await {
            Ok(r) => r,
            Err(e) => {
                return ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
            }
        }
    } else {
        enqueue()
    };
    match result {
        Ok(n) => Json(json!({ "accepted": n })).into_response(),
        Err((n, e)) => (
            if matches!(e, RecordError::Stopped) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::TOO_MANY_REQUESTS
            },
            Json(json!({
                "error": format!("{e}; {n} of {total} records were recorded before it"),
                "accepted": n,
            })),
        )
            .into_response(),
    }
}

async fn stats(State(s): State<AppState>) -> Result<Json<warden_metrics::Stats>, ApiError> {
    let p = s.metrics.as_ref().ok_or_else(not_enabled)?;
    Ok(Json(p.metrics().stats()))
}

fn not_enabled() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "metrics are not enabled in this daemon".into(),
    )
}

/// `metric=NAME&match=LABEL=VALUE&window=5m` (or `from`/`to` in ms).
struct SeriesQuery {
    selector: SeriesSelector,
    window: Duration,
    from: Option<i64>,
    to: Option<i64>,
    aggregates: Vec<Aggregation>,
    scope: warden_metrics::store::Scope,
}

fn parse_query(raw: Option<&str>) -> Result<SeriesQuery, ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| bad(format!("the query string is malformed: {e}")))?;
    let mut q = SeriesQuery {
        selector: SeriesSelector {
            metric: String::new(),
            matchers: Vec::new(),
        },
        window: Duration::from_secs(300),
        from: None,
        to: None,
        aggregates: Vec::new(),
        scope: warden_metrics::store::Scope::Both,
    };
    for (k, v) in pairs {
        match k.as_str() {
            "metric" => q.selector.metric = v,
            "match" => {
                let (name, value) = v
                    .split_once('=')
                    .ok_or_else(|| bad(format!("`match={v}`: write it as `match=LABEL=VALUE`")))?;
                q.selector
                    .matchers
                    .push((name.to_owned(), value.to_owned()));
            }
            "window" => {
                q.window = v
                    .parse::<HumanDuration>()
                    .map_err(|e| bad(format!("window: {e}")))?
                    .0
            }
            "from" | "to" => {
                let t: i64 = v.parse().map_err(|_| {
                    bad(format!(
                        "{k}: `{v}` is not a time in milliseconds since the epoch"
                    ))
                })?;
                if k == "from" {
                    q.from = Some(t)
                } else {
                    q.to = Some(t)
                }
            }
            "by" => {
                q.scope = match v.as_str() {
                    "series" => warden_metrics::store::Scope::Each,
                    "all" => warden_metrics::store::Scope::Combined,
                    "both" => warden_metrics::store::Scope::Both,
                    other => {
                        return Err(bad(format!(
                            "by: `{other}` is not one of `series`, `all`, `both`"
                        )));
                    }
                }
            }
            "aggregate" => {
                for a in v.split(',') {
                    q.aggregates.push(
                        a.parse()
                            .map_err(|e: String| bad(format!("aggregate: {e}")))?,
                    );
                }
            }
            other => {
                return Err(bad(format!(
                    "unknown parameter `{other}`; use metric, match, window, from, to, aggregate, by"
                )));
            }
        }
    }
    if q.selector.metric.is_empty() {
        return Err(bad(
            "`metric` is required, such as `?metric=cpu_usage_ratio`".into(),
        ));
    }
    Ok(q)
}

async fn series(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = s.metrics.as_ref().ok_or_else(not_enabled)?;
    let q = parse_query(raw.as_deref())?;
    let to = q.to.unwrap_or_else(warden_core::clock::now_ms);
    let from = q
        .from
        .unwrap_or_else(|| to - i64::try_from(q.window.as_millis()).unwrap_or(i64::MAX));
    let found = p.store().range(&q.selector, from, to);
    Ok(Json(json!({
        "metric": q.selector.metric,
        "from_ms": from,
        "to_ms": to,
        "series": found.iter().map(|s| json!({
            "labels": s.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "samples": s.samples.iter().map(|x| [x.at_ms as f64, x.value]).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })))
}

async fn aggregate(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = s.metrics.as_ref().ok_or_else(not_enabled)?;
    let mut q = parse_query(raw.as_deref())?;
    if q.aggregates.is_empty() {
        q.aggregates = vec![
            Aggregation::Avg,
            Aggregation::Min,
            Aggregation::Max,
            Aggregation::Count,
        ];
    }
    let now = q.to.unwrap_or_else(warden_core::clock::now_ms);
    let r = p
        .store()
        .aggregate_by(&q.selector, q.window, now, &q.aggregates, q.scope);
    let names: Vec<String> = q.aggregates.iter().map(ToString::to_string).collect();
    let row = |values: &[Option<f64>]| -> serde_json::Map<String, serde_json::Value> {
        names
            .iter()
            .cloned()
            .zip(values.iter().map(|v| json!(v)))
            .collect()
    };
    Ok(Json(json!({
        "metric": q.selector.metric,
        "window": HumanDuration(q.window).to_string(),
        "combined": (!r.combined.is_empty()).then(|| row(&r.combined)),
        "series": r.series.iter().map(|s| json!({
            "labels": s.key.labels.iter().map(|(k, v)| (k.to_string(), json!(&**v))).collect::<serde_json::Map<_, _>>(),
            "values": row(&s.values),
        })).collect::<Vec<_>>(),
    })))
}
