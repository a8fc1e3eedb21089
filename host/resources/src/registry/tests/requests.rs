//! Requests to owners (issue 16): asked when someone listens, answered,
//! retried with backoff on the registry's clock (each call's `now_ms`),
//! reported and released when never answered; bounded. Also the batch
//! registration and the summary.

use std::sync::{Arc, Mutex};

use super::*;

/// A listener that keeps what it is sent.
fn inbox(r: &Registry, owner: &str) -> (Subscription, Arc<Mutex<Vec<OwnerRequest>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    let sub = r
        .on_request(owner, move |q| {
            sink.lock().unwrap().push(q.clone());
            true
        })
        .unwrap();
    (sub, got)
}

fn decision(policy: &str) -> PolicyDecision<'_> {
    PolicyDecision {
        kind: RequestType::Release,
        policy,
        reason: "unused for longer than its TTL",
        mode: ReleaseMode::Refuse,
    }
}

fn with_requests(requests: RequestOptions) -> Registry {
    Registry::with_options(
        RegistryLimits::default(),
        RegistryOptions {
            requests,
            ..RegistryOptions::default()
        },
    )
}

fn actions(r: &Registry, h: u64) -> Vec<Action> {
    r.audit(Some(h), 100)
        .into_iter()
        .map(|e| e.action)
        .collect()
}

#[test]
fn without_a_listener_a_policy_release_happens_at_once() {
    let r = Registry::default();
    let h = r.register(named("lease/1", "svc"), 1).unwrap();
    let asked = r.request_release(h, decision("leases"), 5).unwrap();
    assert!(
        matches!(
            asked,
            Asked::Released {
                overflowed: false,
                ..
            }
        ),
        "{asked:?}"
    );
    assert!(matches!(r.lookup(h), Lookup::Released(ref x) if x.by_policy == "leases"));
    assert_eq!(r.request_counts().asked, 0);
}

#[test]
fn a_listener_is_asked_and_its_answer_releases_the_resource() {
    let r = Registry::default();
    let (_sub, got) = inbox(&r, "svc");
    let h = r.register(named("lease/1", "svc"), 1).unwrap();
    let other = r.register(named("lease/2", "other"), 1).unwrap();
    let Asked::Requested { id, owner } = r.request_release(h, decision("leases"), 5).unwrap()
    else {
        panic!("a listener is there: the owner is asked");
    };
    assert_eq!(owner, "svc");
    // Another owner's resource, nobody listening for it: at once.
    assert!(matches!(
        r.request_release(other, decision("leases"), 5),
        Ok(Asked::Released { .. })
    ));
    let sent = got.lock().unwrap().clone();
    assert_eq!(
        sent,
        [OwnerRequest {
            id,
            kind_of_request: RequestType::Release,
            handle: h,
            name: "lease/1".into(),
            kind: "app-object",
            policy: "leases".into(),
            reason: "unused for longer than its TTL".into(),
            attempt: 1,
        }]
    );
    // It stays, marked, until the owner answers; asking again asks nothing.
    match r.lookup(h) {
        Lookup::Live(v) => assert_eq!(v.release_requested, Some(id)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        r.request_release(h, decision("leases"), 6),
        Ok(Asked::AlreadyRequested { id })
    );
    assert_eq!(got.lock().unwrap().len(), 1);
    assert_eq!(
        r.ack(id, "other", AckOutcome::Released, 7),
        Err(AckError::NotOwner {
            id,
            owner: "svc".into(),
            caller: "other".into()
        })
    );
    let acked = r.ack(id, "svc", AckOutcome::Released, 8).unwrap();
    assert!(acked.released, "{acked:?}");
    assert!(matches!(r.lookup(h), Lookup::Released(ref x) if x.by_policy == "leases"));
    assert_eq!(
        actions(&r, h),
        [
            Action::PolicyRelease,
            Action::ReleaseRequested,
            Action::Register
        ]
    );
    assert_eq!(
        r.ack(id, "svc", AckOutcome::Released, 9),
        Err(AckError::Unknown { id })
    );
    let c = r.request_counts();
    assert_eq!((c.asked, c.delivered, c.released, c.pending), (1, 1, 1, 0));
}

#[test]
fn a_refusal_keeps_the_resource_and_is_audited() {
    let r = Registry::default();
    let (_sub, _got) = inbox(&r, "svc");
    let h = r.register(named("lease/1", "svc"), 1).unwrap();
    let Ok(Asked::Requested { id, .. }) = r.request_release(h, decision("leases"), 5) else {
        panic!()
    };
    let acked = r.ack(id, "svc", AckOutcome::Refused, 6).unwrap();
    assert!(!acked.released);
    match r.lookup(h) {
        Lookup::Live(v) => assert_eq!(v.release_requested, None),
        other => panic!("{other:?}"),
    }
    let last = &r.audit(Some(h), 1)[0];
    assert_eq!(
        (last.action, last.actor.as_str()),
        (Action::ReleaseRefused, "svc")
    );
    // The policy may ask again on its next run.
    assert!(matches!(
        r.request_release(h, decision("leases"), 7),
        Ok(Asked::Requested { .. })
    ));
}

#[test]
fn unanswered_requests_are_sent_again_with_backoff_then_reported_and_released() {
    let r = with_requests(RequestOptions {
        ack_timeout_ms: 1_000,
        max_attempts: 3,
        ..RequestOptions::default()
    });
    let (_sub, got) = inbox(&r, "svc");
    let h = r.register(named("lease/1", "svc"), 0).unwrap();
    let Ok(Asked::Requested { id, .. }) = r.request_release(h, decision("leases"), 0) else {
        panic!()
    };
    let attempts = || {
        got.lock()
            .unwrap()
            .iter()
            .map(|q| q.attempt)
            .collect::<Vec<_>>()
    };
    // 1 s for the first attempt, 2 s for the second, 4 s for the third.
    for (now, sent) in [
        (999, vec![1]),
        (1_000, vec![1, 2]),
        (2_999, vec![1, 2]),
        (3_000, vec![1, 2, 3]),
        (6_999, vec![1, 2, 3]),
    ] {
        assert_eq!(r.retry_requests(now), 0, "at {now}");
        assert_eq!(attempts(), sent, "at {now}");
        assert!(matches!(r.lookup(h), Lookup::Live(_)), "at {now}");
    }
    assert_eq!(r.requests(None, 10).pending[0].due_ms, 7_000);
    assert_eq!(r.retry_requests(7_000), 1);
    assert_eq!(attempts(), [1, 2, 3], "reported, not sent again");
    assert!(matches!(r.lookup(h), Lookup::Released(ref x) if x.by_policy == "leases"));
    assert_eq!(
        actions(&r, h)[..2],
        [Action::PolicyRelease, Action::RequestUnacknowledged]
    );
    let report = r.requests(Some("svc"), 10);
    assert!(report.pending.is_empty());
    assert_eq!(report.unacknowledged.len(), 1);
    let u = &report.unacknowledged[0];
    assert_eq!(
        (
            u.request.id,
            u.request.attempt,
            u.resource.as_str(),
            u.reported_ms
        ),
        (id, 3, "released", 7_000)
    );
    assert_eq!(r.request_counts().unacknowledged, 1);
    assert!(r.requests(Some("other"), 10).unacknowledged.is_empty());
    assert_eq!(
        r.ack(id, "svc", AckOutcome::Released, 7_001),
        Err(AckError::Unknown { id })
    );
}

#[test]
fn a_listener_that_joins_later_is_sent_what_is_waiting() {
    let r = Registry::default();
    let (first, _) = inbox(&r, "svc");
    let h = r.register(named("lease/1", "svc"), 0).unwrap();
    let Ok(Asked::Requested { id, .. }) = r.request_release(h, decision("leases"), 0) else {
        panic!()
    };
    drop(first);
    assert!(!r.has_listener("svc"));
    // Sent while nobody listens: a drop, made good later.
    assert_eq!(
        r.retry_requests(RequestOptions::DEFAULT_ACK_TIMEOUT_MS as i64),
        0
    );
    assert_eq!(r.request_counts().dropped, 1);
    let (_second, got) = inbox(&r, "svc");
    let sent = got.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].id, sent[0].attempt), (id, 2));
}

#[test]
fn a_listener_may_answer_from_inside_its_callback() {
    let r = Arc::new(Registry::default());
    let weak = Arc::downgrade(&r);
    let _sub = r
        .on_request("svc", move |q| {
            // Runs outside the registry's locks: no deadlock.
            let r = weak.upgrade().unwrap();
            r.ack(q.id, "svc", AckOutcome::Released, 2).unwrap();
            true
        })
        .unwrap();
    let h = r.register(named("lease/1", "svc"), 0).unwrap();
    assert!(matches!(
        r.request_release(h, decision("leases"), 1),
        Ok(Asked::Requested { .. })
    ));
    assert!(matches!(r.lookup(h), Lookup::Released(_)));
}

#[test]
fn an_owners_own_release_answers_the_request() {
    let r = Registry::default();
    let (_sub, _) = inbox(&r, "svc");
    let h = r.register(named("lease/1", "svc"), 0).unwrap();
    let Ok(Asked::Requested { id, .. }) = r.request_release(h, decision("leases"), 0) else {
        panic!()
    };
    assert!(r.release_by(h, &Actor::Caller("svc".into()), 1).is_some());
    assert_eq!(r.request_counts().pending, 0);
    assert_eq!(
        r.ack(id, "svc", AckOutcome::Released, 2),
        Err(AckError::Unknown { id })
    );
    assert_eq!(r.retry_requests(i64::MAX / 2), 0);
}

#[test]
fn listeners_and_waiting_requests_are_bounded_and_a_full_listener_does_not_block() {
    let r = with_requests(RequestOptions {
        max_pending_per_owner: 1,
        max_subscribers_per_owner: 2,
        ..RequestOptions::default()
    });
    assert_eq!(
        r.on_request("", |_| true).err(),
        Some(SubscribeError::NoOwner)
    );
    // A listener whose queue is full takes nothing.
    let _full = r.on_request("svc", |_| false).unwrap();
    let _other = r.on_request("svc", |_| false).unwrap();
    assert_eq!(
        r.on_request("svc", |_| true).err(),
        Some(SubscribeError::TooManyForOwner {
            owner: "svc".into(),
            limit: 2
        })
    );
    let a = r.register(named("lease/a", "svc"), 0).unwrap();
    let b = r.register(named("lease/b", "svc"), 0).unwrap();
    assert!(matches!(
        r.request_release(a, decision("leases"), 1),
        Ok(Asked::Requested { .. })
    ));
    // The owner has as many waiting as it may: released at once.
    assert!(matches!(
        r.request_release(b, decision("leases"), 1),
        Ok(Asked::Released {
            overflowed: true,
            ..
        })
    ));
    let c = r.request_counts();
    assert_eq!((c.dropped, c.delivered, c.overflowed), (2, 0, 1));

    let mut subs = Vec::new();
    for i in 0..crate::registry::requests::MAX_SUBSCRIBERS {
        match r.on_request(&format!("o{i}"), |_| true) {
            Ok(s) => subs.push(s),
            Err(e) => {
                assert_eq!(
                    e,
                    SubscribeError::TooMany {
                        limit: crate::registry::requests::MAX_SUBSCRIBERS
                    }
                );
                // The two of `svc` count too.
                assert_eq!(subs.len(), crate::registry::requests::MAX_SUBSCRIBERS - 2);
                return;
            }
        }
    }
    panic!("no bound on listeners in all");
}

#[test]
fn a_batch_registers_each_item_or_says_why_not() {
    let r = Registry::with_limits(RegistryLimits {
        max_tracked: 3,
        max_bytes: 1 << 20,
    });
    let db = r.register(named("db", "svc"), 0).unwrap();
    let out = r.register_batch(
        vec![
            (named("a", "svc"), vec![db]),
            (named("b", "svc"), vec![12_345]),
            (named("c", "svc"), vec![]),
            (named("d", "svc"), vec![]),
        ],
        1,
    );
    assert!(out[0].is_ok() && out[2].is_ok(), "{out:?}");
    assert_eq!(
        out[1],
        Err(RegisterError::Dependency(
            DependencyError::UnknownDependency { handle: 12_345 }
        ))
    );
    assert!(
        matches!(out[3], Err(RegisterError::Full(Full::Count { tracked: 3 }))),
        "{out:?}"
    );
    assert_eq!(r.dependencies(*out[0].as_ref().unwrap()).unwrap(), [db]);
    assert_eq!(r.len(), 3);
}

#[test]
fn the_summary_counts_by_kind_and_by_owner_with_the_rest_together() {
    let r = Registry::default();
    for (kind, owner, n) in [
        (ResourceKind::AppObject, "big", 5),
        (ResourceKind::Socket, "mid", 3),
        (ResourceKind::AppObject, "small", 1),
        (ResourceKind::AppObject, "tiny", 1),
    ] {
        for i in 0..n {
            r.register(
                Registration {
                    kind,
                    size_bytes: 100,
                    ..named(&format!("{owner}/{i}"), owner)
                },
                0,
            )
            .unwrap();
        }
    }
    let s = r.summary(2);
    assert_eq!(
        s.total,
        Tally {
            count: 10,
            bytes: 1_000
        }
    );
    assert_eq!(
        s.by_kind["app-object"],
        Tally {
            count: 7,
            bytes: 700
        }
    );
    assert_eq!(
        s.by_kind["socket"],
        Tally {
            count: 3,
            bytes: 300
        }
    );
    let owners: Vec<(&str, u64)> = s
        .by_owner
        .iter()
        .map(|o| (o.owner.as_str(), o.tally.count))
        .collect();
    assert_eq!(owners, [("big", 5), ("mid", 3)]);
    assert_eq!(
        s.others,
        OthersTally {
            owners: 2,
            tally: Tally {
                count: 2,
                bytes: 200
            }
        }
    );
}

#[test]
fn a_policy_release_refuses_or_cascades_over_dependents_as_the_policy_says() {
    let r = Registry::default();
    let db = r.register(named("db", "svc"), 1).unwrap();
    let pool = r
        .register_with_dependencies(named("pool", "other"), &[db], 1)
        .unwrap();
    let conn = r
        .register_with_dependencies(named("conn", "svc"), &[pool], 1)
        .unwrap();
    // Refused while others depend on it, and nothing goes.
    let refused = r.request_release(db, decision("janitor"), 5).unwrap_err();
    assert!(
        matches!(&refused, ReleaseError::HasDependents { dependents, .. } if *dependents == [pool]),
        "{refused:?}"
    );
    assert_eq!(r.len(), 3);
    // Cascaded: dependents first, whoever owns them, then the resource.
    let cascade = PolicyDecision {
        mode: ReleaseMode::Cascade,
        ..decision("janitor")
    };
    let Asked::Released { outcome, .. } = r.request_release(db, cascade, 6).unwrap() else {
        panic!("not released at once");
    };
    let order: Vec<u64> = outcome.cascaded.iter().map(|c| c.handle).collect();
    assert_eq!(order, [conn, pool]);
    assert!(r.is_empty());
    let trail: Vec<(u64, Action)> = r
        .audit(None, 3)
        .iter()
        .map(|e| (e.handle, e.action))
        .collect();
    assert_eq!(
        trail,
        [
            (db, Action::PolicyRelease),
            (pool, Action::CascadeRelease),
            (conn, Action::CascadeRelease)
        ]
    );
}

#[test]
fn a_close_is_only_ever_asked_of_a_listening_owner_and_kept_when_unanswered() {
    let r = with_requests(RequestOptions {
        ack_timeout_ms: 1_000,
        max_attempts: 1,
        ..RequestOptions::default()
    });
    let close = PolicyDecision {
        kind: RequestType::Close,
        ..decision("sockets")
    };
    let socket = |name: &str, owner: &str| Registration {
        kind: ResourceKind::Socket,
        ..named(name, owner)
    };
    // Nobody listens: refused, and the resource stays (forgetting it would
    // not close it).
    let quiet = r.register(socket("conn/1", "svc"), 0).unwrap();
    let refused = r.request_release(quiet, close, 0).unwrap_err();
    assert!(
        matches!(&refused, ReleaseError::NotAsked { why, .. } if why.contains("does not listen")),
        "{refused}"
    );
    let orphan = r.register(socket("conn/2", ""), 0).unwrap();
    assert!(matches!(
        r.request_release(orphan, close, 0),
        Err(ReleaseError::NotAsked { .. })
    ));
    assert!(matches!(r.lookup(quiet), Lookup::Live(_)));
    assert!(matches!(r.lookup(orphan), Lookup::Live(_)));

    // A listening owner is asked to close, and its answer releases it.
    let (_sub, got) = inbox(&r, "svc");
    let Ok(Asked::Requested { id, .. }) = r.request_release(quiet, close, 0) else {
        panic!("a listener is there: the owner is asked")
    };
    assert_eq!(got.lock().unwrap()[0].kind_of_request, RequestType::Close);
    assert!(r.ack(id, "svc", AckOutcome::Released, 1).unwrap().released);
    assert!(matches!(r.lookup(quiet), Lookup::Released(_)));

    // Unanswered past its last attempt: reported, and still registered.
    let open = r.register(socket("conn/3", "svc"), 0).unwrap();
    let Ok(Asked::Requested { .. }) = r.request_release(open, close, 0) else {
        panic!()
    };
    assert_eq!(r.retry_requests(1_000), 1);
    assert!(matches!(r.lookup(open), Lookup::Live(_)));
    let u = &r.requests(Some("svc"), 10).unacknowledged[0];
    assert!(u.resource.starts_with("kept"), "{}", u.resource);
}
