//! `/api/v1/alerts`: the alerts the host's state machine holds, their phase
//! changes, and the alert policies with their rules.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, HistoryQuery, Q};
use warden_policy::schema::PolicyKind;
use warden_runtime::StateKey;
use warden_runtime::alerts::Phase;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alerts/history", get(history))
        .route("/api/v1/alerts/rules", get(rules))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsQuery {
    policy: Option<String>,
    state: Option<String>,
}

/// One alert, as listed.
#[derive(Debug, Serialize)]
struct Listed {
    policy: String,
    #[serde(flatten)]
    alert: warden_runtime::alerts::AlertState,
}

/// Alerts, by policy then name; `?state=pending|firing|resolved` and
/// `?policy=NAME` narrow the list.
async fn alerts(
    State(s): State<AppState>,
    Q(q): Q<AlertsQuery>,
) -> Result<Json<Vec<Listed>>, ApiError> {
    let phase = match q.state.as_deref() {
        None => None,
        Some("pending") => Some(Phase::Pending),
        Some("firing") => Some(Phase::Firing),
        Some("resolved") => Some(Phase::Resolved),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`state={other}`: use pending, firing or resolved"
            )));
        }
    };
    Ok(Json(
        s.state
            .all_alerts()
            .into_iter()
            .filter(|(_, p, a)| {
                q.policy.as_deref().is_none_or(|w| w == p) && phase.is_none_or(|ph| a.phase == ph)
            })
            .map(|(_, policy, alert)| Listed { policy, alert })
            .collect(),
    ))
}

/// Phase changes, newest first (the last 1,000, kept across restarts).
async fn history(
    State(s): State<AppState>,
    Q(q): Q<HistoryQuery>,
) -> Json<Vec<warden_runtime::state::AlertEvent>> {
    let mut events = s.state.alert_history(q.policy.as_deref());
    events.truncate(q.limit.unwrap_or(100));
    Json(events)
}

/// One alert policy and its rules.
#[derive(Debug, Serialize)]
struct RulePolicy {
    policy: String,
    file: String,
    enabled: bool,
    plugin: Option<String>,
    trigger: warden_policy::schema::Trigger,
    #[serde(rename = "for")]
    hold_for: Option<String>,
    keep_firing_for: Option<String>,
    cooldown: Option<String>,
    labels: std::collections::BTreeMap<String, String>,
    /// Receivers: the policy's own, or `null` for the daemon's; secrets
    /// redacted.
    notify: Option<Vec<warden_notify::NotifierConfig>>,
    /// The rules as configured (the plugin's `config`).
    config: serde_json::Value,
    last_evaluation: Option<warden_runtime::state::EvalRecord>,
    firing: usize,
    pending: usize,
}

async fn rules(State(s): State<AppState>) -> Json<Vec<RulePolicy>> {
    let set = s.policies.current();
    let text = |d: Option<warden_core::values::HumanDuration>| d.map(|d| d.to_string());
    Json(
        set.policies()
            .filter(|p| p.policy.kind() == PolicyKind::Alert)
            .map(|p| {
                let alerts = s.state.alerts(&p.file, p.name());
                let count = |ph| alerts.iter().filter(|a| a.phase == ph).count();
                let spec = &p.policy.spec;
                RulePolicy {
                    policy: p.name().to_owned(),
                    file: p.file.display().to_string(),
                    enabled: spec.enabled,
                    plugin: spec.plugin.clone(),
                    trigger: p.policy.trigger.clone(),
                    hold_for: text(spec.hold_for),
                    keep_firing_for: text(spec.keep_firing_for),
                    cooldown: text(spec.cooldown),
                    labels: spec.labels.clone(),
                    // Header values and credentials never leave the daemon.
                    notify: spec.notify.as_ref().map(|list| {
                        list.iter()
                            .map(warden_notify::NotifierConfig::redacted)
                            .collect()
                    }),
                    config: p.policy.config.clone(),
                    last_evaluation: s
                        .state
                        .get(&StateKey::policy(&p.file, p.name()))
                        .and_then(|st| st.last),
                    firing: count(Phase::Firing),
                    pending: count(Phase::Pending),
                }
            })
            .collect(),
    )
}
