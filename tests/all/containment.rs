//! Misbehaving plugins — an infinite loop, a 1 GiB allocation, unbounded
//! recursion, a panic, ten million decisions, a panic while starting — are each
//! stopped and reported as a typed failure, while a well-behaved plugin keeps
//! evaluating on another thread and the engine stays usable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use warden::plugin::records::{ErrorClass, Failure, NewResource, ResourceSet};
use warden::plugin::{EvalFailure, Kind, Limits};
use warden_plugins as guests;

use crate::util::{bind, engine, load, relaxed};

/// Generous bound on how long past its deadline a stopped call may return: it
/// separates "contained" from "hung" without being a timing goal (the
/// benchmark reports the real overrun).
const HANG: Duration = Duration::from_secs(2);

fn contained(mode: &str, limits: Limits, expect: impl Fn(&EvalFailure) -> bool) {
    contained_with(
        &json!({ "mode": mode }),
        ResourceSet::default(),
        limits,
        expect,
    );
}

fn contained_with(
    config: &serde_json::Value,
    candidates: ResourceSet,
    limits: Limits,
    expect: impl Fn(&EvalFailure) -> bool,
) {
    let mode = config["mode"].as_str().unwrap().to_owned();
    let (engine, _dir) = engine();
    let bad = load(&engine, guests::ADVERSARY_COMPONENT, Kind::Cleanup);
    let good = load(&engine, guests::BACKOFF_COMPONENT, Kind::Recovery);
    let good = bind(&good, "neighbour", &json!({}), relaxed());
    let failure = Failure {
        operation: "op".into(),
        class: ErrorClass::Timeout,
        message: "x".into(),
        attempt: 1,
        first_failed_ms: 0,
        seed: 3,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let neighbour = {
        let (stop, done, good, failure) =
            (stop.clone(), done.clone(), good.clone(), failure.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                good.decide(&failure, &[])
                    .expect("the neighbour must keep working");
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Let the neighbour get going, then misbehave beside it.
    while done.load(Ordering::Relaxed) == 0 {
        thread::yield_now();
    }
    let before = done.load(Ordering::Relaxed);
    let started = Instant::now();
    let err = bind(&bad, &mode, config, limits)
        .plan(false, candidates)
        .unwrap_err();
    let elapsed = started.elapsed();
    let during = done.load(Ordering::Relaxed) - before;
    // The neighbour is still evaluating afterwards.
    let after = done.load(Ordering::Relaxed);
    let waited = Instant::now();
    while done.load(Ordering::Relaxed) == after && waited.elapsed() < HANG {
        thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    neighbour.join().unwrap();
    assert!(
        done.load(Ordering::Relaxed) > after,
        "mode `{mode}`: the neighbour stopped evaluating"
    );

    assert!(
        expect(&err.failure),
        "mode `{mode}`: unexpected failure {err}"
    );
    assert!(
        err.to_string().contains(&format!("policy `{mode}`")),
        "{err}"
    );
    assert!(
        elapsed < limits.timeout + HANG,
        "mode `{mode}` took {elapsed:?}"
    );
    // A neighbour's call takes microseconds: over tens of milliseconds it must
    // have finished some, or the misbehaving plugin was blocking it.
    if elapsed > Duration::from_millis(50) {
        assert!(
            during > 0,
            "mode `{mode}`: the neighbour made no progress in {elapsed:?}"
        );
    }
    // The engine is still fine: the same plugin, asked to behave, works.
    bind(&bad, "after", &json!({ "mode": "delete-all" }), relaxed())
        .plan(false, ResourceSet::default())
        .unwrap();
    assert!(engine.stats().failures >= 1);
}

#[test]
fn infinite_loop_is_stopped_at_its_deadline() {
    let limits = Limits {
        timeout: Duration::from_millis(200),
        ..relaxed()
    };
    contained("infinite-loop", limits, |f| {
        *f == EvalFailure::Timeout {
            limit: Duration::from_millis(200),
        }
    });
}

#[test]
fn allocating_a_gibibyte_hits_the_memory_cap() {
    contained("allocate-1gib", relaxed(), |f| {
        *f == EvalFailure::OutOfMemory {
            limit: Limits::DEFAULT_MEMORY,
        }
    });
}

#[test]
fn unbounded_recursion_overflows_the_wasm_stack() {
    contained("unbounded-recursion", relaxed(), |f| {
        *f == EvalFailure::StackOverflow
    });
}

#[test]
fn a_panic_is_a_trap_carrying_the_panic_message() {
    contained(
        "panic",
        relaxed(),
        |f| matches!(f, EvalFailure::Trap { stderr: Some(line), .. } if line.contains("adversary panics on purpose")),
    );
}

#[test]
fn a_panic_while_starting_is_a_trap_too() {
    contained(
        "panic-in-init",
        relaxed(),
        |f| matches!(f, EvalFailure::Trap { stderr: Some(line), .. } if line.contains("adversary refuses to start")),
    );
}

#[test]
fn ten_million_decisions_exhaust_the_memory_cap() {
    // Time enough that the memory cap, not the deadline, is what stops it.
    let limits = Limits {
        timeout: Duration::from_secs(10),
        ..relaxed()
    };
    contained("ten-million-actions", limits, |f| {
        matches!(f, EvalFailure::OutOfMemory { .. })
    });
}

#[test]
fn ten_million_decisions_within_memory_are_refused_before_the_host_copies_them() {
    // Given room to build them, the result is still too large to cross into the host.
    let limits = Limits {
        timeout: Duration::from_secs(20),
        memory_bytes: 1 << 30,
        ..relaxed()
    };
    contained(
        "ten-million-actions",
        limits,
        |f| matches!(f, EvalFailure::OutputTooLarge { what, .. } if what.contains("more than 16 MiB crossed into the host")),
    );
}

#[test]
fn a_plan_larger_than_its_output_limit_fails_as_output_too_large() {
    // 20,000 deletions: each is recorded with its target's name, which is
    // more than a 1 MiB `output_limit` allows.
    let mut one = ResourceSet::default();
    one.push(NewResource {
        name: "/x",
        ..Default::default()
    });
    let limits = Limits {
        max_output_bytes: 1 << 20,
        ..relaxed()
    };
    contained_with(
        &json!({ "mode": "flood", "count": 20_000 }),
        one.clone(),
        limits,
        |f| matches!(f, EvalFailure::OutputTooLarge { limit, what, .. } if *limit == 1 << 20 && what.contains("20000 actions")),
    );
    // A shared reason costs its length once, not once per action: a 1 MiB
    // reason given to 2,000 actions fits in a 3 MiB limit.
    let (engine, _dir) = engine();
    let bad = load(&engine, guests::ADVERSARY_COMPONENT, Kind::Cleanup);
    let plan = bind(
        &bad,
        "shared",
        &json!({ "mode": "flood", "count": 2_000, "reason_bytes": 1 << 20 }),
        Limits {
            max_output_bytes: 3 << 20,
            ..relaxed()
        },
    )
    .plan(false, one)
    .unwrap();
    assert_eq!((plan.actions.len(), plan.reasons.len()), (2000, 1));
}

#[test]
fn more_notices_than_are_logged_fail_as_output_too_large() {
    contained_with(
        &json!({ "mode": "notices", "count": 1001 }),
        ResourceSet::default(),
        relaxed(),
        |f| matches!(f, EvalFailure::OutputTooLarge { what, .. } if what.contains("1001 notices")),
    );
}

/// A store of 100,000 samples and a registry of 5,000 resources, far more
/// than a 256 KiB read budget.
fn a_lot_to_read() -> Arc<warden::sources::Sources> {
    let sources = warden::sources::Sources::default();
    let now = warden::clock::now_ms();
    for s in 0..200 {
        let host = format!("h{s}");
        for i in 0..500 {
            sources
                .series
                .record("flood", &[("host", host.as_str())], now - 500 + i, 1.0)
                .unwrap();
        }
    }
    for i in 0..5000 {
        sources
            .resources
            .register(
                warden::resources::Registration {
                    kind: warden::records::ResourceKind::AppObject,
                    name: format!("cache/{i:0>64}"),
                    owner: "svc".into(),
                    size_bytes: 1,
                    pid: None,
                    labels: vec![],
                    ttl_ms: None,
                },
                now,
            )
            .unwrap();
    }
    Arc::new(sources)
}

#[test]
fn reads_past_the_budget_are_refused_and_the_plugin_is_told() {
    let (engine, _dir) = engine();
    let bad = load(&engine, guests::ADVERSARY_COMPONENT, Kind::Cleanup);
    let limits = Limits {
        max_query_bytes: 256 << 10,
        ..relaxed()
    };
    let err = crate::util::bind_with(
        &bad,
        "reader",
        &json!({ "mode": "read-flood", "count": 1000 }),
        limits,
        a_lot_to_read(),
    )
    .plan(false, ResourceSet::default())
    .unwrap_err();
    assert!(
        matches!(&err.failure, EvalFailure::Plugin(m) if m.contains("`query-series` refused") && m.contains("query_limit")),
        "{err}"
    );
    // With the series out of the way, `list-resources` is bounded the same.
    let only_resources = Arc::new(warden::sources::Sources {
        series: Arc::default(),
        ..(*a_lot_to_read()).clone()
    });
    let err = crate::util::bind_with(
        &bad,
        "lister",
        &json!({ "mode": "read-flood", "count": 1000 }),
        limits,
        only_resources,
    )
    .plan(false, ResourceSet::default())
    .unwrap_err();
    assert!(
        matches!(&err.failure, EvalFailure::Plugin(m) if m.contains("`list-resources` refused")),
        "{err}"
    );
}

#[test]
fn more_decisions_than_the_limit_are_refused_by_count() {
    let mut one = ResourceSet::default();
    one.push(NewResource {
        name: "/x",
        ..Default::default()
    });
    contained_with(
        &json!({ "mode": "flood", "count": 200_000 }),
        one,
        relaxed(),
        |f| matches!(f, EvalFailure::InvalidOutput(m) if m.contains("returned 200000 items; a policy may return at most 100000")),
    );
}

#[test]
fn an_error_returned_by_the_plugin_is_not_a_trap() {
    contained("error", relaxed(), |f| {
        *f == EvalFailure::Plugin("adversary reports an error".into())
    });
}
