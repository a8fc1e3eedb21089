//! Every guest component called end to end through the host: real component,
//! real engine, fresh store per call, data served by the host imports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use warden::clock::now_ms;
use warden::metrics::SeriesStore;
use warden::plugin::records::{
    AlertCondition, Attempt, CleanupAction, ErrorClass, Failure, NewResource, Outcome,
    RecoveryDecision, ResourceKind, ResourceSet, Severity,
};
use warden::plugin::{EvalFailure, Kind, Limits};
use warden::resources::{Registration, Registry};
use warden::sources::Sources;
use warden_plugins as guests;

use crate::util::{bind, bind_with, engine, load, relaxed};

warden_plugins::foreach_cleanup!(assert_test_exists);
warden_plugins::foreach_recovery!(assert_test_exists);
warden_plugins::foreach_alert!(assert_test_exists);
warden_plugins::foreach_detector!(assert_test_exists);

const MIN: i64 = 60_000;

#[test]
fn temp_files() {
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::TEMP_FILES_COMPONENT, Kind::Cleanup);
    let policy = bind(
        &plugin,
        "tmp",
        &json!({ "max_age": "1h", "max_total_bytes": 150 }),
        relaxed(),
    );
    let now = now_ms();
    let mut set = ResourceSet::default();
    for (name, age, size) in [
        ("/scratch/old", 120 * MIN, 10),
        ("/scratch/mid", 30 * MIN, 100),
        ("/scratch/new", 10 * MIN, 100),
        ("/scratch/now", 0, 10),
    ] {
        set.push(NewResource {
            name,
            size_bytes: size,
            modified_ms: Some(now - age),
            ..Default::default()
        });
    }
    let plan = policy.plan(true, set).unwrap();
    let got: Vec<(CleanupAction, &str)> = plan
        .actions
        .iter()
        .enumerate()
        .map(|(i, (a, _))| (a.clone(), plan.reason(i)))
        .collect();
    assert_eq!(
        got,
        vec![
            (CleanupAction::DeletePath(0), "older than max_age"),
            (
                CleanupAction::DeletePath(1),
                "over max_total_bytes, oldest first"
            ),
        ]
    );

    // A config the plugin cannot use is the plugin's error, naming the field.
    let bad = bind(
        &plugin,
        "tmp",
        &json!({ "max_age": "1h", "maxage": 1 }),
        relaxed(),
    );
    let err = bad.plan(false, ResourceSet::default()).unwrap_err();
    assert!(
        matches!(&err.failure, EvalFailure::InvalidConfig(e) if e[0].message.contains("maxage")),
        "{err}"
    );
    assert!(err.to_string().contains("policy `tmp`"), "{err}");
}

#[test]
fn memory() {
    // The guest of `warm.rs`: one evaluation here, the behaviours there.
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::MEMORY_COMPONENT, Kind::Alert);
    let policy = bind(&plugin, "mem", &json!({}), Limits::default());
    let alerts = policy.evaluate_alerts().unwrap();
    let names: Vec<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["Served", "Inits", "Stored"]);
}

#[test]
fn refuser() {
    // The guest of the recovery tests' `on_failure` cases: its config loads,
    // every decision fails with its reason.
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::REFUSER_COMPONENT, Kind::Recovery);
    let policy = bind(
        &plugin,
        "r",
        &json!({ "reason": "broken on purpose" }),
        Limits::default(),
    );
    let failure = Failure {
        operation: "svc.get".into(),
        class: ErrorClass::Timeout,
        message: "x".into(),
        attempt: 1,
        first_failed_ms: 0,
        seed: 1,
    };
    let err = policy.decide(&failure, &[]).unwrap_err();
    assert!(
        err.to_string().contains("broken on purpose (`svc.get`)"),
        "{err}"
    );
}

#[test]
fn backoff() {
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::BACKOFF_COMPONENT, Kind::Recovery);
    let policy = bind(
        &plugin,
        "db",
        &json!({ "base": "100ms", "max": "1s", "jitter": 0, "open_circuit_after": 3 }),
        relaxed(),
    );
    let failure = |attempt, class| Failure {
        operation: "db.query".into(),
        class,
        message: "x".into(),
        attempt,
        first_failed_ms: 0,
        seed: 1,
    };
    assert_eq!(
        policy
            .decide(&failure(1, ErrorClass::Timeout), &[])
            .unwrap(),
        RecoveryDecision::RetryAfter(100)
    );
    assert_eq!(
        policy
            .decide(&failure(3, ErrorClass::Timeout), &[])
            .unwrap(),
        RecoveryDecision::RetryAfter(400)
    );
    assert!(
        matches!(policy.decide(&failure(1, ErrorClass::InvalidInput), &[]).unwrap(), RecoveryDecision::GiveUp(m) if m.contains("invalid-input"))
    );
    let failed = Attempt {
        at_ms: 0,
        outcome: Outcome::Failure,
        duration_ms: 5,
    };
    assert_eq!(
        policy
            .decide(&failure(4, ErrorClass::Timeout), &[failed; 3])
            .unwrap(),
        RecoveryDecision::OpenCircuit(30_000)
    );
}

#[test]
fn threshold() {
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::THRESHOLD_COMPONENT, Kind::Alert);
    let sources = Sources::default();
    let now = now_ms();
    for (host, v) in [("a", 0.95), ("b", 0.5), ("c", 0.85)] {
        sources
            .series
            .record("memory_used_ratio", &[("host", host)], now - 1000, v)
            .unwrap();
    }
    let config = json!({ "rules": [
        { "alert": "HighMemory", "metric": "memory_used_ratio", "condition": "gt", "threshold": 0.9, "clear_threshold": 0.8,
          "severity": "critical", "for": "2m", "summary": "memory above 90%" },
        { "alert": "NoData", "metric": "absent_metric", "condition": "gt", "threshold": 0 }
    ]});
    let policy = bind_with(&plugin, "memory", &config, relaxed(), Arc::new(sources));
    let mut alerts = policy.evaluate_alerts().unwrap();
    alerts.sort_by(|a, b| a.labels.cmp(&b.labels));
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let (a, c) = (&alerts[0], &alerts[1]);
    assert_eq!(
        (a.name.as_str(), a.condition, a.severity, a.value, a.for_ms),
        (
            "HighMemory",
            AlertCondition::Firing,
            Severity::Critical,
            0.95,
            Some(120_000)
        )
    );
    assert_eq!(a.labels, vec![("host".to_string(), "a".to_string())]);
    assert!(
        a.annotations
            .contains(&("summary".into(), "memory above 90%".into()))
    );
    assert_eq!(
        (c.condition, c.labels[0].1.as_str()),
        (AlertCondition::Holding, "c")
    );
}

#[test]
fn linear_trend() {
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::LINEAR_TREND_COMPONENT, Kind::Detector);
    let sources = Sources::default();
    let now = now_ms();
    // Disk fills by 1 GB a minute on sda and stays flat on sdb.
    for i in 0..30 {
        let at = now - (29 - i) * MIN;
        sources
            .series
            .record(
                "disk_used_bytes",
                &[("disk", "sda")],
                at,
                50e9 + i as f64 * 1e9,
            )
            .unwrap();
        sources
            .series
            .record("disk_used_bytes", &[("disk", "sdb")], at, 10e9)
            .unwrap();
    }
    let config =
        json!({ "metric": "disk_used_bytes", "capacity": 100e9, "window": "1h", "horizon": "2h" });
    let policy = bind_with(&plugin, "disk", &config, relaxed(), Arc::new(sources));
    let found = policy.detect().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(
        (f.pattern.as_str(), f.labels[0].1.as_str()),
        ("linear-growth", "sda")
    );
    // At 79 GB now, 21 GB to go at 1 GB/min: 21 minutes.
    let eta = f.exhaustion_in_ms.unwrap() as i64;
    assert!((eta - 21 * MIN).abs() < 5_000, "eta {eta}");
    assert!(f.confidence > 0.99);
}

#[test]
fn anomaly() {
    // Two hours of a steady series with a little noise on two hosts; on `b`
    // the newest sample jumps far off.
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::ANOMALY_COMPONENT, Kind::Detector);
    let sources = Sources::default();
    let now = now_ms();
    for i in 0..120 {
        let at = now - (119 - i) * MIN;
        let wobble = ((i * 7919) % 11) as f64 * 0.1;
        for host in ["a", "b"] {
            let jump = if host == "b" && i == 119 { 50.0 } else { 0.0 };
            sources
                .series
                .record("latency_ms", &[("host", host)], at, 20.0 + wobble + jump)
                .unwrap();
        }
    }
    let config = json!({ "metric": "latency_ms", "window": "3h" });
    let policy = bind_with(
        &plugin,
        "latency",
        &config,
        Limits::default(),
        Arc::new(sources),
    );
    let found = policy.detect().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(
        (f.pattern.as_str(), f.labels.as_slice()),
        ("anomaly", &[("host".to_string(), "b".to_string())][..])
    );
    assert_eq!(f.severity, Severity::Critical);
    // Evidence travels apart from the labels.
    let evidence = |name: &str| f.evidence.iter().find(|(n, _)| n == name).map(|e| e.1);
    assert_eq!(
        evidence("value"),
        Some(20.0 + ((119 * 7919) % 11) as f64 * 0.1 + 50.0)
    );
    assert!(evidence("score").unwrap() > 10.0, "{:?}", f.evidence);
}

#[test]
fn spike() {
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::SPIKE_COMPONENT, Kind::Detector);
    let sources = Sources::default();
    let now = now_ms();
    // 55 minutes (the store keeps an hour by default); every 10 minutes a spike.
    for i in 0..55 {
        let v = if i % 10 == 3 {
            90.0
        } else {
            10.0 + (i % 3) as f64
        };
        sources
            .series
            .record("cpu_percent", &[], now - (54 - i) * MIN, v)
            .unwrap();
    }
    let config = json!({ "metric": "cpu_percent", "window": "1h", "severity": "warning" });
    let policy = bind_with(
        &plugin,
        "spikes",
        &config,
        Limits::default(),
        Arc::new(sources),
    );
    let found = policy.detect().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(
        (f.pattern.as_str(), f.severity),
        ("periodic-spike", Severity::Warning)
    );
    assert!(
        f.evidence.contains(&("period_s".to_string(), 600.0)),
        "{:?}",
        f.evidence
    );
}

#[test]
fn underutilization() {
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::UNDERUTILIZATION_COMPONENT, Kind::Detector);
    let sources = Sources::default();
    let now = now_ms();
    for i in 0..=120 {
        let at = now - (120 - i) * MIN;
        for (process, used) in [("idle", 1e8), ("busy", 7e8)] {
            sources
                .series
                .record(
                    "process_resident_memory_bytes",
                    &[("process", process)],
                    at,
                    used,
                )
                .unwrap();
        }
    }
    let config =
        json!({ "metric": "process_resident_memory_bytes", "capacity": 1e9, "window": "2h" });
    let policy = bind_with(
        &plugin,
        "sizing",
        &config,
        Limits::default(),
        Arc::new(sources),
    );
    let found = policy.detect().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(f.labels, vec![("process".to_string(), "idle".to_string())]);
    assert!(
        f.evidence.contains(&("waste".to_string(), 1e9 - 1.25e8)),
        "{:?}",
        f.evidence
    );
}

#[test]
fn leaks() {
    // Through the component, with the host's own store and registry: a
    // process leaking descriptors beside one whose collector saws, and
    // registered resources expired, orphaned and in a cycle.
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::LEAKS_COMPONENT, Kind::Detector);
    let sources = Sources::default();
    let now = now_ms();
    for i in 0..180i64 {
        let at = now - (179 - i) * 10_000;
        let leaking = 40.0 + (i / 2) as f64; // 3 a minute
        let sawing = 40.0 + (i % 24) as f64 * 2.0; // back to 40 every 4 minutes
        for (process, v) in [("api", leaking), ("gc", sawing)] {
            sources
                .series
                .record(
                    "process_open_fds",
                    &[("process", process), ("type", "file")],
                    at,
                    v,
                )
                .unwrap();
        }
    }
    let reg = |name: &str, owner: &str, pid: Option<u32>, ttl_ms: Option<u64>| Registration {
        kind: ResourceKind::AppObject,
        name: name.into(),
        owner: owner.into(),
        size_bytes: 10,
        pid,
        labels: Vec::new(),
        ttl_ms,
    };
    let r = &sources.resources;
    r.register(reg("stale", "cache", None, Some(60_000)), now - 10 * MIN)
        .unwrap();
    r.register(reg("fresh", "cache", None, Some(60_000)), now)
        .unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    r.register(reg("job", "worker", Some(child.id()), None), now)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(r.sweep_orphans(now).orphaned.len(), 1);
    let a = r.register(reg("a", "pool", None, None), now).unwrap();
    let b = r
        .register_with_dependencies(reg("b", "pool", None, None), &[a], now)
        .unwrap();
    let actor = warden::resources::Actor::Caller("pool".into());
    r.add_dependency(a, b, &actor, now).unwrap();

    let policy = bind_with(
        &plugin,
        "leaks",
        &json!({}),
        Limits::default(),
        Arc::new(sources),
    );
    let found = policy.detect().unwrap();
    let mut got: Vec<(&str, &str)> = found
        .iter()
        .map(|f| (f.pattern.as_str(), f.subject.as_str()))
        .collect();
    got.sort_unstable();
    // A cycle is named by its first member in registration order.
    let cycle = a.to_string();
    assert_eq!(
        got,
        [
            ("dependency-cycle", cycle.as_str()),
            ("expired-resources", "cache"),
            ("fd-leak", "process_open_fds"),
            ("orphaned-resources", "worker"),
        ],
        "{found:?}"
    );
    let fd = found.iter().find(|f| f.pattern == "fd-leak").unwrap();
    assert!(
        fd.labels
            .contains(&("process".to_string(), "api".to_string()))
    );
    let slope = fd
        .evidence
        .iter()
        .find(|(k, _)| k == "slope_per_min")
        .unwrap()
        .1;
    assert!((slope - 3.0).abs() < 0.1, "{slope}");
}

#[test]
fn adversary() {
    // Behaving modes of the adversary: the host serves resources through
    // `list-resources` and checks every index a plan returns.
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::ADVERSARY_COMPONENT, Kind::Cleanup);
    let mut set = ResourceSet::default();
    for n in ["/a", "/b", "/c"] {
        set.push(NewResource {
            name: n,
            kind: Some(ResourceKind::File),
            ..Default::default()
        });
    }
    let all = bind(&plugin, "all", &json!({ "mode": "delete-all" }), relaxed())
        .plan(true, set.clone())
        .unwrap();
    assert_eq!(all.actions.len(), 3);
    let err = bind(&plugin, "bad", &json!({ "mode": "bad-index" }), relaxed())
        .plan(true, set.clone())
        .unwrap_err();
    assert!(
        matches!(&err.failure, EvalFailure::InvalidOutput(m) if m.contains("targets candidate 8, but only 3")),
        "{err}"
    );
    // Plans cross in columns (WIT 0.2.0): columns that do not line up, or an
    // action code that does not exist, are refused before any row is read.
    for (mode, expected) in [
        (
            "bad-columns",
            "columns differ in length (kinds 2, targets 1",
        ),
        ("bad-code", "action 0 has code 9"),
    ] {
        let err = bind(&plugin, mode, &json!({ "mode": mode }), relaxed())
            .plan(true, set.clone())
            .unwrap_err();
        assert!(
            matches!(&err.failure, EvalFailure::InvalidOutput(m) if m.contains(expected)),
            "{mode}: {err}"
        );
    }
}

#[test]
fn sleeper() {
    // Blocked in a host call (`std::thread::sleep` of 30 s, a WASI clock
    // pollable), where epoch interruption cannot reach: still stopped at its
    // deadline, as a timeout. The bench `plugin_runtime` reports by how much
    // it overran.
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::SLEEPER_COMPONENT, Kind::Cleanup);
    let limits = Limits {
        timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let started = Instant::now();
    let err = bind(&plugin, "sleepy", &json!({ "sleep_ms": 30_000 }), limits)
        .plan(false, ResourceSet::default())
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        err.failure,
        EvalFailure::Timeout {
            limit: limits.timeout
        },
        "{err}"
    );
    assert!(
        took < Duration::from_secs(10),
        "a 30 s sleep under a 200 ms deadline ran {took:?}"
    );
    // A sleep within the deadline is fine: the plugin wakes and plans.
    let plan = bind(&plugin, "nap", &json!({ "sleep_ms": 20 }), relaxed())
        .plan(false, ResourceSet::default())
        .unwrap();
    assert_eq!(
        plan.actions,
        vec![(CleanupAction::Notify("awake".into()), 0)]
    );
}

#[test]
fn big_files() {
    // The README's twenty-line plugin, built from examples/big-files.
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::BIG_FILES_COMPONENT, Kind::Cleanup);
    let policy = bind(&plugin, "big", &json!({ "max_size_bytes": 100 }), relaxed());
    let mut set = ResourceSet::default();
    for (name, size) in [("/a", 10), ("/b", 1000), ("/c", 100)] {
        set.push(NewResource {
            name,
            size_bytes: size,
            ..Default::default()
        });
    }
    let plan = policy.plan(false, set).unwrap();
    assert_eq!(plan.actions, vec![(CleanupAction::DeletePath(1), 0)]);
    assert_eq!(plan.reason(0), "larger than max_size_bytes");
}

#[test]
fn the_sandbox_grants_no_files_env_args_or_network() {
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::ADVERSARY_COMPONENT, Kind::Cleanup);
    let err = bind(&plugin, "escape", &json!({ "mode": "escape" }), relaxed())
        .plan(false, ResourceSet::default())
        .unwrap_err();
    let EvalFailure::Plugin(report) = &err.failure else {
        panic!("{err}")
    };
    assert!(report.contains("fs=Err("), "{report}");
    assert!(report.contains("file=Err("), "{report}");
    assert!(report.contains("env=0"), "{report}");
    assert!(report.contains("args=0"), "{report}");
    assert!(report.contains("net=Err("), "{report}");
}

#[test]
fn list_resources_serves_the_registry() {
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::ADVERSARY_COMPONENT, Kind::Cleanup);
    let registry = Registry::default();
    let reg = |kind, name: &str| Registration {
        kind,
        name: name.into(),
        owner: "svc".into(),
        size_bytes: 5,
        pid: None,
        labels: vec![("pool".into(), "hot".into())],
        ttl_ms: None,
    };
    registry
        .register(reg(ResourceKind::AppObject, "cache/x"), now_ms())
        .unwrap();
    registry
        .register(reg(ResourceKind::Socket, "conn/1"), now_ms())
        .unwrap();
    let sources = Sources {
        resources: Arc::new(registry),
        series: Arc::new(SeriesStore::default()),
        discovered: Arc::default(),
    };
    let policy = bind_with(
        &plugin,
        "lister",
        &json!({ "mode": "list" }),
        relaxed(),
        Arc::new(sources),
    );
    let plan = policy.plan(false, ResourceSet::default()).unwrap();
    assert_eq!(
        plan.actions,
        vec![(CleanupAction::Notify("cache/x svc Some(\"hot\")".into()), 0)]
    );
}

#[test]
fn list_resources_serves_what_watched_processes_hold_when_asked_for_their_kind() {
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::ADVERSARY_COMPONENT, Kind::Cleanup);
    let registry = Registry::default();
    registry
        .register(
            Registration {
                kind: ResourceKind::Socket,
                name: "conn/1".into(),
                owner: "svc".into(),
                size_bytes: 0,
                pid: None,
                labels: Vec::new(),
                ttl_ms: None,
            },
            now_ms(),
        )
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let discovered = warden::resources::discover::Discovered::default();
    discovered.replace(
        warden::resources::discover::Discoverer::new(Default::default())
            .discover(&[("me".into(), vec![std::process::id()])], now_ms()),
    );
    let sources = Sources {
        resources: Arc::new(registry),
        series: Arc::new(SeriesStore::default()),
        discovered: Arc::new(discovered),
    };
    let policy = bind_with(
        &plugin,
        "lister",
        &json!({ "mode": "list-sockets" }),
        relaxed(),
        Arc::new(sources),
    );
    let plan = policy.plan(false, ResourceSet::default()).unwrap();
    let said: Vec<String> = plan
        .actions
        .iter()
        .filter_map(|(a, _)| match a {
            CleanupAction::Notify(m) => Some(m.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(said[0], "conn/1 svc None", "registered first: {said:?}");
    let mine = format!("tcp {} me Some(\"listen\")", listener.local_addr().unwrap());
    assert!(said.contains(&mine), "{mine} in {said:?}");
}

#[test]
fn plugin_output_goes_to_the_log_tagged_with_the_plugin() {
    use std::io::Write;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let (engine, _dir) = engine();
    let plugin = load(&engine, guests::ADVERSARY_COMPONENT, Kind::Cleanup);
    tracing::subscriber::with_default(subscriber, || {
        bind(&plugin, "chatty", &json!({ "mode": "print" }), relaxed())
            .plan(false, ResourceSet::default())
            .unwrap();
    });
    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    for expected in [
        "to stdout from the plugin",
        "to stderr from the plugin",
        "through the host log",
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(expected))
            .unwrap_or_else(|| panic!("missing `{expected}` in:\n{log}"));
        assert!(
            line.contains("policy=\"chatty\"") || line.contains("policy=chatty"),
            "{line}"
        );
        assert!(line.contains("warden_test_adversary.wasm"), "{line}");
    }
    assert!(
        log.contains("policy.evaluate"),
        "every evaluation has a span:\n{log}"
    );
}
