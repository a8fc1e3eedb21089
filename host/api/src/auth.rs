//! Who may use the API, checked on every request before its handler runs:
//!
//! - **Host**: the `Host` header must name the address the daemon listens on
//!   (an IP literal; any IP literal when it listens on all addresses),
//!   `localhost`, or one of `api.hosts`. A web page that rebinds its own
//!   domain name to 127.0.0.1 sends its domain name, and is refused.
//! - **Token**: every mutating request (anything but `GET` and `HEAD`) needs
//!   `Authorization: Bearer <token>`, and so does every read but `/health`
//!   and `/metrics` (they expose configuration and history) unless
//!   `api.public_reads: true`. There is always a token: without one
//!   configured, the daemon makes one at `<data_dir>/api-token` (0600).
//! - **Body**: a request with a body must say `Content-Type:
//!   application/json`; a browser cannot send that across origins without
//!   asking first (CORS), which Warden never allows.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The token requests need.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A token; `None` if it is empty.
    pub fn new(token: &str) -> Option<Token> {
        let t = token.trim();
        (!t.is_empty()).then(|| Token(Arc::from(t)))
    }

    fn accepts(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|got| constant_time_eq(self.0.as_bytes(), got.as_bytes()))
    }
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The access rules of one daemon.
#[derive(Debug, Clone)]
pub struct Access {
    /// The token.
    pub token: Token,
    /// Reads that expose configuration or history need no token.
    pub public_reads: bool,
    /// Accepted `Host` values.
    pub hosts: Hosts,
}

/// Which `Host` headers are accepted.
#[derive(Debug, Clone)]
pub struct Hosts {
    /// The address the daemon listens on; `None` (a Unix socket) accepts
    /// any `Host`, since no web page can reach a socket file.
    pub listen: Option<IpAddr>,
    /// Further names, such as the machine's DNS name (`api.hosts`).
    pub names: Vec<String>,
}

impl Hosts {
    /// Returns true if and only if `host` (a `Host` header value, with or
    /// without a port) is acceptable.
    pub fn accepts(&self, host: &str) -> bool {
        let Some(listen) = self.listen else {
            return true;
        };
        let name = match host.strip_prefix('[') {
            // `[v6]` or `[v6]:port`.
            Some(rest) => match rest.split_once(']') {
                Some((ip, after)) if after.is_empty() || after.starts_with(':') => ip,
                _ => return false,
            },
            None => host.rsplit_once(':').map_or(host, |(h, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    h
                } else {
                    host
                }
            }),
        };
        if name.eq_ignore_ascii_case("localhost")
            || self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
        {
            return true;
        }
        match name.parse::<IpAddr>() {
            Ok(ip) => listen.is_unspecified() || ip == listen,
            Err(_) => false,
        }
    }
}

/// Returns true if and only if `path` is one of the reads that stay open
/// without a token: `/health` and `/metrics` (probes and Prometheus).
fn open_read(path: &str) -> bool {
    matches!(path, "/health" | "/metrics")
}

/// The middleware: Host, then token, then the body's content type.
pub async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    match check(&access, &request) {
        Ok(()) => next.run(request).await,
        Err(r) => *r,
    }
}

fn check(access: &Access, request: &Request) -> Result<(), Box<Response>> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    match host {
        Some(h) if access.hosts.accepts(h) => {}
        Some(h) => {
            return Err(Box::new(
                ApiError(
                    StatusCode::MISDIRECTED_REQUEST,
                    format!(
                        "`Host: {}` is not this daemon's address; use the address it listens on, `localhost`, or a name listed in `api.hosts`",
                        h.chars().take(100).collect::<String>()
                    ),
                )
                .into_response(),
            ));
        }
        None => {
            return Err(Box::new(
                ApiError::bad_request("the request has no `Host` header".into()).into_response(),
            ));
        }
    }
    let reading = matches!(*request.method(), Method::GET | Method::HEAD);
    let needs_token = !reading || !(access.public_reads || open_read(request.uri().path()));
    if needs_token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !access.token.accepts(presented) {
            let message = if presented.is_some() {
                "the bearer token is wrong"
            } else if reading {
                "this read shows configuration or history and needs `Authorization: Bearer <token>` (the daemon's `api.token_file`, or the token it made at `<data_dir>/api-token`; `warden` commands read it from there, `--token-file` or WARDEN_TOKEN); `api.public_reads: true` opens reads"
            } else {
                "this request changes the daemon and needs `Authorization: Bearer <token>` (the daemon's `api.token_file`, or the token it made at `<data_dir>/api-token`; `warden` commands read it from there, `--token-file` or WARDEN_TOKEN)"
            };
            let mut r = ApiError(StatusCode::UNAUTHORIZED, message.into()).into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return Err(Box::new(r));
        }
    }
    if has_body(request) && !is_json(request) {
        return Err(Box::new(
            ApiError(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a request body must be JSON sent with `Content-Type: application/json`".into(),
            )
            .into_response(),
        ));
    }
    Ok(())
}

fn has_body(request: &Request) -> bool {
    let h = request.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        let t = Token::new("s3cret\n").unwrap();
        assert!(t.accepts(Some("s3cret")));
        assert!(!t.accepts(Some("s3cre")));
        assert!(!t.accepts(Some("s3cretX")));
        assert!(!t.accepts(None));
        assert!(Token::new(" ").is_none());
        assert_eq!(format!("{t:?}"), "Token(..)");
    }

    #[test]
    fn hosts_are_the_listen_address_localhost_or_configured_names() {
        let loopback = Hosts {
            listen: Some("127.0.0.1".parse().unwrap()),
            names: vec!["box.internal".into()],
        };
        for ok in [
            "127.0.0.1:9715",
            "127.0.0.1",
            "localhost:9715",
            "LOCALHOST",
            "box.internal:9715",
        ] {
            assert!(loopback.accepts(ok), "{ok}");
        }
        for bad in [
            "evil.example:9715",
            "127.0.0.2:9715",
            "[::1]:9715",
            "127.0.0.1.evil.example",
            "",
        ] {
            assert!(!loopback.accepts(bad), "{bad}");
        }
        let any = Hosts {
            listen: Some("0.0.0.0".parse().unwrap()),
            names: vec![],
        };
        assert!(any.accepts("10.1.2.3:9715") && any.accepts("[fe80::1]:80"));
        assert!(!any.accepts("rebind.example:9715"));
    }
}
