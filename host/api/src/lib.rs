//! # warden-api
//!
//! The HTTP API: health, policy status and reload, run-now, metrics push and
//! queries (`metrics`), recovery reports and circuits (`recovery`), quotas
//! (`quotas`), and
//! `/metrics`. Errors are JSON with a message a
//! person can act on.
//!
//! Every request passes [`auth::guard`] (the `Host` header, the token, a
//! JSON content type) and a body deadline; [`serve::serve`] bounds
//! connections and their timeouts; heavy reads run a few at a time off the
//! async workers ([`heavy`]).
//!
//! Layering: the top library layer. It depends on the runtime and everything
//! below it, and is driven by the `warden` binary; no other crate depends on
//! it.

#![deny(missing_docs)]

mod alerts;
mod analytics;
pub mod auth;
mod cleanup;
mod findings;
pub mod health;
pub mod heavy;
mod metrics;
mod quotas;
mod recovery;
mod resource_requests;
mod resources;
pub mod serve;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use warden_core::telemetry::Telemetry;
use warden_policy::PolicyDir;
use warden_runtime::{Scheduler, StateKey, StateStore};

/// What the handlers share: one pointer, because axum clones the state
/// for every request (and each layer that extracts it). Cloned field by
/// field, a dozen shared counters bounced between the cores on each
/// request; a profile of one registration per request put 3% of the
/// daemon's time there.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state handlers share.
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Shared {
    /// The policies directory.
    pub policies: Arc<PolicyDir>,
    /// Runtime state.
    pub state: Arc<StateStore>,
    /// The scheduler.
    pub scheduler: Arc<Scheduler>,
    /// Warden's own metrics.
    pub telemetry: Arc<Telemetry>,
    /// The metrics pipeline, if the daemon runs one.
    pub metrics: Option<Arc<warden_metrics::Pipeline>>,
    /// Memory pressure, as last measured.
    pub pressure: Arc<warden_runtime::pressure::Monitor>,
    /// Who may do what.
    pub access: Arc<auth::Access>,
    /// How long a request body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// Keys and text refused as personal data in registered resources.
    pub pii: warden_metrics::validate::PiiKeys,
    /// The bound on heavy reads ([`heavy::bound`]).
    pub heavy: Arc<tokio::sync::Semaphore>,
    /// Recovery: circuits, decisions, reports.
    pub recovery: Arc<warden_runtime::recovery::Recovery>,
    /// True once the daemon is stopping: streams that would never end on
    /// their own (server-sent events) end then, so that they do not hold
    /// the shutdown for its whole grace.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// An error as the API returns it.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    /// A 400 with `message`.
    pub fn bad_request(message: String) -> Self {
        ApiError(StatusCode::BAD_REQUEST, message)
    }

    /// A 500: `message` is logged, the answer says only that it failed.
    pub fn internal(message: &str) -> Self {
        tracing::error!("{message}");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request failed inside warden; the daemon's log says why".into(),
        )
    }
}

/// `?policy=NAME&limit=N` of the history endpoints.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    policy: Option<String>,
    limit: Option<usize>,
}

/// A query string, refused as JSON naming what is wrong (axum's own
/// extractor answers in plain text).
#[derive(Debug)]
pub struct Q<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
            .map(Q)
            .map_err(|e| ApiError::bad_request(format!("the query string is not understood: {e}")))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// Returns the API's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(exposition))
        .merge(policy_routes())
        .merge(metrics::routes())
        .merge(alerts::routes())
        .merge(findings::routes())
        .merge(analytics::routes())
        .merge(cleanup::routes())
        .merge(resources::routes())
        .merge(quotas::routes())
        .merge(resource_requests::routes())
        .merge(recovery::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        // Routes set their own body caps; this is the cap of the rest.
        .layer(axum::extract::DefaultBodyLimit::max(SMALL_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.body_timeout,
            serve::body_deadline,
        ))
        // Outermost: nothing runs for a request that fails it.
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.access),
            auth::guard,
        ))
        .with_state(state)
}

/// The body cap of routes that set none: they take no body or a small one.
pub const SMALL_BODY: usize = 16 * 1024;

async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!(
            "there is no endpoint `{}`; the endpoints are /health, /metrics and /api/v1/{{policies,alerts,findings,analytics,cleanup,resources,metrics,series,recovery}} (see the README)",
            uri.path()
        ),
    )
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("`{}` does not take {method}", uri.path()),
    )
}

fn policy_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/policies", get(policies))
        .route("/api/v1/policies/reload", post(reload))
        .route("/api/v1/policies/{name}/run", post(run_now))
        .route_layer(axum::middleware::from_fn(small_body))
}

/// Refuses a declared body over [`SMALL_BODY`] on routes that read none:
/// `DefaultBodyLimit` only applies where a handler reads the body.
pub(crate) async fn small_body(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > SMALL_BODY as u64) {
        return ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("this endpoint takes a body of at most {SMALL_BODY} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}

async fn exposition(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let (telemetry, metrics) = (Arc::clone(&s.telemetry), s.metrics.clone());
    let (recovery, state) = (Arc::clone(&s.recovery), Arc::clone(&s.state));
    let quotas = Arc::clone(&s.scheduler.context().quotas);
    let registry = Arc::clone(&s.scheduler.context().registry);
    let body = heavy::run(&s, move || {
        telemetry.encode_with(|out| {
            recovery.encode(out)?;
            quotas.encode(out)?;
            resource_requests::encode(&registry, out)?;
            if let Some(p) = &metrics {
                p.encode(out)?;
            }
            warden_runtime::findings::expose::encode(&state, out)
        })
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    ))
}

/// The status of one policy.
#[derive(Debug, Serialize)]
pub struct PolicyStatus {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: &'static str,
    /// File.
    pub file: String,
    /// Enabled.
    pub enabled: bool,
    /// Dry-run.
    pub dry_run: bool,
    /// Plugin name.
    pub plugin: Option<String>,
    /// Plugin sha256.
    pub plugin_sha256: Option<String>,
    /// WIT version the plugin was built for.
    pub wit_version: Option<String>,
    /// When this version was loaded.
    pub loaded_at_ms: i64,
    /// A cleanup policy this version made more dangerous runs dry until
    /// then (its file must settle first).
    pub held_until_ms: Option<i64>,
    /// Fingerprint.
    pub fingerprint: String,
    /// Runtime state.
    pub state: Option<warden_runtime::PolicyState>,
    /// Alert policies: their alerts and where each is.
    pub alerts: Vec<warden_runtime::alerts::AlertState>,
}

/// The status of one file.
#[derive(Debug, Serialize)]
pub struct FileStatus {
    /// Path.
    pub path: String,
    /// sha256 of the running content.
    pub hash: Option<String>,
    /// When it was loaded.
    pub loaded_at_ms: Option<i64>,
    /// Its running policies.
    pub policies: Vec<String>,
    /// Why its current content does not load.
    pub error: Option<warden_policy::live::FileFailure>,
}

/// Everything `warden status` shows.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The directory.
    pub directory: String,
    /// Files.
    pub files: Vec<FileStatus>,
    /// Policies.
    pub policies: Vec<PolicyStatus>,
    /// Reload counters.
    pub reloads: warden_policy::live::ReloadStats,
}

/// Returns the status of every file and policy.
pub fn status(s: &AppState) -> Status {
    let set = s.policies.current();
    let files = set
        .files
        .values()
        .map(|f| FileStatus {
            path: f.path.display().to_string(),
            hash: f.hash.clone(),
            loaded_at_ms: f.loaded_at_ms,
            policies: f.policies.iter().map(|p| p.name().to_owned()).collect(),
            error: f.error.clone(),
        })
        .collect();
    let policies = set
        .policies()
        .map(|p| PolicyStatus {
            name: p.name().to_owned(),
            kind: p.policy.kind().name(),
            file: p.file.display().to_string(),
            enabled: p.policy.spec.enabled,
            dry_run: p.policy.spec.dry_run,
            plugin: p.plugin.as_ref().map(|x| x.info().name.clone()),
            plugin_sha256: p.plugin.as_ref().map(|x| x.info().sha256.clone()),
            wit_version: p.plugin.as_ref().map(|x| x.info().wit_version.clone()),
            loaded_at_ms: p.loaded_at_ms,
            held_until_ms: p
                .hold_until_ms
                .filter(|_| p.held(warden_core::clock::now_ms())),
            fingerprint: p.fingerprint.clone(),
            state: s.state.get(&StateKey::policy(&p.file, p.name())),
            alerts: s.state.alerts(&p.file, p.name()),
        })
        .collect();
    Status {
        directory: s.policies.dir().display().to_string(),
        files,
        policies,
        reloads: s.policies.stats(),
    }
}

async fn policies(State(s): State<AppState>) -> Json<Status> {
    Json(status(&s))
}

async fn reload(State(s): State<AppState>) -> Result<Json<warden_policy::ReloadReport>, ApiError> {
    let dir = Arc::clone(&s.policies);
    let report = tokio::task::spawn_blocking(move || dir.reload())
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the reload failed: {e}"),
            )
        })?;
    Ok(Json(report))
}

async fn run_now(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<warden_runtime::state::EvalRecord>, ApiError> {
    let set = s.policies.current();
    let Some(policy) = set.get(&name) else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no policy called `{name}` is loaded; `GET /api/v1/policies` lists them"),
        ));
    };
    Ok(Json(run_enabled(&s, policy).await?))
}

/// Runs `policy` now if it is enabled and the bounds on evaluations allow:
/// a disabled policy is `409`, one that must wait its turn `429`, each with
/// the reason.
pub(crate) async fn run_enabled(
    s: &AppState,
    policy: &std::sync::Arc<warden_policy::LivePolicy>,
) -> Result<warden_runtime::state::EvalRecord, ApiError> {
    if !policy.policy.spec.enabled {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "policy `{}` is disabled (`enabled: false` in `{}`); enable it to run it",
                policy.name(),
                policy.file.display()
            ),
        ));
    }
    s.scheduler
        .run_now(policy)
        .await
        .map_err(|busy| ApiError(StatusCode::TOO_MANY_REQUESTS, busy.to_string()))
}
