//! Requests to owners of registered resources (issue 16): a cleanup policy
//! that releases or evicts a resource whose owner listens asks the owner
//! first (see `warden_resources::registry::requests`).
//!
//! - `GET /api/v1/resources/events?owner=OWNER`: server-sent events, one
//!   per request (`data:` `{"id", "type": "release"|"evict"|"close", "handle",
//!   "name", "kind", "policy", "reason", "attempt"}`, `id:` the request's),
//!   with a keep-alive comment every 15 s. Requests already waiting are sent
//!   on connecting. At most `resources.requests.max_subscribers_per_owner`
//!   streams per owner (`429` past it).
//! - `POST /api/v1/resources/events/{id}/ack?owner=OWNER`, body optional
//!   `{"outcome": "released"|"refused", "reason"}` (default `released`):
//!   released, the resource goes; refused, it stays.
//! - `GET /api/v1/resources/requests[?owner=&limit=]`: requests waiting,
//!   the last ones never answered, and counts.
//!
//! Each stream has a bounded queue: a request it cannot take is dropped
//! for it (counted) and sent again at the next attempt, so a slow reader
//! never holds up a cleanup run.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{ApiError, AppState, Q};
use warden_resources::Registry;
use warden_resources::registry::{
    AckError, AckOutcome, Acked, OwnerRequest, RequestsReport, SubscribeError, Subscription,
};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/resources/events", get(events))
        .route("/api/v1/resources/events/{id}/ack", post(ack))
        .route("/api/v1/resources/requests", get(requests))
}

/// Requests queued for one stream: a reader this far behind loses the
/// newest until it catches up (they are sent again at the next attempt).
const QUEUE: usize = 256;
/// Longest owner name, as registration takes it.
const MAX_OWNER: usize = 4096;
/// Longest reason an owner gives.
const MAX_REASON: usize = 1024;
/// Most requests listed.
const MAX_LIST: usize = 1_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerQuery {
    /// The owner the resources were registered under.
    owner: Option<String>,
}

fn owner(q: OwnerQuery) -> Result<String, ApiError> {
    match q.owner {
        Some(o) if !o.is_empty() && o.len() <= MAX_OWNER => Ok(o),
        Some(_) => Err(ApiError::bad_request(format!(
            "owner: must be 1 to {MAX_OWNER} bytes long"
        ))),
        None => Err(ApiError::bad_request(
            "owner: missing; name the owner the resources were registered under: `?owner=OWNER`"
                .into(),
        )),
    }
}

/// A stream of requests; unsubscribes when the client goes, and ends when
/// the daemon stops (the owner reconnects to the next one).
struct Requests {
    rx: tokio::sync::mpsc::Receiver<OwnerRequest>,
    stopping: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    _subscription: Subscription,
}

impl futures_core::Stream for Requests {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.stopping.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        self.rx.poll_recv(cx).map(|r| {
            r.map(|r| {
                Ok(Event::default()
                    .id(r.id.to_string())
                    .data(serde_json::to_string(&r).unwrap_or_default()))
            })
        })
    }
}

async fn events(
    State(s): State<AppState>,
    Q(q): Q<OwnerQuery>,
) -> Result<Sse<impl futures_core::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let owner = owner(q)?;
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
    let subscription = s
        .scheduler
        .context()
        .registry
        .on_request(&owner, move |r| tx.try_send(r.clone()).is_ok())
        .map_err(|e| match e {
            SubscribeError::NoOwner => ApiError::bad_request(format!("owner: {e}")),
            other => ApiError(StatusCode::TOO_MANY_REQUESTS, other.to_string()),
        })?;
    let mut stopping = s.stopping.clone();
    Ok(Sse::new(Requests {
        rx,
        // Ends too if the daemon's side of the signal is gone.
        stopping: Box::pin(async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        }),
        _subscription: subscription,
    })
    .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    #[serde(default)]
    outcome: AckOutcome,
    /// Why, for the log.
    #[serde(default)]
    reason: Option<String>,
}

async fn ack(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Q(q): Q<OwnerQuery>,
    body: Bytes,
) -> Result<Json<Acked>, ApiError> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "`{id}` is not a request id; ids are the `id` of the events `GET /api/v1/resources/events` sends"
        ))
    })?;
    let owner = owner(q)?;
    let answer: Answer = if body.iter().all(u8::is_ascii_whitespace) {
        Answer::default()
    } else {
        let mut de = serde_json::Deserializer::from_slice(&body);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            ApiError::bad_request(if path == "." {
                format!(
                    "the body is not an answer: {}; send {{\"outcome\": \"released\"}} or {{\"outcome\": \"refused\", \"reason\": \"in use\"}}",
                    e.into_inner()
                )
            } else {
                format!("{path}: {}", e.into_inner())
            })
        })?
    };
    if let Some(r) = &answer.reason {
        if r.len() > MAX_REASON {
            return Err(ApiError::bad_request(format!(
                "reason: at most {MAX_REASON} bytes"
            )));
        }
        if let Some(found) = s.pii.find_in_text(r) {
            return Err(ApiError::bad_request(format!(
                "reason: carries personal data ({found})"
            )));
        }
    }
    let acked = s
        .scheduler
        .context()
        .registry
        .ack(id, &owner, answer.outcome, warden_core::clock::now_ms())
        .map_err(|e| match e {
            AckError::Unknown { .. } => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            AckError::NotOwner { .. } => ApiError(StatusCode::FORBIDDEN, e.to_string()),
        })?;
    tracing::info!(
        request = id,
        handle = acked.handle,
        %owner,
        outcome = ?answer.outcome,
        reason = answer.reason.as_deref().unwrap_or(""),
        "an owner answered a release request"
    );
    Ok(Json(acked))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    owner: Option<String>,
    /// At most this many of each list (default 100).
    limit: Option<usize>,
}

async fn requests(
    State(s): State<AppState>,
    Q(q): Q<ListQuery>,
) -> Result<Json<RequestsReport>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if limit > MAX_LIST {
        return Err(ApiError::bad_request(format!(
            "limit: {limit}; at most {MAX_LIST}"
        )));
    }
    Ok(Json(
        s.scheduler
            .context()
            .registry
            .requests(q.owner.as_deref(), limit),
    ))
}

/// Writes the request counts for `/metrics`.
pub(crate) fn encode(registry: &Registry, out: &mut String) -> std::fmt::Result {
    use std::fmt::Write as _;
    let c = registry.request_counts();
    let mut counter = |name: &str, help: &str, lines: &[(&str, u64)]| -> std::fmt::Result {
        writeln!(out, "# TYPE {name} counter")?;
        writeln!(out, "# HELP {name} {help}")?;
        for (labels, n) in lines {
            writeln!(out, "{name}_total{labels} {n}")?;
        }
        Ok(())
    };
    counter(
        "warden_resource_requests_asked",
        "Requests to owners to release or evict a registered resource",
        &[("", c.asked)],
    )?;
    counter(
        "warden_resource_requests_unacknowledged",
        "Requests never answered after their last attempt; the resource was released",
        &[("", c.unacknowledged)],
    )?;
    counter(
        "warden_resource_requests_answered",
        "Requests owners answered, by answer",
        &[
            ("{outcome=\"released\"}", c.released),
            ("{outcome=\"refused\"}", c.refused),
        ],
    )?;
    counter(
        "warden_resource_request_deliveries",
        "Attempts to hand a request to a listener, by result (dropped: its queue was full, or nobody listened)",
        &[
            ("{result=\"delivered\"}", c.delivered),
            ("{result=\"dropped\"}", c.dropped),
        ],
    )?;
    counter(
        "warden_resource_requests_overflowed",
        "Policy releases done at once because the owner had too many requests waiting",
        &[("", c.overflowed)],
    )?;
    writeln!(out, "# TYPE warden_resource_requests_pending gauge")?;
    writeln!(
        out,
        "# HELP warden_resource_requests_pending Requests waiting for their owner's answer"
    )?;
    writeln!(out, "warden_resource_requests_pending {}", c.pending)
}
