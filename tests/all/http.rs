//! HTTP for the tests that talk to a running `warden` (or Alertmanager,
//! Prometheus): one client, one call returning status and JSON, one wait.
//! Every daemon needs its API token; [`remember_token`] records it by
//! address, and [`agent`] sends it to that address.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// API tokens by `host:port`.
static TOKENS: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(Mutex::default);

/// Makes [`agent`] send `token` to the daemon at `addr`.
pub(crate) fn remember_token(addr: &str, token: &str) {
    TOKENS
        .lock()
        .unwrap()
        .insert(addr.to_owned(), token.trim().to_owned());
}

/// Adds the token of the request's `host:port`, if one is known and the
/// request carries no `Authorization` of its own.
fn with_token(
    mut request: ureq::http::Request<ureq::SendBody>,
    next: ureq::middleware::MiddlewareNext,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let token = request
        .uri()
        .authority()
        .and_then(|a| TOKENS.lock().unwrap().get(a.as_str()).cloned());
    if let Some(t) = token
        && !request.headers().contains_key("authorization")
    {
        request.headers_mut().insert(
            "authorization",
            ureq::http::HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
    }
    next.handle(request)
}

fn builder() -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(30)))
}

/// A client that reports error statuses instead of failing on them, ignores
/// proxy settings (everything here is on loopback), gives up on one request
/// after 30 s so that a hang fails the test instead of stalling it, and
/// authenticates to every daemon whose token was remembered.
pub(crate) fn agent() -> ureq::Agent {
    builder().middleware(with_token).build().into()
}

/// [`agent`] without the tokens: what anyone else on the machine has.
pub(crate) fn anonymous_agent() -> ureq::Agent {
    builder().build().into()
}

/// `method` (GET, POST or DELETE) on `http://{addr}{path}`, with `body` as
/// JSON for a POST; returns the status and the answer as JSON (`Null` if it
/// is not JSON).
pub(crate) fn call(method: &str, addr: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let url = format!("http://{addr}{path}");
    let a = agent();
    let mut r = match (method, body) {
        ("GET", _) => a.get(&url).call(),
        ("DELETE", _) => a.delete(&url).call(),
        (_, Some(b)) => a
            .post(&url)
            .header("content-type", "application/json")
            .send(b.to_string()),
        (_, None) => a.post(&url).send_empty(),
    }
    .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `POST`s `body` as JSON; returns the status and the answer.
pub(crate) fn post(addr: &str, path: &str, body: &Value) -> (u16, Value) {
    call("POST", addr, path, Some(body))
}

/// The JSON at `http://{addr}{path}`, which must answer 200.
pub(crate) fn get(addr: &str, path: &str) -> Value {
    get_url(&format!("http://{addr}{path}"))
}

/// The JSON at `url`, which must answer 200.
pub(crate) fn get_url(url: &str) -> Value {
    let mut r = agent().get(url).call().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{url}");
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

/// The text at `http://{addr}{path}`, which must answer 200.
pub(crate) fn get_text(addr: &str, path: &str) -> String {
    let url = format!("http://{addr}{path}");
    let mut r = agent().get(&url).call().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{url}");
    r.body_mut().read_to_string().unwrap()
}

/// Polls `done` every 50 ms until it holds, failing after `secs` seconds.
pub(crate) fn wait(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {secs}s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The text at `http://{addr}{path}`, which must answer 200.
pub(crate) fn text(addr: &str, path: &str) -> String {
    let url = format!("http://{addr}{path}");
    let mut r = agent().get(&url).call().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{url}");
    r.body_mut().read_to_string().unwrap()
}
