//! The service with real policies (the shipped `backoff` plugin, loaded by
//! the real policy loader) and a hand-moved clock.

use std::sync::Arc;

use warden_core::records::{ErrorClass, RecoveryDecision};
use warden_plugin_host::{Engine, EngineOptions, NoData};
use warden_policy::{ParseContext, PluginCache, PolicyDir};

use super::breaker::State;
use super::decide::DecidedBy;
use super::report::{self, FailureReport};
use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    policies: PolicyDir,
    clock: TestClock,
    rec: Arc<Recovery>,
}

fn fixture(files: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::create_dir(dir.path().join("state")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join("policies").join(name), text).unwrap();
    }
    let engine = Engine::new(&EngineOptions { cache_dir: None }).unwrap();
    let policies = PolicyDir::new(
        &dir.path().join("policies"),
        ParseContext {
            data_dir: dir.path().to_path_buf(),
        },
        PluginCache::new(engine),
        Arc::new(NoData),
        Arc::default(),
    );
    let report = policies.reload();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let clock = TestClock::at(1_000_000);
    let rec = Arc::new(Recovery::new(Options {
        state_dir: Some(dir.path().join("state")),
        clock: Some(Arc::new(clock.clone())),
        ..Options::default()
    }));
    rec.sync(&policies.current());
    Fixture {
        dir,
        policies,
        clock,
        rec,
    }
}

fn policy(name: &str, extra: &str) -> String {
    format!("policies:\n  - name: {name}\n    kind: recovery\n    plugin: backoff\n{extra}")
}

const SMALL_BREAKER: &str = "    recovery:\n      breaker: {window_size: 4, minimum_calls: 4, failure_rate: 50, wait_in_open: 2s, half_open_calls: 2}\n    config: {base: 100ms, max: 1s, jitter: 0, max_attempts: 100}\n";

fn fail(op: &str, status: u16) -> FailureReport {
    FailureReport {
        operation: op.into(),
        error: super::classify::RawError {
            http_status: Some(status),
            ..Default::default()
        },
        attempt: 1,
        ..Default::default()
    }
}

#[test]
fn the_most_specific_policy_decides_and_the_default_catches_the_rest() {
    let f = fixture(&[
        ("a.yaml", &policy("fallback-all", "")),
        (
            "b.yaml",
            &policy("db", "    scope: {operations: [\"db.*\"]}\n"),
        ),
        (
            "c.yaml",
            &policy(
                "db-eu",
                "    scope: {operations: [\"db.*\"], labels: {region: eu}}\n",
            ),
        ),
        (
            "d.yaml",
            &policy("db-query", "    scope: {operations: [\"db.query\"]}\n"),
        ),
        (
            "e.yaml",
            &policy(
                "by-hand",
                "    trigger: manual\n    scope: {operations: [\"db.query\"]}\n",
            ),
        ),
    ]);
    let pick = |op: &str, labels: &[(&str, &str)]| {
        let l = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        f.rec.select(op, &l).map(|e| e.name.clone())
    };
    assert_eq!(pick("http.get", &[]).as_deref(), Some("fallback-all"));
    assert_eq!(pick("db.insert", &[]).as_deref(), Some("db"));
    assert_eq!(
        pick("db.insert", &[("region", "eu")]).as_deref(),
        Some("db-eu")
    );
    assert_eq!(pick("db.query", &[]).as_deref(), Some("db-query"));
}

#[test]
fn failures_open_the_breaker_which_then_answers_without_the_plugin_until_half_open() {
    let f = fixture(&[("a.yaml", &policy("p", SMALL_BREAKER))]);
    let first = f.rec.report_failure(fail("svc.call", 503)).unwrap();
    assert_eq!(first.record.class, ErrorClass::DependencyUnavailable);
    assert_eq!(first.record.classified_by, "http_status 503");
    assert_eq!(first.decision, RecoveryDecision::RetryAfter(100));
    assert_eq!(first.record.decided_by, DecidedBy::Plugin);
    for _ in 0..3 {
        f.rec.report_failure(fail("svc.call", 503)).unwrap();
    }
    let open = f.rec.report_failure(fail("svc.call", 503)).unwrap();
    assert_eq!(open.record.decided_by, DecidedBy::Breaker);
    assert_eq!(open.decision, RecoveryDecision::OpenCircuit(2_000));
    assert_eq!(open.circuit.state, State::Open);
    f.clock.advance(2_000);
    // Two good calls in half-open close it.
    let ok = |n| -> Vec<report::OutcomeReport> {
        (0..n)
            .map(|_| report::OutcomeReport {
                operation: "svc.call".into(),
                outcome: report::Ended::Success,
                duration_ms: Some(3),
                class: None,
                labels: Default::default(),
            })
            .collect()
    };
    let a = f.rec.report_outcomes(&ok(1)).unwrap();
    assert_eq!(a.circuits[0].state, State::HalfOpen);
    let a = f.rec.report_outcomes(&ok(1)).unwrap();
    assert_eq!(a.circuits[0].state, State::Closed);
    let c = &f.rec.circuits(None, None)[0];
    let moves: Vec<(State, State)> = c
        .breaker
        .transitions
        .iter()
        .map(|t| (t.from, t.to))
        .collect();
    assert_eq!(
        moves,
        [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed)
        ]
    );
}

#[test]
fn a_spent_retry_budget_turns_retries_into_give_up() {
    let f = fixture(&[(
        "a.yaml",
        &policy(
            "p",
            "    recovery:\n      retry_budget: {ratio: 0.5, min_per_second: 0}\n    config: {max_attempts: 100}\n",
        ),
    )]);
    // Two calls: room for one retry.
    let mut answers = Vec::new();
    for attempt in [1, 1, 2, 2] {
        let mut r = fail("svc.call", 503);
        r.attempt = attempt;
        answers.push(f.rec.report_failure(r).unwrap());
    }
    let by: Vec<DecidedBy> = answers.iter().map(|a| a.record.decided_by).collect();
    assert_eq!(
        by,
        [
            DecidedBy::RetryBudget,
            DecidedBy::Plugin,
            DecidedBy::RetryBudget,
            DecidedBy::RetryBudget
        ],
        "1 call × 0.5 allows no retry; 2 calls allow one, which the second takes"
    );
}

#[test]
fn a_failing_strategy_answers_per_on_failure() {
    // The refuser guest loads and then fails every decision (a bad config is
    // refused at load since contract 0.2, so it cannot stand in for this).
    let refuser = |name: &str, extra: &str| {
        format!(
            "policies:\n  - name: {name}\n    kind: recovery\n    plugin: {}\n{extra}",
            warden_plugins::REFUSER_COMPONENT
        )
    };
    let f = fixture(&[
        (
            "a.yaml",
            &refuser(
                "closed",
                "    on_failure: fail-closed\n    scope: {operations: [a]}\n",
            ),
        ),
        (
            "b.yaml",
            &refuser(
                "open",
                "    on_failure: fail-open\n    scope: {operations: [b]}\n",
            ),
        ),
    ]);
    let a = f.rec.report_failure(fail("a", 503)).unwrap();
    assert_eq!(a.record.decided_by, DecidedBy::OnFailure);
    assert!(
        matches!(&a.decision, RecoveryDecision::GiveUp(r) if r.contains("refuses every failure")),
        "{:?}",
        a.decision
    );
    let b = f.rec.report_failure(fail("b", 503)).unwrap();
    assert!(matches!(b.decision, RecoveryDecision::RetryAfter(_)));
}

#[test]
fn circuits_survive_a_reload_that_keeps_the_policy_and_a_restart() {
    let f = fixture(&[("a.yaml", &policy("p", SMALL_BREAKER))]);
    for _ in 0..4 {
        f.rec.report_failure(fail("svc.call", 503)).unwrap();
    }
    let id = f.rec.circuits(None, None)[0].id.clone();
    // An edit of the config keeps the identity (file and name).
    let edited = SMALL_BREAKER.replace("max_attempts: 100", "max_attempts: 99");
    std::fs::write(f.dir.path().join("policies/a.yaml"), policy("p", &edited)).unwrap();
    f.policies.reload();
    f.rec.sync(&f.policies.current());
    assert_eq!(f.rec.circuit(&id).unwrap().breaker.state, State::Open);
    f.rec.save(false).unwrap();
    // Issue 12's data-dir rules: 0600, written whole (no temporary left).
    {
        use std::os::unix::fs::PermissionsExt;
        let state = f.dir.path().join("state");
        let meta = std::fs::metadata(state.join("recovery.json")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(!state.join(".recovery.json.tmp").exists());
    }
    // A new service over the same state directory: a restart.
    let again = Recovery::new(Options {
        state_dir: Some(f.dir.path().join("state")),
        clock: Some(Arc::new(f.clock.clone())),
        ..Options::default()
    });
    again.sync(&f.policies.current());
    let c = again.circuit(&id).expect("the circuit came back");
    assert_eq!(c.breaker.state, State::Open);
    assert_eq!(c.breaker.window.failures, 4);
    assert_eq!(again.decisions(None, None, 10).len(), 4);
    // Renaming the policy is another identity: its circuits go.
    std::fs::write(
        f.dir.path().join("policies/a.yaml"),
        policy("q", SMALL_BREAKER),
    )
    .unwrap();
    f.policies.reload();
    again.sync(&f.policies.current());
    assert!(again.circuit(&id).is_none());
}

#[test]
fn forced_states_are_set_by_id() {
    let f = fixture(&[("a.yaml", &policy("p", SMALL_BREAKER))]);
    f.rec.report_failure(fail("svc.call", 503)).unwrap();
    let id = f.rec.circuits(None, None)[0].id.clone();
    assert_eq!(
        f.rec.force(&id, State::ForcedOpen).unwrap().breaker.state,
        State::ForcedOpen
    );
    let a = f.rec.report_failure(fail("svc.call", 503)).unwrap();
    assert_eq!(a.record.decided_by, DecidedBy::Breaker);
    assert!(matches!(a.decision, RecoveryDecision::GiveUp(_)));
    assert_eq!(
        f.rec.force(&id, State::Closed).unwrap().breaker.state,
        State::Closed
    );
    assert!(f.rec.force("nope", State::Closed).is_none());
}

#[test]
fn the_guard_reports_outcomes_and_refuses_calls_of_an_open_circuit() {
    let f = fixture(&[("a.yaml", &policy("p", SMALL_BREAKER))]);
    let g = f.rec.guard("svc.call", &[]).unwrap();
    assert_eq!(g.call(|| Ok::<_, std::io::Error>(7)).unwrap(), 7);
    let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
    match g.call(|| Err::<(), _>(std::io::Error::from_raw_os_error(libc::ECONNREFUSED))) {
        Err(GuardError::Failed { decision, .. }) => {
            assert_eq!(decision, RecoveryDecision::RetryAfter(100));
        }
        other => panic!("{other:?}"),
    }
    for _ in 0..3 {
        let _ = g.call(|| {
            Err::<(), _>(std::io::Error::from_raw_os_error(
                refused.raw_os_error().unwrap(),
            ))
        });
    }
    let mut called = false;
    match g.call(|| {
        called = true;
        Ok::<_, std::io::Error>(())
    }) {
        Err(GuardError::Refused { retry_in_ms, .. }) => assert_eq!(retry_in_ms, Some(2_000)),
        other => panic!("{other:?}"),
    }
    assert!(!called, "an open breaker does not let the call through");
    let d = f.rec.decisions(Some("p"), None, 10);
    assert_eq!(
        d[0].class,
        ErrorClass::Connection,
        "classified from ECONNREFUSED"
    );
}

#[test]
fn a_guard_by_name_follows_the_policies_after_a_sync() {
    let f = fixture(&[("a.yaml", &policy("p", SMALL_BREAKER))]);
    f.rec.call("svc.call", || Ok::<(), String>(())).unwrap();
    assert_eq!(f.rec.circuits(Some("p"), None).len(), 1);
    // A renamed policy is a new identity: this thread's cached guard (of
    // `p`) must not outlive the sync.
    std::fs::write(
        f.dir.path().join("policies/a.yaml"),
        policy("q", SMALL_BREAKER),
    )
    .unwrap();
    f.policies.reload();
    f.rec.sync(&f.policies.current());
    f.rec.call("svc.call", || Ok::<(), String>(())).unwrap();
    assert_eq!(f.rec.circuits(Some("q"), None).len(), 1);
    assert!(f.rec.circuits(Some("p"), None).is_empty());
}
