//! `/api/v1/findings`: what detector policies found, as the host keeps it,
//! and the history of findings raised and resolved.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::{ApiError, AppState, HistoryQuery, Q};
use warden_policy::schema::Severity;
use warden_runtime::findings::{Filter, FindingEvent, Listed, Phase};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/findings", get(findings))
        .route("/api/v1/findings/history", get(history))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingsQuery {
    policy: Option<String>,
    pattern: Option<String>,
    severity: Option<String>,
    min_severity: Option<String>,
    state: Option<String>,
}

fn severity(field: &str, text: Option<&str>) -> Result<Option<Severity>, ApiError> {
    Ok(match text {
        None => None,
        Some("info") => Some(Severity::Info),
        Some("warning") => Some(Severity::Warning),
        Some("critical") => Some(Severity::Critical),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`{field}={other}`: use info, warning or critical"
            )));
        }
    })
}

/// Findings, by policy then pattern, subject and labels;
/// `?policy=NAME&pattern=P&severity=S&min_severity=S&state=pending|active|resolved`
/// narrow the list.
async fn findings(
    State(s): State<AppState>,
    Q(q): Q<FindingsQuery>,
) -> Result<Json<Vec<Listed>>, ApiError> {
    let phase = match q.state.as_deref() {
        None => None,
        Some("pending") => Some(Phase::Pending),
        Some("active") => Some(Phase::Active),
        Some("resolved") => Some(Phase::Resolved),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`state={other}`: use pending, active or resolved"
            )));
        }
    };
    let filter = Filter {
        policy: q.policy.as_deref(),
        pattern: q.pattern.as_deref(),
        severity: severity("severity", q.severity.as_deref())?,
        min_severity: severity("min_severity", q.min_severity.as_deref())?,
        phase,
    };
    Ok(Json(s.state.findings().list(&filter)))
}

/// Findings raised and resolved, newest first (the last 1,000, kept across
/// restarts); `?policy=NAME&limit=N` (default 100).
async fn history(State(s): State<AppState>, Q(q): Q<HistoryQuery>) -> Json<Vec<FindingEvent>> {
    Json(
        s.state
            .findings()
            .history(q.policy.as_deref(), q.limit.unwrap_or(100)),
    )
}
