//! Discovery through the daemon: a watched process (this test, by pid)
//! holding a listening socket and a child, read at an interval and listed by
//! `GET /api/v1/resources?kind=…&process=…`.

use std::process::Command;

use crate::api::daemon;
use crate::http::{call, wait};

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
