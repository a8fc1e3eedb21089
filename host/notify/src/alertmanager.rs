//! The `alertmanager` notifier: pushes alerts to Alertmanager's API v2
//! (`POST /api/v2/alerts`) the way Prometheus does.
//!
//! Alertmanager keeps an alert active until its `endsAt` passes. Firing
//! alerts are therefore sent with `endsAt = now + resend_ends_after` and
//! refreshed on every evaluation cycle; if Warden stops refreshing (it died,
//! the policy was removed), Alertmanager resolves them by itself. Resolved
//! alerts are sent with their real end time, which resolves them at once.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    AlertStatus, AlertmanagerConfig, JsonPost, Notification, Notifier, NotifyError, PostSettings,
    check_http_url, check_positive, config_error, rfc3339,
};

/// The API path below Alertmanager's base URL.
const ALERTS_PATH: &str = "/api/v2/alerts";

/// Delivers batches to Alertmanager.
#[derive(Debug)]
pub(crate) struct AlertmanagerNotifier {
    post: JsonPost,
    resend_ends_after_ms: i64,
}

impl AlertmanagerNotifier {
    /// Checks `config` and prepares the HTTP client.
    pub(crate) fn new(config: &AlertmanagerConfig) -> Result<Self, NotifyError> {
        check_http_url("url", &config.url)?;
        let base = config.url.trim_end_matches('/');
        if base.contains(['?', '#']) {
            return Err(config_error(
                "url",
                format!(
                    "`{}` has a query or fragment; give Alertmanager's base URL, like `http://127.0.0.1:9093`",
                    config.url
                ),
            ));
        }
        // Appending the path again would post to `/api/v2/alerts/api/v2/alerts`.
        if base.ends_with(ALERTS_PATH) {
            return Err(config_error(
                "url",
                format!(
                    "`{}` already ends in `{ALERTS_PATH}`; give Alertmanager's base URL, like `http://127.0.0.1:9093`",
                    config.url
                ),
            ));
        }
        check_positive("timeout", config.timeout)?;
        check_positive("resend_ends_after", config.resend_ends_after)?;
        let url = format!("{base}{ALERTS_PATH}");
        let post = JsonPost::new(PostSettings {
            target: format!("alertmanager {url}"),
            url,
            headers: &BTreeMap::new(),
            authorization: config.authorization.as_ref(),
            timeout: config.timeout.0,
            retries: config.retries,
            backoff: config.backoff.0,
        })?;
        Ok(Self {
            post,
            resend_ends_after_ms: i64::try_from(config.resend_ends_after.0.as_millis())
                .unwrap_or(i64::MAX),
        })
    }
}

impl Notifier for AlertmanagerNotifier {
    fn describe(&self) -> String {
        self.post.target.clone()
    }

    fn wants_refresh(&self) -> bool {
        true
    }

    fn send(&self, batch: &[Notification], now_ms: i64) -> Result<(), NotifyError> {
        if batch.is_empty() {
            return Ok(());
        }
        let alerts: Vec<PostableAlert<'_>> = batch
            .iter()
            .map(|n| {
                let ends_at_ms = match n.status {
                    AlertStatus::Firing => now_ms.saturating_add(self.resend_ends_after_ms),
                    // A resolved alert without an end time ended now.
                    AlertStatus::Resolved => n.ends_at_ms.unwrap_or(now_ms),
                };
                PostableAlert {
                    labels: &n.labels,
                    annotations: &n.annotations,
                    starts_at: rfc3339(n.starts_at_ms),
                    ends_at: rfc3339(ends_at_ms),
                    generator_url: "",
                }
            })
            .collect();
        self.post.send(&serde_json::to_vec(&alerts)?)
    }
}

/// One element of the `POST /api/v2/alerts` body.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PostableAlert<'a> {
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL")]
    generator_url: &'static str,
}

// Tested against a real Alertmanager in `tests/all/alerts.rs`, which shares
// one launcher with the end-to-end alert tests.
