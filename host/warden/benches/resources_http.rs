//! Registering resources over HTTP: 4 clients, each on its own keep-alive
//! connection, posting one registration per request to the real daemon
//! (token, host and content-type checks, the personal-data filter, the
//! durable registry's log), as applications do. Goal (issue 16): ≥ 50,000
//! registrations/s. Clients and daemon share the machine's cores.
//!
//! Run: `cargo bench -p warden --bench resources_http`. Under `cargo test`
//! it runs for a fraction of a second as a smoke test.

#[path = "support/daemon.rs"]
mod daemon;

use std::time::{Duration, Instant};

use daemon::Daemon;

const GOAL: f64 = 50_000.0;
const CLIENTS: usize = 4;

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let secs = if benchmarking { 5.0 } else { 0.3 };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("warden.yaml"),
        "metrics:\n  collect:\n    enabled: false\n  persist:\n    enabled: false\nresources:\n  max_tracked: 10000000\n  max_bytes: 4GiB\n",
    )
    .unwrap();
    let d = Daemon::start(dir.path());
    let url = format!("http://{}/api/v1/resources", d.addr);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let t = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (url, bearer) = (url.clone(), d.bearer().to_owned());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let body = format!(
                        r#"{{"kind": "app-object", "name": "cache/{c}/{n}", "owner": "svc-{c}", "size_bytes": 4096, "ttl": "10m", "labels": {{"pool": "a"}}}}"#
                    );
                    let r = agent
                        .post(&url)
                        .header("authorization", &bearer)
                        .header("content-type", "application/json")
                        .send(body.as_str())
                        .unwrap();
                    assert_eq!(r.status(), 201);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let registered: u64 = clients.into_iter().map(|h| h.join().unwrap()).sum();
    let rate = registered as f64 / t.elapsed().as_secs_f64();
    let (status, listed) = d.get("/api/v1/resources?owner=svc-0&limit=1");
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    println!("register over HTTP: {CLIENTS} clients, {registered} registrations in {secs} s");
    println!("| figure | this run | goal | |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| register over HTTP, {CLIENTS} clients | {rate:.0}/s | ≥ {GOAL:.0}/s | {} |",
        if !benchmarking {
            "not judged (smoke run)"
        } else if rate >= GOAL {
            "met"
        } else {
            "MISSED"
        }
    );
}
