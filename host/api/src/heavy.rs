//! Reads whose cost grows with the store — range and aggregate queries and
//! the `/metrics` exposition — run on the blocking pool, at most
//! [`AT_ONCE`] at a time, so that a burst of them neither stalls the async
//! workers (and with them `/health` and every other request) nor piles up
//! without bound: a query that cannot start within [`WAIT`] is refused with
//! `503`.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;

use super::{ApiError, AppState};

/// Heavy reads running at once.
pub const AT_ONCE: usize = 2;
/// How long a heavy read waits for its turn.
pub const WAIT: Duration = Duration::from_secs(10);

/// The bound that [`AppState::heavy`] holds.
pub fn bound() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(AT_ONCE))
}

/// Runs `f` on the blocking pool once one of the [`AT_ONCE`] slots is free.
pub(crate) async fn run<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let busy = || {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{AT_ONCE} heavy queries are running and this one waited {WAIT:?} for its turn; retry shortly"
            ),
        )
    };
    let permit = tokio::time::timeout(WAIT, Arc::clone(&s.heavy).acquire_owned())
        .await
        .map_err(|_| busy())?
        .map_err(|_| busy())?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f()
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "a heavy query failed");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the query failed; the daemon's log says why".into(),
        )
    })
}
