//! Peak RSS of the real daemon while a plugin or a policy file attacks it
//! (issue 11, items 2–5), each beside its goal: peak ≤ 2 × the daemon's
//! idle RSS + the policy's `memory_limit` (64 MiB here).
//!
//! Each attack gets a fresh `warden run` over its own policies directory.
//! Once it answers, idle RSS is VmRSS from /proc/PID/status; then the attack
//! runs (a manual run through `POST /api/v1/policies/{name}/run`, or a file
//! written into the policies directory and `POST /api/v1/policies/reload`)
//! and the peak is VmHWM, the high-water mark since start (the idle VmHWM is
//! printed too: startup's own peak). The daemon must still be running and
//! answer `/health` afterwards, or this panics.
//!
//! Run: `cargo bench --workspace --bench containment_rss`. Under `cargo
//! test` it runs two quick attacks as a smoke test and prints one line.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const MEMORY_LIMIT_MIB: u64 = 64;
const QUIET: &str = "metrics:\n  collect:\n    enabled: false\n  persist:\n    enabled: false\n";

/// A running daemon, killed when dropped (also when the benchmark panics).
struct Daemon {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
    /// `Bearer …`, from the token the daemon made in its data directory.
    bearer: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

impl Daemon {
    fn start(policies: &[(&str, String)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        for (name, text) in policies {
            std::fs::write(dir.path().join("policies").join(name), text).unwrap();
        }
        std::fs::write(dir.path().join("warden.yaml"), QUIET).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("warden.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["run", "--listen", &addr, "--config", "warden.yaml"])
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start warden");
        let mut d = Daemon {
            child,
            addr,
            dir,
            bearer: String::new(),
        };
        let t = Instant::now();
        let token = d.dir.path().join("warden-data/api-token");
        while d.health().is_none() || !token.exists() {
            d.assert_alive("starting");
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "warden never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d.bearer = format!("Bearer {}", std::fs::read_to_string(&token).unwrap().trim());
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("warden.log")).unwrap_or_default()
    }

    fn assert_alive(&mut self, when: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("warden died {when} ({status}); its log:\n{}", self.log());
        }
    }

    /// `/health`'s status code, if the daemon answers with JSON.
    fn health(&self) -> Option<u16> {
        let mut r = agent()
            .get(&format!("http://{}/health", self.addr))
            .call()
            .ok()?;
        let text = r.body_mut().read_to_string().ok()?;
        serde_json::from_str::<Value>(&text).ok()?;
        Some(r.status().as_u16())
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let mut r = agent()
            .post(&format!("http://{}{path}", self.addr))
            .header("authorization", &self.bearer)
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("POST {path}: {e}; the log:\n{}", self.log()));
        let text = r.body_mut().read_to_string().unwrap_or_default();
        (
            r.status().as_u16(),
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    /// Runs policy `name` now; returns what happened, briefly.
    fn run(&self, name: &str) -> String {
        let (status, r) = self.post(&format!("/api/v1/policies/{name}/run"), &json!({}));
        let why = [&r["detail"], &r["error"]]
            .into_iter()
            .find_map(|v| v.as_str())
            .unwrap_or_default();
        self.brief(&format!("{status} ok={} {why}", r["ok"]))
    }

    /// Reloads the policies; returns the first file error, briefly.
    fn reload(&self) -> String {
        let (status, r) = self.post("/api/v1/policies/reload", &json!({}));
        let why = r["failed"][0][1][0]["message"].as_str().unwrap_or_default();
        self.brief(&format!("reload {status}: {why}"))
    }

    /// `s` on one line of at most 90 characters, without long paths.
    fn brief(&self, s: &str) -> String {
        let guests = Path::new(warden_plugins::ADVERSARY_COMPONENT).parent();
        let mut s = s.replace('\n', " ").replace('|', "/");
        for dir in [guests.unwrap(), self.dir.path()] {
            s = s.replace(&format!("{}/", dir.display()), "");
        }
        match s.char_indices().nth(90) {
            Some((i, _)) => format!("{}…", &s[..i]),
            None => s,
        }
    }

    /// (VmRSS, VmHWM) in KiB.
    fn rss(&self) -> (u64, u64) {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |k: &str| {
            s.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or_else(|| panic!("no {k} in /proc/PID/status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// A manual cleanup policy of `plugin` with `config` (YAML flow map).
fn cleanup(scope: &str, name: &str, plugin: &str, timeout: &str, config: &str) -> String {
    format!(
        "policies:\n  - name: {name}\n    kind: cleanup\n    plugin: {plugin}\n    trigger: manual\n    timeout: {timeout}\n    memory_limit: {MEMORY_LIMIT_MIB}MiB\n    scope:\n      paths: [\"{scope}\"]\n    config: {config}\n"
    )
}

/// What an attack does to a started daemon; returns the outcome.
type Act = fn(&Daemon) -> String;

/// A name, the attacking policy `p` as (plugin, timeout, config) if any,
/// and what is done to the daemon.
type Attack = (
    &'static str,
    Option<(&'static str, &'static str, String)>,
    Act,
);

fn run_p(d: &Daemon) -> String {
    d.run("p")
}

/// Pushes 100,000 samples and registers 2,000 resources, then runs `p`.
fn fill_then_run(d: &Daemon) -> String {
    let now = now_ms();
    for h in 0..200 {
        let samples: Vec<Value> = (0..500)
            .map(|i| json!({"metric": "flood", "labels": {"host": format!("h{h}")}, "value": 1.0, "timestamp_ms": now - 500 + i}))
            .collect();
        let (status, r) = d.post("/api/v1/metrics", &json!({ "samples": samples }));
        assert!(status < 300, "push: {status} {r}");
    }
    for i in 0..2000 {
        let body =
            json!({"kind": "app-object", "name": format!("cache/{i:0>200}"), "owner": "svc"});
        let (status, r) = d.post("/api/v1/resources", &body);
        assert!(status < 300, "register: {status} {r}");
    }
    d.run("p")
}

fn now_ms() -> i64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    t.unwrap().as_millis() as i64
}

fn policies_dir(d: &Daemon) -> std::path::PathBuf {
    d.dir.path().join("policies")
}

fn dev_zero(d: &Daemon) -> String {
    let text = cleanup("/nonexistent", "z", "/dev/zero", "2s", "{}");
    std::fs::write(policies_dir(d).join("zero.yaml"), text).unwrap();
    d.reload()
}

fn huge_file(d: &Daemon) -> String {
    // 256 MiB of YAML: one comment line of 1 KiB, over and over.
    let line = format!("#{}\n", "x".repeat(1022));
    let mut f = std::fs::File::create(policies_dir(d).join("huge.yaml")).unwrap();
    use std::io::Write;
    f.write_all(b"policies: []\n").unwrap();
    for _ in 0..(256 << 10) {
        f.write_all(line.as_bytes()).unwrap();
    }
    drop(f);
    d.reload()
}

fn fifo(d: &Daemon) -> String {
    let path = policies_dir(d).join("fifo.yaml");
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path and a mode.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    d.reload()
}

fn attacks(smoke: bool) -> Vec<Attack> {
    let adversary =
        |timeout, config: String| Some((warden_plugins::ADVERSARY_COMPONENT, timeout, config));
    let flood = format!("{{mode: flood, count: 100000, reason_bytes: {}}}", 14 << 20);
    let sleeper = (
        warden_plugins::SLEEPER_COMPONENT,
        "1s",
        "{sleep_ms: 30000}".into(),
    );
    let all: Vec<Attack> = vec![
        (
            "2 sleeper: 30 s in a host call, 1s timeout",
            Some(sleeper),
            run_p,
        ),
        (
            "3 ten-million-actions",
            adversary("30s", "{mode: ten-million-actions}".into()),
            run_p,
        ),
        (
            "3 flood: 100k deletes, 14 MiB reason",
            adversary("30s", flood),
            run_p,
        ),
        (
            "3 notices: 100k",
            adversary("30s", "{mode: notices, count: 100000}".into()),
            run_p,
        ),
        (
            "4 allocate-1gib",
            adversary("10s", "{mode: allocate-1gib}".into()),
            run_p,
        ),
        (
            "4 read-flood: 100k samples, 2k resources",
            adversary("30s", "{mode: read-flood, count: 1000}".into()),
            fill_then_run,
        ),
        ("5 plugin: /dev/zero", None, dev_zero),
        ("5 256 MiB policy file", None, huge_file),
        ("5 FIFO in the policies dir", None, fifo),
    ];
    // The smoke test: two quick attacks, one of each kind.
    let quick = ["4 allocate-1gib", "5 FIFO in the policies dir"];
    all.into_iter()
        .filter(|a| !smoke || quick.contains(&a.0))
        .collect()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let mut table = String::from(
        "| attack | outcome | idle RSS | idle VmHWM | peak VmHWM | limit = 2×idle + memory_limit | |\n| --- | --- | ---: | ---: | ---: | ---: | --- |\n",
    );
    let mut missed = 0;
    for (name, plugin, act) in attacks(smoke) {
        let scratch_dir = tempfile::tempdir().unwrap();
        // A file in scope: `flood` deletes the first candidate over and over.
        std::fs::write(scratch_dir.path().join("old.log"), "x").unwrap();
        let scratch = scratch_dir.path().to_str().unwrap().to_owned();
        let policies: Vec<(&str, String)> = match &plugin {
            Some((plugin, timeout, config)) => {
                vec![("p.yaml", cleanup(&scratch, "p", plugin, timeout, config))]
            }
            None => vec![],
        };
        let mut d = Daemon::start(&policies);
        // Let startup's work settle before calling the daemon idle.
        std::thread::sleep(Duration::from_millis(500));
        let (idle, idle_hwm) = d.rss();
        let outcome = act(&d);
        let (_, peak) = d.rss();
        d.assert_alive(&format!("under attack `{}`", name));
        assert!(
            d.health().is_some(),
            "warden stopped answering /health after `{}`; its log:\n{}",
            name,
            d.log()
        );
        let limit = 2 * idle + (MEMORY_LIMIT_MIB << 10);
        let met = peak <= limit;
        missed += usize::from(!met);
        table += &format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            name,
            outcome,
            mib(idle),
            mib(idle_hwm),
            mib(peak),
            mib(limit),
            if met { "met" } else { "MISSED" }
        );
    }
    if smoke {
        println!("containment_rss smoke: daemon survived, {missed} peak(s) over the goal");
    } else {
        println!(
            "daemon peak RSS under attack (issue 11, items 2–5), memory_limit {MEMORY_LIMIT_MIB} MiB\n"
        );
        print!("{table}");
    }
}
