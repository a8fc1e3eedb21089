use super::*;
use warden_core::records::Severity as S;

fn finding(subject: &str) -> Finding {
    Finding {
        pattern: "linear-growth".into(),
        subject: subject.into(),
        labels: vec![("mount".into(), "/".into())],
        confidence: 0.95,
        severity: S::Critical,
        exhaustion_in_ms: Some(3_600_000),
        recommendation: "free space".into(),
        evidence: vec![("slope_per_min".into(), 2.5)],
    }
}

fn rules() -> Rules {
    Rules {
        resolve_after: 1,
        ..Rules::default()
    }
}

#[test]
fn findings_and_their_history_survive_reopening_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let s = FindingStore::open(dir.path()).unwrap();
    let a = s.apply(
        "d.yaml".as_ref(),
        "disk",
        &[finding("disk_used")],
        1000,
        &rules(),
    );
    assert_eq!((a.changes.len(), a.due.len(), a.active), (1, 1, 1));
    s.apply(
        "d.yaml".as_ref(),
        "other",
        &[finding("x"), finding("y")],
        1000,
        &rules(),
    );
    s.apply("d.yaml".as_ref(), "other", &[finding("x")], 2000, &rules());
    drop(s);
    let s = FindingStore::open(dir.path()).unwrap();
    let all = s.list(&Filter::default());
    assert_eq!(all.len(), 3);
    let disk = s.list(&Filter {
        policy: Some("disk"),
        ..Filter::default()
    });
    assert_eq!(disk.len(), 1);
    let f = &disk[0].finding;
    assert_eq!(
        (f.phase, f.first_seen_ms, f.exhaustion_at_ms),
        (Phase::Active, 1000, Some(3_601_000))
    );
    assert!(f.told_active, "what receivers were told is kept too");
    assert_eq!(f.evidence["slope_per_min"], 2.5);
    let resolved = s.list(&Filter {
        phase: Some(Phase::Resolved),
        ..Filter::default()
    });
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].finding.subject, "y");
    assert!(
        s.list(&Filter {
            severity: Some(Severity::Warning),
            ..Filter::default()
        })
        .is_empty()
    );
    assert_eq!(
        s.list(&Filter {
            min_severity: Some(Severity::Warning),
            pattern: Some("linear-growth"),
            ..Filter::default()
        })
        .len(),
        3
    );
    let h = s.history(None, 10);
    assert_eq!(
        h.iter()
            .map(|e| (e.subject.as_str(), e.event))
            .collect::<Vec<_>>(),
        [
            ("y", Happened::Resolved),
            ("y", Happened::Raised),
            ("x", Happened::Raised),
            ("disk_used", Happened::Raised)
        ],
        "newest first"
    );
    assert_eq!(s.history(Some("disk"), 10).len(), 1);
    s.retain(|_, p| p != "other");
    drop(s);
    let s = FindingStore::open(dir.path()).unwrap();
    assert_eq!(
        s.list(&Filter::default()).len(),
        1,
        "a removed policy's findings go"
    );
}

#[test]
fn an_unreadable_file_is_moved_aside_and_the_store_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE), "{not json").unwrap();
    let s = FindingStore::open(dir.path()).unwrap();
    assert!(s.list(&Filter::default()).is_empty());
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("unreadable"))
        .count();
    assert_eq!(aside, 1);
}

#[test]
fn a_refresh_alone_waits_for_the_next_save() {
    let dir = tempfile::tempdir().unwrap();
    let s = FindingStore::open(dir.path()).unwrap();
    s.apply("d.yaml".as_ref(), "p", &[finding("m")], 0, &rules());
    s.apply("d.yaml".as_ref(), "p", &[finding("m")], 10, &rules());
    let on_disk = FindingStore::open(dir.path()).unwrap();
    assert_eq!(on_disk.list(&Filter::default())[0].finding.times_seen, 1);
    s.flush();
    let on_disk = FindingStore::open(dir.path()).unwrap();
    assert_eq!(on_disk.list(&Filter::default())[0].finding.times_seen, 2);
}
