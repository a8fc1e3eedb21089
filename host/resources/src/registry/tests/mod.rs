use super::*;

fn reg(kind: ResourceKind, name: &str) -> Registration {
    Registration {
        kind,
        name: name.into(),
        owner: "svc".into(),
        size_bytes: 10,
        pid: None,
        labels: vec![("pool".into(), "a".into())],
        ttl_ms: None,
    }
}

#[test]
fn register_filter_touch_release() {
    let r = Registry::default();
    let a = r
        .register(reg(ResourceKind::AppObject, "cache/a"), 100)
        .unwrap();
    let _b = r
        .register(reg(ResourceKind::Socket, "conn/1"), 100)
        .unwrap();
    let c = r
        .register(reg(ResourceKind::AppObject, "cache/c"), 100)
        .unwrap();
    let only_cache = r.list(&ResourceFilter {
        kinds: vec![ResourceKind::AppObject],
        name_prefix: Some("cache/".into()),
        limit: None,
    });
    assert_eq!(only_cache.len(), 2);
    assert_eq!(only_cache.name(1), Some("cache/c"));
    assert!(r.touch(a, 500));
    let all = r.list(&ResourceFilter::default());
    assert_eq!(all.accessed_ms(0), Some(500));
    assert!(r.release(c) && !r.release(c));
    assert_eq!(
        r.list(&ResourceFilter {
            limit: Some(1),
            ..Default::default()
        })
        .len(),
        1
    );
    assert_eq!(r.list(&ResourceFilter::default()).len(), 2);
}

#[test]
fn handles_are_a_keyed_permutation_not_a_count() {
    let r = Registry::default();
    let handles: Vec<u64> = (0..1000)
        .map(|i| {
            r.register(reg(ResourceKind::AppObject, &format!("o/{i}")), 1)
                .unwrap()
        })
        .collect();
    let distinct: std::collections::BTreeSet<_> = handles.iter().collect();
    assert_eq!(distinct.len(), handles.len());
    assert!(handles.iter().all(|h| *h < 1 << 52), "exact in JSON");
    // Not a count: consecutive registrations are not neighbours.
    let adjacent = handles
        .windows(2)
        .filter(|w| w[1].abs_diff(w[0]) < 1000)
        .count();
    assert!(
        adjacent < 5,
        "{adjacent} of 999 neighbours: {:?}",
        &handles[..8]
    );
    // Another registry (another daemon run) numbers differently.
    let other = Registry::default();
    assert_ne!(
        other
            .register(reg(ResourceKind::AppObject, "o/0"), 1)
            .unwrap(),
        handles[0]
    );
    for (i, h) in handles.iter().enumerate() {
        assert_eq!(r.handles.decode(*h), Some(i as u64 + 1));
    }
    // A guessed neighbour is almost surely nobody.
    assert_eq!(r.lookup(handles[0] + 1), Lookup::Unknown);
    assert_eq!(r.lookup(u64::MAX), Lookup::Unknown);
}

#[test]
fn ttl_is_shown_to_plugins_and_policy_releases_are_remembered() {
    let r = Registry::default();
    let h = r
        .register(
            Registration {
                ttl_ms: Some(60_000),
                ..reg(ResourceKind::AppObject, "lease/1")
            },
            1_000,
        )
        .unwrap();
    let set = r.list(&ResourceFilter::default());
    assert!(set.labels(0).any(|(k, v)| k == TTL_LABEL && v == "60000"));
    match r.lookup(h) {
        Lookup::Live(v) => assert_eq!(v.expires_ms, Some(61_000)),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.release_by_policy(h, "leases", 70_000), Some(10));
    assert_eq!(r.release_by_policy(h, "leases", 70_000), None);
    assert_eq!(
        r.lookup(h),
        Lookup::Released(Released {
            by_policy: "leases".into(),
            at_ms: 70_000
        })
    );
    assert_eq!(r.lookup(999), Lookup::Unknown);
}

#[test]
fn a_full_registry_refuses_with_the_reason_and_takes_more_once_released() {
    let r = Registry::with_limits(RegistryLimits {
        max_tracked: 3,
        max_bytes: 1 << 20,
    });
    let handles: Vec<u64> = (0..3)
        .map(|i| {
            r.register(reg(ResourceKind::AppObject, &format!("c/{i}")), 0)
                .unwrap()
        })
        .collect();
    let full = r
        .register(reg(ResourceKind::AppObject, "c/3"), 0)
        .unwrap_err();
    assert_eq!(full, Full::Count { tracked: 3 });
    assert!(full.to_string().contains("resources.max_tracked"), "{full}");
    assert!(r.release(handles[0]));
    r.register(reg(ResourceKind::AppObject, "c/3"), 0).unwrap();

    // By bytes: one big registration fits, the next does not.
    let r = Registry::with_limits(RegistryLimits {
        max_tracked: 1000,
        max_bytes: 10_000,
    });
    let big = |n: &str| Registration {
        name: format!("{n}{}", "x".repeat(6000)),
        ..reg(ResourceKind::AppObject, "")
    };
    let h = r.register(big("a"), 0).unwrap();
    let full = r.register(big("b"), 0).unwrap_err();
    assert!(matches!(full, Full::Bytes { limit: 10_000, .. }), "{full}");
    assert!(r.release_by_policy(h, "p", 1).is_some());
    r.register(big("b"), 0).unwrap();
}

#[test]
fn listing_for_a_plugin_stops_at_its_budget() {
    let r = Registry::default();
    for i in 0..1000 {
        r.register(reg(ResourceKind::AppObject, &format!("cache/{i}")), 0)
            .unwrap();
    }
    let all = r
        .list_bounded(&ResourceFilter::default(), usize::MAX)
        .unwrap();
    assert_eq!(all.len(), 1000);
    let (part, needed) = *r
        .list_bounded(&ResourceFilter::default(), all.bytes() / 2)
        .unwrap_err();
    assert!(part.len() < 1000 && part.bytes() <= all.bytes() / 2);
    assert!(needed > all.bytes() / 2);
}

mod audit;
mod deps;
mod durable;
mod liveness;
mod requests;

/// A registration of `name` by `owner` with two labels.
fn named(name: &str, owner: &str) -> Registration {
    Registration {
        kind: ResourceKind::AppObject,
        name: name.into(),
        owner: owner.into(),
        size_bytes: 64,
        pid: None,
        labels: vec![("pool".into(), "a".into()), ("tenant".into(), "t1".into())],
        ttl_ms: None,
    }
}
