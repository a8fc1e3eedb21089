//! `/api/v1/recovery`: services report failures (and get the decision back)
//! and outcomes; operators list circuits and decisions and force breaker
//! states. Reports and forced states change the daemon, so they need the
//! token like every mutation, and circuits and decisions are history, so
//! they need it unless `api.public_reads` (the router's [`super::auth::guard`],
//! which also checks `Host` and the JSON content type). Each route caps its
//! body: the two reports their own size, the rest [`super::SMALL_BODY`].
//!
//! - `POST /api/v1/recovery/failures` `{"operation", "class"? | "errno"?,
//!   "http_status"?, "exception"?, "message"?, "attempt"?, "duration_ms"?,
//!   "timed_out"?, "labels"?}`
//! - `POST /api/v1/recovery/outcomes` `{"outcomes": [{"operation",
//!   "outcome": success|failure|timeout|slow, "duration_ms"?, "class"?,
//!   "labels"?}]}`
//! - `GET /api/v1/recovery/circuits[?policy=&operation=]`,
//!   `GET /api/v1/recovery/circuits/{id}`
//! - `POST /api/v1/recovery/circuits/{id}/{force-open|disable|metrics-only|reset}`
//! - `GET /api/v1/recovery/decisions[?policy=&operation=&limit=]`

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{ApiError, AppState, Q};
use warden_runtime::recovery::breaker::State as Breaker;
use warden_runtime::recovery::{
    CircuitView, DecisionRecord, FailureAnswer, OutcomesAnswer, ReportError, report,
};

/// The largest failure report: a 4 KiB message and labels fit many times.
const MAX_FAILURE_BYTES: usize = 64 << 10;
/// The largest batch of outcomes.
const MAX_OUTCOMES_BYTES: usize = 1 << 20;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/recovery/failures",
            post(failure).layer(axum::extract::DefaultBodyLimit::max(MAX_FAILURE_BYTES)),
        )
        .route(
            "/api/v1/recovery/outcomes",
            post(outcomes).layer(axum::extract::DefaultBodyLimit::max(MAX_OUTCOMES_BYTES)),
        )
        .merge(
            // These read no body: a declared one over the small cap is
            // refused before anything runs.
            Router::new()
                .route("/api/v1/recovery/circuits", get(circuits))
                .route("/api/v1/recovery/circuits/{id}", get(circuit))
                .route("/api/v1/recovery/circuits/{id}/{action}", post(force))
                .route("/api/v1/recovery/decisions", get(decisions))
                .route_layer(axum::middleware::from_fn(super::small_body)),
        )
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        let status = match &e {
            ReportError::Refused(_) => StatusCode::BAD_REQUEST,
            ReportError::NoPolicy(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ReportError::TooManyCircuits(_) => StatusCode::TOO_MANY_REQUESTS,
        };
        ApiError(status, e.to_string())
    }
}

fn json(body: &Bytes) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))
}

async fn failure(State(s): State<AppState>, body: Bytes) -> Result<Json<FailureAnswer>, ApiError> {
    let report = report::failure(&json(&body)?, s.recovery.pii()).map_err(ReportError::from)?;
    let rec = std::sync::Arc::clone(&s.recovery);
    // The plugin call is synchronous (tens of microseconds): run it off the
    // async workers, like every other evaluation.
    let answer = tokio::task::spawn_blocking(move || rec.report_failure(report))
        .await
        .map_err(|e| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the decision failed: {e}"),
            )
        })??;
    Ok(Json(answer))
}

async fn outcomes(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<Json<OutcomesAnswer>, ApiError> {
    let batch = report::outcomes(&json(&body)?, s.recovery.pii()).map_err(ReportError::from)?;
    Ok(Json(s.recovery.report_outcomes(&batch)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Filter {
    policy: Option<String>,
    operation: Option<String>,
    limit: Option<usize>,
}

async fn circuits(State(s): State<AppState>, Q(f): Q<Filter>) -> Json<Vec<CircuitView>> {
    Json(
        s.recovery
            .circuits(f.policy.as_deref(), f.operation.as_deref()),
    )
}

fn no_circuit(id: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!(
            "no circuit has the id `{}`; `GET /api/v1/recovery/circuits` lists them",
            id.chars().take(64).collect::<String>()
        ),
    )
}

async fn circuit(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CircuitView>, ApiError> {
    s.recovery
        .circuit(&id)
        .map(Json)
        .ok_or_else(|| no_circuit(&id))
}

async fn force(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<CircuitView>, ApiError> {
    let to = match action.as_str() {
        "force-open" => Breaker::ForcedOpen,
        "disable" => Breaker::Disabled,
        "metrics-only" => Breaker::MetricsOnly,
        "reset" => Breaker::Closed,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!(
                    "`{}` is not something a circuit does; use force-open, disable, metrics-only or reset",
                    other.chars().take(64).collect::<String>()
                ),
            ));
        }
    };
    s.recovery
        .force(&id, to)
        .map(Json)
        .ok_or_else(|| no_circuit(&id))
}

async fn decisions(State(s): State<AppState>, Q(f): Q<Filter>) -> Json<Vec<DecisionRecord>> {
    Json(
        s.recovery.decisions(
            f.policy.as_deref(),
            f.operation.as_deref(),
            f.limit
                .unwrap_or(100)
                .min(warden_runtime::recovery::DECISIONS_KEPT),
        ),
    )
}
