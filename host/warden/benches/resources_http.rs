//! Registering resources over HTTP: 4 clients, each on its own keep-alive
//! connection (one request at a time; see `support/keepalive.rs`), against the real daemon (token, host and content-type
//! checks, the personal-data filter, the durable registry's log), as
//! applications do: first one registration per request
//! (`POST /api/v1/resources`), then batches of [`BATCH`]
//! (`POST /api/v1/resources/batch`). Goal (issue 16): ≥ 50,000
//! registrations/s. Clients and daemon share the machine's cores.
//!
//! Run: `cargo bench -p warden --bench resources_http`. Under `cargo test`
//! it runs for a fraction of a second as a smoke test.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/keepalive.rs"]
mod keepalive;

use std::io::Write as _;

use std::time::{Duration, Instant};

use daemon::Daemon;

const GOAL: f64 = 50_000.0;
const CLIENTS: usize = 4;
/// Registrations per batch request: a tenth of the route's bound, what an
/// application flushing a queue every few milliseconds sends.
const BATCH: usize = 100;

fn main() {
    keepalive::serve_ceiling_if_asked();
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let secs = if benchmarking { 5.0 } else { 0.3 };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("warden.yaml"),
        "metrics:\n  collect:\n    enabled: false\n  persist:\n    enabled: false\nresources:\n  max_tracked: 10000000\n  max_bytes: 4GiB\n",
    )
    .unwrap();
    // First, before the daemon exists to take any CPU: the same clients
    // against a server of the same stack that does nothing; the most this
    // machine allows one request at a time.
    let ceiling = keepalive::ceiling_rate(
        CLIENTS,
        secs,
        "/api/v1/resources",
        br#"{"kind": "app-object", "name": "cache/0/0", "owner": "svc-0", "size_bytes": 4096, "ttl": "10m", "labels": {"pool": "a"}}"#,
    );
    let d = Daemon::start(dir.path());
    let single = run(&d, secs, 1);
    let (status, listed) = d.get("/api/v1/resources?owner=svc-0&limit=1");
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let batched = run(&d, secs, BATCH);
    println!(
        "register over HTTP: {CLIENTS} clients, {secs} s each way; {} single, {} in batches of {BATCH}",
        single.0, batched.0
    );
    println!("| figure | this run | goal | |");
    println!("| --- | --- | --- | --- |");
    for (what, rate) in [
        (
            format!("register over HTTP, {CLIENTS} clients, one per request"),
            single.1,
        ),
        (
            format!("register over HTTP, {CLIENTS} clients, batches of {BATCH}"),
            batched.1,
        ),
    ] {
        println!(
            "| {what} | {rate:.0}/s | ≥ {GOAL:.0}/s | {} |",
            if !benchmarking {
                "not judged (smoke run)"
            } else if rate >= GOAL {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    println!(
        "| ceiling of this machine: the same {CLIENTS} clients, one request each, against the daemon's HTTP stack answering a fixed 200, no work | {ceiling:.0}/s | — | |"
    );
}

/// Registers for `secs` with [`CLIENTS`] clients, `per` registrations per
/// request (1: the single route); returns how many and how many a second.
fn run(d: &Daemon, secs: f64, per: usize) -> (u64, f64) {
    let path = if per == 1 {
        "/api/v1/resources"
    } else {
        "/api/v1/resources/batch"
    };
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let t = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let mut client = keepalive::Client::connect(&d.addr, d.bearer());
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut body = Vec::with_capacity(256 * per);
                let item = |body: &mut Vec<u8>, n: u64| {
                    write!(
                        body,
                        r#"{{"kind": "app-object", "name": "cache/{c}/{n}", "owner": "svc-{c}", "size_bytes": 4096, "ttl": "10m", "labels": {{"pool": "a"}}}}"#
                    )
                    .unwrap();
                };
                let registered = format!(r#""registered":{per}"#);
                while Instant::now() < deadline {
                    body.clear();
                    if per == 1 {
                        item(&mut body, n);
                    } else {
                        body.extend_from_slice(br#"{"resources": ["#);
                        for i in 0..per as u64 {
                            if i > 0 {
                                body.push(b',');
                            }
                            item(&mut body, n + i);
                        }
                        body.extend_from_slice(b"]}");
                    }
                    let (status, answer) = client.post(path, &body);
                    let answer = String::from_utf8_lossy(answer);
                    if per == 1 {
                        assert_eq!(status, 201, "{answer}");
                    } else {
                        assert_eq!(status, 200);
                        assert!(answer.contains(&registered), "{answer}");
                    }
                    n += per as u64;
                }
                n
            })
        })
        .collect();
    let registered: u64 = clients.into_iter().map(|h| h.join().unwrap()).sum();
    (registered, registered as f64 / t.elapsed().as_secs_f64())
}
