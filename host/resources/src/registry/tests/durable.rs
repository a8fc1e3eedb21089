//! The durable registry: restarts, torn and corrupt files, compaction,
//! limits after a restart, and files others may write.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::super::persist::{LOG_FILE, SNAPSHOT_FILE};
use super::*;

fn open(dir: &Path) -> (Registry, OpenReport) {
    open_with(dir, RegistryLimits::default(), RegistryOptions::default())
}

fn open_with(dir: &Path, limits: RegistryLimits, opts: RegistryOptions) -> (Registry, OpenReport) {
    Registry::open(dir, limits, opts, 1_000).unwrap_or_else(|e| panic!("{e}"))
}

/// A registry whose flush compacts once its log passes `records` records.
fn open_compacting_past(dir: &Path, records: u64) -> Registry {
    let opts = RegistryOptions {
        compact_records: records,
        ..RegistryOptions::default()
    };
    open_with(dir, RegistryLimits::default(), opts).0
}

fn state_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("registry");
    (tmp, dir)
}

#[test]
fn a_restart_keeps_resources_their_handles_and_the_counter() {
    let (_tmp, dir) = state_dir();
    let (r, report) = open(&dir);
    assert_eq!(report.resources, 0);
    let a = r.register(named("cache/a", "svc"), 100).unwrap();
    let b = r
        .register(
            Registration {
                ttl_ms: Some(60_000),
                ..named("cache/b", "svc")
            },
            100,
        )
        .unwrap();
    let c = r.register(named("cache/c", "other"), 100).unwrap();
    assert!(r.touch(a, 5_000));
    assert_eq!(r.release_by_policy(c, "leases", 6_000), Some(64));
    let before = r.views(&ResourceFilter::default(), None);
    r.flush().unwrap();
    // Not flushed: a crash (a drop without flush) loses it, as documented.
    let lost = r.register(named("cache/lost", "svc"), 7_000).unwrap();
    drop(r);

    let (r, report) = open(&dir);
    assert_eq!(report.resources, 2, "{report:?}");
    assert!(report.torn_tail.is_none());
    assert_eq!(r.views(&ResourceFilter::default(), None), before);
    match r.lookup(a) {
        Lookup::Live(v) => {
            assert_eq!(v.name, "cache/a");
            assert_eq!(v.accessed_ms, 5_000);
            assert_eq!(v.labels.get("tenant").map(String::as_str), Some("t1"));
        }
        other => panic!("{other:?}"),
    }
    match r.lookup(b) {
        Lookup::Live(v) => assert_eq!(v.expires_ms, Some(60_100)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        r.lookup(c),
        Lookup::Released(Released {
            by_policy: "leases".into(),
            at_ms: 6_000
        })
    );
    assert_eq!(r.lookup(lost), Lookup::Unknown);
    // The counter went on from the last flushed number: no handle given
    // before the restart is given again.
    let d = r.register(named("cache/d", "svc"), 8_000).unwrap();
    assert!(![a, b, c].contains(&d));
    assert_eq!(r.handles.decode(d), Some(4));
    assert!(
        r.release_by(a, &Actor::Caller("svc".into()), 9_000)
            .is_some()
    );
    r.flush().unwrap();
    drop(r);
    let (r, _) = open(&dir);
    assert_eq!(r.lookup(a), Lookup::Unknown);
    assert!(matches!(r.lookup(d), Lookup::Live(_)));
}

#[test]
fn a_torn_log_tail_loads_the_records_before_it() {
    let (_tmp, dir) = state_dir();
    let (r, _) = open(&dir);
    let a = r.register(named("a", "svc"), 1).unwrap();
    r.flush().unwrap();
    let b = r.register(named("b", "svc"), 2).unwrap();
    r.flush().unwrap();
    drop(r);
    // A crash mid-append: half a record, no newline.
    let log = dir.join(LOG_FILE);
    let good = std::fs::metadata(&log).unwrap().len();
    let torn = br#"{"reg":{"seq":3,"kind":"app-object","na"#;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(torn)
        .unwrap();

    let (r, report) = open(&dir);
    let tail = report.torn_tail.clone().expect("the torn tail is reported");
    assert_eq!(tail.kept_bytes, good);
    assert_eq!(tail.dropped_bytes, torn.len() as u64);
    assert!(tail.to_string().contains("partial record"), "{tail}");
    assert_eq!(r.len(), 2);
    assert!(matches!(r.lookup(a), Lookup::Live(_)) && matches!(r.lookup(b), Lookup::Live(_)));
    // The tail was cut: the next record starts its own line and loads.
    assert_eq!(std::fs::metadata(&log).unwrap().len(), good);
    let c = r.register(named("c", "svc"), 3).unwrap();
    r.flush().unwrap();
    drop(r);
    let (r, report) = open(&dir);
    assert!(report.torn_tail.is_none());
    assert!(matches!(r.lookup(c), Lookup::Live(_)));
}

#[test]
fn a_corrupt_snapshot_is_moved_aside_and_named() {
    let (_tmp, dir) = state_dir();
    let r = open_compacting_past(&dir, 0);
    for i in 0..10 {
        r.register(named(&format!("n/{i}"), "svc"), 1).unwrap();
    }
    assert!(r.flush().unwrap().compacted);
    drop(r);
    let snap = dir.join(SNAPSHOT_FILE);
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 8].copy_from_slice(b"\x00garbage");
    std::fs::write(&snap, &bytes).unwrap();

    let err = Registry::open(
        &dir,
        RegistryLimits::default(),
        RegistryOptions::default(),
        42,
    )
    .unwrap_err();
    let msg = err.to_string();
    let OpenError::Corrupt { path, moved, .. } = err else {
        panic!("{msg}")
    };
    assert_eq!(path, snap);
    assert!(
        msg.contains(&snap.display().to_string()) && msg.contains("moved aside"),
        "{msg}"
    );
    let aside = dir.join(format!("{SNAPSHOT_FILE}.bad-42"));
    assert!(moved.contains(&aside), "{moved:?}");
    assert_eq!(std::fs::read(&aside).unwrap(), bytes, "kept for inspection");
    assert!(!snap.exists());
    // The next start begins empty, with a new key.
    let (r, report) = open(&dir);
    assert_eq!(report.resources, 0);
    assert_eq!(r.len(), 0);

    // A snapshot cut short (no end line) is as corrupt.
    r.register(named("x", "svc"), 1).unwrap();
    drop(r);
    let r = open_compacting_past(&dir, 0);
    r.register(named("y", "svc"), 1).unwrap();
    r.flush().unwrap();
    drop(r);
    let bytes = std::fs::read(&snap).unwrap();
    let cut = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap();
    std::fs::write(&snap, &bytes[..=cut]).unwrap();
    let err = Registry::open(
        &dir,
        RegistryLimits::default(),
        RegistryOptions::default(),
        43,
    )
    .unwrap_err();
    assert!(err.to_string().contains("ends early"), "{err}");
}

#[test]
fn a_bad_line_inside_the_log_is_not_taken_for_a_torn_tail() {
    let (_tmp, dir) = state_dir();
    let (r, _) = open(&dir);
    r.register(named("a", "svc"), 1).unwrap();
    r.flush().unwrap();
    drop(r);
    let log = dir.join(LOG_FILE);
    let mut text = std::fs::read_to_string(&log).unwrap();
    let first = text.find('\n').unwrap();
    text.insert_str(first + 1, "{\"touch\":oops}\n");
    std::fs::write(&log, text).unwrap();
    let err = Registry::open(
        &dir,
        RegistryLimits::default(),
        RegistryOptions::default(),
        7,
    )
    .unwrap_err();
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("line 2"), "{err}");
    assert!(dir.join(format!("{LOG_FILE}.bad-7")).exists());
}

#[test]
fn compaction_keeps_everything() {
    let (_tmp, dir) = state_dir();
    let opts = RegistryOptions {
        compact_records: 25,
        audit_events: 1_000,
        ..RegistryOptions::default()
    };
    let (r, _) = open_with(&dir, RegistryLimits::default(), opts);
    let mut handles = Vec::new();
    let mut compactions = 0;
    for i in 0..60 {
        let pid = (i % 7 == 0).then_some(std::process::id());
        handles.push(
            r.register(
                Registration {
                    pid,
                    ttl_ms: Some(1_000 * i),
                    ..named(&format!("n/{i}"), &format!("svc{}", i % 3))
                },
                i as i64,
            )
            .unwrap(),
        );
        if i % 5 == 4 {
            r.touch(handles[i as usize - 2], 100 + i as i64);
            r.release_by_policy(handles[i as usize - 4], "p", 200 + i as i64);
            r.release_by(
                handles[i as usize - 3],
                &Actor::Caller("intruder".into()),
                300 + i as i64,
            );
            compactions += u32::from(r.flush().unwrap().compacted);
        }
    }
    r.flush().unwrap();
    assert!(compactions >= 2, "{compactions}");
    let views = r.views(&ResourceFilter::default(), None);
    let audit = r.audit(None, usize::MAX);
    let lookups: Vec<Lookup> = handles.iter().map(|h| r.lookup(*h)).collect();
    drop(r);
    let (r, report) = open_with(&dir, RegistryLimits::default(), opts);
    assert!(report.snapshot_records > 0, "{report:?}");
    assert_eq!(r.views(&ResourceFilter::default(), None), views);
    assert_eq!(r.audit(None, usize::MAX), audit);
    assert_eq!(
        handles.iter().map(|h| r.lookup(*h)).collect::<Vec<_>>(),
        lookups
    );
    assert_eq!(r.len(), 60 - 24);
}

#[test]
fn max_tracked_still_refuses_after_a_restart() {
    let (_tmp, dir) = state_dir();
    let limits = RegistryLimits {
        max_tracked: 3,
        max_bytes: 1 << 20,
    };
    let (r, _) = open_with(&dir, limits, RegistryOptions::default());
    for i in 0..3 {
        r.register(named(&format!("n/{i}"), "svc"), 1).unwrap();
    }
    r.flush().unwrap();
    drop(r);
    let (r, _) = open_with(&dir, limits, RegistryOptions::default());
    assert_eq!(
        r.register(named("n/3", "svc"), 2),
        Err(Full::Count { tracked: 3 })
    );
    // The bytes held came back too.
    let tight = RegistryLimits {
        max_tracked: 10,
        max_bytes: named("n/0", "svc").bytes() * 3 + 10,
    };
    drop(r);
    let (r, _) = open_with(&dir, tight, RegistryOptions::default());
    assert!(matches!(
        r.register(named("n/3", "svc"), 2),
        Err(Full::Bytes { .. })
    ));
}

#[test]
fn files_others_may_write_are_refused() {
    let (_tmp, dir) = state_dir();
    let (r, _) = open(&dir);
    r.register(named("a", "svc"), 1).unwrap();
    r.flush().unwrap();
    drop(r);
    let log = dir.join(LOG_FILE);
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = Registry::open(
        &dir,
        RegistryLimits::default(),
        RegistryOptions::default(),
        1,
    )
    .unwrap_err();
    assert!(matches!(err, OpenError::Untrusted { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&log.display().to_string()) && msg.contains("chmod 600"),
        "{msg}"
    );
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();

    // The key: readable by others is enough to refuse it (it is a secret).
    let key = dir.join("handles.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Registry::open(
        &dir,
        RegistryLimits::default(),
        RegistryOptions::default(),
        1,
    )
    .unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // The directory.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = Registry::open(
        &dir,
        RegistryLimits::default(),
        RegistryOptions::default(),
        1,
    )
    .unwrap_err();
    assert!(err.to_string().contains("chmod go-w"), "{err}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    // A link planted in place of the snapshot.
    std::os::unix::fs::symlink(&log, dir.join(SNAPSHOT_FILE)).unwrap();
    let err = Registry::open(
        &dir,
        RegistryLimits::default(),
        RegistryOptions::default(),
        1,
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    std::fs::remove_file(dir.join(SNAPSHOT_FILE)).unwrap();
    assert_eq!(open(&dir).0.len(), 1);
}

#[test]
fn a_failed_flush_keeps_its_changes_for_the_next() {
    let (_tmp, dir) = state_dir();
    let (r, _) = open(&dir);
    let a = r.register(named("a", "svc"), 1).unwrap();
    // Make the log unwritable by swapping in a read-only descriptor.
    {
        let st = r.store.as_ref().unwrap();
        let mut st = st.lock().unwrap();
        st.log = Some(std::fs::File::open(dir.join(LOG_FILE)).unwrap());
    }
    let err = r.flush().unwrap_err();
    assert!(err.to_string().contains("next flush tries again"), "{err}");
    {
        let st = r.store.as_ref().unwrap();
        let mut st = st.lock().unwrap();
        st.log = Some(
            warden_core::fsx::private_append()
                .open(dir.join(LOG_FILE))
                .unwrap(),
        );
    }
    assert!(r.flush().unwrap().records > 0);
    drop(r);
    assert!(matches!(open(&dir).0.lookup(a), Lookup::Live(_)));
}

#[test]
fn changes_made_while_a_flush_writes_land_once_in_the_snapshot_or_the_log_after_it() {
    // A flush copies under the lock and writes after it: one thread churns
    // (registers, touches, depends, releases) while another flushes,
    // compacting whenever the log outgrows the few resources held. Each
    // change must be in the snapshot or in the log that follows it, once:
    // a change in both does not load (a resource out of order), a change in
    // neither is lost.
    let (_tmp, dir) = state_dir();
    // Compacting once the log passes 10,000 records: most flushes append.
    let r = open_compacting_past(&dir, 10_000);
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = AtomicBool::new(false);
    let (compactions, appends) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|s| {
        let flusher = s.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                let report = r.flush().unwrap();
                if report.compacted {
                    compactions.fetch_add(1, Ordering::Release);
                } else if report.records > 0 {
                    appends.fetch_add(1, Ordering::Release);
                }
            }
        });
        let mut live = std::collections::VecDeque::new();
        // Until both ways a flush goes were taken a few times (the bound
        // only keeps a broken flusher from holding the test for ever).
        let mut i = 0i64;
        while i < 5_000_000
            && (compactions.load(Ordering::Acquire) < 5 || appends.load(Ordering::Acquire) < 20)
        {
            i += 1;
            if i % 100 == 0 {
                // A few hundred changes per flush, as a second of a busy
                // daemon brings, rather than all of them in one.
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
            let h = r.register(named(&format!("n/{i}"), "svc"), i).unwrap();
            if i % 3 == 0 {
                assert!(r.touch(h, i + 1));
            }
            if let Some(&older) = live.back()
                && i % 5 == 0
            {
                // The older depends on the newer, so that releasing the
                // oldest first releases dependents first.
                assert!(
                    r.add_dependency(older, h, &Actor::Caller("svc".into()), i)
                        .unwrap()
                );
            }
            live.push_back(h);
            if live.len() > 50 {
                let old = live.pop_front().unwrap();
                if !r.release(old) {
                    stop.store(true, Ordering::Release);
                    panic!("{old} was not released");
                }
            }
        }
        stop.store(true, Ordering::Release);
        flusher.join().unwrap();
    });
    let (compactions, appends) = (compactions.into_inner(), appends.into_inner());
    assert!(
        compactions >= 5 && appends >= 20,
        "{compactions} compactions, {appends} appends"
    );
    let held = Held::of(&r);
    r.flush().unwrap();
    drop(r);

    let (r, report) = open(&dir);
    assert!(report.torn_tail.is_none(), "{report:?}");
    held.assert_in(&r);
}

/// What a registry holds: its resources, audit trail and dependencies.
struct Held {
    views: Vec<View>,
    audit: Vec<AuditEvent>,
    deps: Vec<Vec<u64>>,
}

impl Held {
    fn of(r: &Registry) -> Held {
        let views = r.views(&ResourceFilter::default(), None);
        let deps = views
            .iter()
            .map(|v| r.dependencies(v.handle).unwrap())
            .collect();
        Held {
            views,
            audit: r.audit(None, usize::MAX),
            deps,
        }
    }

    /// Asserts that `r` holds the same, saying how it differs without
    /// printing thousands of events.
    fn assert_in(&self, r: &Registry) {
        let now = Held::of(r);
        assert!(
            now.views == self.views,
            "{} resources, {} before",
            now.views.len(),
            self.views.len()
        );
        if now.audit != self.audit {
            let first = now.audit.iter().zip(&self.audit).position(|(a, b)| a != b);
            panic!(
                "audit trail of {} events, {} before; first difference at {first:?}: {:?} vs {:?}",
                now.audit.len(),
                self.audit.len(),
                first.map(|i| &now.audit[i]),
                first.map(|i| &self.audit[i]),
            );
        }
        assert!(now.deps == self.deps, "dependencies differ");
    }
}

#[test]
fn what_changes_between_a_flush_s_two_copies_is_logged_after_the_snapshot_once() {
    // A compacting flush copies the changes for the log, then, after the
    // lock was free for a moment, the whole registry for the snapshot.
    // What changed in that moment is in the snapshot: the next log must not
    // have it again (a registration twice does not load; an audit event
    // twice is a trail that lies).
    let (_tmp, dir) = state_dir();
    let r = open_compacting_past(&dir, 10);
    // Past the bound of 10 records: the first flush compacts.
    for i in 0..12 {
        r.register(named(&format!("before/{i}"), "svc"), 1).unwrap();
    }
    r.store.as_ref().unwrap().lock().unwrap().between = Some(|r| {
        let n = r.len();
        let h = r
            .register(named(&format!("between/{n}"), "svc"), 2)
            .unwrap();
        assert!(r.touch(h, 3));
        let oldest = r.views(&ResourceFilter::default(), None)[0].handle;
        assert!(r.release(oldest));
    });
    // The hook runs in the first flush, between its copies; the second
    // flush, with a registration and its audit event, appends.
    assert!(r.flush().unwrap().compacted);
    r.store.as_ref().unwrap().lock().unwrap().between = None;
    r.register(named("third", "svc"), 4).unwrap();
    let report = r.flush().unwrap();
    assert!(!report.compacted && report.records > 0, "{report:?}");
    let held = Held::of(&r);
    drop(r);

    let (r, report) = open(&dir);
    assert!(report.torn_tail.is_none(), "{report:?}");
    assert_eq!(report.resources, 13, "{report:?}");
    held.assert_in(&r);
}

#[test]
fn a_snapshot_that_does_not_read_back_as_written_is_not_put_in_place() {
    // The disk changes one letter of the new snapshot: every line still
    // parses, but it is not what was written. The compaction fails (and
    // says so in the log), the changes go to the old log, and the next
    // flush compacts.
    let (_tmp, dir) = state_dir();
    let r = open_compacting_past(&dir, 10);
    for i in 0..12 {
        r.register(named(&format!("cache/{i}"), "svc"), 1).unwrap();
    }
    r.store.as_ref().unwrap().lock().unwrap().written = Some(|path| {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains("cache/7"), "{text}");
        std::fs::write(path, text.replacen("cache/7", "cache/8", 1)).unwrap();
    });
    let report = r.flush().unwrap();
    assert!(!report.compacted && report.records > 0, "{report:?}");
    assert!(!dir.join("snapshot.new").exists());
    r.store.as_ref().unwrap().lock().unwrap().written = None;
    let held = Held::of(&r);
    assert!(r.flush().unwrap().compacted);
    drop(r);

    let (r, report) = open(&dir);
    assert_eq!(report.resources, 12, "{report:?}");
    held.assert_in(&r);
    let names = r.views(&ResourceFilter::default(), None);
    assert_eq!(
        names.iter().filter(|v| &*v.name == "cache/7").count(),
        1,
        "{names:?}"
    );
}
