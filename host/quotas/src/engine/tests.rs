//! The engine's rules, on a test clock (times are plain numbers).

use super::*;
use crate::limits::{Action, Limits};
use crate::period::Period;
use crate::scope::{Field, Matcher, Op, Scope};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn level(name: &str, soft: Option<u64>, hard: u64, actions: Vec<Action>) -> QuotaDef {
    QuotaDef {
        scope: Scope {
            matchers: vec![],
            per_owner: true,
        },
        actions,
        ..QuotaDef::new(
            name,
            Measure::Level(Unit::Count),
            Limits {
                soft,
                hard: Some(hard),
                hysteresis: 0.1,
                ..Limits::default()
            },
        )
    }
}

fn kinds(events: &[QuotaEvent]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind.clone()).collect()
}

#[test]
fn a_check_denies_what_would_exceed_the_hard_limit_and_says_why() {
    let q = Quotas::new(vec![level("files", None, 10, vec![Action::Deny])]).unwrap();
    let alice = Subject::new("alice", "temp-file");
    for _ in 0..8 {
        assert!(q.admit(&alice, Amount::one(0), 0).is_allow());
    }
    assert!(q.check(&alice, Amount::count(2), 0).is_allow());
    assert_eq!(
        q.check(&alice, Amount::count(3), 0),
        Decision::Deny {
            quota: "files",
            limit: 10,
            usage: 8,
            requested: 3
        }
    );
    let id = q.id("files").unwrap();
    assert!(!q.check_quota(id, "alice", Amount::count(3), 0).is_allow());
    // Each owner has a counter of their own.
    assert!(q.check_quota(id, "bob", Amount::count(10), 0).is_allow());
    assert!(!q.check_quota(id, "bob", Amount::count(11), 0).is_allow());
}

#[test]
fn only_deny_actions_refuse() {
    let q = Quotas::new(vec![level("files", None, 1, vec![Action::Warn])]).unwrap();
    let s = Subject::new("a", "k");
    q.charge(&s, Amount::count(5), 0);
    assert!(q.check(&s, Amount::count(5), 0).is_allow());
}

#[test]
fn a_shared_quota_counts_everyone_its_scope_selects() {
    let mut d = level("ci", None, 5, vec![Action::Deny]);
    d.scope = Scope {
        matchers: vec![Matcher {
            field: Field::Label("workspace".into()),
            op: Op::Equals("ci".into()),
        }],
        per_owner: false,
    };
    let q = Quotas::new(vec![d]).unwrap();
    let ci = [("workspace", "ci")];
    let other = [("workspace", "web")];
    q.charge(
        &Subject::new("a", "k").with_labels(&ci),
        Amount::count(3),
        0,
    );
    q.charge(
        &Subject::new("b", "k").with_labels(&ci),
        Amount::count(2),
        0,
    );
    q.charge(
        &Subject::new("c", "k").with_labels(&other),
        Amount::count(9),
        0,
    );
    let id = q.id("ci").unwrap();
    assert_eq!(q.usage(id, "anyone", 0), 5);
    assert!(
        !q.check(
            &Subject::new("z", "k").with_labels(&ci),
            Amount::count(1),
            0
        )
        .is_allow()
    );
    // Outside the scope, the quota does not apply.
    assert!(
        q.check(
            &Subject::new("z", "k").with_labels(&other),
            Amount::count(1),
            0
        )
        .is_allow()
    );
}

#[test]
fn releases_lower_levels_but_not_rates() {
    let mut rate = level("per-hour", None, 100, vec![]);
    (rate.measure, rate.period) = (Measure::Rate(Unit::Bytes), Some(Period::Hourly));
    let mut bytes = level("bytes", None, 100, vec![]);
    bytes.measure = Measure::Level(Unit::Bytes);
    let q = Quotas::new(vec![rate, bytes]).unwrap();
    let s = Subject::new("a", "k");
    q.charge(&s, Amount::one(40), 0);
    q.release(&s, Amount::one(30));
    assert_eq!(q.usage(q.id("per-hour").unwrap(), "a", 0), 40);
    assert_eq!(q.usage(q.id("bytes").unwrap(), "a", 0), 10);
}

#[test]
fn rolling_rates_forget_what_left_the_window() {
    let mut d = level("uploads", None, 10, vec![Action::Deny]);
    (d.measure, d.period) = (
        Measure::Rate(Unit::Count),
        Some(Period::Rolling { length_ms: 16_000 }),
    );
    let q = Quotas::new(vec![d]).unwrap();
    let s = Subject::new("a", "k");
    q.charge(&s, Amount::count(6), 0);
    q.charge(&s, Amount::count(4), 8_000);
    assert!(!q.check(&s, Amount::count(1), 15_999).is_allow());
    // At 16 s the first bucket (0–1 s) leaves the window.
    assert!(q.check(&s, Amount::count(6), 16_000).is_allow());
    assert_eq!(q.usage(q.id("uploads").unwrap(), "a", 24_000), 0);
}

#[test]
fn calendar_rates_start_again_at_the_boundary() {
    let mut d = level("daily", None, 10, vec![Action::Deny]);
    (d.measure, d.period) = (Measure::Rate(Unit::Count), Some(Period::Daily));
    let q = Quotas::new(vec![d]).unwrap();
    let s = Subject::new("a", "k");
    q.charge(&s, Amount::count(10), DAY - 1);
    assert!(!q.check(&s, Amount::count(1), DAY - 1).is_allow());
    assert!(q.check(&s, Amount::count(10), DAY).is_allow());
    let st = q.status(DAY - 1);
    assert_eq!(st[0].next_reset_ms, Some(DAY));
}

#[test]
fn a_burst_is_allowed_until_its_allowance_is_spent() {
    let mut d = level("mem", None, 100, vec![Action::Deny]);
    d.limits.burst = Some(150);
    d.limits.burst_allowance_ms = Some(10_000);
    d.period = Some(Period::Hourly);
    let q = Quotas::new(vec![d]).unwrap();
    let s = Subject::new("a", "k");
    assert!(q.admit(&s, Amount::count(140), 0).is_allow());
    assert!(!q.check(&s, Amount::count(11), 0).is_allow());
    assert_eq!(kinds(&q.evaluate(0)), vec![EventKind::Warn { limit: 100 }]);
    let events = q.evaluate(10_000);
    assert_eq!(events[0].to, State::Hard);
    assert_eq!(kinds(&events), vec![EventKind::DenyOn { limit: 100 }]);
    // Spent: checks are held to `hard` now.
    assert_eq!(
        q.check(&s, Amount::count(1), 10_000),
        Decision::Deny {
            quota: "mem",
            limit: 100,
            usage: 140,
            requested: 1
        }
    );
    // Back under, then a new hour: the allowance is whole again.
    q.release(&s, Amount::count(100));
    assert_eq!(
        kinds(&q.evaluate(20_000)),
        vec![EventKind::DenyOff, EventKind::Resolved]
    );
    assert!(!q.check(&s, Amount::count(70), 20_000).is_allow());
    q.evaluate(HOUR);
    assert!(q.check(&s, Amount::count(70), HOUR).is_allow());
}

#[test]
fn evaluation_warns_after_grace_acts_on_hard_and_clears_with_hysteresis() {
    let mut d = level(
        "disk",
        Some(50),
        100,
        vec![
            Action::Deny,
            Action::Cleanup {
                policies: vec!["tmp".into()],
                min_reclaim: 0,
            },
        ],
    );
    (d.measure, d.limits.grace_ms) = (Measure::Observed(Unit::Bytes), Some(1_000));
    let q = Quotas::new(vec![d]).unwrap();
    let id = q.id("disk").unwrap();
    // Observed quotas ignore charges: the host measures them.
    q.charge(&Subject::new("/srv", "file"), Amount::bytes(500), 0);
    assert_eq!(q.usage(id, "/srv", 0), 0);
    q.set(id, "/srv", 60);
    assert!(q.evaluate(0).is_empty());
    assert_eq!(
        kinds(&q.evaluate(1_000)),
        vec![EventKind::Warn { limit: 50 }]
    );
    q.set(id, "/srv", 120);
    let kinds_on = kinds(&q.evaluate(2_000));
    assert_eq!(
        kinds_on,
        vec![
            EventKind::DenyOn { limit: 100 },
            EventKind::CleanupRequested {
                policies: vec!["tmp".into()],
                min_reclaim: 30
            }
        ]
    );
    // Inside the hysteresis band nothing changes.
    q.set(id, "/srv", 95);
    assert!(q.evaluate(3_000).is_empty());
    q.set(id, "/srv", 80);
    assert_eq!(kinds(&q.evaluate(4_000)), vec![EventKind::DenyOff]);
    q.set(id, "/srv", 10);
    let done = q.evaluate(5_000);
    assert_eq!((done[0].from, done[0].to), (State::Soft, State::Ok));
    assert_eq!(kinds(&done), vec![EventKind::Resolved]);
    let v = q.violations();
    assert_eq!(v.len(), 1);
    assert_eq!(
        (
            v[0].worst,
            v[0].limit,
            v[0].peak,
            v[0].started_ms,
            v[0].ended_ms
        ),
        (State::Hard, 100, 120, 1_000, Some(5_000))
    );
}

#[test]
fn open_violations_are_listed_and_history_is_bounded() {
    let q = Quotas::new(vec![level("n", None, 1, vec![])])
        .unwrap()
        .with_history(2);
    let id = q.id("n").unwrap();
    for i in 0..3 {
        q.set(id, "a", 5);
        q.evaluate(i * 10);
        q.set(id, "a", 0);
        q.evaluate(i * 10 + 5);
    }
    q.set(id, "b", 5);
    q.evaluate(100);
    let v = q.violations();
    let starts: Vec<_> = v
        .iter()
        .map(|v| (v.owner.as_str(), v.started_ms, v.ended_ms))
        .collect();
    assert_eq!(
        starts,
        vec![("a", 10, Some(15)), ("a", 20, Some(25)), ("b", 100, None)]
    );
}

#[test]
fn reset_restarts_rates_and_states_but_keeps_levels() {
    let mut rate = level("rate", None, 5, vec![Action::Deny]);
    (rate.measure, rate.period) = (Measure::Rate(Unit::Count), Some(Period::Daily));
    let held = level("held", None, 5, vec![Action::Deny]);
    let q = Quotas::new(vec![rate, held]).unwrap();
    let s = Subject::new("a", "k");
    q.charge(&s, Amount::count(9), 0);
    q.evaluate(0);
    let events = q.reset("rate", 10).unwrap();
    assert_eq!(
        kinds(&events),
        vec![EventKind::DenyOff, EventKind::Resolved]
    );
    assert_eq!(q.usage(q.id("rate").unwrap(), "a", 10), 0);
    assert_eq!(q.violations()[0].ended_ms, Some(10));
    q.reset("held", 10).unwrap();
    assert_eq!(q.usage(q.id("held").unwrap(), "a", 10), 9);
    assert!(matches!(q.reset("nope", 0), Err(Error::Unknown { .. })));
}

#[test]
fn owners_holding_nothing_are_dropped_after_evaluation() {
    let q = Quotas::new(vec![level("n", None, 10, vec![])]).unwrap();
    for o in ["a", "b", "c"] {
        q.charge(&Subject::new(o, "k"), Amount::count(1), 0);
    }
    q.release(&Subject::new("b", "k"), Amount::count(1));
    q.evaluate(0);
    let owners: Vec<_> = q.status(0).into_iter().map(|s| s.owner).collect();
    assert_eq!(owners.len(), 2);
    assert!(!owners.contains(&"b".to_owned()));
}

#[test]
fn evaluation_passes_over_calm_rates_yet_sees_them_cross_and_drops_them_once_expired() {
    let mut d = level("uploads", None, 10, vec![Action::Deny]);
    (d.measure, d.period) = (
        Measure::Rate(Unit::Count),
        Some(Period::Rolling { length_ms: 16_000 }),
    );
    let q = Quotas::new(vec![d]).unwrap();
    let (a, b) = (Subject::new("a", "k"), Subject::new("b", "k"));
    q.charge(&a, Amount::count(3), 0);
    q.charge(&b, Amount::count(3), 0);
    assert!(q.evaluate(1_000).is_empty());
    // Over the limit by charges within the window: the bound the
    // evaluation reads first must not hide it.
    q.charge(&b, Amount::count(9), 2_000);
    let events = q.evaluate(2_000);
    assert_eq!((events.len(), events[0].owner.as_str()), (1, "b"));
    // Once every charge of `a` has left the window, `a` holds nothing and
    // is dropped, though its ring was never read.
    q.evaluate(16_500);
    let owners: Vec<_> = q.status(16_500).into_iter().map(|s| s.owner).collect();
    assert_eq!(owners, vec!["b".to_owned()]);
}

#[test]
fn observed_usage_is_set_to_what_was_measured_and_owners_no_longer_measured_go_to_zero() {
    let mut d = level("rss", None, 100, vec![Action::Warn]);
    d.measure = Measure::Observed(Unit::Bytes);
    let q = Quotas::new(vec![d]).unwrap();
    let id = q.id("rss").unwrap();
    let measured = |pairs: &[(&str, u64)]| {
        pairs
            .iter()
            .map(|(o, v)| ((*o).to_owned(), *v))
            .collect::<HashMap<_, _>>()
    };
    q.observe(id, &measured(&[("api", 150), ("db", 20)]));
    // Registrations do not add to what is measured.
    q.charge(&Subject::new("api", "app-object"), Amount::one(10), 0);
    assert_eq!((q.usage(id, "api", 0), q.usage(id, "db", 0)), (150, 20));
    let events = q.evaluate(0);
    assert_eq!(
        (
            events.len(),
            events[0].owner.as_str(),
            events[0].kind.clone()
        ),
        (1, "api", EventKind::Warn { limit: 100 })
    );
    // `api` stopped reporting: zero, and its violation resolves.
    q.observe(id, &measured(&[("db", 30)]));
    assert_eq!((q.usage(id, "api", 1), q.usage(id, "db", 1)), (0, 30));
    assert_eq!(kinds(&q.evaluate(1)), vec![EventKind::Resolved]);
}

#[test]
fn status_shows_an_unused_shared_quota() {
    let mut d = level("g", Some(1), 2, vec![Action::Deny]);
    d.scope.per_owner = false;
    let q = Quotas::new(vec![d]).unwrap();
    let st = q.status(0);
    assert_eq!(st.len(), 1);
    assert_eq!(
        (st[0].usage, st[0].state, st[0].limit_in_force),
        (0, State::Ok, Some(2))
    );
}

#[test]
fn definitions_are_validated_and_names_unique() {
    let dup = vec![level("x", None, 1, vec![]), level("x", None, 2, vec![])];
    assert!(matches!(Quotas::new(dup), Err(Error::Duplicate { .. })));
    let bad = level("y", Some(3), 2, vec![]);
    let e = Quotas::new(vec![bad]).err().unwrap();
    assert_eq!(e.field(), Some("limits.soft"));
}

#[test]
fn summaries_count_owners_by_state_and_name_the_largest() {
    let q = Quotas::new(vec![level("files", Some(5), 10, vec![Action::Deny])]).unwrap();
    for (owner, n) in [("a", 1), ("b", 7), ("c", 12), ("d", 3)] {
        q.charge(&Subject::new(owner, "x"), Amount::count(n), 0);
    }
    let id = q.id("files").unwrap();
    q.evaluate_quota(id, 0);
    let s = q.summary(id, 0, 2);
    assert_eq!((s.owners, s.total, s.max), (4, 23, 12));
    assert_eq!(s.by_state, [2, 0, 1, 0, 1]);
    assert_eq!(s.top, vec![("c".to_owned(), 12), ("b".to_owned(), 7)]);
}

#[test]
fn status_pages_walk_owners_in_name_order() {
    let q = Quotas::new(vec![level("files", None, 10, vec![])]).unwrap();
    for owner in ["d", "b", "a", "c", "e"] {
        q.charge(&Subject::new(owner, "x"), Amount::count(1), 0);
    }
    let id = q.id("files").unwrap();
    let (rows, more) = q.status_page(id, 0, None, 2);
    let names = |r: &[QuotaStatus]| r.iter().map(|s| s.owner.clone()).collect::<Vec<_>>();
    assert_eq!((names(&rows), more), (vec!["a".into(), "b".into()], true));
    let (rows, more) = q.status_page(id, 0, Some("b"), 2);
    assert_eq!((names(&rows), more), (vec!["c".into(), "d".into()], true));
    let (rows, more) = q.status_page(id, 0, Some("d"), 2);
    assert_eq!((names(&rows), more), (vec!["e".into()], false));
}

#[test]
fn a_recount_replaces_levels_and_leaves_rates() {
    let mut rate = level("made", None, 100, vec![]);
    rate.measure = Measure::Rate(Unit::Count);
    rate.period = Some(Period::Hourly);
    let q = Quotas::new(vec![level("held", None, 100, vec![]), rate]).unwrap();
    let a = Subject::new("a", "x");
    q.charge(&a, Amount::count(9), 0);
    let (held, made) = (q.id("held").unwrap(), q.id("made").unwrap());
    // The registry holds two of a's and one of b's: the recount says so.
    q.zero_levels();
    q.add_level(&a, Amount::count(1), 0);
    q.add_level(&a, Amount::count(1), 0);
    q.add_level(&Subject::new("b", "x"), Amount::count(1), 0);
    assert_eq!(q.usage(held, "a", 0), 2);
    assert_eq!(q.usage(held, "b", 0), 1);
    assert_eq!(q.usage(made, "a", 0), 9, "a rate is what was charged");
}
