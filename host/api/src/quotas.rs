//! `/api/v1/quotas`: the quotas in force, what they measure, and checks.
//!
//! - `POST /api/v1/quotas/check {quota?, owner, kind?, labels?, amount?, bytes?}`
//!   answers `{"allow": true}` or `{"allow": false, quota, limit, usage,
//!   requested, reason}`: whether `amount` more things (default 1) of
//!   `bytes` bytes (default 0) for `owner` fit. Naming `quota` checks that
//!   one (its scope is not consulted); otherwise every quota whose scope
//!   selects the subject (`kind` is then required) is checked. A check
//!   charges nothing.
//! - `GET /api/v1/quotas[?quota=NAME&after=OWNER&limit=N]`: every quota
//!   with its definition and aggregates; with `quota`, also a page of its
//!   owners in name order (`limit` at most 1000, default 100; the next page
//!   starts `after` the last owner shown).
//! - `GET /api/v1/quotas/violations[?quota=&limit=]`: violations, newest
//!   last (closed ones from the history, then open ones), and the recent
//!   outcomes of `cleanup` actions.
//! - `POST /api/v1/quotas/{name}/reset`: starts a quota afresh (rates and
//!   burst time to zero, every owner `ok`, open violations closed).
//!
//! A registration over a denying quota answers `429` with the same fields
//! as a denied check ([`quota_denied`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, Q};
use warden_quotas::{Amount, Decision, Denial, Subject};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/quotas", get(list))
        .route("/api/v1/quotas/check", post(check))
        .route("/api/v1/quotas/violations", get(violations))
        .route("/api/v1/quotas/{name}/reset", post(reset))
}

/// Longest owner, kind or label accepted, in bytes.
const MAX_TEXT: usize = 4096;
/// Most labels on one check.
const MAX_LABELS: usize = 32;
/// Most rows one page lists.
const MAX_PAGE: usize = 1000;

/// The answer to a registration or check over a quota: `429` naming the
/// quota, its limit, usage and what was asked. The registration routes
/// (one or a batch) answer a refusal with this.
pub(crate) fn quota_denied(d: &Denial) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({
            "error": d.to_string(),
            "quota": d.quota,
            "limit": d.limit,
            "usage": d.usage,
            "requested": d.requested,
        })),
    )
        .into_response()
}

/// A check as posted. Read straight into this, without a `Value` first:
/// the route is on applications' hot path, and names borrow from the body
/// unless they hold escapes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody<'a> {
    #[serde(default, borrow)]
    quota: Option<Cow<'a, str>>,
    #[serde(borrow)]
    owner: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "label_pairs")]
    labels: Vec<(String, String)>,
    #[serde(default)]
    amount: Option<u64>,
    #[serde(default)]
    bytes: u64,
}

/// Labels come as an object; kept as pairs, which is what a subject holds.
fn label_pairs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    Option::<BTreeMap<String, String>>::deserialize(d)
        .map(|m| m.map(|m| m.into_iter().collect()).unwrap_or_default())
        .map_err(|e| serde::de::Error::custom(format!("labels: must map names to strings: {e}")))
}

async fn check(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let b: CheckBody<'_> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not a quota check: {e}; send {{\"owner\": \"svc\", \"quota\": \"NAME\", \"amount\": 1}} or {{\"owner\": \"svc\", \"kind\": \"temp-file\", \"labels\": {{}}, \"bytes\": 4096}}"
        ))
    })?;
    if b.owner.len() > MAX_TEXT || b.kind.as_ref().is_some_and(|k| k.len() > MAX_TEXT) {
        return Err(ApiError::bad_request(format!(
            "owner and kind: at most {MAX_TEXT} bytes"
        )));
    }
    if b.labels.len() > MAX_LABELS
        || b.labels
            .iter()
            .any(|(k, v)| k.len() > MAX_TEXT || v.len() > MAX_TEXT)
    {
        return Err(ApiError::bad_request(format!(
            "labels: at most {MAX_LABELS}, each name and value at most {MAX_TEXT} bytes"
        )));
    }
    let amount = Amount {
        count: b.amount.unwrap_or(1),
        bytes: b.bytes,
    };
    let engine = s.scheduler.context().quotas.current();
    let now = warden_core::clock::now_ms();
    let decision = match (&b.quota, &b.kind) {
        (Some(name), _) => {
            let Some(id) = engine.id(name) else {
                return Err(ApiError(
                    StatusCode::NOT_FOUND,
                    format!("quota: no quota is named `{name}`; `GET /api/v1/quotas` lists them"),
                ));
            };
            engine.check_quota(id, &b.owner, amount, now)
        }
        (None, Some(kind)) => {
            let subject = Subject::new(&b.owner, kind).with_labels(&b.labels);
            engine.check(&subject, amount, now)
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "give `quota` (check that one) or `kind` (check every quota whose scope selects the owner, kind and labels)".into(),
            ));
        }
    };
    Ok(match decision {
        // A fixed answer: no JSON value to build on the common path.
        Decision::Allow => (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"allow":true}"#,
        )
            .into_response(),
        Decision::Deny {
            quota,
            limit,
            usage,
            requested,
        } => Json(json!({
            "allow": false,
            "quota": quota,
            "limit": limit,
            "usage": usage,
            "requested": requested,
            "reason": decision.to_string(),
        }))
        .into_response(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    quota: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn list(State(s): State<AppState>, Q(q): Q<ListQuery>) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit: from 1 to {MAX_PAGE}"
        )));
    }
    if q.quota.is_none() && q.after.is_some() {
        return Err(ApiError::bad_request(
            "after: pages list one quota's owners; give `quota` too".into(),
        ));
    }
    let service = std::sync::Arc::clone(&s.scheduler.context().quotas);
    let body = super::heavy::run(&s, move || {
        let engine = service.engine();
        let now = warden_core::clock::now_ms();
        let quotas: Vec<serde_json::Value> = engine
            .defs()
            .filter_map(|d| {
                let id = engine.id(&d.name)?;
                let summary = engine.summary(id, now, warden_runtime::quotas::TOP_OWNERS);
                Some(json!({
                    "name": d.name,
                    "definition": d,
                    "owners": summary.owners,
                    "usage": summary.total,
                    "largest": summary.max,
                    "by_state": {
                        "ok": summary.by_state[0],
                        "soft_pending": summary.by_state[1],
                        "soft": summary.by_state[2],
                        "burst": summary.by_state[3],
                        "hard": summary.by_state[4],
                    },
                    "top": summary.top.iter().map(|(o, u)| json!({"owner": o, "usage": u})).collect::<Vec<_>>(),
                }))
            })
            .collect();
        let mut out = json!({ "quotas": quotas });
        if let Some(name) = &q.quota {
            let Some(id) = engine.id(name) else {
                return Err(format!("no quota is named `{name}`"));
            };
            let (rows, more) = engine.status_page(id, now, q.after.as_deref(), limit);
            let next = if more { rows.last().map(|r| r.owner.clone()) } else { None };
            out["owners"] = json!(rows);
            out["next_after"] = json!(next);
        }
        Ok(out)
    })
    .await?;
    match body {
        Ok(v) => Ok(Json(v).into_response()),
        Err(m) => Err(ApiError(StatusCode::NOT_FOUND, format!("quota: {m}"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ViolationsQuery {
    quota: Option<String>,
    limit: Option<usize>,
}

async fn violations(
    State(s): State<AppState>,
    Q(q): Q<ViolationsQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit: from 1 to {MAX_PAGE}"
        )));
    }
    let service = std::sync::Arc::clone(&s.scheduler.context().quotas);
    let body = super::heavy::run(&s, move || {
        let mut all = service.engine().violations();
        if let Some(name) = &q.quota {
            all.retain(|v| &v.quota == name);
        }
        let total = all.len();
        let shown = all.split_off(total.saturating_sub(limit));
        let mut cleanups = service.cleanups();
        if let Some(name) = &q.quota {
            cleanups.retain(|c| &c.quota == name);
        }
        let cleanups = cleanups.split_off(cleanups.len().saturating_sub(limit));
        json!({ "total": total, "violations": shown, "cleanups": cleanups })
    })
    .await?;
    Ok(Json(body).into_response())
}

async fn reset(State(s): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let cx = s.scheduler.context().clone();
    let events = tokio::task::spawn_blocking(move || {
        cx.quotas
            .reset(&name, &cx, warden_core::clock::now_ms())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ApiError::internal(&format!("the reset task failed: {e}")))?
    .map_err(|m| ApiError(StatusCode::NOT_FOUND, m))?;
    Ok(Json(json!({ "reset": true, "events": events })).into_response())
}
