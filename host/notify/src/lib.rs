//! # warden-notify
//!
//! Alert notifiers: deliver what the host's alert state machine decides
//! (an alert started firing, is still firing, or resolved) to the outside
//! world.
//!
//! The state machine hands each configured notifier one batch per evaluation
//! cycle of one policy through [`Notifier::send`]. Three kinds exist, chosen
//! by `type` in the configuration ([`NotifierConfig`]):
//!
//! - `log`: one `tracing` event per alert, `warn` when firing and `info` when
//!   resolved.
//! - `webhook`: a JSON `POST` in Alertmanager's webhook format, so receivers
//!   written for Alertmanager understand it unchanged.
//! - `alertmanager`: `POST /api/v2/alerts`, the way Prometheus talks to
//!   Alertmanager. Firing alerts carry an `endsAt` in the near future
//!   (`resend_ends_after`), so Alertmanager resolves them by itself if Warden
//!   stops refreshing them.
//!
//! HTTP is plain `http://` only: the daemon carries no TLS stack, so `https`
//! URLs are refused when the configuration is built, not on the first alert.
//! For the same predictability, proxy environment variables are ignored and
//! redirects are not followed (a redirected `POST` would silently lose its
//! body). Connection errors, timeouts, `5xx` and `429` are retried with
//! exponential backoff; other answers are final.
//!
//! `send` blocks for at most `(retries + 1) * timeout` plus the backoff
//! sleeps, so callers run it off the evaluation path (the runtime's
//! dispatcher does).
//!
//! Secrets — header values and `authorization` credentials — are [`Secret`]s:
//! their `Debug` never shows them, [`NotifierConfig::redacted`] replaces them
//! for anything shown to people (the API), and no error names them. A URL
//! with credentials in it is refused, and the refusal does not repeat them.
//! `authorization: { credentials_file: … }` (as Prometheus has it) keeps the
//! secret out of the configuration; the file is read again on every delivery,
//! so it can be rotated without a reload.
//!
//! Layering: this crate depends only on `warden-core`. Policy files name their
//! receivers with [`NotifierConfig`], so `warden-policy` sits above it; the
//! alert state machine and the dispatcher that feeds receivers live in
//! `warden-runtime`, above both.

#![deny(missing_docs)]

mod alertmanager;
mod log;
mod webhook;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use warden_core::values::HumanDuration;

/// Whether an alert is (still) firing or has resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// The alert's condition holds.
    Firing,
    /// The alert's condition stopped holding.
    Resolved,
}

/// One alert's state change or refresh, as the host's alert state machine emits it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Identity: includes `alertname`, plus policy labels and rule labels (e.g. severity).
    pub labels: BTreeMap<String, String>,
    /// summary, description, value etc.
    pub annotations: BTreeMap<String, String>,
    /// When the alert started firing, in milliseconds since the Unix epoch.
    pub starts_at_ms: i64,
    /// Set when resolved: when the alert stopped firing, in milliseconds
    /// since the Unix epoch.
    pub ends_at_ms: Option<i64>,
    /// The policy that raised it.
    pub policy: String,
}

/// Somewhere alerts are delivered to.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// A short name for logs and metrics, e.g. "webhook http://host/path".
    fn describe(&self) -> String;
    /// Delivers a batch (all alerts of one evaluation cycle of one policy).
    /// Blocking; retries inside, per the config; returns the last error
    /// after the retries are spent. An empty batch sends nothing.
    fn send(&self, batch: &[Notification], now_ms: i64) -> Result<(), NotifyError>;
    /// Whether it wants firing alerts repeated on every refresh (and
    /// resolved ones re-sent for a while): receivers that expire alerts
    /// unless refreshed do; event-style receivers hear each change once.
    fn wants_refresh(&self) -> bool {
        false
    }
}

/// Where and how to deliver alerts, as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum NotifierConfig {
    /// Write each alert to the daemon's log.
    // A struct variant, not a unit one: serde ignores extra keys next to the
    // tag of a unit variant, and a typo like `url:` under `type: log` should
    // be an error.
    Log {},
    /// `POST` each batch as JSON in Alertmanager's webhook format.
    Webhook(WebhookConfig),
    /// Push alerts to Alertmanager's API v2, as Prometheus does.
    Alertmanager(AlertmanagerConfig),
}

/// A value that must not be shown: `Debug` prints `<redacted>`; it is
/// serialized as it is (configurations are compared and fingerprinted by
/// their serialization), so anything shown to people goes through
/// [`NotifierConfig::redacted`] first.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Secret(pub String);

/// What [`NotifierConfig::redacted`] puts in place of a secret.
pub const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The `Authorization` header, as Prometheus configures it: a type and
/// credentials given inline or, better, in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// The scheme (default `Bearer`).
    #[serde(rename = "type", default = "bearer")]
    pub scheme: String,
    /// The credentials. Prefer `credentials_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Secret>,
    /// A file holding the credentials (surrounding whitespace ignored), read
    /// on every delivery. A relative path is relative to the file that
    /// configures it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
}

fn bearer() -> String {
    "Bearer".to_owned()
}

impl Authorization {
    fn check(&self) -> Result<(), NotifyError> {
        if self.scheme.is_empty()
            || !self
                .scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(config_error(
                "authorization.type",
                format!(
                    "`{}` is not an authorization scheme; use `Bearer`",
                    self.scheme
                ),
            ));
        }
        match (&self.credentials, &self.credentials_file) {
            (Some(_), None) => {}
            (None, Some(path)) => {
                read_credentials(path)
                    .map_err(|message| config_error("authorization.credentials_file", message))?;
            }
            _ => {
                return Err(config_error(
                    "authorization",
                    "give exactly one of `credentials` and `credentials_file`".to_owned(),
                ));
            }
        }
        Ok(())
    }

    /// The header value now: the file is read each time.
    fn value(&self) -> Result<String, String> {
        let credentials = match (&self.credentials, &self.credentials_file) {
            (Some(c), _) => c.0.clone(),
            (None, Some(path)) => read_credentials(path)?,
            (None, None) => String::new(),
        };
        Ok(format!("{} {credentials}", self.scheme))
    }
}

/// Reads a credentials file; the error names the file, never its content.
fn read_credentials(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let c = text.trim();
    if c.is_empty() {
        return Err(format!("`{}` is empty", path.display()));
    }
    if ureq::http::HeaderValue::from_str(c).is_err() {
        return Err(format!(
            "`{}` holds characters a header cannot carry",
            path.display()
        ));
    }
    Ok(c.to_owned())
}

impl NotifierConfig {
    /// A copy safe to show: header values and credentials replaced by
    /// [`REDACTED`].
    pub fn redacted(&self) -> NotifierConfig {
        let hide = |a: &Option<Authorization>| {
            a.as_ref().map(|a| Authorization {
                credentials: a.credentials.as_ref().map(|_| Secret(REDACTED.to_owned())),
                ..a.clone()
            })
        };
        match self {
            NotifierConfig::Log {} => NotifierConfig::Log {},
            NotifierConfig::Webhook(w) => NotifierConfig::Webhook(WebhookConfig {
                headers: w
                    .headers
                    .keys()
                    .map(|k| (k.clone(), Secret(REDACTED.to_owned())))
                    .collect(),
                authorization: hide(&w.authorization),
                ..w.clone()
            }),
            NotifierConfig::Alertmanager(a) => NotifierConfig::Alertmanager(AlertmanagerConfig {
                authorization: hide(&a.authorization),
                ..a.clone()
            }),
        }
    }

    /// Makes a relative `credentials_file` relative to `base` (the
    /// directory of the file that configures it).
    pub fn resolve_paths(&mut self, base: &Path) {
        let auth = match self {
            NotifierConfig::Log {} => None,
            NotifierConfig::Webhook(w) => w.authorization.as_mut(),
            NotifierConfig::Alertmanager(a) => a.authorization.as_mut(),
        };
        if let Some(path) = auth.and_then(|a| a.credentials_file.as_mut())
            && path.is_relative()
        {
            *path = base.join(&*path);
        }
    }
}

/// Settings of the `webhook` notifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to `POST`, e.g. `http://127.0.0.1:8080/alerts`. Plain http only.
    pub url: String,
    /// Limit for one attempt, connecting included.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// How many times a failed delivery is tried again.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry; doubles for each further retry, up to 30s.
    #[serde(default = "default_backoff")]
    pub backoff: HumanDuration,
    /// Extra request headers. Their values are treated as secrets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Secret>,
    /// The `Authorization` header, inline or from a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
}

/// Settings of the `alertmanager` notifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL, e.g. `http://127.0.0.1:9093`; alerts go to
    /// `{url}/api/v2/alerts`. Plain http only.
    pub url: String,
    /// Limit for one attempt, connecting included.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// How many times a failed delivery is tried again.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry; doubles for each further retry, up to 30s.
    #[serde(default = "default_backoff")]
    pub backoff: HumanDuration,
    /// How far past each refresh a firing alert's `endsAt` is set, so that
    /// Alertmanager resolves it by itself when Warden stops refreshing it
    /// (for example because Warden died). Keep it a few evaluation
    /// intervals long, or alerts flap between refreshes.
    #[serde(default = "default_resend_ends_after")]
    pub resend_ends_after: HumanDuration,
    /// The `Authorization` header (Alertmanager behind an authenticating
    /// proxy), inline or from a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

fn default_retries() -> u32 {
    3
}

fn default_backoff() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}

fn default_resend_ends_after() -> HumanDuration {
    HumanDuration(Duration::from_secs(5 * 60))
}

/// Why a notifier could not be built or a batch not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The configuration is unusable; `field` names the offending key.
    #[error("{field}: {message}")]
    Config {
        /// The configuration key, e.g. `url` or `headers.Authorization`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The receiver answered with an error status.
    #[error("{target}: HTTP {status}, giving up after attempt {attempts}: {body}")]
    Status {
        /// The notifier, as [`Notifier::describe`] names it.
        target: String,
        /// The HTTP status code of the last answer.
        status: u16,
        /// The start of the last answer's body, for diagnosis.
        body: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The receiver could not be reached or did not answer in time.
    #[error("{target}: {message}, giving up after attempt {attempts}")]
    Transport {
        /// The notifier, as [`Notifier::describe`] names it.
        target: String,
        /// What went wrong on the last attempt.
        message: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The batch could not be encoded as JSON.
    #[error("cannot encode the alerts as JSON: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Builds the notifier a configuration describes, checking it first so that
/// mistakes show up when the configuration is loaded, not on the first alert.
pub fn build(config: &NotifierConfig) -> Result<Box<dyn Notifier>, NotifyError> {
    Ok(match config {
        NotifierConfig::Log {} => Box::new(log::LogNotifier),
        NotifierConfig::Webhook(c) => Box::new(webhook::WebhookNotifier::new(c)?),
        NotifierConfig::Alertmanager(c) => Box::new(alertmanager::AlertmanagerNotifier::new(c)?),
    })
}

fn config_error(field: &str, message: String) -> NotifyError {
    NotifyError::Config {
        field: field.to_owned(),
        message,
    }
}

/// Checks that `url` is `http://host[:port][/...]`; the error names `field`.
fn check_http_url(field: &str, raw: &str) -> Result<(), NotifyError> {
    // Errors show the URL without what may be a password in it.
    let shown = shown_url(raw);
    let url = &*shown;
    let bad = |why: &str| {
        config_error(
            field,
            format!("`{url}` {why}; write it like `http://host:port/path`"),
        )
    };
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains spaces or control characters"));
    }
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err(bad("is not a URL"));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(config_error(
            field,
            format!(
                "`{url}` uses https, but TLS is not built into Warden; use an http:// URL \
                 (for example a local TLS-terminating proxy)"
            ),
        ));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(bad(&format!("has the scheme `{scheme}`, only http works")));
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return Err(bad(
            "carries credentials, which are not supported there; give them in `authorization:` (best as `credentials_file`)",
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err(bad("has an unclosed `[` in its host"));
        };
        let ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        if !ok {
            return Err(bad("has an invalid IPv6 host"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(bad("has garbage after its IPv6 host")),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'))
    {
        return Err(bad(&format!("has an invalid host `{host}`")));
    }
    if let Some(port) = port
        && !matches!(port.parse::<u16>(), Ok(p) if p > 0)
    {
        return Err(bad(&format!("has an invalid port `{port}`")));
    }
    // The HTTP client's own parser has the last word on the path and query.
    ureq::http::Uri::try_from(raw).map_err(|e| bad(&format!("is not a valid URL ({e})")))?;
    Ok(())
}

/// `url` with any `user:password@` replaced by `<redacted>@`.
pub fn shown_url(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL; a password could still be in it after an `@`.
        return match url.rsplit_once('@') {
            Some((_, host)) => format!("{REDACTED}@{host}").into(),
            None => url.into(),
        };
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{REDACTED}@{host}{}", &rest[end..]).into(),
        None => url.into(),
    }
}

fn check_positive(field: &str, value: HumanDuration) -> Result<(), NotifyError> {
    if value.0.is_zero() {
        return Err(config_error(field, "must be longer than 0s".to_owned()));
    }
    Ok(())
}

/// What Go (and so Alertmanager) writes for "no time".
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Milliseconds since the epoch as RFC 3339 in UTC, the way Alertmanager
/// writes timestamps.
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        // Only reachable for times hundreds of thousands of years away;
        // "no time" is the least surprising thing to send then.
        || ZERO_TIME.to_owned(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// The alert's identity as 16 hex digits: FNV-1a over the sorted labels,
/// exactly as Prometheus and Alertmanager compute fingerprints, so the value
/// matches what Alertmanager shows for the same alert.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    const SEPARATOR: &[u8] = &[0xff];
    let mut hash = Fnv::new();
    // BTreeMap iterates in sorted order, which the fingerprint requires.
    for (name, value) in labels {
        hash.add(name.as_bytes());
        hash.add(SEPARATOR);
        hash.add(value.as_bytes());
        hash.add(SEPARATOR);
    }
    format!("{:016x}", hash.0)
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How much of an error answer's body goes into the error.
const ERROR_BODY_BYTES: u64 = 200;

/// A JSON `POST` with the retry rules shared by the HTTP notifiers.
#[derive(Debug)]
struct JsonPost {
    /// The notifier's name, for errors and logs.
    target: String,
    url: String,
    headers: Vec<(String, Secret)>,
    authorization: Option<Authorization>,
    retries: u32,
    backoff: Duration,
    agent: ureq::Agent,
    /// State of the jitter generator (splitmix64).
    jitter: AtomicU64,
}

/// Settings [`JsonPost::new`] takes, checked already.
struct PostSettings<'a> {
    target: String,
    url: String,
    headers: &'a BTreeMap<String, Secret>,
    authorization: Option<&'a Authorization>,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
}

/// One failed attempt.
struct Failure {
    retry: bool,
    status: Option<(u16, String)>,
    message: String,
}

impl JsonPost {
    fn new(s: PostSettings<'_>) -> Result<Self, NotifyError> {
        for (name, value) in s.headers {
            let field = format!("headers.{name}");
            ureq::http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| {
                config_error(&field, format!("`{name}` is not a header name ({e})"))
            })?;
            ureq::http::HeaderValue::from_str(&value.0).map_err(|e| {
                config_error(&field, format!("the value is not valid in a header ({e})"))
            })?;
        }
        if let Some(a) = s.authorization {
            if s.headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("authorization"))
            {
                return Err(config_error(
                    "authorization",
                    "`headers` already sets `Authorization`; keep one of the two".to_owned(),
                ));
            }
            a.check()?;
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(s.timeout))
            // Error statuses are ours to classify and report with their body.
            .http_status_as_error(false)
            .max_redirects(0)
            // Alerts go to internal addresses; an http_proxy meant for
            // something else must not swallow them.
            .proxy(None)
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        // Seeded from the URL and the process so that daemons sending to the
        // same receiver after the same outage do not retry in lockstep.
        let mut seed = Fnv::new();
        seed.add(s.url.as_bytes());
        seed.add(&std::process::id().to_le_bytes());
        Ok(Self {
            target: s.target,
            url: s.url,
            headers: s
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            authorization: s.authorization.cloned(),
            retries: s.retries,
            backoff: s.backoff,
            agent,
            jitter: AtomicU64::new(seed.0),
        })
    }

    /// Posts `body`, retrying as configured.
    fn send(&self, body: &[u8]) -> Result<(), NotifyError> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let failure = match self.attempt(body) {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            if !failure.retry || attempt > self.retries {
                return Err(match failure.status {
                    Some((status, body)) => NotifyError::Status {
                        target: self.target.clone(),
                        status,
                        body,
                        attempts: attempt,
                    },
                    None => NotifyError::Transport {
                        target: self.target.clone(),
                        message: failure.message,
                        attempts: attempt,
                    },
                });
            }
            let delay = self.delay(attempt - 1);
            tracing::debug!(
                target_name = %self.target,
                attempt,
                error = %failure.message,
                delay = %humantime::format_duration(delay),
                "alert delivery failed, retrying"
            );
            std::thread::sleep(delay);
        }
    }

    fn attempt(&self, body: &[u8]) -> Result<(), Failure> {
        let mut request = self.agent.post(&self.url);
        if !self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in &self.headers {
            request = request.header(name, &value.0);
        }
        if let Some(a) = &self.authorization {
            let value = a.value().map_err(|message| Failure {
                // The file may be back by the next attempt.
                retry: true,
                status: None,
                message: format!("authorization.credentials_file: {message}"),
            })?;
            request = request.header("authorization", &value);
        }
        let response = request.send(body).map_err(|e| Failure {
            // Errors about the request itself will not go away by retrying.
            retry: !matches!(
                e,
                ureq::Error::BadUri(_)
                    | ureq::Error::Http(_)
                    | ureq::Error::RequireHttpsOnly(_)
                    | ureq::Error::TlsRequired
                    | ureq::Error::InvalidProxyUrl
            ),
            status: None,
            message: e.to_string(),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let mut start = Vec::new();
        // A body we cannot read still leaves the status to report.
        let _ = response
            .into_body()
            .as_reader()
            .take(ERROR_BODY_BYTES)
            .read_to_end(&mut start);
        let text = String::from_utf8_lossy(&start).trim().to_owned();
        let text = if text.is_empty() {
            "(empty body)".to_owned()
        } else {
            text
        };
        Err(Failure {
            retry: status.is_server_error() || status.as_u16() == 429,
            message: format!("HTTP {}: {text}", status.as_u16()),
            status: Some((status.as_u16(), text)),
        })
    }

    /// The wait before retry number `retry` (0-based): the backoff doubled
    /// per retry, capped, with ±20% jitter.
    fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        let base = self.backoff.saturating_mul(factor).min(MAX_BACKOFF);
        let random = splitmix64(&self.jitter);
        // Top 53 bits give a uniform float in [0, 1).
        let unit = (random >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(0.8 + 0.4 * unit).min(MAX_BACKOFF)
    }
}

/// A cheap pseudo-random step: good enough to spread retries, no crate needed.
fn splitmix64(state: &AtomicU64) -> u64 {
    let mut z = state
        .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
