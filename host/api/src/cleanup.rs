//! `/api/v1/cleanup`: the cleanup policies as tasks, running one now, and the
//! history of runs.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::{ApiError, AppState, HistoryQuery, Q};
use warden_policy::schema::PolicyKind;
use warden_runtime::StateKey;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/cleanup/tasks", get(tasks))
        .route("/api/v1/cleanup/tasks/{id}/run", post(run))
        .route("/api/v1/cleanup/history", get(history))
        .route_layer(axum::middleware::from_fn(super::small_body))
}

/// A cleanup policy, as a task.
#[derive(Debug, Serialize)]
struct Task {
    /// The policy's name, which is the task's id.
    id: String,
    file: String,
    enabled: bool,
    dry_run: bool,
    plugin: Option<String>,
    trigger: warden_policy::schema::Trigger,
    on_pressure: Option<warden_policy::schema::PressureLevel>,
    scope: Vec<String>,
    exclude: Vec<String>,
    max_actions: Option<String>,
    max_concurrent: usize,
    run_timeout: String,
    last_evaluation: Option<warden_runtime::state::EvalRecord>,
    /// The latest run's outcome, from the history.
    last_run: Option<warden_runtime::cleanup::Run>,
}

async fn tasks(State(s): State<AppState>) -> Json<Vec<Task>> {
    let set = s.policies.current();
    Json(
        set.policies()
            .filter(|p| p.policy.kind() == PolicyKind::Cleanup)
            .map(|p| {
                let spec = &p.policy.spec;
                Task {
                    id: p.name().to_owned(),
                    file: p.file.display().to_string(),
                    enabled: spec.enabled,
                    dry_run: spec.dry_run,
                    plugin: spec.plugin.clone(),
                    trigger: p.policy.trigger.clone(),
                    on_pressure: spec.on_pressure,
                    scope: p
                        .policy
                        .scope_paths
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect(),
                    exclude: spec.scope.exclude.clone(),
                    max_actions: spec.max_actions.clone(),
                    max_concurrent: p.policy.max_concurrent,
                    run_timeout: warden_core::values::HumanDuration(p.policy.run_timeout)
                        .to_string(),
                    last_evaluation: s
                        .state
                        .get(&StateKey::policy(&p.file, p.name()))
                        .and_then(|st| st.last),
                    last_run: s.state.cleanup_history(Some(p.name()), 1).pop(),
                }
            })
            .collect(),
    )
}

/// What running a task now returns.
#[derive(Debug, Serialize)]
struct Ran {
    evaluation: warden_runtime::state::EvalRecord,
    /// The runs it made (files, and registered resources if the scope names
    /// their kinds), newest first; none if the evaluation failed before acting.
    runs: Vec<warden_runtime::cleanup::Run>,
}

async fn run(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Ran>, ApiError> {
    let set = s.policies.current();
    let Some(policy) = set.get(&id) else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no cleanup task `{id}`; `GET /api/v1/cleanup/tasks` lists them"),
        ));
    };
    if policy.policy.kind() != PolicyKind::Cleanup {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "`{id}` is a {} policy, not a cleanup task; run it with `POST /api/v1/policies/{id}/run`",
                policy.policy.kind().name()
            ),
        ));
    }
    let evaluation = super::run_enabled(&s, policy).await?;
    // Runs are recorded only if the plugin got as far as a plan; one
    // evaluation makes at most two (files, registered resources).
    let runs = if evaluation.ok {
        s.state
            .cleanup_history(Some(&id), 2)
            .into_iter()
            .take_while(|r| r.started_ms >= evaluation.at_ms)
            .collect()
    } else {
        Vec::new()
    };
    Ok(Json(Ran { evaluation, runs }))
}

/// Cleanup runs, newest first: what each did, to what, why, and the bytes freed.
async fn history(
    State(s): State<AppState>,
    Q(q): Q<HistoryQuery>,
) -> Json<Vec<warden_runtime::cleanup::Run>> {
    Json(
        s.state
            .cleanup_history(q.policy.as_deref(), q.limit.unwrap_or(50)),
    )
}
