//! The library's guard, in-process, in front of the real failing HTTP
//! service of `recovery`, with a hand-moved clock: transitions, refusals,
//! the retry budget and fallbacks, sync and async, and breakers kept
//! across a restart of the embedding service.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use warden::embed::Embedded;
use warden::records::RecoveryDecision;
use warden::recovery::classify::RawError;
use warden::recovery::decide::DecidedBy;
use warden::recovery::{GuardError, Options, TestClock};

use crate::recovery::Service;

/// A service error as the embedding service sees it.
#[derive(Debug)]
struct Upstream(u16);

impl warden::recovery::IntoRawError for Upstream {
    fn raw_error(&self) -> RawError {
        RawError {
            http_status: Some(self.0),
            message: Some(format!("upstream answered {}", self.0)),
            ..RawError::default()
        }
    }
}

fn get(svc: &Service) -> Result<(), Upstream> {
    match svc.call().0 {
        200 => Ok(()),
        s => Err(Upstream(s)),
    }
}

fn embedded(policy: &str, clock: &TestClock) -> (Embedded, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/r.yaml"), policy).unwrap();
    let e = open(dir.path(), clock);
    (e, dir)
}

fn open(dir: &std::path::Path, clock: &TestClock) -> Embedded {
    Embedded::open_with(
        &dir.join("policies"),
        &dir.join("data"),
        Options {
            clock: Some(Arc::new(clock.clone())),
            ..Options::default()
        },
    )
    .unwrap()
}

const POLICY: &str = "policies:
  - name: svc
    kind: recovery
    plugin: backoff
    recovery:
      breaker: {window_size: 4, minimum_calls: 4, failure_rate: 50, wait_in_open: 10s, half_open_calls: 2}
      retry_budget: {ratio: 0, min_per_second: 0}
    config:
      base: 50ms
      max_attempts: 100
      fallback: {name: cached, classes: [rate-limited]}
";

#[test]
fn the_guard_opens_refuses_half_opens_and_closes_against_a_real_service() {
    let clock = TestClock::at(1_000_000);
    let (e, dir) = embedded(POLICY, &clock);
    let svc = Service::start(0, 0);
    let guard = e.recovery.guard("svc.get", &[]).unwrap();
    for _ in 0..3 {
        guard.call(|| get(&svc)).unwrap();
    }
    svc.fail_percent.store(100, Ordering::SeqCst);
    // The budget allows no retry at all, so each failure gives up.
    match guard.call(|| get(&svc)) {
        Err(GuardError::Failed {
            error: Upstream(503),
            decision: RecoveryDecision::GiveUp(reason),
            decided_by: DecidedBy::RetryBudget,
            ..
        }) => assert!(reason.contains("retry budget"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // 2 good and 2 bad in the window of the last 4 calls: 50% opens it.
    assert!(matches!(
        guard.call(|| get(&svc)),
        Err(GuardError::Failed { .. })
    ));
    let c = e.recovery.circuit(guard.circuit()).unwrap();
    assert_eq!(c.breaker.state.name(), "open");
    let before = svc.call_count();
    match guard.call(|| get(&svc)) {
        Err(GuardError::Refused { retry_in_ms, .. }) => assert_eq!(retry_in_ms, Some(10_000)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        svc.call_count(),
        before,
        "a refused call never reaches the service"
    );

    // Ten seconds later, on the test clock: half-open lets two calls test it.
    clock.advance(10_000);
    svc.fail_percent.store(0, Ordering::SeqCst);
    guard.call(|| get(&svc)).unwrap();
    assert_eq!(
        e.recovery
            .circuit(guard.circuit())
            .unwrap()
            .breaker
            .state
            .name(),
        "half-open"
    );
    guard.call(|| get(&svc)).unwrap();
    let c = e.recovery.circuit(guard.circuit()).unwrap();
    assert_eq!(c.breaker.state.name(), "closed");
    assert_eq!(c.breaker.transitions.len(), 3);

    // The embedding service restarts: the breaker comes back as it was.
    svc.fail_percent.store(100, Ordering::SeqCst);
    for _ in 0..4 {
        let _ = guard.call(|| get(&svc));
    }
    assert_eq!(
        e.recovery
            .circuit(guard.circuit())
            .unwrap()
            .breaker
            .state
            .name(),
        "open"
    );
    e.recovery.save(true).unwrap();
    let id = guard.circuit().to_owned();
    drop((guard, e));
    let again = open(dir.path(), &clock);
    assert_eq!(
        again.recovery.circuit(&id).unwrap().breaker.state.name(),
        "open"
    );
}

#[test]
fn the_guard_falls_back_on_rate_limits_and_runs_async() {
    let clock = TestClock::at(1_000_000);
    let (e, _dir) = embedded(POLICY, &clock);
    let r = e
        .recovery
        .call("svc.limited", || Err::<(), _>(Upstream(429)));
    match r {
        Err(GuardError::Failed {
            decision: RecoveryDecision::Fallback(name),
            ..
        }) => assert_eq!(name, "cached"),
        other => panic!("{other:?}"),
    }
    let svc = Service::start(0, 0);
    let addr = svc.addr.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let guard = e.recovery.guard("svc.async", &[("region", "eu")]).unwrap();
    let got = rt.block_on(guard.call_async(|| async move {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            crate::http::agent()
                .get(&format!("http://{addr}/"))
                .call()
                .map(|r| r.status().as_u16())
                .map_err(|_| Upstream(599))
        })
        .await
        .unwrap()
    }));
    assert_eq!(got.unwrap(), 200);
    // A label carrying personal data is refused when the guard is made.
    let err = e
        .recovery
        .guard("svc.async", &[("email", "a@b.c")])
        .unwrap_err();
    assert!(err.to_string().contains("labels.email"), "{err}");
}

#[test]
fn run_follows_retry_decisions_until_the_service_answers() {
    let clock = TestClock::at(1_000_000);
    let policy = POLICY.replace(
        "ratio: 0, min_per_second: 0",
        "ratio: 1, min_per_second: 100",
    );
    let (e, _dir) = embedded(&policy, &clock);
    // Fails twice, then works: `run` retries after each decision.
    let svc = Service::start(0, 0);
    svc.fail_percent.store(2, Ordering::SeqCst);
    let guard = e.recovery.guard("svc.run", &[]).unwrap();
    let mut attempts = 0;
    guard
        .run(|| {
            attempts += 1;
            get(&svc)
        })
        .unwrap();
    assert_eq!(attempts, 3);
    let d = e.recovery.decisions(Some("svc"), Some("svc.run"), 10);
    let seen: Vec<u32> = d.iter().map(|x| x.attempt).collect();
    assert_eq!(seen, [2, 1], "newest first");
}
