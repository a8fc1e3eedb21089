//! Resources through the daemon: registered ones across a restart, with
//! their audit trail and orphans; and discovery, a watched process (this
//! test, by pid) holding a listening socket and a child, read at an interval
//! and listed by `GET /api/v1/resources?kind=…&process=…`.

use std::process::Command;

use serde_json::json;

use crate::api::{QUIET, daemon};
use crate::daemon::Daemon;
use crate::http::{call, wait};

/// Plugins find the labels the registry writes by the SDK's names for them.
/// The host never depends on the guest SDK, so the two sets of constants
/// cannot be one: they are held equal here.
#[test]
fn the_sdk_names_the_labels_the_registry_writes() {
    use warden_resources::registry as host;
    use warden_sdk::labels as sdk;
    assert_eq!(sdk::TTL_LABEL, host::TTL_LABEL);
    assert_eq!(sdk::ORPHAN_LABEL, host::ORPHAN_LABEL);
    assert_eq!(sdk::CYCLE_LABEL, host::CYCLE_LABEL);
}

#[test]
fn registered_resources_keep_their_handles_and_trail_across_a_restart_and_orphans_show() {
    let d = daemon(&[], QUIET);
    let mut owner = Command::new("sleep").arg("60").spawn().unwrap();
    let register = |d: &Daemon, name: &str, pid: Option<u32>| {
        let (status, v) = call(
            "POST",
            &d.addr,
            "/api/v1/resources",
            Some(&json!({"kind": "app-object", "name": name, "owner": "svc", "pid": pid})),
        );
        assert_eq!(status, 201, "{v}");
        v["handle"].as_u64().unwrap()
    };
    let kept = register(&d, "cache/kept", Some(owner.id()));
    let gone = register(&d, "cache/gone", None);
    assert_eq!(
        call(
            "DELETE",
            &d.addr,
            &format!("/api/v1/resources/{gone}?owner=svc"),
            None
        )
        .0,
        204
    );
    // Past one flush of the log.
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    let dir = d.stop();

    let d = Daemon::start_in(dir, Some(QUIET));
    let (status, v) = call("GET", &d.addr, &format!("/api/v1/resources/{kept}"), None);
    assert_eq!(
        (status, &v["name"], &v["orphan"]),
        (200, &"cache/kept".into(), &false.into()),
        "{v}"
    );
    assert_eq!(
        call("GET", &d.addr, &format!("/api/v1/resources/{gone}"), None).0,
        404
    );
    // A new registration gets a handle never given before.
    let third = register(&d, "cache/third", None);
    assert!(third != kept && third != gone);
    let (_, trail) = call("GET", &d.addr, "/api/v1/resources/audit", None);
    let seen: Vec<(String, String)> = trail
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].to_string(), e["handle"].to_string()))
        .collect();
    assert!(
        seen.iter()
            .any(|(a, h)| a.contains("release") && *h == gone.to_string()),
        "{trail}"
    );
    assert!(
        seen.iter()
            .any(|(a, h)| a.contains("register") && *h == kept.to_string()),
        "{trail}"
    );

    // Its owner exits: within a sweep (15 s) it is an orphan.
    owner.kill().unwrap();
    owner.wait().unwrap();
    wait("the resource marked an orphan", 40, || {
        call("GET", &d.addr, &format!("/api/v1/resources/{kept}"), None).1["orphan"] == true
    });
}

#[test]
fn the_daemon_lists_what_a_watched_process_holds() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut child = Command::new("sleep").arg("60").spawn().unwrap();
    let me = std::process::id();
    let config = format!(
        "metrics:\n  collect:\n    interval: 1s\n    processes:\n      - {{name: tester, pid: {me}}}\n  persist:\n    enabled: false\nresources:\n  discovery:\n    every: 1s\n"
    );
    let d = daemon(&[], &config);
    let mut summary = serde_json::Value::Null;
    wait("a discovery cycle over the watched process", 30, || {
        summary = call("GET", &d.addr, "/api/v1/resources/discovery", None).1;
        summary["processes"][0]["process"] == "tester"
    });
    let p = &summary["processes"][0];
    assert_eq!(p["pid"], me);
    assert!(p["fds"].as_u64().unwrap() >= 4, "{summary}");
    // As root (the daemon's case) descriptors are read through the BPF
    // iterator; otherwise the answer says why not.
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(summary["method"], "bpf", "{summary}");
    } else {
        assert!(
            summary["method"].as_str().unwrap().starts_with("proc ("),
            "{summary}"
        );
    }
    assert!(p["threads"].as_u64().unwrap() >= 1, "{summary}");

    // Sockets of the process, by its selector's name.
    let (status, sockets) = call(
        "GET",
        &d.addr,
        "/api/v1/resources?kind=socket&process=tester",
        None,
    );
    assert_eq!(status, 200, "{sockets}");
    let name = format!("tcp {}", listener.local_addr().unwrap());
    let l = sockets
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} in {sockets}"));
    assert_eq!(
        (&l["labels"]["state"], &l["owner"], &l["source"], &l["pid"]),
        (
            &"listen".into(),
            &"tester".into(),
            &"discovered".into(),
            &me.into()
        ),
        "{l}"
    );
    assert!(
        sockets
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["kind"] == "socket"),
        "{sockets}"
    );

    // Its children, by pid.
    let (_, children) = call(
        "GET",
        &d.addr,
        &format!("/api/v1/resources?kind=process&process={me}"),
        None,
    );
    assert!(
        children
            .as_array()
            .unwrap()
            .iter()
            .any(
                |c| c["labels"]["child_pid"] == child.id().to_string().as_str()
                    && c["name"] == "sleep"
            ),
        "{children}"
    );
    // A process nobody watches holds nothing here.
    let (_, none) = call(
        "GET",
        &d.addr,
        "/api/v1/resources?kind=socket&process=nobody",
        None,
    );
    assert_eq!(none.as_array().map(Vec::len), Some(0), "{none}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A copy of `sleep` under `name`, started: its command is `name`.
fn named_sleeper(dir: &std::path::Path, name: &str) -> std::process::Child {
    let exe = dir.join(name);
    if !exe.exists() {
        let sleep = ["/usr/bin/sleep", "/bin/sleep"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("sleep");
        std::fs::copy(sleep, &exe).unwrap();
    }
    Command::new(&exe).arg("120").spawn().unwrap()
}

fn reaper(victim: &str, signals: &str, signal: i32, dry_run: bool) -> String {
    format!(
        "policies:\n  - name: reaper\n    kind: cleanup\n    plugin: {}\n    trigger: manual\n    dry_run: {dry_run}\n    scope:\n      processes: {{names: [{victim}]}}\n      signals: {signals}\n    config: {{mode: kill-all, count: {signal}}}\n",
        warden_plugins::ADVERSARY_COMPONENT
    )
}

#[test]
fn a_cleanup_policy_signals_only_the_processes_and_with_the_signals_its_scope_names() {
    use std::os::unix::process::ExitStatusExt as _;
    let bin = tempfile::tempdir().unwrap();
    // Names of this test only: tests beside it run `sleep` too.
    let victim = format!("wv{}", std::process::id());
    let bystander = format!("wb{}", std::process::id());
    let mut victims = [
        named_sleeper(bin.path(), &victim),
        named_sleeper(bin.path(), &victim),
    ];
    let mut other = named_sleeper(bin.path(), &bystander);
    let alive = |c: &mut std::process::Child| c.try_wait().unwrap().is_none();

    // A signal the scope does not name is refused; a dry run signals nothing.
    for (text, why) in [
        (reaper(&victim, "[TERM]", 9, false), "not in scope.signals"),
        (reaper(&victim, "[TERM]", 15, true), ""),
    ] {
        let d = daemon(&[("reaper.yaml", &text)], QUIET);
        let (status, runs) = call("POST", &d.addr, "/api/v1/policies/reaper/run", None);
        assert_eq!(status, 200, "{runs}");
        let shown = call(
            "GET",
            &d.addr,
            "/api/v1/cleanup/history?policy=reaper",
            None,
        )
        .1
        .to_string();
        assert!(shown.contains(why), "{why} in {shown}");
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(victims.iter_mut().all(alive), "{shown}");
    }

    let d = daemon(
        &[("reaper.yaml", &reaper(&victim, "[TERM]", 15, false))],
        QUIET,
    );
    let (status, runs) = call("POST", &d.addr, "/api/v1/policies/reaper/run", None);
    assert_eq!(status, 200, "{runs}");
    for v in &mut victims {
        assert_eq!(v.wait().unwrap().signal(), Some(libc::SIGTERM), "{runs}");
    }
    assert!(
        alive(&mut other),
        "a process out of scope was signalled: {runs}"
    );
    // Said as what happened: signalled, not deleted.
    let detail = runs["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("signalled {}", victims.len())),
        "{runs}"
    );
    other.kill().unwrap();
    other.wait().unwrap();
}

#[test]
fn process_scopes_that_cannot_mean_anything_are_refused_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    for (scope, field, says) in [
        (
            "processes: {names: [x]}",
            "scope.signals",
            "needs the signals",
        ),
        (
            "signals: [TERM]",
            "scope.processes",
            "needs `scope.processes`",
        ),
        (
            "processes: {}\n      signals: [TERM]",
            "scope.processes",
            "name the processes",
        ),
        (
            "processes: {cgroups: [system.slice]}\n      signals: [TERM]",
            "scope.processes.cgroups[0]",
            "absolute cgroup path",
        ),
    ] {
        let file = dir.path().join("p.yaml");
        std::fs::write(
            &file,
            format!("policies:\n  - name: p\n    kind: cleanup\n    plugin: temp-files\n    trigger: manual\n    scope:\n      {scope}\n    config: {{max_age: 1d}}\n"),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["check", file.to_str().unwrap()])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{said}");
        // Located at the field's line (`scope:` when the field is absent).
        let line = if scope.starts_with(
            field
                .trim_start_matches("scope.")
                .split('.')
                .next()
                .unwrap_or(""),
        ) {
            7
        } else {
            6
        };
        assert!(
            said.contains(&format!("p.yaml:{line}:")) && said.contains(says),
            "{field}: {says} in {said}"
        );
    }
}

#[test]
fn dependencies_hold_releases_back_cascade_dependents_first_and_cycles_show_as_leaks() {
    let d = daemon(&[], QUIET);
    let register = |name: &str, owner: &str, depends_on: &[u64]| {
        let (status, v) = call(
            "POST",
            &d.addr,
            "/api/v1/resources",
            Some(
                &json!({"kind": "app-object", "name": name, "owner": owner, "depends_on": depends_on}),
            ),
        );
        assert_eq!(status, 201, "{v}");
        v["handle"].as_u64().unwrap()
    };
    let pool = register("db/pool", "svc", &[]);
    let conn = register("db/conn", "svc", &[pool]);
    let stmt = register("db/stmt", "svc", &[conn]);
    let (status, v) = call(
        "POST",
        &d.addr,
        "/api/v1/resources",
        Some(&json!({"kind": "app-object", "name": "x", "depends_on": [12345]})),
    );
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("12345"), "{v}");

    let (_, deps) = call(
        "GET",
        &d.addr,
        &format!("/api/v1/resources/{pool}/dependencies"),
        None,
    );
    assert_eq!(deps["dependents"], json!([conn]), "{deps}");
    assert_eq!(deps["all_dependents"], json!([conn, stmt]), "{deps}");

    // Refused while others depend on it, naming them.
    let (status, v) = call(
        "DELETE",
        &d.addr,
        &format!("/api/v1/resources/{pool}?owner=svc"),
        None,
    );
    assert_eq!(status, 409, "{v}");
    assert!(v.to_string().contains(&conn.to_string()), "{v}");
    // Cascaded: dependents first, all gone.
    let (status, v) = call(
        "DELETE",
        &d.addr,
        &format!("/api/v1/resources/{pool}?owner=svc&cascade=true"),
        None,
    );
    assert_eq!(status, 204, "{v}");
    for h in [pool, conn, stmt] {
        assert_eq!(
            call("GET", &d.addr, &format!("/api/v1/resources/{h}"), None).0,
            404
        );
    }
    let (_, trail) = call("GET", &d.addr, "/api/v1/resources/audit", None);
    let released: Vec<u64> = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().is_some_and(|a| a.contains("release")))
        .map(|e| e["handle"].as_u64().unwrap())
        .collect();
    // Newest first: the pool last released, the statement first.
    assert_eq!(released, [pool, conn, stmt], "{trail}");

    // A cycle, made later, is a leak.
    let a = register("lease/a", "svc", &[]);
    let b = register("lease/b", "svc", &[a]);
    let (status, v) = call(
        "POST",
        &d.addr,
        &format!("/api/v1/resources/{a}/dependencies?on={b}&owner=svc"),
        None,
    );
    assert_eq!(status, 204, "{v}");
    let (_, leaks) = call("GET", &d.addr, "/api/v1/resources/leaks", None);
    assert_eq!(leaks["cycles"], 1, "{leaks}");
    let mut cycle: Vec<u64> = serde_json::from_value(leaks["first_cycles"][0].clone()).unwrap();
    cycle.sort_unstable();
    let mut want = vec![a, b];
    want.sort_unstable();
    assert_eq!(cycle, want, "{leaks}");
    // Another owner's dependents need force to cascade.
    let c = register("lease/c", "other", &[a]);
    let (status, v) = call(
        "DELETE",
        &d.addr,
        &format!("/api/v1/resources/{a}?owner=svc&cascade=true"),
        None,
    );
    assert_eq!(status, 403, "{v}");
    assert!(v.to_string().contains(&c.to_string()), "{v}");
}

/// Releases registered leases whose TTL lapsed (the shipped plugin), at
/// most one of two candidates per run.
const LEASES: &str = "policies:
  - name: leases
    kind: cleanup
    plugin: temp-files
    trigger: manual
    scope:
      kinds: [app-object]
    max_actions: 50%
    config:
      max_age: 1d
      min_age: 0s
";

/// Listens for `owner`'s requests on `GET /api/v1/resources/events`: each
/// event's data as JSON, in order. Returns once the stream is open.
fn listen(addr: &str, owner: &str) -> std::sync::mpsc::Receiver<serde_json::Value> {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel();
    let url = format!("http://{addr}/api/v1/resources/events?owner={owner}");
    let (open_tx, open_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = crate::http::agent().get(&url).call().unwrap();
        open_tx.send(r.status().as_u16()).unwrap();
        let lines = std::io::BufReader::new(r.into_body().into_reader()).lines();
        for line in lines.map_while(Result::ok) {
            if let Some(data) = line.strip_prefix("data:")
                && tx.send(serde_json::from_str(data.trim()).unwrap()).is_err()
            {
                return;
            }
        }
    });
    let status = open_rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap();
    assert_eq!(status, 200, "the event stream did not open");
    rx
}

fn next_event(rx: &std::sync::mpsc::Receiver<serde_json::Value>) -> serde_json::Value {
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("an event within 30 s")
}

/// Registers a lease of `owner` with `ttl`; returns its handle.
fn lease(d: &Daemon, name: &str, owner: &str, ttl: &str) -> u64 {
    let (status, v) = call(
        "POST",
        &d.addr,
        "/api/v1/resources",
        Some(
            &json!({"kind": "app-object", "name": name, "owner": owner, "size_bytes": 100, "ttl": ttl}),
        ),
    );
    assert_eq!(status, 201, "{v}");
    v["handle"].as_u64().unwrap()
}

#[test]
fn an_owner_listening_is_asked_to_release_answers_and_an_unanswered_request_is_retried_then_reported()
 {
    let d = daemon(
        &[("leases.yaml", LEASES)],
        &format!("{QUIET}resources:\n  requests:\n    ack_timeout: 1s\n    max_attempts: 2\n"),
    );
    let events = listen(&d.addr, "svc");
    let short = lease(&d, "lease/short", "svc", "200ms");
    let _long = lease(&d, "lease/long", "svc", "1h");
    std::thread::sleep(std::time::Duration::from_millis(400));
    let (status, ran) = call("POST", &d.addr, "/api/v1/cleanup/tasks/leases/run", None);
    assert_eq!(status, 200, "{ran}");
    let item = &ran["runs"][0]["items"][0];
    assert!(
        item["why"].as_str().unwrap_or("").contains("owner `svc`"),
        "{ran:#}"
    );

    // The owner is asked; the resource stays, marked, until it answers.
    let asked = next_event(&events);
    assert_eq!(
        (
            &asked["type"],
            &asked["handle"],
            &asked["name"],
            &asked["kind"],
            &asked["policy"],
            &asked["reason"],
            &asked["attempt"]
        ),
        (
            &json!("release"),
            &json!(short),
            &json!("lease/short"),
            &json!("app-object"),
            &json!("leases"),
            &json!("unused for longer than its TTL"),
            &json!(1)
        ),
        "{asked}"
    );
    let id = asked["id"].as_u64().unwrap();
    let (status, shown) = call("GET", &d.addr, &format!("/api/v1/resources/{short}"), None);
    assert_eq!(
        (status, &shown["release_requested"]),
        (200, &json!(id)),
        "{shown}"
    );
    let (status, pending) = call("GET", &d.addr, "/api/v1/resources/requests?owner=svc", None);
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending["pending"][0]["id"], id, "{pending}");
    // Another owner cannot answer for it.
    let (status, v) = call(
        "POST",
        &d.addr,
        &format!("/api/v1/resources/events/{id}/ack?owner=other"),
        None,
    );
    assert_eq!(status, 403, "{v}");
    let (status, v) = call(
        "POST",
        &d.addr,
        &format!("/api/v1/resources/events/{id}/ack?owner=svc"),
        Some(&json!({"outcome": "released", "reason": "closed"})),
    );
    assert_eq!((status, &v["released"]), (200, &json!(true)), "{v}");
    let (status, gone) = call("GET", &d.addr, &format!("/api/v1/resources/{short}"), None);
    assert_eq!(status, 410, "{gone}");
    assert!(gone.to_string().contains("`leases`"), "{gone}");
    let (status, v) = call(
        "POST",
        &d.addr,
        &format!("/api/v1/resources/events/{id}/ack?owner=svc"),
        Some(&json!({"outcome": "maybe"})),
    );
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("outcome:"), "{v}");

    // Unanswered: sent again after 1 s, then reported after 2 s more, and
    // released as the policy decided.
    let ignored = lease(&d, "lease/ignored", "svc", "200ms");
    std::thread::sleep(std::time::Duration::from_millis(400));
    let (status, ran) = call("POST", &d.addr, "/api/v1/cleanup/tasks/leases/run", None);
    assert_eq!(status, 200, "{ran}");
    let first = next_event(&events);
    assert_eq!(
        (&first["handle"], &first["attempt"]),
        (&json!(ignored), &json!(1)),
        "{first}"
    );
    let second = next_event(&events);
    assert_eq!(
        (&second["id"], &second["attempt"]),
        (&first["id"], &json!(2)),
        "{second}"
    );
    let mut report = serde_json::Value::Null;
    wait("the unanswered request reported", 30, || {
        report = call("GET", &d.addr, "/api/v1/resources/requests", None).1;
        report["unacknowledged"][0]["id"] == first["id"]
    });
    assert_eq!(
        report["unacknowledged"][0]["resource"], "released",
        "{report}"
    );
    assert_eq!(report["counts"]["unacknowledged"], 1, "{report}");
    assert_eq!(
        call(
            "GET",
            &d.addr,
            &format!("/api/v1/resources/{ignored}"),
            None
        )
        .0,
        410
    );
    let (_, trail) = call(
        "GET",
        &d.addr,
        &format!("/api/v1/resources/audit?handle={ignored}"),
        None,
    );
    let actions: Vec<&str> = trail
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "policy-release",
            "request-unacknowledged",
            "release-requested",
            "register"
        ],
        "{trail}"
    );
    let metrics = crate::http::get_text(&d.addr, "/metrics");
    assert!(
        metrics.contains("warden_resource_requests_unacknowledged_total 1"),
        "{metrics}"
    );
    drop(events);
}

#[test]
fn without_a_listener_a_policy_releases_at_once_and_streams_are_bounded() {
    let d = daemon(
        &[("leases.yaml", LEASES)],
        &format!("{QUIET}resources:\n  requests:\n    max_subscribers_per_owner: 1\n"),
    );
    let short = lease(&d, "lease/short", "nobody-listens", "200ms");
    let _long = lease(&d, "lease/long", "nobody-listens", "1h");
    std::thread::sleep(std::time::Duration::from_millis(400));
    let (_, ran) = call("POST", &d.addr, "/api/v1/cleanup/tasks/leases/run", None);
    assert_eq!(ran["runs"][0]["items"][0]["outcome"], "released", "{ran:#}");
    assert_eq!(
        call("GET", &d.addr, &format!("/api/v1/resources/{short}"), None).0,
        410
    );
    let _one = listen(&d.addr, "svc");
    let (status, v) = call("GET", &d.addr, "/api/v1/resources/events?owner=svc", None);
    assert_eq!(status, 429, "{v}");
    assert!(v.to_string().contains("max_subscribers_per_owner"), "{v}");
    let (status, v) = call("GET", &d.addr, "/api/v1/resources/events", None);
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("owner:"), "{v}");
}

#[test]
fn a_batch_registers_each_item_or_names_the_bad_items_field_and_the_summary_counts() {
    let d = daemon(&[], QUIET);
    let item = |name: &str, owner: &str| json!({"kind": "app-object", "name": name, "owner": owner, "size_bytes": 10});
    let (status, v) = call(
        "POST",
        &d.addr,
        "/api/v1/resources/batch",
        Some(&json!({"resources": [
            item("a", "svc"),
            item("", "svc"),
            item("c", "svc"),
            {"kind": "app-object", "name": "d", "ttl": "soon"},
            {"kind": "socket", "name": "e", "owner": "other", "size_bytes": 5},
        ]})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (&v["registered"], &v["failed"]),
        (&json!(3), &json!(2)),
        "{v}"
    );
    let results = v["results"].as_array().unwrap();
    assert_eq!(
        (&results[1]["index"], &results[1]["field"]),
        (&json!(1), &json!("name")),
        "{v}"
    );
    assert!(
        results[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("resources[1].name:"),
        "{v}"
    );
    assert_eq!(results[3]["field"], "ttl", "{v}");
    let a = results[0]["handle"].as_u64().unwrap();
    assert_eq!(
        call("GET", &d.addr, &format!("/api/v1/resources/{a}"), None).1["name"],
        "a"
    );
    let (status, v) = call(
        "POST",
        &d.addr,
        "/api/v1/resources/batch",
        Some(&json!({"resources": vec![item("x", "svc"); 1001]})),
    );
    assert_eq!(status, 413, "{v}");
    assert!(v["error"].as_str().unwrap().contains("1000"), "{v}");

    let (status, s) = call("GET", &d.addr, "/api/v1/resources/summary?top=1", None);
    assert_eq!(status, 200, "{s}");
    let r = &s["registered"];
    assert_eq!(r["total"], json!({"count": 3, "bytes": 25}), "{s}");
    assert_eq!(
        r["by_kind"]["app-object"],
        json!({"count": 2, "bytes": 20}),
        "{s}"
    );
    assert_eq!(
        r["by_kind"]["socket"],
        json!({"count": 1, "bytes": 5}),
        "{s}"
    );
    assert_eq!(
        r["by_owner"],
        json!([{"owner": "svc", "count": 2, "bytes": 20}]),
        "{s}"
    );
    assert_eq!(
        r["others"],
        json!({"owners": 1, "count": 1, "bytes": 5}),
        "{s}"
    );
    assert!(s["discovered"]["processes"].is_array(), "{s}");
    let (status, v) = call("GET", &d.addr, "/api/v1/resources/summary?top=5000", None);
    assert_eq!(status, 400, "{v}");
}

#[test]
fn an_owner_listening_does_not_hold_the_daemon_at_shutdown() {
    let d = daemon(&[], QUIET);
    let events = listen(&d.addr, "svc");
    let dir = d.stop();
    // The stream ended with the daemon: the listener saw its end and
    // closed its side.
    assert!(matches!(
        events.recv_timeout(std::time::Duration::from_secs(5)),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
    ));
    // It ended when the daemon began to stop, not when the shutdown's grace
    // ran out and the connection was cut.
    let log = std::fs::read_to_string(dir.path().join("warden.log")).unwrap();
    assert!(!log.contains("shutdown grace"), "{log}");
}
