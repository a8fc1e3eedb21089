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
pub struct AlertmanagerNotifier {
    post: JsonPost,
    resend_ends_after_ms: i64,
}

impl AlertmanagerNotifier {
    /// Checks `config` and prepares the HTTP client.
    pub fn new(config: &AlertmanagerConfig) -> Result<Self, NotifyError> {
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

#[cfg(test)]
mod tests {
    use std::fs;
    use std::net::TcpListener;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use serde_json::Value;

    use super::*;
    use crate::policy::values::HumanDuration;
    use crate::runtime::notify::fingerprint;

    const BINARY: &str = "/usr/bin/prometheus-alertmanager";

    /// A real Alertmanager on a free loopback port, killed on drop.
    struct Alertmanager {
        child: Child,
        base: String,
        dir: tempfile::TempDir,
    }

    impl Drop for Alertmanager {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Alertmanager {
        fn start() -> Self {
            assert!(
                Path::new(BINARY).exists(),
                "{BINARY} is missing; this test needs the real Alertmanager: \
                 apt-get install prometheus-alertmanager"
            );
            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("am.yml");
            fs::write(
                &config,
                "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n",
            )
            .unwrap();
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = fs::File::create(dir.path().join("am.log")).unwrap();
            let child = Command::new(BINARY)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                // Empty disables clustering: no gossip port, no peers.
                .arg("--cluster.listen-address=")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {BINARY}: {e}"));
            let mut am = Self {
                child,
                base: format!("http://127.0.0.1:{port}"),
                dir,
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = am.child.try_wait().unwrap() {
                    panic!("alertmanager exited with {status}:\n{}", am.log());
                }
                if matches!(am.get("/-/ready"), Some((200, _))) {
                    return am;
                }
                assert!(
                    Instant::now() < deadline,
                    "alertmanager not ready after 30s:\n{}",
                    am.log()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        fn log(&self) -> String {
            fs::read_to_string(self.dir.path().join("am.log")).unwrap_or_default()
        }

        fn get(&self, path: &str) -> Option<(u16, String)> {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .proxy(None)
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into();
            let response = agent.get(format!("{}{path}", self.base)).call().ok()?;
            let status = response.status().as_u16();
            Some((status, response.into_body().read_to_string().ok()?))
        }

        /// Active alerts with exactly these labels.
        fn active(&self, labels: &BTreeMap<String, String>) -> Vec<Value> {
            let (status, body) = self.get("/api/v2/alerts?active=true").unwrap();
            assert_eq!(status, 200, "{body}");
            let alerts: Vec<Value> = serde_json::from_str(&body).unwrap();
            let wanted = serde_json::to_value(labels).unwrap();
            alerts
                .into_iter()
                .filter(|a| a["labels"] == wanted && a["status"]["state"] == "active")
                .collect()
        }

        /// Polls until `done` holds, for up to 10 s.
        fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !done() {
                assert!(
                    Instant::now() < deadline,
                    "{what}: not within 10s\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn real_alertmanager_receives_and_resolves() {
        let am = Alertmanager::start();
        let notifier = AlertmanagerNotifier::new(&AlertmanagerConfig {
            url: format!("{}/", am.base),
            timeout: HumanDuration(Duration::from_secs(5)),
            retries: 2,
            backoff: HumanDuration(Duration::from_millis(50)),
            resend_ends_after: HumanDuration(Duration::from_secs(300)),
        })
        .unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        let mut alert = Notification {
            status: AlertStatus::Firing,
            labels: map(&[
                ("alertname", "WardenNotifyTest"),
                ("severity", "warning"),
                ("policy", "notify-test"),
            ]),
            annotations: map(&[("summary", "it works"), ("value", "42.5")]),
            starts_at_ms: now - 60_000,
            ends_at_ms: None,
            policy: "notify-test".to_owned(),
        };

        notifier.send(&[alert.clone()], now).unwrap();
        let mut active = Vec::new();
        am.wait_for("firing alert listed", || {
            active = am.active(&alert.labels);
            !active.is_empty()
        });
        let listed = &active[0];
        assert_eq!(
            listed["annotations"],
            serde_json::to_value(&alert.annotations).unwrap()
        );
        // Our fingerprint is Alertmanager's, so receivers can correlate.
        assert_eq!(listed["fingerprint"], fingerprint(&alert.labels));
        let ends_at = chrono::DateTime::parse_from_rfc3339(listed["endsAt"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        assert!(
            (now + 299_000..=now + 301_000).contains(&ends_at),
            "endsAt {listed}"
        );

        let later = chrono::Utc::now().timestamp_millis();
        alert.status = AlertStatus::Resolved;
        alert.ends_at_ms = Some(later);
        notifier.send(&[alert.clone()], later).unwrap();
        am.wait_for("resolved alert gone from the active list", || {
            am.active(&alert.labels).is_empty()
        });
    }

    #[test]
    fn rejected_alerts_are_not_retried() {
        let am = Alertmanager::start();
        let notifier = AlertmanagerNotifier::new(&AlertmanagerConfig {
            url: am.base.clone(),
            timeout: HumanDuration(Duration::from_secs(5)),
            retries: 3,
            backoff: HumanDuration(Duration::from_millis(1)),
            resend_ends_after: HumanDuration(Duration::from_secs(300)),
        })
        .unwrap();
        // Alertmanager refuses alerts without labels.
        let e = notifier
            .send(
                &[Notification {
                    status: AlertStatus::Firing,
                    labels: BTreeMap::new(),
                    annotations: BTreeMap::new(),
                    starts_at_ms: 0,
                    ends_at_ms: None,
                    policy: "p".to_owned(),
                }],
                1_000,
            )
            .unwrap_err();
        assert!(
            matches!(
                e,
                NotifyError::Status {
                    status: 400,
                    attempts: 1,
                    ..
                }
            ),
            "{e:?}"
        );
    }
}
