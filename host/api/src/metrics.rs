//! Metrics over HTTP: push a JSON batch, read ingest stats, query a range or
//! aggregates of series.
//!
//! `POST /api/v1/metrics` takes a batch as [`warden_metrics::push`]
//! describes it, all or nothing: if any record is refused, none is
//! recorded and every problem is listed by field. Range and aggregate
//! queries run on the blocking pool, a few at a time ([`super::heavy`]).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::{ApiError, AppState};
use warden_core::records::SeriesSelector;
use warden_core::values::HumanDuration;
use warden_metrics::config::FullQueue;
use warden_metrics::push::Refusal;
use warden_metrics::{Aggregation, RecordError};

/// The largest push body.
pub(crate) const MAX_PUSH_BYTES: usize = 32 << 20;

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

async fn push(State(s): State<AppState>, body: Bytes) -> Response {
    let Some(pipeline) = s.metrics.clone() else {
        return not_enabled().into_response();
    };
    let metrics = pipeline.metrics();
    let checked = match warden_metrics::push::check(
        &body,
        metrics,
        pipeline.push_limits(),
        warden_core::clock::now_ms(),
    ) {
        Ok(c) => c,
        Err(Refusal::NotABatch(message)) => {
            return ApiError(StatusCode::BAD_REQUEST, message).into_response();
        }
        Err(Refusal::Invalid(problems)) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "error": format!("{} invalid record(s); nothing in this batch was recorded", problems.len()),
                    "errors": problems.iter().map(|p| json!({"field": p.field, "problem": p.problem})).collect::<Vec<_>>(),
                })),
            )
                .into_response();
        }
    };
    let total = checked.len();
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
    // Waiting for room blocks; keep it off the async workers.
    let result = if metrics.full_queue() == FullQueue::Wait {
        match tokio::task::spawn_blocking(move || checked.enqueue(&m)).await {
            Ok(r) => r,
            Err(e) => {
                return ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
            }
        }
    } else {
        checked.enqueue(&m)
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
    let p = s.metrics.clone().ok_or_else(not_enabled)?;
    let q = parse_query(raw.as_deref())?;
    let to = q.to.unwrap_or_else(warden_core::clock::now_ms);
    let from = q.from.unwrap_or_else(|| {
        to.saturating_sub(i64::try_from(q.window.as_millis()).unwrap_or(i64::MAX))
    });
    super::heavy::run(&s, move || series_answer(&p, &q, from, to))
        .await
        .map(Json)
}

fn series_answer(
    p: &warden_metrics::Pipeline,
    q: &SeriesQuery,
    from: i64,
    to: i64,
) -> serde_json::Value {
    let found = p.store().range(&q.selector, from, to);
    json!({
        "metric": q.selector.metric,
        "from_ms": from,
        "to_ms": to,
        "series": found.iter().map(|s| json!({
            "labels": s.labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "samples": s.samples.iter().map(|x| [x.at_ms as f64, x.value]).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

async fn aggregate(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = s.metrics.clone().ok_or_else(not_enabled)?;
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
    super::heavy::run(&s, move || aggregate_answer(&p, &q, now))
        .await
        .map(Json)
}

fn aggregate_answer(p: &warden_metrics::Pipeline, q: &SeriesQuery, now: i64) -> serde_json::Value {
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
    json!({
        "metric": q.selector.metric,
        "window": HumanDuration(q.window).to_string(),
        "combined": (!r.combined.is_empty()).then(|| row(&r.combined)),
        "series": r.series.iter().map(|s| json!({
            "labels": s.key.labels.iter().map(|(k, v)| (k.to_string(), json!(&**v))).collect::<serde_json::Map<_, _>>(),
            "values": row(&s.values),
        })).collect::<Vec<_>>(),
    })
}
