use warden_sdk::labels::{CYCLE_LABEL, ORPHAN_LABEL, TTL_LABEL};
use warden_sdk::mock::{MockHost, invocation};
use warden_sdk::resources::{NewResource, ResourceSet};

use super::*;

const NOW: i64 = 1_700_000_000_000;
const S: i64 = 10_000;

fn build(json: &str) -> Result<Leaks, Vec<warden_sdk::config::ConfigError>> {
    warden_sdk::config::build(json, Leaks::new)
}

/// 30 minutes at 10 s of `f(minute)`, ending at `NOW`.
fn samples(f: impl Fn(f64) -> f64) -> Vec<(i64, f64)> {
    (0..180)
        .map(|i| (NOW - (179 - i) * S, f(i as f64 / 6.0).round()))
        .collect()
}

#[test]
fn a_process_leaking_descriptors_is_found_with_its_evidence_and_the_steady_one_is_not() {
    let leaking = samples(|m| 50.0 + 3.0 * m);
    let steady = samples(|m| 50.0 + (m * 7.0).sin() * 4.0);
    MockHost::new()
        .now_ms(NOW)
        .series(Series::new(
            "process_open_fds",
            &[("process", "api"), ("type", "socket")],
            &leaking,
        ))
        .series(Series::new(
            "process_open_fds",
            &[("process", "db"), ("type", "file")],
            &steady,
        ))
        .install();
    let d = build(r#"{"registered": false}"#).unwrap();
    let found = d.detect(&invocation("leaks")).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(f.pattern, "fd-leak");
    assert_eq!(f.subject, "process_open_fds");
    assert!(
        f.identity_labels()
            .any(|l| l.key == "process" && l.value == "api")
    );
    assert!((f.evidence_of("slope_per_min").unwrap() - 3.0).abs() < 0.2);
    assert!((f.evidence_of("duration_s").unwrap() - 1790.0).abs() < 1.0);
    assert_eq!(f.evidence_of("count"), Some(leaking.last().unwrap().1));
    assert!(f.confidence > 0.99);
    assert!(f.recommendation.contains("`api`"), "{}", f.recommendation);
    // The default watch list asks for each inventory once.
    let metrics: Vec<String> = warden_sdk::mock::queries()
        .into_iter()
        .map(|q| q.0)
        .collect();
    assert_eq!(
        metrics,
        [
            "process_open_fds",
            "process_tcp_connections",
            "process_threads",
            "process_resident_memory_bytes"
        ]
    );
}

#[test]
fn a_capacity_predicts_exhaustion_and_makes_it_critical_when_near() {
    // 2 MiB a minute, 10 MiB below a 600 MiB capacity.
    let mib = 1024.0 * 1024.0;
    let rss = samples(|m| 530.0 * mib + 2.0 * mib * m);
    MockHost::new()
        .now_ms(NOW)
        .series(Series::new(
            "process_resident_memory_bytes",
            &[("process", "api")],
            &rss,
        ))
        .install();
    let d = build(&format!(
        r#"{{"registered": false, "watch": [{{"metric": "process_resident_memory_bytes",
             "pattern": "memory-leak", "min_growth": {}, "capacity": {}}}]}}"#,
        16.0 * mib,
        600.0 * mib
    ))
    .unwrap();
    let found = d.detect(&invocation("leaks")).unwrap();
    assert_eq!(found.len(), 1);
    let eta_min = found[0].exhaustion_in_ms.unwrap() as f64 / 60_000.0;
    assert!((eta_min - 5.0).abs() < 1.0, "{eta_min}");
    assert_eq!(found[0].severity, Severity::Critical);
}

#[test]
fn registered_resources_expired_orphaned_or_in_a_cycle_are_reported_per_owner_and_cycle() {
    let mut b = ResourceSet::builder();
    let push = |b: &mut warden_sdk::resources::ResourceSetBuilder,
                owner: &str,
                size: u64,
                accessed: i64,
                labels: &[(&str, &str)]| {
        b.push(NewResource {
            kind: Some(warden_sdk::resources::ResourceKind::AppObject),
            name: "conn",
            owner,
            size_bytes: size,
            accessed_ms: Some(accessed),
            labels,
            ..Default::default()
        });
    };
    // Two of `cache` idle 10 minutes past a 1-minute TTL, one fresh.
    push(&mut b, "cache", 100, NOW - 600_000, &[(TTL_LABEL, "60000")]);
    push(&mut b, "cache", 50, NOW - 120_000, &[(TTL_LABEL, "60000")]);
    push(&mut b, "cache", 7, NOW - 1_000, &[(TTL_LABEL, "60000")]);
    // One orphan of `worker` since a minute ago; no TTL.
    push(
        &mut b,
        "worker",
        10,
        NOW,
        &[(ORPHAN_LABEL, &(NOW - 60_000).to_string())],
    );
    // A cycle of two, across owners.
    push(&mut b, "a", 1, NOW, &[(CYCLE_LABEL, "77")]);
    push(&mut b, "b", 1, NOW, &[(CYCLE_LABEL, "77")]);
    // A user label that looks like nothing the host sets.
    push(&mut b, "quiet", 1, NOW - 900_000, &[("ttl_ms", "1")]);
    MockHost::new().now_ms(NOW).resources(b.build()).install();
    let d = build(r#"{"watch": []}"#).unwrap();
    let found = d.detect(&invocation("leaks")).unwrap();
    let by = |p: &str| found.iter().filter(|f| f.pattern == p).collect::<Vec<_>>();
    let expired = by("expired-resources");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].subject, "cache");
    assert_eq!(expired[0].evidence_of("count"), Some(2.0));
    assert_eq!(expired[0].evidence_of("bytes"), Some(150.0));
    assert_eq!(expired[0].evidence_of("oldest_idle_s"), Some(600.0));
    let orphans = by("orphaned-resources");
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].subject, "worker");
    assert_eq!(orphans[0].evidence_of("orphaned_s"), Some(60.0));
    let cycles = by("dependency-cycle");
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].evidence_of("members"), Some(2.0));
    assert!(cycles[0].recommendation.contains("a, b"));
    assert_eq!(found.len(), 3, "{found:?}");
}

#[test]
fn configs_that_cannot_work_are_refused_at_their_field() {
    let field = |json: &str| build(json).err().unwrap()[0].path.clone();
    assert_eq!(field(r#"{"window": "0s"}"#), "window");
    assert_eq!(
        field(r#"{"window": "5m", "min_duration": "10m"}"#),
        "min_duration"
    );
    assert_eq!(field(r#"{"window": "20m", "min_rise": "30m"}"#), "min_rise");
    assert_eq!(field(r#"{"min_samples": 3}"#), "min_samples");
    assert_eq!(field(r#"{"watch": [], "registered": false}"#), "watch");
    assert_eq!(
        field(r#"{"watch": [{"metric": "m", "pattern": "p", "min_growth": 0}]}"#),
        "watch[0].min_growth"
    );
    assert_eq!(
        field(r#"{"watch": [{"metric": "m", "pattern": "p", "min_growth": 1, "capacity": -1}]}"#),
        "watch[0].capacity"
    );
    assert_eq!(field(r#"{"windw": "5m"}"#), "windw");
    assert!(build("{}").is_ok());
}
