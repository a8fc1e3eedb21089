//! Dependencies between resources (issue 16): made at registration and
//! later, queried both ways, bounded, cycles reported, releases refused or
//! cascaded dependents first, and kept across restarts and compaction.

use std::path::Path;

use super::*;

fn svc() -> Actor {
    Actor::Caller("svc".into())
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

/// Registers `name` depending on `on`.
fn dep(r: &Registry, name: &str, on: &[u64]) -> u64 {
    r.register_with_dependencies(named(name, "svc"), on, 1)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn dependencies_are_made_at_registration_and_later_and_queried_both_ways() {
    let r = Registry::default();
    let db = r.register(named("db", "svc"), 1).unwrap();
    let pool = dep(&r, "pool", &[db, db]);
    let conn = dep(&r, "conn", &[pool]);
    assert_eq!(r.dependencies(pool).unwrap(), [db], "repeats count once");
    assert_eq!(r.dependents(db).unwrap(), [pool]);
    assert_eq!(r.dependencies(db).unwrap(), Vec::<u64>::new());

    // Added later, by a caller: in the audit trail with the other handle.
    assert_eq!(r.add_dependency(conn, db, &svc(), 5), Ok(true));
    assert_eq!(r.add_dependency(conn, db, &svc(), 5), Ok(false));
    assert_eq!(r.dependencies(conn).unwrap(), [pool, db]);
    assert_eq!(sorted(r.dependents(db).unwrap()), sorted(vec![pool, conn]));
    let last = &r.audit(Some(conn), 1)[0];
    assert_eq!(
        (last.action, last.actor.as_str(), last.on),
        (Action::DependencyAdded, "svc", Some(db))
    );
    assert_eq!(r.dependents_transitive(db).unwrap(), [pool, conn]);
    assert_eq!(r.dependencies_transitive(conn).unwrap(), [pool, db]);

    // Removed.
    assert_eq!(r.remove_dependency(conn, db, &svc(), 6), Ok(true));
    assert_eq!(r.remove_dependency(conn, db, &svc(), 6), Ok(false));
    assert_eq!(r.dependencies(conn).unwrap(), [pool]);
    assert_eq!(r.dependents(db).unwrap(), [pool]);
    assert_eq!(r.audit(Some(conn), 1)[0].action, Action::DependencyRemoved);
    assert!(r.cycles().is_empty());
}

#[test]
fn unknown_handles_and_bounds_are_refused_by_name() {
    let r = Registry::with_options(
        RegistryLimits::default(),
        RegistryOptions {
            max_dependencies: 2,
            max_edges: 3,
            ..RegistryOptions::default()
        },
    );
    let a = r.register(named("a", "svc"), 1).unwrap();
    let gone = r.register(named("gone", "svc"), 1).unwrap();
    assert!(r.release(gone));

    // At registration: refused whole, nothing registered.
    let err = r
        .register_with_dependencies(named("x", "svc"), &[a, gone], 1)
        .unwrap_err();
    assert_eq!(
        err,
        RegisterError::Dependency(DependencyError::UnknownDependency { handle: gone })
    );
    assert!(err.to_string().contains(&gone.to_string()), "{err}");
    assert_eq!(r.len(), 1);

    // Later: either end unknown, named.
    let b = r.register(named("b", "svc"), 1).unwrap();
    assert_eq!(
        r.add_dependency(gone, a, &svc(), 1),
        Err(DependencyError::UnknownResource { handle: gone })
    );
    assert_eq!(
        r.add_dependency(b, gone, &svc(), 1),
        Err(DependencyError::UnknownDependency { handle: gone })
    );
    assert_eq!(
        r.remove_dependency(b, 12345, &svc(), 1),
        Err(DependencyError::UnknownDependency { handle: 12345 })
    );
    assert_eq!(
        r.dependents(gone),
        Err(DependencyError::UnknownResource { handle: gone })
    );

    // Per resource.
    let c = r.register(named("c", "svc"), 1).unwrap();
    assert_eq!(r.add_dependency(c, a, &svc(), 1), Ok(true));
    assert_eq!(r.add_dependency(c, b, &svc(), 1), Ok(true));
    let err = r.add_dependency(c, c, &svc(), 1).unwrap_err();
    assert_eq!(
        err,
        DependencyError::TooManyDependencies {
            handle: c,
            limit: 2
        }
    );
    assert!(err.to_string().contains("max_dependencies"), "{err}");
    let err = r
        .register_with_dependencies(named("y", "svc"), &[a, b, c], 1)
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegisterError::Dependency(DependencyError::TooManyAtRegistration {
                given: 3,
                limit: 2
            })
        ),
        "{err}"
    );

    // In total: three held, a fourth is refused, naming the bound.
    assert_eq!(r.add_dependency(b, a, &svc(), 1), Ok(true));
    let err = r.add_dependency(a, b, &svc(), 1).unwrap_err();
    assert!(
        matches!(
            err,
            DependencyError::TooManyEdges {
                edges: 3,
                limit: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("max_edges"), "{err}");
    // A release frees its edges for others.
    assert!(r.release_with(c, &svc(), ReleaseMode::Refuse, 2).is_ok());
    assert_eq!(r.add_dependency(a, b, &svc(), 1), Ok(true));
}

#[test]
fn cycles_are_accepted_and_reported_by_the_api_and_the_scan() {
    let r = Registry::default();
    let a = r.register(named("a", "svc"), 1).unwrap();
    let b = dep(&r, "b", &[a]);
    let c = dep(&r, "c", &[b]);
    let lone = r.register(named("lone", "svc"), 1).unwrap();
    assert!(r.cycles().is_empty());
    assert_eq!(r.scan(1).cycles, 0);
    // a → c closes a → c → b → a; lone depends on itself.
    assert_eq!(r.add_dependency(a, c, &svc(), 2), Ok(true));
    assert_eq!(r.add_dependency(lone, lone, &svc(), 2), Ok(true));
    let cycles = r.cycles();
    assert_eq!(cycles.len(), 2, "{cycles:?}");
    assert!(cycles.contains(&vec![a, b, c]), "{cycles:?}");
    assert!(cycles.contains(&vec![lone]), "{cycles:?}");
    let scan = r.scan(2);
    assert_eq!(scan.cycles, 2);
    assert_eq!(
        sorted(scan.first_cycles.concat()),
        sorted(vec![a, b, c, lone])
    );
    // Plugins see each member's cycle as a label: its first member's handle.
    let cycle_of = |r: &Registry| -> BTreeMap<u64, String> {
        let set = r.list(&ResourceFilter::default());
        (0..set.len())
            .filter_map(|i| {
                set.labels(i)
                    .find(|(k, _)| *k == CYCLE_LABEL)
                    .map(|(_, v)| (set.handle(i).unwrap(), v.to_owned()))
            })
            .collect()
    };
    let abc = cycles.iter().find(|c| c.len() == 3).unwrap()[0].to_string();
    assert_eq!(
        cycle_of(&r),
        BTreeMap::from([
            (a, abc.clone()),
            (b, abc.clone()),
            (c, abc),
            (lone, lone.to_string())
        ])
    );
    // Broken: reported no more.
    assert_eq!(r.remove_dependency(b, a, &svc(), 3), Ok(true));
    assert_eq!(r.cycles(), vec![vec![lone]]);
    assert_eq!(cycle_of(&r).len(), 1);
    // Depending on itself does not stop its own release.
    assert!(r.release(lone));
    assert!(r.cycles().is_empty());
}

#[test]
fn a_release_with_live_dependents_is_refused_naming_them() {
    let r = Registry::default();
    let db = r.register(named("db", "svc"), 1).unwrap();
    let p1 = dep(&r, "p1", &[db]);
    let p2 = dep(&r, "p2", &[db]);
    let err = r
        .release_with(db, &svc(), ReleaseMode::Refuse, 5)
        .unwrap_err();
    assert_eq!(
        err,
        ReleaseError::HasDependents {
            handle: db,
            dependents: vec![p1, p2],
        }
    );
    let text = err.to_string();
    assert!(
        text.contains(&p1.to_string()) && text.contains(&p2.to_string()),
        "{text}"
    );
    // The older functions refuse too: nothing is released from under p1.
    assert_eq!(r.release_by(db, &svc(), 5), None);
    assert_eq!(r.release_by_policy(db, "leases", 5), None);
    assert!(!r.release(db));
    assert!(matches!(r.lookup(db), Lookup::Live(_)));
    // Once they are gone, it goes.
    assert!(r.release(p1) && r.release(p2));
    let out = r.release_with(db, &svc(), ReleaseMode::Refuse, 6).unwrap();
    assert_eq!((out.size_bytes, out.cascaded.len()), (64, 0));
    assert_eq!(
        r.release_with(db, &svc(), ReleaseMode::Refuse, 6),
        Err(ReleaseError::Unknown { handle: db })
    );
}

#[test]
fn a_cascade_releases_dependents_first_in_the_audit_trail() {
    let r = Registry::default();
    // conn → pool → db, cache → db, report → {conn, cache}; other is apart.
    let db = r.register(named("db", "svc"), 1).unwrap();
    let pool = dep(&r, "pool", &[db]);
    let cache = dep(&r, "cache", &[db]);
    let conn = dep(&r, "conn", &[pool]);
    let report = dep(&r, "report", &[conn, cache]);
    let other = r.register(named("other", "svc"), 1).unwrap();
    let out = r
        .release_with(db, &Actor::Caller("ops".into()), ReleaseMode::Cascade, 10)
        .unwrap();
    let order: Vec<u64> = out.cascaded.iter().map(|c| c.handle).collect();
    assert_eq!(
        sorted(order.clone()),
        sorted(vec![pool, cache, conn, report])
    );
    let pos = |h: u64| order.iter().position(|x| *x == h).unwrap();
    assert!(pos(report) < pos(conn) && pos(conn) < pos(pool));
    assert!(pos(report) < pos(cache));
    assert!(out.cycles.is_empty());
    assert_eq!(r.len(), 1);
    assert!(matches!(r.lookup(other), Lookup::Live(_)));

    // The trail, oldest first: each dependent before what it depends on,
    // each by the actor, as a cascade from db; db last, as forced (ops is
    // not its owner).
    let mut trail = r.audit(None, 5);
    trail.reverse();
    let seen: Vec<(u64, Action, &str, Option<u64>)> = trail
        .iter()
        .map(|e| (e.handle, e.action, e.actor.as_str(), e.on))
        .collect();
    let mut want: Vec<(u64, Action, &str, Option<u64>)> = order
        .iter()
        .map(|h| (*h, Action::CascadeRelease, "ops", Some(db)))
        .collect();
    want.push((db, Action::ForcedRelease, "ops", None));
    assert_eq!(seen, want);
}

#[test]
fn a_cycle_in_a_cascade_is_released_as_one_group_and_reported() {
    let r = Registry::default();
    let base = r.register(named("base", "svc"), 1).unwrap();
    let a = dep(&r, "a", &[base]);
    let b = dep(&r, "b", &[a]);
    assert_eq!(r.add_dependency(a, b, &svc(), 1), Ok(true));
    let top = dep(&r, "top", &[b]);
    let out = r
        .release_with(base, &Actor::Policy("gc".into()), ReleaseMode::Cascade, 10)
        .unwrap();
    assert_eq!(out.cycles, vec![vec![a, b]]);
    let order: Vec<u64> = out.cascaded.iter().map(|c| c.handle).collect();
    assert_eq!(order[0], top, "what depends on the cycle goes first");
    assert_eq!(sorted(order[1..].to_vec()), sorted(vec![a, b]));
    assert!(r.is_empty());
    // A policy's cascade is remembered as the policy's release.
    assert!(
        matches!(r.lookup(a), Lookup::Released(Released { ref by_policy, .. }) if by_policy == "gc")
    );

    // A cascade from inside a cycle: the whole group goes.
    let x = r.register(named("x", "svc"), 1).unwrap();
    let y = dep(&r, "y", &[x]);
    assert_eq!(r.add_dependency(x, y, &svc(), 1), Ok(true));
    let out = r.release_with(x, &svc(), ReleaseMode::Cascade, 11).unwrap();
    assert_eq!(out.cycles, vec![vec![x, y]]);
    assert_eq!(out.cascaded.len(), 1);
    assert!(r.is_empty() && r.cycles().is_empty());
}

fn open(dir: &Path, opts: RegistryOptions) -> Registry {
    Registry::open(dir, RegistryLimits::default(), opts, 1_000)
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

#[test]
fn dependencies_survive_a_restart_and_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("registry");
    let opts = RegistryOptions::default();
    let r = open(&dir, opts);
    let db = r.register(named("db", "svc"), 1).unwrap();
    let pool = dep(&r, "pool", &[db]);
    let gone = dep(&r, "gone", &[db]);
    // An older resource depending on a newer one, and a cycle.
    let late = r.register(named("late", "svc"), 2).unwrap();
    assert_eq!(r.add_dependency(db, late, &svc(), 3), Ok(true));
    assert_eq!(r.add_dependency(late, pool, &svc(), 3), Ok(true));
    assert_eq!(r.remove_dependency(late, pool, &svc(), 4), Ok(true));
    assert_eq!(r.add_dependency(late, late, &svc(), 4), Ok(true));
    assert!(r.release(gone));
    r.flush().unwrap();
    drop(r);

    let check = |r: &Registry| {
        assert_eq!(r.dependencies(pool).unwrap(), [db]);
        assert_eq!(r.dependents(db).unwrap(), [pool]);
        assert_eq!(r.dependencies(db).unwrap(), [late]);
        assert_eq!(sorted(r.dependents(late).unwrap()), sorted(vec![db, late]));
        assert_eq!(r.cycles(), vec![vec![late]]);
        assert_eq!(
            r.dependencies(gone),
            Err(DependencyError::UnknownResource { handle: gone })
        );
        let added = r.audit(Some(db), 1);
        assert_eq!(
            (added[0].action, added[0].on),
            (Action::DependencyAdded, Some(late))
        );
    };
    // From the log.
    let r = open(&dir, opts);
    check(&r);
    drop(r);

    // From a snapshot: compaction keeps them.
    let compacting = RegistryOptions {
        compact_records: 0,
        compact_bytes: 0,
        ..opts
    };
    let r = open(&dir, compacting);
    assert!(r.flush().unwrap().compacted);
    drop(r);
    let r = open(&dir, opts);
    check(&r);

    // A cascade after the restart removes the edges for good.
    let out = r
        .release_with(late, &svc(), ReleaseMode::Cascade, 9)
        .unwrap();
    assert_eq!(out.cascaded.len(), 2);
    r.flush().unwrap();
    drop(r);
    let r = open(&dir, opts);
    assert!(r.is_empty() && r.cycles().is_empty());
}

#[test]
fn a_state_directory_from_before_dependencies_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("registry");
    // Lines as the previous release wrote them: no dependency records, no
    // `on` in audit events.
    let r = open(&dir, RegistryOptions::default());
    drop(r);
    let log = r#"{"head":{"v":1,"generation":0,"next":0}}
{"reg":{"seq":1,"kind":"app-object","name":"a","owner":"svc","size":1,"created":1,"accessed":1}}
{"audit":{"seq":1,"at":1,"action":"register","by":"svc","name":"a"}}
"#;
    std::fs::write(dir.join(super::super::persist::LOG_FILE), log).unwrap();
    let r = open(&dir, RegistryOptions::default());
    assert_eq!(r.len(), 1);
    let h = r.views(&ResourceFilter::default(), None)[0].handle;
    assert_eq!(r.dependencies(h).unwrap(), Vec::<u64>::new());
    assert_eq!(r.audit(None, 1)[0].on, None);
}
