//! The `webhook` notifier: `POST`s each batch as JSON in Alertmanager's
//! webhook format (version 4), so receivers written for Alertmanager work
//! unchanged.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    AlertStatus, JsonPost, Notification, Notifier, NotifyError, PostSettings, WebhookConfig,
    ZERO_TIME, check_http_url, check_positive, fingerprint, rfc3339,
};

/// Delivers batches to an HTTP endpoint in Alertmanager's webhook format.
#[derive(Debug)]
pub(crate) struct WebhookNotifier {
    post: JsonPost,
}

impl WebhookNotifier {
    /// Checks `config` and prepares the HTTP client.
    pub(crate) fn new(config: &WebhookConfig) -> Result<Self, NotifyError> {
        check_http_url("url", &config.url)?;
        check_positive("timeout", config.timeout)?;
        let post = JsonPost::new(PostSettings {
            target: format!("webhook {}", config.url),
            url: config.url.clone(),
            headers: &config.headers,
            authorization: config.authorization.as_ref(),
            timeout: config.timeout.0,
            retries: config.retries,
            backoff: config.backoff.0,
        })?;
        Ok(Self { post })
    }
}

impl Notifier for WebhookNotifier {
    fn describe(&self) -> String {
        self.post.target.clone()
    }

    fn send(&self, batch: &[Notification], _now_ms: i64) -> Result<(), NotifyError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.post.send(&serde_json::to_vec(&Payload::new(batch))?)
    }
}

/// The body Alertmanager's webhook receiver sends.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    version: &'static str,
    status: AlertStatus,
    receiver: &'static str,
    group_labels: BTreeMap<&'a str, &'a str>,
    common_labels: BTreeMap<&'a str, &'a str>,
    common_annotations: BTreeMap<&'a str, &'a str>,
    #[serde(rename = "externalURL")]
    external_url: &'static str,
    alerts: Vec<Alert<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Alert<'a> {
    status: AlertStatus,
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL")]
    generator_url: &'static str,
    fingerprint: String,
}

impl<'a> Payload<'a> {
    fn new(batch: &'a [Notification]) -> Self {
        let firing = batch.iter().any(|n| n.status == AlertStatus::Firing);
        Payload {
            version: "4",
            status: if firing {
                AlertStatus::Firing
            } else {
                AlertStatus::Resolved
            },
            receiver: "warden",
            // Warden does not group the way Alertmanager does; a batch is
            // one policy's evaluation cycle.
            group_labels: BTreeMap::new(),
            common_labels: common(batch.iter().map(|n| &n.labels)),
            common_annotations: common(batch.iter().map(|n| &n.annotations)),
            external_url: "",
            alerts: batch
                .iter()
                .map(|n| Alert {
                    status: n.status,
                    labels: &n.labels,
                    annotations: &n.annotations,
                    starts_at: rfc3339(n.starts_at_ms),
                    ends_at: n.ends_at_ms.map_or_else(|| ZERO_TIME.to_owned(), rfc3339),
                    generator_url: "",
                    fingerprint: fingerprint(&n.labels),
                })
                .collect(),
        }
    }
}

/// The pairs every map has, with the same value.
fn common<'a>(
    mut maps: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<&'a str, &'a str> {
    let Some(first) = maps.next() else {
        return BTreeMap::new();
    };
    let mut shared: BTreeMap<&str, &str> = first
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for map in maps {
        shared.retain(|k, v| map.get(*k).is_some_and(|other| other == v));
    }
    shared
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use warden_core::values::HumanDuration;

    /// One request as the test server saw it.
    #[derive(Debug, Clone)]
    struct Request {
        method: String,
        path: String,
        /// Lower-cased names.
        headers: BTreeMap<String, String>,
        body: Vec<u8>,
    }

    /// A tiny HTTP server answering one request per connection with the
    /// scripted statuses, then 200.
    struct Server {
        port: u16,
        requests: Arc<Mutex<Vec<Request>>>,
    }

    impl Server {
        fn start(script: Vec<u16>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let seen = Arc::clone(&requests);
            let mut script = script.into_iter();
            // Detached: it dies with the test process.
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { break };
                    let status = script.next().unwrap_or(200);
                    if let Some(request) = read_request(&stream) {
                        seen.lock().unwrap().push(request);
                    }
                    answer(stream, status);
                }
            });
            Self { port, requests }
        }

        fn url(&self, path: &str) -> String {
            format!("http://127.0.0.1:{}{path}", self.port)
        }

        fn requests(&self) -> Vec<Request> {
            self.requests.lock().unwrap().clone()
        }
    }

    fn read_request(stream: &TcpStream) -> Option<Request> {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let mut parts = line.split_whitespace();
        let method = parts.next()?.to_owned();
        let path = parts.next()?.to_owned();
        let mut headers = BTreeMap::new();
        loop {
            line.clear();
            reader.read_line(&mut line).ok()?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':')?;
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        let length = headers
            .get("content-length")
            .map_or(Some(0), |l| l.parse().ok())?;
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        Some(Request {
            method,
            path,
            headers,
            body,
        })
    }

    fn answer(mut stream: TcpStream, status: u16) {
        let body = format!("scripted answer {status}");
        let _ = write!(
            stream,
            "HTTP/1.1 {status} Scripted\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
    }

    fn notifier(url: &str, retries: u32, headers: &[(&str, &str)]) -> WebhookNotifier {
        WebhookNotifier::new(&WebhookConfig {
            url: url.to_owned(),
            timeout: HumanDuration(Duration::from_secs(5)),
            retries,
            backoff: HumanDuration(Duration::from_millis(1)),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), crate::Secret((*v).to_owned())))
                .collect(),
            authorization: None,
        })
        .unwrap()
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn batch() -> Vec<Notification> {
        vec![
            Notification {
                status: AlertStatus::Firing,
                labels: map(&[
                    ("alertname", "DiskFull"),
                    ("severity", "critical"),
                    ("mount", "/"),
                ]),
                annotations: map(&[("summary", "disk / is full"), ("runbook", "r1")]),
                starts_at_ms: 1_700_000_000_000,
                ends_at_ms: None,
                policy: "disks".to_owned(),
            },
            Notification {
                status: AlertStatus::Resolved,
                labels: map(&[
                    ("alertname", "DiskFull"),
                    ("severity", "critical"),
                    ("mount", "/var"),
                ]),
                annotations: map(&[("summary", "disk /var is full"), ("runbook", "r1")]),
                starts_at_ms: 1_700_000_000_000,
                ends_at_ms: Some(1_700_000_060_500),
                policy: "disks".to_owned(),
            },
        ]
    }

    #[test]
    fn posts_alertmanager_webhook_body() {
        let server = Server::start(vec![]);
        let webhook = notifier(
            &server.url("/hooks/warden?team=infra"),
            3,
            &[("Authorization", "Bearer s3cret")],
        );
        webhook.send(&batch(), 1_700_000_100_000).unwrap();

        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hooks/warden?team=infra");
        assert_eq!(request.headers["authorization"], "Bearer s3cret");
        assert_eq!(request.headers["content-type"], "application/json");

        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let object = body.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "alerts",
                "commonAnnotations",
                "commonLabels",
                "externalURL",
                "groupLabels",
                "receiver",
                "status",
                "version"
            ]
        );
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "firing");
        assert_eq!(body["receiver"], "warden");
        assert_eq!(body["groupLabels"], json!({}));
        assert_eq!(
            body["commonLabels"],
            json!({"alertname": "DiskFull", "severity": "critical"})
        );
        assert_eq!(body["commonAnnotations"], json!({"runbook": "r1"}));
        assert_eq!(body["externalURL"], "");

        let alerts = body["alerts"].as_array().unwrap();
        assert_eq!(alerts.len(), 2);
        let firing = &alerts[0];
        assert_eq!(firing["status"], "firing");
        assert_eq!(
            firing["labels"],
            json!({"alertname": "DiskFull", "severity": "critical", "mount": "/"})
        );
        assert_eq!(firing["annotations"]["summary"], "disk / is full");
        assert_eq!(firing["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(firing["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(firing["generatorURL"], "");
        let resolved = &alerts[1];
        assert_eq!(resolved["status"], "resolved");
        assert_eq!(resolved["endsAt"], "2023-11-14T22:14:20.500Z");

        let fingerprints: Vec<&str> = alerts
            .iter()
            .map(|a| a["fingerprint"].as_str().unwrap())
            .collect();
        for f in &fingerprints {
            assert_eq!(f.len(), 16, "{f}");
            assert!(f.chars().all(|c| c.is_ascii_hexdigit()), "{f}");
        }
        assert_ne!(fingerprints[0], fingerprints[1]);
        // Stable: the same labels give the same fingerprint on every send.
        assert_eq!(fingerprints[0], fingerprint(&batch()[0].labels));
        assert_eq!(
            fingerprints[0],
            Payload::new(&batch()[..1]).alerts[0].fingerprint
        );
    }

    #[test]
    fn batch_of_resolved_alerts_is_resolved() {
        let mut alerts = batch();
        alerts.remove(0);
        let body = serde_json::to_value(Payload::new(&alerts)).unwrap();
        assert_eq!(body["status"], "resolved");
        // With one alert, everything it has is common.
        assert_eq!(body["commonLabels"]["mount"], "/var");
    }

    #[test]
    fn empty_batch_sends_nothing() {
        let server = Server::start(vec![]);
        notifier(&server.url("/"), 3, &[]).send(&[], 0).unwrap();
        assert!(server.requests().is_empty());
    }

    #[test]
    fn server_errors_are_retried() {
        let server = Server::start(vec![500, 500, 200]);
        notifier(&server.url("/"), 3, &[])
            .send(&batch(), 0)
            .unwrap();
        assert_eq!(server.requests().len(), 3);
    }

    #[test]
    fn too_many_requests_is_retried() {
        let server = Server::start(vec![429, 200]);
        notifier(&server.url("/"), 3, &[])
            .send(&batch(), 0)
            .unwrap();
        assert_eq!(server.requests().len(), 2);
    }

    #[test]
    fn server_errors_give_up_after_the_retries() {
        let server = Server::start(vec![503, 503, 503, 503]);
        let e = notifier(&server.url("/"), 2, &[])
            .send(&batch(), 0)
            .unwrap_err();
        assert_eq!(server.requests().len(), 3);
        assert!(
            matches!(
                e,
                NotifyError::Status {
                    status: 503,
                    attempts: 3,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn client_errors_are_not_retried() {
        let server = Server::start(vec![400]);
        let e = notifier(&server.url("/"), 3, &[])
            .send(&batch(), 0)
            .unwrap_err();
        assert_eq!(server.requests().len(), 1);
        let message = e.to_string();
        assert!(message.contains("400"), "{message}");
        assert!(message.contains("scripted answer 400"), "{message}");
        assert!(message.contains("attempt 1"), "{message}");
    }

    #[test]
    fn timeouts_are_retried() {
        // Accepts and reads, never answers.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let held = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                held.lock().unwrap().push(stream);
            }
        });
        let webhook = WebhookNotifier::new(&WebhookConfig {
            url: format!("http://127.0.0.1:{port}/"),
            timeout: HumanDuration(Duration::from_millis(200)),
            retries: 1,
            backoff: HumanDuration(Duration::from_millis(1)),
            headers: BTreeMap::new(),
            authorization: None,
        })
        .unwrap();
        let e = webhook.send(&batch(), 0).unwrap_err();
        assert!(
            matches!(e, NotifyError::Transport { attempts: 2, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("timeout"), "{e}");
        assert_eq!(accepted.lock().unwrap().len(), 2);
    }

    #[test]
    fn connection_refused_gives_up_after_the_retries() {
        // A port that was just free is very likely still closed.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = notifier(&format!("http://127.0.0.1:{port}/"), 2, &[])
            .send(&batch(), 0)
            .unwrap_err();
        assert!(
            matches!(e, NotifyError::Transport { attempts: 3, .. }),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with("webhook http://127.0.0.1:"),
            "{e}"
        );
    }
}
