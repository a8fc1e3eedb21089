//! Quota checks over HTTP: 4 clients, each on its own keep-alive
//! connection (one request at a time; see `support/keepalive.rs`), posting `POST /api/v1/quotas/check` to the real daemon
//! (token, host and content-type checks, JSON in and out), over a per-owner
//! quota that 10,000 owners hold usage in. Goal (issue 17): ≥ 50,000
//! checks/s. Clients and daemon share the machine's cores.
//!
//! Run: `cargo bench -p warden --bench quotas_http`. Under `cargo test`
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
/// Owners holding usage before the clock starts.
const OWNERS: usize = 10_000;

const POLICY: &str = "policies:
  - name: objects
    kind: quota
    quota:
      resource: app-objects
      scope: {per_owner: true}
      hard: 1000
      action: deny
";

fn main() {
    keepalive::serve_ceiling_if_asked();
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let secs = if benchmarking { 5.0 } else { 0.3 };
    let owners = if benchmarking { OWNERS } else { 100 };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/quotas.yaml"), POLICY).unwrap();
    std::fs::write(
        dir.path().join("warden.yaml"),
        "metrics:\n  collect:\n    enabled: false\n  persist:\n    enabled: false\n",
    )
    .unwrap();
    // First, before the daemon exists to take any CPU: the same clients,
    // with the same work on their side, against a server of the same stack
    // that does nothing; the most this machine allows.
    let ceiling = keepalive::ceiling_rate(
        CLIENTS,
        secs,
        "/api/v1/quotas/check",
        br#"{"quota": "objects", "owner": "owner-1", "amount": 1}"#,
    );
    let d = Daemon::start(dir.path());
    // Usage to look up: one registration per owner.
    {
        let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
        let url = format!("http://{}/api/v1/resources", d.addr);
        for o in 0..owners {
            let r = agent
                .post(&url)
                .header("authorization", d.bearer())
                .header("content-type", "application/json")
                .send(
                    format!(r#"{{"kind": "app-object", "name": "o/{o}", "owner": "owner-{o}"}}"#)
                        .as_str(),
                )
                .unwrap();
            assert_eq!(r.status(), 201);
        }
    }
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let t = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let mut client = keepalive::Client::connect(&d.addr, d.bearer());
            std::thread::spawn(move || {
                let mut n = 0usize;
                let mut body = Vec::with_capacity(128);
                while Instant::now() < deadline {
                    let owner = (n * 7_919 + c) % owners;
                    body.clear();
                    write!(
                        body,
                        r#"{{"quota": "objects", "owner": "owner-{owner}", "amount": 1}}"#
                    )
                    .unwrap();
                    let (status, answer) = client.post("/api/v1/quotas/check", &body);
                    assert_eq!(status, 200);
                    assert_eq!(answer, br#"{"allow":true}"#);
                    n += 1;
                }
                n as u64
            })
        })
        .collect();
    let checked: u64 = clients.into_iter().map(|h| h.join().unwrap()).sum();
    let rate = checked as f64 / t.elapsed().as_secs_f64();
    println!(
        "quota checks over HTTP: {CLIENTS} clients, {checked} checks in {secs} s, {owners} owners holding usage"
    );
    println!("| figure | this run | goal | |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| POST /api/v1/quotas/check, {CLIENTS} clients | {rate:.0}/s | ≥ {GOAL:.0}/s | {} |",
        if !benchmarking {
            "not judged (smoke run)"
        } else if rate >= GOAL {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "| ceiling of this machine: the same {CLIENTS} clients against the daemon's HTTP stack answering a fixed 200, no work | {ceiling:.0}/s | — | |"
    );
}
