use super::*;
use warden_core::records::Severity as S;

fn finding(subject: &str, severity: S) -> Finding {
    Finding {
        pattern: "anomaly".into(),
        subject: subject.into(),
        labels: vec![("host".into(), "a".into())],
        confidence: 0.9,
        severity,
        exhaustion_in_ms: Some(60_000),
        recommendation: "look".into(),
        evidence: vec![("score".into(), 7.5)],
    }
}

fn rules() -> Rules {
    Rules {
        refresh_ms: 100,
        ..Rules::default()
    }
}

fn phase(st: &HashMap<FindingId, FindingState>) -> Option<Phase> {
    st.values().next().map(|s| s.phase)
}

#[test]
fn raised_at_once_refreshed_while_reported_resolved_after_n_misses() {
    let mut st = HashMap::new();
    let r = Rules {
        resolve_after: 2,
        ..rules()
    };
    let f = [finding("m", S::Warning)];
    let s = step(&mut st, &f, 0, &r);
    assert_eq!(s.changes.len(), 1);
    assert_eq!(s.changes[0].phase, Phase::Active);
    let s = step(&mut st, &f, 10, &r);
    assert!(s.changes.is_empty());
    let now = &st.values().next().unwrap();
    assert_eq!(
        (now.times_seen, now.first_seen_ms, now.last_seen_ms),
        (2, 0, 10)
    );
    assert_eq!(now.exhaustion_at_ms, Some(60_010));
    assert_eq!(now.evidence.get("score"), Some(&7.5));
    assert!(
        step(&mut st, &[], 20, &r).changes.is_empty(),
        "one miss is not enough"
    );
    assert_eq!(phase(&st), Some(Phase::Active));
    let s = step(&mut st, &[], 30, &r);
    assert_eq!(s.changes.len(), 1);
    assert_eq!(phase(&st), Some(Phase::Resolved));
    step(&mut st, &[], 30 + KEEP_RESOLVED_MS, &r);
    assert!(st.is_empty(), "forgotten after a while");
}

#[test]
fn for_keeps_a_finding_pending_and_a_pending_one_goes_without_a_word() {
    let mut st = HashMap::new();
    let r = Rules {
        for_ms: 100,
        resolve_after: 1,
        ..rules()
    };
    let f = [finding("m", S::Critical)];
    assert!(step(&mut st, &f, 0, &r).changes.is_empty());
    assert!(step(&mut st, &f, 99, &r).changes.is_empty());
    assert_eq!(phase(&st), Some(Phase::Pending));
    assert!(
        due(&mut st, 99, &r).is_empty(),
        "pending is never announced"
    );
    assert_eq!(step(&mut st, &f, 100, &r).changes.len(), 1);
    assert_eq!(phase(&st), Some(Phase::Active));
    let mut st = HashMap::new();
    step(&mut st, &f, 0, &r);
    assert!(step(&mut st, &[], 10, &r).changes.is_empty());
    assert!(st.is_empty());
}

#[test]
fn keep_firing_for_holds_a_finding_after_its_misses() {
    let mut st = HashMap::new();
    let r = Rules {
        keep_firing_for_ms: 100,
        resolve_after: 1,
        ..rules()
    };
    step(&mut st, &[finding("m", S::Warning)], 0, &r);
    step(&mut st, &[], 50, &r);
    assert_eq!(phase(&st), Some(Phase::Active));
    step(&mut st, &[], 100, &r);
    assert_eq!(phase(&st), Some(Phase::Resolved));
}

#[test]
fn receivers_hear_raised_refreshes_and_resolved_but_nothing_below_min_severity() {
    let mut st = HashMap::new();
    let r = Rules {
        resolve_after: 1,
        min_severity: Severity::Warning,
        ..rules()
    };
    let f = [finding("loud", S::Critical), finding("quiet", S::Info)];
    step(&mut st, &f, 0, &r);
    let told: Vec<(String, bool, bool)> = due(&mut st, 0, &r)
        .into_iter()
        .map(|d| (d.finding.subject, d.resolved, d.refresh))
        .collect();
    assert_eq!(told, [("loud".to_owned(), false, false)]);
    step(&mut st, &f, 50, &r);
    assert!(due(&mut st, 50, &r).is_empty());
    step(&mut st, &f, 100, &r);
    assert_eq!(due(&mut st, 100, &r).len(), 1, "a refresh");
    step(&mut st, &[], 110, &r);
    let d = due(&mut st, 110, &r);
    assert_eq!(
        d.iter()
            .map(|d| (d.finding.subject.as_str(), d.resolved))
            .collect::<Vec<_>>(),
        [("loud", true)]
    );
}

#[test]
fn cooldown_holds_back_a_finding_that_comes_back() {
    let mut st = HashMap::new();
    let r = Rules {
        resolve_after: 1,
        cooldown_ms: 1000,
        ..rules()
    };
    let f = [finding("m", S::Warning)];
    step(&mut st, &f, 0, &r);
    assert_eq!(due(&mut st, 0, &r).len(), 1);
    step(&mut st, &[], 10, &r);
    assert_eq!(due(&mut st, 10, &r).len(), 1, "resolved at once");
    let again = step(&mut st, &f, 20, &r);
    assert_eq!(again.changes.len(), 1, "a new episode is raised");
    assert_eq!(st.values().next().unwrap().first_seen_ms, 20);
    assert!(due(&mut st, 20, &r).is_empty(), "within the cooldown");
    step(&mut st, &f, 1010, &r);
    assert_eq!(due(&mut st, 1010, &r).len(), 1);
}

#[test]
fn the_policy_keeps_at_most_max_findings_dropping_the_least_important() {
    let mut st = HashMap::new();
    let r = Rules {
        max_findings: 2,
        resolve_after: 1,
        ..rules()
    };
    step(&mut st, &[finding("old", S::Critical)], 0, &r);
    step(&mut st, &[], 10, &r);
    assert_eq!(phase(&st), Some(Phase::Resolved));
    let s = step(
        &mut st,
        &[finding("a", S::Info), finding("b", S::Critical)],
        20,
        &r,
    );
    assert_eq!(s.evicted, 1);
    let mut left: Vec<&str> = st.values().map(|f| f.subject.as_str()).collect();
    left.sort_unstable();
    assert_eq!(left, ["a", "b"], "the resolved one went first");
    let s = step(
        &mut st,
        &[
            finding("a", S::Info),
            finding("b", S::Critical),
            finding("c", S::Warning),
        ],
        30,
        &r,
    );
    assert_eq!(s.evicted, 1);
    let mut left: Vec<&str> = st.values().map(|f| f.subject.as_str()).collect();
    left.sort_unstable();
    assert_eq!(left, ["b", "c"], "then the least severe");
}

#[test]
fn labels_in_another_order_are_the_same_finding() {
    let mut st = HashMap::new();
    let mut a = finding("m", S::Warning);
    a.labels = vec![("x".into(), "1".into()), ("y".into(), "2".into())];
    let mut b = a.clone();
    b.labels.reverse();
    step(&mut st, &[a], 0, &rules());
    step(&mut st, &[b.clone(), b], 10, &rules());
    assert_eq!(st.len(), 1);
    assert_eq!(
        st.values().next().unwrap().times_seen,
        2,
        "twice in one evaluation counts once"
    );
}
