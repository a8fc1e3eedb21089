//! Owner liveness: orphans are found when the owner process is gone or its
//! pid is another process's, never for a live owner or a resource without
//! a pid.

use std::process::Command;

use super::*;

fn owned_by(name: &str, pid: Option<u32>) -> Registration {
    Registration {
        pid,
        ..named(name, "svc")
    }
}

fn live(r: &Registry, h: u64) -> View {
    match r.lookup(h) {
        Lookup::Live(v) => v,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_orphan_is_found_when_its_owner_exits_and_a_live_owner_is_not_one() {
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let r = Registry::default();
    let of_child = r.register(owned_by("child", Some(child.id())), 1).unwrap();
    let of_me = r
        .register(owned_by("me", Some(std::process::id())), 1)
        .unwrap();
    let no_pid = r.register(owned_by("nobody", None), 1).unwrap();

    let sweep = r.sweep_orphans(10);
    assert_eq!(sweep.checked, 2);
    assert!(sweep.orphaned.is_empty(), "{sweep:?}");
    assert!(!live(&r, of_child).orphan);

    child.kill().unwrap();
    child.wait().unwrap();
    let sweep = r.sweep_orphans(20);
    assert_eq!(sweep.orphaned, [of_child]);
    let v = live(&r, of_child);
    assert!(v.orphan);
    assert_eq!(v.orphan_since_ms, Some(20));
    assert!(!live(&r, of_me).orphan && !live(&r, no_pid).orphan);
    // Plugins see it as a label; the scan counts it.
    let set = r.list(&ResourceFilter::default());
    assert!(set.labels(0).any(|(k, v)| k == ORPHAN_LABEL && v == "20"));
    assert!(!set.labels(1).any(|(k, _)| k == ORPHAN_LABEL));
    let scan = r.scan(30);
    assert_eq!(
        (scan.orphans, scan.first_orphans.clone()),
        (1, vec![of_child])
    );
    // Found once: a later sweep keeps the first time.
    assert!(r.sweep_orphans(40).orphaned.is_empty());
    assert_eq!(live(&r, of_child).orphan_since_ms, Some(20));
}

#[test]
fn a_reused_pid_is_an_orphan() {
    let r = Registry::default();
    let h = r
        .register(owned_by("me", Some(std::process::id())), 1)
        .unwrap();
    // As if this pid had belonged to a process that started earlier.
    for e in r.write().entries.iter_mut() {
        e.start_ticks -= 1;
    }
    assert_eq!(r.sweep_orphans(5).orphaned, [h]);
}

#[test]
fn orphans_stay_orphans_after_a_restart() {
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
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let (r, _) = open();
    let h = r.register(owned_by("child", Some(child.id())), 1).unwrap();
    r.flush().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(r.sweep_orphans(50).orphaned, [h]);
    r.flush().unwrap();
    drop(r);
    let (r, _) = open();
    assert_eq!(live(&r, h).orphan_since_ms, Some(50));
}

#[test]
fn the_scan_finds_resources_idle_past_their_ttl() {
    let r = Registry::default();
    let idle = r
        .register(
            Registration {
                ttl_ms: Some(100),
                ..named("idle", "svc")
            },
            0,
        )
        .unwrap();
    let used = r
        .register(
            Registration {
                ttl_ms: Some(100),
                ..named("used", "svc")
            },
            0,
        )
        .unwrap();
    r.register(named("forever", "svc"), 0).unwrap();
    r.touch(used, 150);
    let scan = r.scan(200);
    assert_eq!(scan.scanned, 3);
    assert_eq!((scan.expired, scan.first_expired), (1, vec![idle]));
    assert_eq!(scan.orphans, 0);
}
