//! Who may change things: with a token configured, every mutating request
//! (anything but GET and HEAD) must carry `Authorization: Bearer <token>`.
//! Reads stay open, as Prometheus' and node_exporter's do. A daemon that
//! listens beyond loopback must have a token; `daemon` refuses to start
//! otherwise.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The token mutations need, if any.
#[derive(Clone, Default)]
pub struct Token(Option<Arc<str>>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.write_str(if self.0.is_some() {
            "Token(set)"
        } else {
            "Token(none)"
        })
    }
}

impl Token {
    /// A required token; `None` leaves mutations open (loopback only).
    pub fn new(token: Option<String>) -> Token {
        Token(token.filter(|t| !t.is_empty()).map(Arc::from))
    }

    /// True if a token is required.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    fn accepts(&self, presented: Option<&str>) -> bool {
        match (&self.0, presented) {
            (None, _) => true,
            (Some(want), Some(got)) => constant_time_eq(want.as_bytes(), got.as_bytes()),
            (Some(_), None) => false,
        }
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

/// The middleware.
pub async fn require_token(State(token): State<Token>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) || !token.is_set() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token.accepts(presented) {
        return next.run(request).await;
    }
    let message = if presented.is_some() {
        "the bearer token is wrong"
    } else {
        "this request changes the daemon and needs `Authorization: Bearer <token>` (the token of the daemon's `api.token` or `api.token_file`; `warden` commands take `--token` or WARDEN_TOKEN)"
    };
    let mut r = ApiError(StatusCode::UNAUTHORIZED, message.into()).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        let t = Token::new(Some("s3cret".into()));
        assert!(t.accepts(Some("s3cret")));
        assert!(!t.accepts(Some("s3cre")));
        assert!(!t.accepts(Some("s3cretX")));
        assert!(!t.accepts(None));
        assert!(Token::new(None).accepts(None));
        assert!(!Token::new(Some(String::new())).is_set());
        assert_eq!(format!("{t:?}"), "Token(set)");
    }
}
