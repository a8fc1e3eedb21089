//! `/api/v1/resources`: what applications register with Warden so that
//! cleanup policies can judge it — register, mark as used, release, list.
//!
//! - `POST /api/v1/resources` registers `{kind, name, owner, size_bytes, ttl,
//!   labels, pid}` and answers `201 {"handle": N}`, or `429` naming the
//!   quota, limit, usage and requested amount when a quota denies it.
//! - `POST /api/v1/resources/{handle}/access` marks it used now.
//! - `DELETE /api/v1/resources/{handle}?owner=OWNER` releases it (the
//!   application is done). The caller names the owner it registered;
//!   releasing another owner's resource takes `?force=true`, and is logged.
//! - `GET /api/v1/resources[?kind=&owner=&name_prefix=&limit=]` lists them;
//!   `GET /api/v1/resources/{handle}` shows one.
//! - `depends_on: [H…]` at registration, `POST`/`DELETE
//!   /api/v1/resources/{h}/dependencies?on=H` later, and `GET …/dependencies`
//!   (direct and transitive, both ways). Releasing a resource others depend
//!   on answers `409` naming them, unless `?cascade=true`: dependents first.
//! - `GET /api/v1/resources/leaks`: resources unused past their TTL,
//!   orphans (their owner process is gone) and dependency cycles.
//! - `GET /api/v1/resources/audit[?handle=&limit=]`: who registered, used
//!   (at most once a minute per resource) and released what, newest first.
//! - With `?process=NAME|PID`, or a `kind` discovery finds
//!   (`file-descriptor`, `socket`, `thread`, `process`), the list also holds
//!   what watched processes hold, as discovery last read it (each with
//!   `"source": "discovered"`; registered ones say `"registered"`).
//!   `GET /api/v1/resources/discovery` says when that was, how long it
//!   took, and what it left out. A handle a cleanup policy
//!   released answers `410 Gone` naming the policy, so the application knows
//!   why it disappeared.
//! - `POST /api/v1/resources/batch` registers `{"resources": [{…}, …]}`, at
//!   most 1,000 (`413` past it), each checked as above; it answers a result
//!   per item, in order: `{"index", "handle"}` or `{"index", "field",
//!   "error"}` with the error naming `resources[I].FIELD`.
//! - `GET /api/v1/resources/summary[?top=N]`: registered resources and
//!   their bytes by kind and by owner (the top `N`, default 20, and the
//!   others together), and discovered ones per kind per watched process.
//! - Owners listening for cleanup policies' releases
//!   (`/api/v1/resources/events`, `…/requests`) are served by the
//!   `resource_requests` module.
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
use warden_resources::discover;
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
        .route(
            "/api/v1/resources/batch",
            post(register_batch).layer(axum::extract::DefaultBodyLimit::max(MAX_BATCH_BODY)),
        )
        .route("/api/v1/resources/summary", get(summary))
        .route("/api/v1/resources/discovery", get(discovery))
        .route("/api/v1/resources/audit", get(audit))
        .route("/api/v1/resources/leaks", get(leaks))
        .route("/api/v1/resources/{handle}", get(show).delete(release))
        .route("/api/v1/resources/{handle}/access", post(access))
        .route(
            "/api/v1/resources/{handle}/dependencies",
            get(dependencies)
                .post(add_dependency)
                .delete(remove_dependency),
        )
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
    /// Handles of resources this one depends on.
    #[serde(default)]
    depends_on: Vec<u64>,
}

const KINDS: &str =
    "temp-file, file, directory, file-descriptor, socket, thread, process, app-object";

async fn register(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let r: NewResource = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not a resource: {e}; send {{\"kind\": \"app-object\", \"name\": \"cache/42\", \"owner\": \"svc\", \"size_bytes\": 1024, \"ttl\": \"10m\", \"labels\": {{}}}}"
        ))
    })?;
    let (reg, depends_on) = checked(&s, r).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let registry = &s.scheduler.context().registry;
    let handle =
        match registry.register_with_dependencies(reg, &depends_on, warden_core::clock::now_ms()) {
            Ok(h) => h,
            Err(e) => return Ok(refused(e)),
        };
    s.scheduler.context().publish(Event {
        kind: EventKind::ResourceRegistered,
        pressure: None,
        failure: None,
    });
    Ok((StatusCode::CREATED, Json(json!({ "handle": handle }))).into_response())
}

/// How a refused registration is answered: `429` naming the quota, its
/// limit, usage and what was asked when a quota denies it; `507` when the
/// registry is full; `400` for a dependency that cannot be made. Batch
/// registration answers each refused item with this too.
pub(crate) fn refused(e: registry::RegisterError) -> Response {
    match e {
        registry::RegisterError::Full(registry::Full::Quota(d)) => super::quotas::quota_denied(&d),
        // Full: the request is fine, the daemon has no room for it now.
        registry::RegisterError::Full(full) => {
            ApiError(StatusCode::INSUFFICIENT_STORAGE, full.to_string()).into_response()
        }
        registry::RegisterError::Dependency(d) => {
            ApiError::bad_request(format!("depends_on: {d}")).into_response()
        }
    }
}

/// What is wrong with one field of a registration.
#[derive(Debug)]
struct Invalid {
    /// The field (`labels.KEY` for a label); empty when the registration
    /// as a whole is not understood.
    field: String,
    message: String,
}

impl Invalid {
    fn new(field: impl Into<String>, message: String) -> Self {
        Invalid {
            field: field.into(),
            message,
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Checks a registration as the API takes it (bounds, the personal-data
/// filter, `warden.` labels) and makes it the registry's.
fn checked(s: &AppState, r: NewResource) -> Result<(Registration, Vec<u64>), Invalid> {
    let kind = ResourceKind::from_name(&r.kind).ok_or_else(|| {
        Invalid::new(
            "kind",
            format!("`{}` is not a resource kind; use one of {KINDS}", r.kind),
        )
    })?;
    if r.name.is_empty() || r.name.len() > MAX_TEXT {
        return Err(Invalid::new(
            "name",
            format!("must be 1 to {MAX_TEXT} bytes long"),
        ));
    }
    if r.owner.len() > MAX_TEXT {
        return Err(Invalid::new("owner", format!("at most {MAX_TEXT} bytes")));
    }
    if r.labels.len() > MAX_LABELS {
        return Err(Invalid::new(
            "labels",
            format!("{} labels; at most {MAX_LABELS}", r.labels.len()),
        ));
    }
    if let Some(found) = s.pii.find_in_text(&r.name) {
        return Err(Invalid::new(
            "name",
            format!(
                "carries personal data ({found}); register it under an anonymous name (a hash, an id)"
            ),
        ));
    }
    for (k, v) in &r.labels {
        let field = || format!("labels.{k}");
        if s.pii.contains(k) {
            return Err(Invalid::new(
                field(),
                "a label name that carries personal data is refused; record an anonymous value under another name".into(),
            ));
        }
        if let Some(found) = s.pii.find_in_text(v) {
            return Err(Invalid::new(
                field(),
                format!("the value carries personal data ({found})"),
            ));
        }
        if k.is_empty() || k.len() > MAX_TEXT || v.len() > MAX_TEXT {
            return Err(Invalid::new(
                field(),
                format!("keys must be 1 to {MAX_TEXT} bytes and values at most {MAX_TEXT}"),
            ));
        }
        if k.starts_with("warden.") {
            return Err(Invalid::new(
                field(),
                "`warden.` labels are Warden's own; pick another name".into(),
            ));
        }
    }
    let ttl_ms = match r.ttl {
        Some(t) if t.0.is_zero() => {
            return Err(Invalid::new("ttl", "must be longer than 0s".into()));
        }
        t => t.map(|t| u64::try_from(t.0.as_millis()).unwrap_or(u64::MAX)),
    };
    Ok((
        Registration {
            kind,
            name: r.name,
            owner: r.owner,
            size_bytes: r.size_bytes,
            pid: r.pid,
            labels: r.labels.into_iter().collect(),
            ttl_ms,
        },
        r.depends_on,
    ))
}

/// Most resources in one batch: a batch holds the registry's lock while
/// it registers, so a bigger one would hold up every other caller.
const MAX_BATCH: usize = 1_000;
/// The largest batch body: 1,000 registrations of a few KiB each.
const MAX_BATCH_BODY: usize = 8 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBatch<'a> {
    /// Each read on its own, so that one bad item names itself.
    #[serde(borrow)]
    resources: Vec<&'a serde_json::value::RawValue>,
}

/// `POST /api/v1/resources/batch`: registers each of `resources`, checked
/// as one registration is, and answers a result per item in order.
async fn register_batch(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let batch: NewBatch<'_> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not a batch: {e}; send {{\"resources\": [{{\"kind\": \"app-object\", \"name\": \"cache/42\", \"owner\": \"svc\"}}, …]}}"
        ))
    })?;
    if batch.resources.len() > MAX_BATCH {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "resources: {} items; a batch takes at most {MAX_BATCH}: split it",
                batch.resources.len()
            ),
        ));
    }
    let mut results: Vec<serde_json::Value> = Vec::with_capacity(batch.resources.len());
    let mut good = Vec::with_capacity(batch.resources.len());
    let mut at = Vec::with_capacity(batch.resources.len());
    for (i, raw) in batch.resources.iter().enumerate() {
        let item = parse_item(raw.get()).and_then(|r| checked(&s, r));
        match item {
            Ok(reg) => {
                at.push(i);
                good.push(reg);
                results.push(serde_json::Value::Null);
            }
            Err(e) => results.push(item_error(i, &e.field, &e.message)),
        }
    }
    let registry = &s.scheduler.context().registry;
    let mut registered = 0usize;
    let done = registry.register_batch(good, warden_core::clock::now_ms());
    for (i, r) in at.into_iter().zip(done) {
        results[i] = match r {
            Ok(handle) => {
                registered += 1;
                json!({ "index": i, "handle": handle })
            }
            Err(registry::RegisterError::Full(full)) => item_error(i, "", &full.to_string()),
            Err(registry::RegisterError::Dependency(d)) => {
                item_error(i, "depends_on", &d.to_string())
            }
        };
    }
    if registered > 0 {
        s.scheduler.context().publish(Event {
            kind: EventKind::ResourceRegistered,
            pressure: None,
            failure: None,
        });
    }
    let failed = results.len() - registered;
    Ok(Json(json!({
        "registered": registered,
        "failed": failed,
        "results": results,
    }))
    .into_response())
}

/// One item of a batch, its field named when serde says which.
fn parse_item(text: &str) -> Result<NewResource, Invalid> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // Missing and unknown fields are reported at the item's level: the
        // field is in the message.
        let field = if path == "." {
            inner
                .split('`')
                .nth(1)
                .filter(|_| {
                    inner.starts_with("missing field") || inner.starts_with("unknown field")
                })
                .unwrap_or("")
                .to_owned()
        } else {
            path
        };
        Invalid::new(field, inner)
    })
}

fn item_error(index: usize, field: &str, message: &str) -> serde_json::Value {
    let at = if field.is_empty() {
        format!("resources[{index}]")
    } else {
        format!("resources[{index}].{field}")
    };
    json!({
        "index": index,
        "field": (!field.is_empty()).then_some(field),
        "error": format!("{at}: {message}"),
    })
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessQuery {
    /// Who uses it, for the audit trail.
    owner: Option<String>,
}

async fn access(
    State(s): State<AppState>,
    Path(handle): Path<String>,
    Q(q): Q<AccessQuery>,
) -> Result<StatusCode, ApiError> {
    let handle = parse_handle(&handle)?;
    let caller = registry::Actor::Caller(q.owner.unwrap_or_default());
    if s.scheduler
        .context()
        .registry
        .touch_by(handle, &caller, warden_core::clock::now_ms())
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
    /// Release what depends on it too, dependents first; without it, a
    /// resource others depend on is not released (`409`).
    #[serde(default)]
    cascade: bool,
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
    let mode = if q.cascade {
        // A cascade releases dependents whoever owns them: other owners'
        // resources take `force`, as releasing them one by one would.
        let dependents = registry
            .dependents_transitive(handle)
            .map_err(|_| gone_or_missing(&s, handle))?;
        let others: Vec<u64> = dependents
            .into_iter()
            .filter(|d| match registry.lookup(*d) {
                Lookup::Live(v) => {
                    !v.owner.is_empty() && Some(v.owner.as_str()) != q.owner.as_deref()
                }
                _ => false,
            })
            .collect();
        if !others.is_empty() && !q.force {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "a cascade from resource {handle} would release {} resources of other owners ({}); add `force=true` to release them too",
                    others.len(),
                    others
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        registry::ReleaseMode::Cascade
    } else {
        registry::ReleaseMode::Refuse
    };
    let caller = registry::Actor::Caller(q.owner.unwrap_or_default());
    match registry.release_with(handle, &caller, mode, warden_core::clock::now_ms()) {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(e @ registry::ReleaseError::HasDependents { .. }) => {
            Err(ApiError(StatusCode::CONFLICT, e.to_string()))
        }
        Err(registry::ReleaseError::Unknown { .. }) => Err(gone_or_missing(&s, handle)),
        // Only a policy's `close` asks; an owner's own release never does.
        Err(e @ registry::ReleaseError::NotAsked { .. }) => {
            Err(ApiError(StatusCode::CONFLICT, e.to_string()))
        }
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
    /// A watched process: its selector's name or its pid.
    process: Option<String>,
}

async fn list(
    State(s): State<AppState>,
    Q(q): Q<ListQuery>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let kinds = match q.kind.as_deref() {
        None => Vec::new(),
        Some(k) => vec![ResourceKind::from_name(k).ok_or_else(|| {
            ApiError::bad_request(format!(
                "kind: `{k}` is not a resource kind; use one of {KINDS}"
            ))
        })?],
    };
    let limit = q.limit.unwrap_or(1000);
    let filter = ResourceFilter {
        kinds,
        name_prefix: q.name_prefix,
        limit: Some(limit),
    };
    let cx = s.scheduler.context();
    let tag = |mut v: serde_json::Value, source: &str| {
        v["source"] = source.into();
        v
    };
    // `?process=` is about what watched processes hold: registered
    // resources carry no such selector.
    let mut out: Vec<serde_json::Value> = if q.process.is_some() {
        Vec::new()
    } else {
        cx.registry
            .views(&filter, q.owner.as_deref())
            .into_iter()
            .filter_map(|v| serde_json::to_value(v).ok())
            .map(|v| tag(v, "registered"))
            .collect()
    };
    let discovered_kind = filter
        .kinds
        .iter()
        .any(|k| discover::rows::KINDS.contains(k));
    if q.process.is_some() || discovered_kind {
        let left = (limit as usize).saturating_sub(out.len());
        let filter = ResourceFilter {
            limit: Some(u32::try_from(left).unwrap_or(u32::MAX)),
            ..filter
        };
        let process = discover::rows::Process::parse(q.process.as_deref());
        let snap = cx.discovered.current();
        out.extend(
            discover::rows::rows(&snap, &filter, &process)
                .into_iter()
                .filter(|r| q.owner.as_deref().is_none_or(|o| r.owner == o))
                .filter_map(|r| serde_json::to_value(r).ok()),
        );
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// One resource's trail only.
    handle: Option<String>,
    /// At most this many events, newest first (default 100).
    limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DependencyQuery {
    /// The resource it depends on.
    on: String,
    /// Who changes it, for the audit trail.
    owner: Option<String>,
}

fn dependency_error(e: registry::DependencyError) -> ApiError {
    match e {
        registry::DependencyError::UnknownResource { .. } => {
            ApiError(StatusCode::NOT_FOUND, e.to_string())
        }
        other => ApiError::bad_request(other.to_string()),
    }
}

/// What `handle` depends on and what depends on it, directly and through
/// others.
async fn dependencies(
    State(s): State<AppState>,
    Path(handle): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let handle = parse_handle(&handle)?;
    let r = &s.scheduler.context().registry;
    Ok(Json(json!({
        "handle": handle,
        "dependencies": r.dependencies(handle).map_err(dependency_error)?,
        "dependents": r.dependents(handle).map_err(dependency_error)?,
        "all_dependencies": r.dependencies_transitive(handle).map_err(dependency_error)?,
        "all_dependents": r.dependents_transitive(handle).map_err(dependency_error)?,
    })))
}

/// `POST /api/v1/resources/{h}/dependencies?on=H`: `h` depends on `H`.
async fn add_dependency(
    State(s): State<AppState>,
    Path(handle): Path<String>,
    Q(q): Q<DependencyQuery>,
) -> Result<StatusCode, ApiError> {
    let (handle, on) = (parse_handle(&handle)?, parse_handle(&q.on)?);
    let caller = registry::Actor::Caller(q.owner.unwrap_or_default());
    s.scheduler
        .context()
        .registry
        .add_dependency(handle, on, &caller, warden_core::clock::now_ms())
        .map_err(dependency_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/resources/{h}/dependencies?on=H`.
async fn remove_dependency(
    State(s): State<AppState>,
    Path(handle): Path<String>,
    Q(q): Q<DependencyQuery>,
) -> Result<StatusCode, ApiError> {
    let (handle, on) = (parse_handle(&handle)?, parse_handle(&q.on)?);
    let caller = registry::Actor::Caller(q.owner.unwrap_or_default());
    s.scheduler
        .context()
        .registry
        .remove_dependency(handle, on, &caller, warden_core::clock::now_ms())
        .map_err(dependency_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Registered resources unused past their TTL, those whose owner process
/// is gone, and dependency cycles: counts and the first of each.
async fn leaks(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let registry = std::sync::Arc::clone(&s.scheduler.context().registry);
    // A scan reads every resource: under the heavy reads' bound.
    let report = crate::heavy::run(&s, move || registry.scan(warden_core::clock::now_ms())).await?;
    Ok(Json(serde_json::to_value(report).unwrap_or_default()))
}

/// Who registered, used and released what, newest first.
async fn audit(
    State(s): State<AppState>,
    Q(q): Q<AuditQuery>,
) -> Result<Json<Vec<registry::AuditEvent>>, ApiError> {
    let handle = q.handle.as_deref().map(parse_handle).transpose()?;
    Ok(Json(
        s.scheduler
            .context()
            .registry
            .audit(handle, q.limit.unwrap_or(100).min(10_000)),
    ))
}

/// How much of each kind discovery found one process holding: counted in
/// one place so that the discovery and summary answers cannot disagree.
struct Held {
    fds: usize,
    sockets: usize,
    threads: usize,
    children: usize,
}

impl Held {
    fn of(p: &discover::Inventory) -> Held {
        Held {
            fds: p.fds.len(),
            sockets: p.sockets.len(),
            threads: p.threads.len(),
            children: p.children.len(),
        }
    }
}

/// When discovery last read the watched processes, how long it took, what
/// it left out, and how much each process holds.
async fn discovery(State(s): State<AppState>) -> Json<serde_json::Value> {
    let snap = s.scheduler.context().discovered.current();
    let processes: Vec<serde_json::Value> = snap
        .processes
        .iter()
        .map(|p| {
            let held = Held::of(p);
            json!({
                "process": p.process,
                "pid": p.pid,
                "command": p.command,
                "started_ms": p.started_ms,
                "fds": held.fds,
                "sockets": held.sockets,
                "threads": held.threads,
                "children": held.children,
                "zombies": p.children.iter().filter(|c| c.state == 'Z').count(),
                "truncated": p.truncated,
                "took_us": p.took_us,
            })
        })
        .collect();
    Json(json!({
        "at_ms": snap.at_ms,
        "took_us": snap.took_us,
        "method": snap.method,
        "processes": processes,
        "skipped": snap.skipped,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SummaryQuery {
    /// Owners listed one by one (default 20, at most [`MAX_TOP`]).
    top: Option<usize>,
}

/// Most owners a summary lists one by one.
const MAX_TOP: usize = 1_000;

/// `GET /api/v1/resources/summary`: registered resources counted, with
/// their bytes, by kind and by owner (the `top` owners, the rest
/// together), and what discovery last found per watched process.
async fn summary(
    State(s): State<AppState>,
    Q(q): Q<SummaryQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let top = q.top.unwrap_or(20);
    if top > MAX_TOP {
        return Err(ApiError::bad_request(format!(
            "top: {top} owners; at most {MAX_TOP}"
        )));
    }
    let registry = std::sync::Arc::clone(&s.scheduler.context().registry);
    // Reads every resource: under the heavy reads' bound.
    let registered = crate::heavy::run(&s, move || registry.summary(top)).await?;
    let snap = s.scheduler.context().discovered.current();
    let discovered: Vec<serde_json::Value> = snap
        .processes
        .iter()
        .map(|p| {
            let held = Held::of(p);
            json!({
                "process": p.process,
                "pid": p.pid,
                "kinds": {
                    "file-descriptor": held.fds,
                    "socket": held.sockets,
                    "thread": held.threads,
                    "process": held.children,
                },
                "truncated": p.truncated,
            })
        })
        .collect();
    Ok(Json(json!({
        "registered": registered,
        "discovered": {
            "at_ms": snap.at_ms,
            "processes": discovered,
        },
    })))
}
