//! A load client for the HTTP throughput benchmarks: one keep-alive
//! HTTP/1.1 connection, one request at a time, as an application calls the
//! daemon, doing no more work than such a client must: write the request,
//! read the status line, the headers and the `Content-Length` body.
//!
//! Why not a general client: the clients share the machine's two cores with
//! the daemon, so what a client costs comes off the daemon's throughput. A
//! profile of `quotas_http` with `ureq` clients gave them 42% of the CPU
//! against the daemon's 55%; the figure then measured the clients nearly as
//! much as the daemon. This is what load generators (`wrk`, `h2load`) do
//! for the same reason. No pipelining: each request waits for its answer.

#![allow(
    dead_code,
    reason = "shared by several benchmarks; each uses part of it"
)]

use std::io::{Read, Write};
use std::net::TcpStream;

/// One connection to the daemon.
pub(crate) struct Client {
    stream: TcpStream,
    /// `host: …` and `authorization: …` lines, sent with every request.
    fixed: String,
    request: Vec<u8>,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to `addr` (`host:port`), sending `bearer` (`Bearer …`).
    pub(crate) fn connect(addr: &str, bearer: &str) -> Client {
        let stream = TcpStream::connect(addr).expect("cannot connect to the daemon");
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            fixed: format!("host: {addr}\r\nauthorization: {bearer}\r\n"),
            request: Vec::with_capacity(4096),
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    /// POSTs `body` as JSON to `path`; returns the status and the answer's
    /// body. Panics on a broken connection or a malformed answer: either is
    /// a benchmark failure.
    pub(crate) fn post(&mut self, path: &str, body: &[u8]) -> (u16, &[u8]) {
        self.request.clear();
        write!(
            self.request,
            "POST {path} HTTP/1.1\r\n{}content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.fixed,
            body.len()
        )
        .unwrap();
        self.request.extend_from_slice(body);
        self.stream.write_all(&self.request).unwrap();
        self.read_answer()
    }

    fn read_answer(&mut self) -> (u16, &[u8]) {
        self.buf.clear();
        let mut chunk = [0u8; 8192];
        let (status, head, length) = loop {
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "the daemon closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut answer = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = answer.parse(&self.buf).unwrap() {
                let length = answer
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| {
                        std::str::from_utf8(h.value)
                            .unwrap()
                            .parse::<usize>()
                            .unwrap()
                    })
                    .expect("an answer without content-length");
                break (answer.code.unwrap(), head, length);
            }
        };
        while self.buf.len() < head + length {
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "the daemon closed the connection mid-answer");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(
            self.buf.len(),
            head + length,
            "more bytes than one answer: nothing was pipelined"
        );
        (status, &self.buf[head..])
    }
}

/// The daemon's allocator (`warden`'s `main.rs`), for every benchmark that
/// uses this module: its ceiling server, this binary run again, is then the
/// same stack as the daemon's.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The environment variable that makes a benchmark binary the ceiling
/// server (see [`start_ceiling_server`]) instead of the benchmark.
const CEILING_ENV: &str = "WARDEN_BENCH_CEILING_SERVER";

/// The ceiling server, while its process lives (killed when dropped).
struct Ceiling {
    child: std::process::Child,
    /// Its address, `host:port`.
    addr: String,
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts an HTTP/1.1 server that reads each request's body and answers a
/// fixed `200` JSON body, doing nothing else: the same tokio (a worker per
/// core, as the daemon's), hyper connection builder, axum router and
/// allocator (see [`ALLOC`]) as the daemon, none of its work.
/// Clients of this module against it measure the most this machine's
/// loopback, scheduler and HTTP stack allow one request at a time per
/// connection: the ceiling beside which the daemon's figure is read.
///
/// It runs in a process of its own, as the daemon does, so that both are
/// measured the same way. (On a thread of the clients' process, it
/// measured lower: 59-72k answers a second against 72-84k, in three runs of
/// each, taken in turn.) The process is this benchmark binary, run again
/// with [`CEILING_ENV`] set; its `main` must call [`serve_ceiling_if_asked`]
/// first.
fn start_ceiling_server() -> Ceiling {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CEILING_ENV, "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cannot start the ceiling server");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().to_owned();
    assert!(
        !addr.is_empty(),
        "the ceiling server did not say its address"
    );
    Ceiling { child, addr }
}

/// In the process [`start_ceiling_server`] starts: serves until the
/// benchmark closes its stdin (it exits or drops the [`Ceiling`]), then
/// exits. Elsewhere, returns at once.
pub(crate) fn serve_ceiling_if_asked() {
    if std::env::var_os(CEILING_ENV).is_none() {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(|| {
        // Whatever the parent's fate, the server does not outlive it.
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let app = axum::Router::new().fallback(|body: axum::body::Bytes| async move {
            std::hint::black_box(body);
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                r#"{"allow":true}"#,
            )
        });
        // Each connection as the daemon serves it (`warden_api::serve`): a
        // task with hyper's HTTP/1 connection and the router as its
        // service, without the daemon's timeouts and connection table.
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let app = app.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    std::process::exit(0);
}

/// Runs [`rate`] against a ceiling server (see [`start_ceiling_server`])
/// started for it and stopped after.
pub(crate) fn ceiling_rate(
    clients: usize,
    secs: f64,
    path: &'static str,
    body: &'static [u8],
) -> f64 {
    let server = start_ceiling_server();
    rate(&server.addr, clients, secs, path, body)
}

/// Runs `clients` clients of this module against the server at `addr` for
/// `secs`, each POSTing `body` to `path`; returns answers a second.
pub(crate) fn rate(
    addr: &str,
    clients: usize,
    secs: f64,
    path: &'static str,
    body: &'static [u8],
) -> f64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs);
    let t = std::time::Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let mut c = Client::connect(addr, "Bearer -");
            std::thread::spawn(move || {
                let mut n = 0u64;
                while std::time::Instant::now() < deadline {
                    let (status, _) = c.post(path, body);
                    assert_eq!(status, 200);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let n: u64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    n as f64 / t.elapsed().as_secs_f64()
}
