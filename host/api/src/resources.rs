//! `/api/v1/resources`: what applications register with Warden so that
//! cleanup policies can judge it — register, mark as used, release, list.
//!
//! - `POST /api/v1/resources` registers `{kind, name, owner, size_bytes, ttl,
//!   labels, pid}` and answers `201 {"handle": N}`.
//! - `POST /api/v1/resources/{handle}/access` marks it used now.
//! - `DELETE /api/v1/resources/{handle}?owner=OWNER` releases it (the
//!   application is done). The caller names the owner it registered;
//!   releasing another owner's resource takes `?force=true`, and is logged.
//! - `GET /api/v1/resources[?kind=&owner=&name_prefix=&limit=]` lists them;
//!   `GET /api/v1/resources/{handle}` shows one. A handle a cleanup policy
//!   released answers `410 Gone` naming the policy, so the application knows
//!   why it disappeared.
//!
//! Handles are not guessable (see the registry). A resource's label names
//! are held to the personal-data list, and its name and label values must
//! not carry a personal-data `key=value` or an email address.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, Q};
use warden_core::records::{ResourceFilter, ResourceKind};
use warden_policy::schema::EventKind;
use warden_resources::registry::{self, Lookup, Registration};
use warden_runtime::scheduler::Event;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/resources",
            get(list)
                .post(register)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY)),
        )
        .route("/api/v1/resources/{handle}", get(show).delete(release))
        .route("/api/v1/resources/{handle}/access", post(access))
}

/// Longest name, owner or label accepted, in bytes.
const MAX_TEXT: usize = 4096;
/// The largest registration: every field at its longest fits.
const MAX_BODY: usize = 512 * 1024;
/// Most labels on one resource.
const MAX_LABELS: usize = 32;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewResource {
    kind: String,
    name: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    size_bytes: u64,
    /// `30s`, `10m`, `24h`: how long it may go unused.
    #[serde(default)]
    ttl: Option<warden_core::values::HumanDuration>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    pid: Option<u32>,
}

const KINDS: &str =
    "temp-file, file, directory, file-descriptor, socket, thread, process, app-object";

async fn register(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let r: NewResource = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not a resource: {e}; send {{\"kind\": \"app-object\", \"name\": \"cache/42\", \"owner\": \"svc\", \"size_bytes\": 1024, \"ttl\": \"10m\", \"labels\": {{}}}}"
        ))
    })?;
    let kind = ResourceKind::from_name(&r.kind).ok_or_else(|| {
        ApiError::bad_request(format!(
            "kind: `{}` is not a resource kind; use one of {KINDS}",
            r.kind
        ))
    })?;
    if r.name.is_empty() || r.name.len() > MAX_TEXT {
        return Err(ApiError::bad_request(format!(
            "name: must be 1 to {MAX_TEXT} bytes long"
        )));
    }
    if r.owner.len() > MAX_TEXT {
        return Err(ApiError::bad_request(format!(
            "owner: at most {MAX_TEXT} bytes"
        )));
    }
    if r.labels.len() > MAX_LABELS {
        return Err(ApiError::bad_request(format!(
            "labels: {} labels; at most {MAX_LABELS}",
            r.labels.len()
        )));
    }
    if let Some(found) = s.pii.find_in_text(&r.name) {
        return Err(ApiError::bad_request(format!(
            "name: carries personal data ({found}); register it under an anonymous name (a hash, an id)"
        )));
    }
    for (k, v) in &r.labels {
        if s.pii.contains(k) {
            return Err(ApiError::bad_request(format!(
                "labels.{k}: a label name that carries personal data is refused; record an anonymous value under another name"
            )));
        }
        if let Some(found) = s.pii.find_in_text(v) {
            return Err(ApiError::bad_request(format!(
                "labels.{k}: the value carries personal data ({found})"
            )));
        }
        if k.is_empty() || k.len() > MAX_TEXT || v.len() > MAX_TEXT {
            return Err(ApiError::bad_request(format!(
                "labels.{k}: keys must be 1 to {MAX_TEXT} bytes and values at most {MAX_TEXT}"
            )));
        }
        if k.starts_with("warden.") {
            return Err(ApiError::bad_request(format!(
                "labels.{k}: `warden.` labels are Warden's own; pick another name"
            )));
        }
    }
    let ttl_ms = match r.ttl {
        Some(t) if t.0.is_zero() => {
            return Err(ApiError::bad_request("ttl: must be longer than 0s".into()));
        }
        t => t.map(|t| u64::try_from(t.0.as_millis()).unwrap_or(u64::MAX)),
    };
    let registry = &s.scheduler.context().registry;
    let handle = registry
        .register(
            Registration {
                kind,
                name: r.name,
                owner: r.owner,
                size_bytes: r.size_bytes,
                pid: r.pid,
                labels: r.labels.into_iter().collect(),
                ttl_ms,
            },
            warden_core::clock::now_ms(),
        )
        // Full: the request is fine, the daemon has no room for it now.
        .map_err(|full| ApiError(StatusCode::INSUFFICIENT_STORAGE, full.to_string()))?;
    s.scheduler.context().publish(Event {
        kind: EventKind::ResourceRegistered,
        pressure: None,
        failure: None,
    });
    Ok((StatusCode::CREATED, Json(json!({ "handle": handle }))).into_response())
}

fn parse_handle(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "`{text}` is not a resource handle; handles are the numbers `POST /api/v1/resources` returns"
        ))
    })
}

fn gone_or_missing(s: &AppState, handle: u64) -> ApiError {
    match s.scheduler.context().registry.lookup(handle) {
        Lookup::Released(r) => ApiError(
            StatusCode::GONE,
            format!(
                "resource {handle} was released by cleanup policy `{}` at {} ms since the epoch",
                r.by_policy, r.at_ms
            ),
        ),
        _ => ApiError(
            StatusCode::NOT_FOUND,
            format!("no resource {handle} is registered"),
        ),
    }
}

async fn access(
    State(s): State<AppState>,
    Path(handle): Path<String>,
) -> Result<StatusCode, ApiError> {
    let handle = parse_handle(&handle)?;
    if s.scheduler
        .context()
        .registry
        .touch(handle, warden_core::clock::now_ms())
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(gone_or_missing(&s, handle))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseQuery {
    /// The owner the caller registered the resource under.
    owner: Option<String>,
    /// Release whoever owns it.
    #[serde(default)]
    force: bool,
}

async fn release(
    State(s): State<AppState>,
    Path(handle): Path<String>,
    Q(q): Q<ReleaseQuery>,
) -> Result<StatusCode, ApiError> {
    let handle = parse_handle(&handle)?;
    let registry = &s.scheduler.context().registry;
    let Lookup::Live(found) = registry.lookup(handle) else {
        return Err(gone_or_missing(&s, handle));
    };
    // A resource registered without an owner is anyone's to release.
    if !found.owner.is_empty() && q.owner.as_deref() != Some(found.owner.as_str()) {
        if !q.force {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                match q.owner {
                    None => format!(
                        "releasing resource {handle} needs the owner it was registered under: `?owner=OWNER`, or `?force=true` to release another owner's resource"
                    ),
                    Some(o) => format!(
                        "resource {handle} is not owned by `{o}`; `?force=true` releases another owner's resource"
                    ),
                },
            ));
        }
        tracing::warn!(handle, owner = %found.owner, caller = ?q.owner, "a resource was released by force by a caller that is not its owner");
    }
    if registry.release(handle) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(gone_or_missing(&s, handle))
    }
}

async fn show(
    State(s): State<AppState>,
    Path(handle): Path<String>,
) -> Result<Json<registry::View>, ApiError> {
    let handle = parse_handle(&handle)?;
    match s.scheduler.context().registry.lookup(handle) {
        Lookup::Live(v) => Ok(Json(v)),
        _ => Err(gone_or_missing(&s, handle)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    kind: Option<String>,
    owner: Option<String>,
    name_prefix: Option<String>,
    limit: Option<u32>,
}

async fn list(
    State(s): State<AppState>,
    Q(q): Q<ListQuery>,
) -> Result<Json<Vec<registry::View>>, ApiError> {
    let kinds = match q.kind.as_deref() {
        None => Vec::new(),
        Some(k) => vec![ResourceKind::from_name(k).ok_or_else(|| {
            ApiError::bad_request(format!(
                "kind: `{k}` is not a resource kind; use one of {KINDS}"
            ))
        })?],
    };
    let filter = ResourceFilter {
        kinds,
        name_prefix: q.name_prefix,
        limit: Some(q.limit.unwrap_or(1000)),
    };
    Ok(Json(
        s.scheduler
            .context()
            .registry
            .views(&filter, q.owner.as_deref()),
    ))
}
