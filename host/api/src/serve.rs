//! Serving the API over TCP so that no client can exhaust it: HTTP/1.1 with
//!
//! - a **header timeout**: a request's headers must arrive within
//!   [`Limits::header_timeout`], counted from when the connection is ready
//!   for them, so a connection idle between requests is closed after it too
//!   (a slowloris client trickling headers, or one that never sends any);
//! - a **body timeout** ([`body_deadline`]): the whole body within
//!   [`Limits::body_timeout`] of the request's start;
//! - a **write timeout**: a response the client stops reading fails once no
//!   byte has moved for [`Limits::write_timeout`];
//! - a **connection cap**: at [`Limits::max_connections`] a new connection
//!   closes the oldest one that is not running a request (an idle or slow
//!   client), so `/health` and the API stay reachable however many idle
//!   sockets are held open; only when every connection is busy is the new
//!   one refused;
//! - per-route body caps, set where each route is defined.
//!
//! Each connection runs on its own task; at shutdown every connection is
//! asked to finish its request in flight and given [`Limits::shutdown_grace`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower::ServiceExt as _;

/// The bounds of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// From ready-for-a-request to its last header byte.
    pub header_timeout: Duration,
    /// From a request's start to its last body byte.
    pub body_timeout: Duration,
    /// How long a response may wait for the client to read it.
    pub write_timeout: Duration,
    /// How long requests in flight get at shutdown.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// What the server did, for status and tests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Idle connections closed to make room under the cap.
    pub evicted: AtomicU64,
    /// Connections refused because every open one was busy.
    pub refused: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

struct Conn {
    opened: Instant,
    /// Requests of this connection being handled now.
    busy: Arc<AtomicUsize>,
    evict: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct Table {
    next: u64,
    conns: HashMap<u64, Conn>,
}

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    counters: Arc<Counters>,
    shutdown: impl Future<Output = ()>,
) {
    let table = Arc::new(Mutex::new(Table::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a little instead of spinning.
                    tracing::warn!(error = %e, "failed to accept an API connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while tasks.try_join_next().is_some() {}
        let Some((id, busy, evict)) = admit(&table, limits.max_connections, &counters) else {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            app: app.clone(),
            limits,
            table: Arc::clone(&table),
            counters: Arc::clone(&counters),
            id,
            busy,
            evict,
            stop: stop_rx.clone(),
        };
        tasks.spawn(conn.run(stream));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("API requests still running at the end of the shutdown grace; closing them");
        tasks.abort_all();
    }
}

/// Registers a new connection, closing the oldest idle one at the cap.
/// `None` if every open connection is busy.
fn admit(
    table: &Mutex<Table>,
    max: usize,
    counters: &Counters,
) -> Option<(u64, Arc<AtomicUsize>, Arc<tokio::sync::Notify>)> {
    let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
    if t.conns.len() >= max.max(1) {
        let oldest_idle = t
            .conns
            .iter()
            .filter(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, c)| c.opened)
            .map(|(id, _)| *id)?;
        if let Some(c) = t.conns.remove(&oldest_idle) {
            // `notify_one` keeps the wake-up if the task is not waiting yet.
            c.evict.notify_one();
            counters.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }
    t.next += 1;
    let id = t.next;
    let busy = Arc::new(AtomicUsize::new(0));
    let evict = Arc::new(tokio::sync::Notify::new());
    t.conns.insert(
        id,
        Conn {
            opened: Instant::now(),
            busy: Arc::clone(&busy),
            evict: Arc::clone(&evict),
        },
    );
    counters.open.store(t.conns.len() as u64, Ordering::Relaxed);
    Some((id, busy, evict))
}

struct Connection {
    app: Router,
    limits: Limits,
    table: Arc<Mutex<Table>>,
    counters: Arc<Counters>,
    id: u64,
    busy: Arc<AtomicUsize>,
    evict: Arc<tokio::sync::Notify>,
    stop: tokio::sync::watch::Receiver<bool>,
}

/// Marks a request finished when dropped (also when its task is aborted).
struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Connection {
    async fn run(mut self, stream: tokio::net::TcpStream) {
        let io = TokioIo::new(WriteDeadline::new(stream, self.limits.write_timeout));
        let app = self.app.clone();
        let busy = Arc::clone(&self.busy);
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                busy.fetch_add(1, Ordering::AcqRel);
                let guard = Busy(Arc::clone(&busy));
                let app = app.clone();
                async move {
                    let _guard = guard;
                    app.oneshot(req.map(axum::body::Body::new)).await
                }
            });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .max_headers(64)
            .max_buf_size(64 * 1024);
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            () = self.evict.notified() => {}
            () = stopped(&mut self.stop) => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.as_mut().await;
            }
        }
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        t.conns.remove(&self.id);
        self.counters
            .open
            .store(t.conns.len() as u64, Ordering::Relaxed);
    }
}

/// Returns once shutdown is asked (the guard `wait_for` returns is dropped
/// here, not held across the connection's awaits).
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// A socket whose writes fail once they have made no progress for
/// `timeout`: a client that stops reading cannot hold a response (and its
/// connection) for ever.
struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        WriteDeadline {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// Called when a write is pending: starts the clock, or fails if it ran out.
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading the response",
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    fn after<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Pending => match self.check(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.after(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.after(cx, r)
    }
}

/// Middleware: the request's body must arrive whole within `timeout` of the
/// request's start; a slower body fails (the handler answers 400).
pub async fn body_deadline(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::Body::new(TimedBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(timeout)),
    });
    next.run(Request::from_parts(parts, body)).await
}

struct TimedBody {
    inner: axum::body::Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for TimedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the request body did not arrive in time",
                ))))),
                Poll::Pending => Poll::Pending,
            },
            ready => ready,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
