//! The audit trail: who did what, bounded, accesses rate-limited, kept
//! across a restart.

use super::*;

fn actions(events: &[AuditEvent]) -> Vec<(Action, &str, &str)> {
    events
        .iter()
        .map(|e| (e.action, e.actor.as_str(), e.name.as_str()))
        .collect()
}

#[test]
fn the_trail_records_who_released_what() {
    let r = Registry::default();
    let a = r.register(named("a", "svc"), 1).unwrap();
    let b = r.register(named("b", "svc"), 2).unwrap();
    let c = r.register(named("c", "svc"), 3).unwrap();
    assert!(r.release_by(a, &Actor::Caller("svc".into()), 10).is_some());
    assert!(r.release_by(b, &Actor::Caller("ops".into()), 11).is_some());
    assert_eq!(r.release_by_policy(c, "leases", 12), Some(64));
    let all = r.audit(None, usize::MAX);
    assert_eq!(
        actions(&all),
        [
            (Action::PolicyRelease, "policy:leases", "c"),
            (Action::ForcedRelease, "ops", "b"),
            (Action::Release, "svc", "a"),
            (Action::Register, "svc", "c"),
            (Action::Register, "svc", "b"),
            (Action::Register, "svc", "a"),
        ]
    );
    assert_eq!(all[0].at_ms, 12);
    assert_eq!(all[0].handle, c);
    let of_b = r.audit(Some(b), usize::MAX);
    assert_eq!(
        actions(&of_b),
        [
            (Action::ForcedRelease, "ops", "b"),
            (Action::Register, "svc", "b")
        ]
    );
    assert_eq!(r.audit(None, 2).len(), 2);
    assert!(r.audit(Some(u64::MAX), 10).is_empty());
}

#[test]
fn the_trail_is_bounded() {
    let r = Registry::with_options(
        RegistryLimits::default(),
        RegistryOptions {
            audit_events: 5,
            ..RegistryOptions::default()
        },
    );
    let handles: Vec<u64> = (0..20)
        .map(|i| r.register(named(&format!("n/{i}"), "svc"), i).unwrap())
        .collect();
    let all = r.audit(None, usize::MAX);
    assert_eq!(all.len(), 5);
    assert_eq!(all[0].handle, handles[19]);
    assert_eq!(all[4].handle, handles[15]);
}

#[test]
fn accesses_are_recorded_at_most_once_a_minute_per_resource() {
    let r = Registry::default();
    let a = r.register(named("a", "svc"), 0).unwrap();
    let b = r.register(named("b", "svc"), 0).unwrap();
    let svc = Actor::Caller("svc".into());
    for t in 0..100 {
        assert!(r.touch_by(a, &svc, 1_000 + t * 100));
    }
    r.touch_by(b, &svc, 2_000);
    let accesses = |h| {
        r.audit(Some(h), usize::MAX)
            .iter()
            .filter(|e| e.action == Action::Access)
            .count()
    };
    assert_eq!(accesses(a), 1, "100 touches in 10 s are one event");
    assert_eq!(accesses(b), 1, "the limit is per resource");
    r.touch_by(a, &svc, 1_000 + ACCESS_EVERY_MS);
    assert_eq!(accesses(a), 2);
    // The access time itself is always kept.
    match r.lookup(a) {
        Lookup::Live(v) => assert_eq!(v.accessed_ms, 1_000 + ACCESS_EVERY_MS),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_trail_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    let open = || {
        Registry::open(
            &dir,
            RegistryLimits::default(),
            RegistryOptions::default(),
            0,
        )
        .unwrap()
    };
    let (r, _) = open();
    let a = r.register(named("a", "svc"), 1).unwrap();
    r.touch_by(a, &Actor::Caller("svc".into()), 2);
    r.release_by(a, &Actor::Caller("ops".into()), 3);
    let before = r.audit(None, usize::MAX);
    assert_eq!(before.len(), 3);
    r.flush().unwrap();
    drop(r);
    let (r, _) = open();
    assert_eq!(r.audit(None, usize::MAX), before);
}
