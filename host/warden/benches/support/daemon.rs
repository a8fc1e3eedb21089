//! The real `warden run` for the reliability benchmarks: started in a
//! directory on a free loopback port, its token read from its data
//! directory, killed when dropped; plus what they measure of it (RSS, open
//! descriptors) and an HTTP client that authenticates.

#![allow(dead_code, reason = "shared by two benchmarks; each uses part of it")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running daemon.
pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) addr: String,
    bearer: String,
    agent: ureq::Agent,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot bind a loopback port")
        .port()
}

impl Daemon {
    /// Starts `warden run --config warden.yaml` in `dir` (which holds
    /// `policies/` and `warden.yaml`) and waits until its API answers.
    pub(crate) fn start(dir: &Path) -> Daemon {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["run", "--listen", &addr, "--config", "warden.yaml"])
            .current_dir(dir)
            .env_remove("WARDEN_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start `warden run`");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut d = Daemon {
            child,
            addr,
            bearer: String::new(),
            agent,
        };
        let t = Instant::now();
        let token = dir.join("warden-data/api-token");
        loop {
            if let Ok(t) = std::fs::read_to_string(&token)
                && d.get_status("/health") == 200
            {
                d.bearer = format!("Bearer {}", t.trim());
                break;
            }
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!("warden exited at start: {status}");
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "warden did not answer within 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn get_status(&self, path: &str) -> u16 {
        self.agent
            .get(&format!("http://{}{path}", self.addr))
            .call()
            .map_or(0, |r| r.status().as_u16())
    }

    /// GET `path` with the token; the status and the body as JSON (`Null`
    /// if it is not JSON, or the request failed).
    /// The `authorization` header value the daemon's token makes.
    pub(crate) fn bearer(&self) -> &str {
        &self.bearer
    }

    pub(crate) fn get(&self, path: &str) -> (u16, serde_json::Value) {
        match self
            .agent
            .get(&format!("http://{}{path}", self.addr))
            .header("authorization", &self.bearer)
            .call()
        {
            Ok(mut r) => {
                let text = r.body_mut().read_to_string().unwrap_or_default();
                (
                    r.status().as_u16(),
                    serde_json::from_str(&text).unwrap_or_default(),
                )
            }
            Err(_) => (0, serde_json::Value::Null),
        }
    }

    /// POST `body` as JSON to `path` with the token; status and answer.
    pub(crate) fn post(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        match self
            .agent
            .post(&format!("http://{}{path}", self.addr))
            .header("authorization", &self.bearer)
            .header("content-type", "application/json")
            .send(body)
        {
            Ok(mut r) => {
                let text = r.body_mut().read_to_string().unwrap_or_default();
                (
                    r.status().as_u16(),
                    serde_json::from_str(&text).unwrap_or_default(),
                )
            }
            Err(_) => (0, serde_json::Value::Null),
        }
    }

    /// Sends SIGKILL (if it is still running) and reaps the process.
    pub(crate) fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Returns true if and only if the process runs (is not a zombie).
    pub(crate) fn child_alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.trim_start().chars().next())
            })
            .is_some_and(|state| state != 'Z')
    }

    /// Resident memory, in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Open file descriptors.
    pub(crate) fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// A file two days old (old enough for `temp-files` with `max_age: 1d`).
pub(crate) fn old_file(path: &Path) {
    std::fs::write(path, b"scratch").unwrap();
    let then = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(
            std::fs::FileTimes::new()
                .set_accessed(then)
                .set_modified(then),
        )
        .unwrap();
}

/// A cleanup policy over `scope` keeping `*.keep`, run every `every`.
pub(crate) fn cleanup_policy(scope: &Path, every: &str) -> String {
    format!(
        "policies:\n  - name: sweep\n    kind: cleanup\n    plugin: temp-files\n    trigger:\n      interval: {every}\n    scope:\n      paths: [\"{}\"]\n      exclude: [\"*.keep\"]\n    config:\n      max_age: 1d\n",
        scope.display()
    )
}

/// An alert policy firing while `metric` is above `threshold`.
pub(crate) fn alert_policy(name: &str, metric: &str, threshold: f64, every: &str) -> String {
    format!(
        "policies:\n  - name: {name}\n    kind: alert\n    plugin: threshold\n    trigger:\n      interval: {every}\n    config:\n      rules:\n        - {{alert: A, metric: {metric}, condition: gt, threshold: {threshold}}}\n"
    )
}

/// Files directly in `dir`.
pub(crate) fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}
