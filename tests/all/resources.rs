//! Resources through the daemon: registered ones across a restart, with
//! their audit trail and orphans; and discovery, a watched process (this
//! test, by pid) holding a listening socket and a child, read at an interval
//! and listed by `GET /api/v1/resources?kind=…&process=…`.

use std::process::Command;

use serde_json::json;

use crate::api::{QUIET, daemon};
use crate::daemon::Daemon;
use crate::http::{call, wait};

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
