//! `/api/v1/analytics`: usage profiles per process and per kind of
//! registered resource, the patterns detector policies found, and what to
//! do about both.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::{ApiError, AppState, Q};
use warden_core::values::HumanDuration;
use warden_runtime::analytics::{self, Pattern, Profiles, Recommendation};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/analytics/profiles", get(profiles))
        .route("/api/v1/analytics/patterns", get(patterns))
        .route("/api/v1/analytics/recommendations", get(recommendations))
}

/// `?window=1h&idle=10m`: how far back process profiles look, and how long
/// a registered resource must go unused to count as idle.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileQuery {
    window: Option<String>,
    idle: Option<String>,
}

fn duration(field: &str, text: Option<&str>, default: u64) -> Result<u64, ApiError> {
    match text {
        None => Ok(default),
        Some(t) => t
            .parse::<HumanDuration>()
            .map(|d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX))
            .map_err(|e| ApiError::bad_request(format!("`{field}`: {e}"))),
    }
}

fn compute(s: &AppState, q: &ProfileQuery) -> Result<Profiles, ApiError> {
    let window = duration("window", q.window.as_deref(), 3_600_000)?;
    let idle = duration("idle", q.idle.as_deref(), 600_000)?;
    let cx = s.scheduler.context();
    Ok(analytics::profiles::profiles(
        &cx.series,
        &cx.registry,
        window,
        idle,
        warden_core::clock::now_ms(),
    ))
}

async fn profiles(
    State(s): State<AppState>,
    Q(q): Q<ProfileQuery>,
) -> Result<Json<Profiles>, ApiError> {
    // Its cost grows with the store: one of the bounded heavy reads.
    let s2 = s.clone();
    super::heavy::run(&s, move || compute(&s2, &q))
        .await?
        .map(Json)
}

async fn patterns(State(s): State<AppState>) -> Json<Vec<Pattern>> {
    Json(analytics::patterns(s.state.findings()))
}

async fn recommendations(
    State(s): State<AppState>,
    Q(q): Q<ProfileQuery>,
) -> Result<Json<Vec<Recommendation>>, ApiError> {
    let s2 = s.clone();
    super::heavy::run(&s, move || {
        let p = compute(&s2, &q)?;
        Ok(analytics::recommendations(s2.state.findings(), &p))
    })
    .await?
    .map(Json)
}
