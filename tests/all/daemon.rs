//! `warden run` end to end: it serves status, picks up edits, reloads on
//! SIGHUP and the API, keeps a broken file's last good version, and stops
//! cleanly on SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::policies::{alert, write_whole};

pub(crate) struct Daemon {
    pub child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    /// `--data-dir`, when not the default `./warden-data`.
    pub data_dir: Option<std::path::PathBuf>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon's stderr, in its directory.
const LOG: &str = "warden.log";

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn warden(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .env_remove("WARDEN_TOKEN")
        .output()
        .unwrap()
}

impl Daemon {
    pub(crate) fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/a.yaml"), alert("a", 1.0)).unwrap();
        Daemon::start_in(dir, None)
    }

    /// Starts `warden run` in `dir` (which holds `policies/`), with a config
    /// file if one is given.
    pub(crate) fn start_in(dir: tempfile::TempDir, config: Option<&str>) -> Daemon {
        Daemon::spawn(dir, config, None, None, None)
    }

    /// [`Daemon::start_in`] with `--data-dir data_dir`.
    pub(crate) fn start_with_data_dir(
        dir: tempfile::TempDir,
        config: &str,
        data_dir: &std::path::Path,
    ) -> Daemon {
        Daemon::spawn(dir, Some(config), None, None, Some(data_dir))
    }

    /// [`Daemon::start_in`] with its log, at debug level, in `log`.
    pub(crate) fn start_logged(
        dir: tempfile::TempDir,
        config: &str,
        log: &std::path::Path,
    ) -> Daemon {
        let file = std::fs::File::create(log).unwrap();
        Daemon::spawn(
            dir,
            Some(config),
            Some(Stdio::from(file)),
            Some("debug,cranelift_codegen=info,wasmtime_cranelift=info,wasmtime=info"),
            None,
        )
    }

    fn spawn(
        dir: tempfile::TempDir,
        config: Option<&str>,
        stderr: Option<Stdio>,
        log_filter: Option<&str>,
        data_dir: Option<&std::path::Path>,
    ) -> Daemon {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut args = vec!["run".to_owned(), "--listen".to_owned(), addr.clone()];
        if let Some(d) = data_dir {
            args.extend(["--data-dir".to_owned(), d.display().to_string()]);
        }
        if let Some(config) = config {
            std::fs::write(dir.path().join("warden.yaml"), config).unwrap();
            args.extend(["--config".to_owned(), "warden.yaml".to_owned()]);
        }
        // The log goes to a file next to the policies unless the test asks
        // for another: tests read it, and a failing test's daemon can be
        // looked at.
        let stderr = stderr
            .unwrap_or_else(|| Stdio::from(std::fs::File::create(dir.path().join(LOG)).unwrap()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
        command
            .args(&args)
            .current_dir(dir.path())
            .env_remove("WARDEN_TOKEN")
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(filter) = log_filter {
            command.env("RUST_LOG", filter);
        }
        let child = command.spawn().unwrap();
        let d = Daemon {
            child,
            addr,
            dir,
            data_dir: data_dir.map(std::path::Path::to_path_buf),
        };
        d.until("the API answers", |s| s["policies"].is_array());
        // The token the daemon made (none if the config gives one).
        if let Ok(token) = std::fs::read_to_string(d.token_file()) {
            crate::http::remember_token(&d.addr, &token);
        }
        d
    }

    /// Its data directory.
    pub(crate) fn data_dir(&self) -> std::path::PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| self.dir.path().join("warden-data"))
    }

    /// Where the daemon keeps the token it made.
    pub(crate) fn token_file(&self) -> std::path::PathBuf {
        self.data_dir().join("api-token")
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub(crate) fn stop(mut self) -> tempfile::TempDir {
        self.signal("-TERM");
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "warden did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{status:?}");
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    /// What the daemon logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(LOG)).unwrap_or_default()
    }

    pub(crate) fn status(&self) -> serde_json::Value {
        let out = self.cli(&["status", "--format", "json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// `warden <args> --addr ADDR --data-dir DIR`: a command of the user the
    /// daemon runs as, which finds the daemon's token in its data directory.
    pub(crate) fn cli(&self, args: &[&str]) -> std::process::Output {
        let data_dir = self.data_dir();
        let mut all = args.to_vec();
        all.extend([
            "--addr",
            &self.addr,
            "--data-dir",
            data_dir.to_str().unwrap(),
        ]);
        Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(&all)
            .env_remove("WARDEN_TOKEN")
            .output()
            .unwrap()
    }

    pub(crate) fn until(
        &self,
        what: &str,
        cond: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let t = Instant::now();
        loop {
            let s = self.status();
            if cond(&s) {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}: {s:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn signal(&self, sig: &str) {
        assert!(
            Command::new("kill")
                .args([sig, &self.child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    }
}

fn threshold(status: &serde_json::Value) -> Option<String> {
    status["files"]
        .as_array()?
        .iter()
        .find_map(|f| f["hash"].as_str().map(str::to_owned))
}

#[test]
fn run_with_defaults_serves_status_and_follows_edits() {
    let d = Daemon::start();
    // No flags but the address: ./policies loaded, ./warden-data created.
    assert!(d.dir.path().join("warden-data/cache/plugins").is_dir());
    let s = d.status();
    assert_eq!(s["policies"][0]["name"], "a");
    assert_eq!(s["policies"][0]["wit_version"], "0.3.0");
    assert_eq!(s["policies"][0]["plugin"], "builtin:threshold");
    let first = threshold(&s).unwrap();

    // An edit is picked up without a restart.
    write_whole(&d.dir.path().join("policies/a.yaml"), &alert("a", 2.0));
    d.until("the edit", |s| threshold(s).is_some_and(|h| h != first));

    // A broken edit keeps the last good version; status says why, and exits 1.
    write_whole(&d.dir.path().join("policies/a.yaml"), "policies: [");
    let s = d.until("the error", |s| !s["files"][0]["error"].is_null());
    assert_eq!(s["policies"][0]["name"], "a");
    let human = d.cli(&["status"]);
    assert_eq!(human.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("  error:"),
        "{}",
        String::from_utf8_lossy(&human.stdout)
    );

    // Metrics count reloads: the broken edit is the one failure.
    let metrics = crate::http::get_text(&d.addr, "/metrics");
    assert!(
        metrics.contains("warden_policy_file_reloads_total{result=\"failure\"} 1\n"),
        "{metrics}"
    );
}

#[test]
fn sighup_and_the_api_reload_and_sigterm_stops_cleanly() {
    let mut d = Daemon::start();
    let before = d.status()["reloads"]["reloads"].as_u64().unwrap();
    d.signal("-HUP");
    d.until("a SIGHUP reload", |s| {
        s["reloads"]["reloads"].as_u64().unwrap_or(0) > before
    });
    let out = d.cli(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["unchanged"], 1);

    d.signal("-TERM");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "warden did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn status_without_a_daemon_says_how_to_fix_it() {
    let out = warden(&["status", "--addr", &format!("127.0.0.1:{}", free_port())]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("is `warden run` running there?"), "{err}");
}

fn post_status(addr: &str, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = crate::http::anonymous_agent().post(&format!("http://{addr}{path}"));
    if let Some(t) = token {
        request = request.header("authorization", &format!("Bearer {t}"));
    }
    let mut r = request.send_empty().unwrap();
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or_default())
}

fn get_status(addr: &str, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = crate::http::anonymous_agent().get(&format!("http://{addr}{path}"));
    if let Some(t) = token {
        request = request.header("authorization", &format!("Bearer {t}"));
    }
    let mut r = request.call().unwrap();
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or_default())
}

/// Issue 12: without a configured token the daemon makes one (0600, in its
/// data directory) and every mutation, and every read of configuration or
/// history, needs it; `/health` and `/metrics` stay open. The CLI finds the
/// token there, in `--token-file` or in WARDEN_TOKEN, and takes none on its
/// command line.
#[test]
fn r12_without_a_configured_token_one_is_made_and_required() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start();
    let file = d.token_file();
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(token.len(), 64, "{token}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&d.dir.path().join("warden-data")), 0o700);
    for (path, who) in [
        ("/api/v1/policies/reload", None),
        ("/api/v1/policies/reload", Some("wrong")),
        ("/api/v1/policies/a/run", None),
        ("/api/v1/metrics", None),
        ("/api/v1/resources", None),
        ("/api/v1/resources/1/access", None),
        ("/api/v1/cleanup/tasks/a/run", None),
        ("/api/v1/recovery/failures", None),
        ("/api/v1/recovery/outcomes", Some("wrong")),
        ("/api/v1/recovery/circuits/x/reset", None),
    ] {
        let (status, body) = post_status(&d.addr, path, who);
        assert_eq!(status, 401, "{path} {who:?}: {body}");
        assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
    }
    for path in [
        "/api/v1/policies",
        "/api/v1/alerts/rules",
        "/api/v1/alerts/history",
        "/api/v1/cleanup/history",
        "/api/v1/resources",
        "/api/v1/metrics/stats",
        "/api/v1/recovery/circuits",
        "/api/v1/recovery/decisions",
    ] {
        assert_eq!(get_status(&d.addr, path, None).0, 401, "{path}");
        assert_eq!(get_status(&d.addr, path, Some(&token)).0, 200, "{path}");
    }
    assert_eq!(get_status(&d.addr, "/health", None).0, 200);
    assert_eq!(get_status(&d.addr, "/metrics", None).0, 200);
    let (status, body) = post_status(&d.addr, "/api/v1/policies/reload", Some(&token));
    assert_eq!(status, 200, "{body}");

    // The CLI: the data directory, then --token-file and WARDEN_TOKEN.
    let out = d.cli(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let elsewhere = warden(&["reload", "--addr", &d.addr, "--data-dir", "/nonexistent"]);
    assert_eq!(elsewhere.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&elsewhere.stderr).contains("Bearer"));
    let out = warden(&[
        "reload",
        "--addr",
        &d.addr,
        "--data-dir",
        "/nonexistent",
        "--token-file",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["status", "--addr", &d.addr, "--data-dir", "/nonexistent"])
        .env("WARDEN_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A token on the command line is not a thing.
    let argv = warden(&["reload", "--addr", &d.addr, "--token", &token]);
    assert_eq!(argv.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&argv.stderr).contains("--token"));

    // The same token after a restart.
    let dir = d.stop();
    let d = Daemon::start_in(dir, None);
    assert_eq!(
        std::fs::read_to_string(d.token_file()).unwrap().trim(),
        token
    );
    d.stop();
}

#[test]
fn a_configured_token_is_used_and_public_reads_open_the_reads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/a.yaml"), alert("a", 1.0)).unwrap();
    std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
    std::fs::create_dir(dir.path().join("warden-data")).unwrap();
    // The CLI finds the configured token where it is told to look.
    std::fs::write(dir.path().join("warden-data/api-token"), "s3cret\n").unwrap();
    std::fs::set_permissions(
        dir.path().join("warden-data"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let d = Daemon::start_in(
        dir,
        Some(
            "api:\n  token_file: token\n  public_reads: true\nmetrics:\n  collect:\n    enabled: false\n",
        ),
    );
    assert_eq!(post_status(&d.addr, "/api/v1/policies/reload", None).0, 401);
    assert_eq!(
        post_status(&d.addr, "/api/v1/policies/reload", Some("s3cret")).0,
        200
    );
    let (status, body) = get_status(&d.addr, "/api/v1/policies", None);
    assert_eq!(
        (status, &body["policies"][0]["name"]),
        (200, &serde_json::json!("a"))
    );
    d.stop();
}

#[test]
fn listening_beyond_loopback_without_a_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["run", "--listen", &format!("0.0.0.0:{}", free_port())])
        .env_remove("WARDEN_TOKEN")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs an API token") && err.contains("api.token_file"),
        "{err}"
    );
}

/// Runs `warden` with `args` in `dir` and returns its output; fails if it is
/// still running after 30 s (a daemon that started when it should not have).
fn run_to_exit(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "`warden {}` was still running after 30s: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn an_invalid_config_file_is_refused_by_name_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let run = |config: &str| {
        std::fs::write(dir.path().join("warden.yaml"), config).unwrap();
        let out = run_to_exit(
            dir.path(),
            &["run", "--listen", &addr, "--config", "warden.yaml"],
        );
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        String::from_utf8(out.stderr).unwrap()
    };

    // A misspelt field: the file, the field, the line, and what it could be.
    let err = run("metrics:\n  collect:\n    interval: 10s\n  colect:\n    enabled: false\n");
    assert!(err.starts_with("warden: warden.yaml: "), "{err}");
    assert!(
        err.contains("unknown field `colect`") && err.contains("`collect`"),
        "{err}"
    );
    assert!(err.contains("line 4"), "{err}");
    assert!(
        !dir.path().join("warden-data").exists(),
        "nothing was created"
    );

    // A value of the wrong type names its field and line.
    let err = run("metrics:\n  store:\n    max_series: lots\n");
    assert!(
        err.starts_with("warden: warden.yaml: metrics.store.max_series: invalid type")
            && err.contains("line 3"),
        "{err}"
    );

    // Values that parse but make no sense are refused by name before serving.
    let err = run("pressure:\n  standard: 90\n  critical: 80\n");
    assert!(err.contains("pressure: the thresholds must rise"), "{err}");

    // A config file that is not there.
    let out = run_to_exit(
        dir.path(),
        &["run", "--listen", &addr, "--config", "missing.yaml"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the config file `missing.yaml` cannot be read"),
        "{err}"
    );
}

/// An alert policy run only when asked.
fn manual_alert(name: &str) -> String {
    alert(name, 1.0).replace("trigger:\n      interval: 1h\n", "trigger: manual\n")
}

#[test]
fn the_evaluation_and_failure_counters_count_each_policy_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::copy(
        warden_plugins::ADVERSARY_COMPONENT,
        policies.join("adversary.wasm"),
    )
    .unwrap();
    std::fs::write(policies.join("good.yaml"), manual_alert("good")).unwrap();
    let failing = |name: &str, mode: &str| {
        format!(
            "  - name: {name}\n    kind: cleanup\n    plugin: ./adversary.wasm\n    trigger: manual\n    scope:\n      paths: [\"${{data_dir}}/scratch\"]\n    config:\n      mode: {mode}\n"
        )
    };
    std::fs::write(
        policies.join("bad.yaml"),
        format!(
            "policies:\n{}{}",
            failing("erring", "error"),
            failing("panicking", "panic")
        ),
    )
    .unwrap();
    let d = Daemon::start_in(
        dir,
        Some("metrics:\n  collect:\n    enabled: false\n  persist:\n    enabled: false\n"),
    );
    let run = |name: &str, ok: bool| {
        let (status, record) = crate::http::post(
            &d.addr,
            &format!("/api/v1/policies/{name}/run"),
            &serde_json::json!({}),
        );
        assert_eq!(status, 200, "{record}");
        assert_eq!(record["ok"], ok, "{name}: {record}");
    };
    run("good", true);
    run("good", true);
    run("erring", false);
    run("panicking", false);
    run("panicking", false);

    let text = crate::http::get_text(&d.addr, "/metrics");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("warden_policy_evaluation"))
        .collect();
    for expected in [
        r#"warden_policy_evaluations_total{policy="good",kind="alert"} 2"#,
        r#"warden_policy_evaluations_total{policy="erring",kind="cleanup"} 1"#,
        r#"warden_policy_evaluations_total{policy="panicking",kind="cleanup"} 2"#,
        r#"warden_policy_evaluation_failures_total{policy="erring",kind="cleanup",cause="plugin_error"} 1"#,
        r#"warden_policy_evaluation_failures_total{policy="panicking",kind="cleanup",cause="trap"} 2"#,
    ] {
        assert!(lines.contains(&expected), "`{expected}` in {lines:#?}");
    }
    assert_eq!(lines.len(), 5, "nothing else counted: {lines:#?}");
    d.stop();
}

#[test]
fn unreadable_policy_files_are_failures_in_status_and_health() {
    // Not UTF-8, and a FIFO: each a file that failed, never skipped (and
    // the FIFO never blocks a reload).
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/a.yaml"), alert("a", 1.0)).unwrap();
    std::fs::write(
        dir.path().join("policies/latin1.yaml"),
        b"policies: []\n# caf\xe9\n",
    )
    .unwrap();
    let fifo =
        std::ffi::CString::new(dir.path().join("policies/fifo.yaml").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path and a mode.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let d = Daemon::start_in(
        dir,
        Some("metrics:\n  collect:\n    enabled: false\n  persist:\n    enabled: false\n"),
    );
    let s = d.status();
    let error_of = |name: &str| {
        s["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name} is not in {s:#}"))["error"]["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(error_of("latin1.yaml").contains("not UTF-8"), "{s:#}");
    assert!(error_of("fifo.yaml").contains("is a FIFO"), "{s:#}");
    assert_eq!(s["policies"][0]["name"], "a");
    let health = crate::http::get(&d.addr, "/health");
    assert_eq!(health["files_with_errors"], 2, "{health:#}");
    assert!(
        health["subsystems"]["policies"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("2 of 3 files do not load"),
        "{health:#}"
    );
}

/// The daemon's allocator options (`main.rs`) are read: jemalloc says
/// nothing of an option it does not understand, so a misspelt one would
/// leave an idle daemon holding its start-up peak. Its purging thread
/// exists only when `background_thread` was taken.
#[test]
fn the_allocator_runs_its_purging_thread() {
    let d = Daemon::start();
    d.status();
    let tasks = std::fs::read_dir(format!("/proc/{}/task", d.child.id())).unwrap();
    let names: Vec<String> = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect();
    let purging = names.iter().filter(|n| *n == "jemalloc_bg_thd").count();
    assert_eq!(purging, 1, "threads of the daemon: {names:?}");
}
