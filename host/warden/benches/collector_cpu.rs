//! CPU cost of Warden's metrics collection against prometheus-node-exporter's,
//! side by side in one run, per series served.
//!
//! Both run as their own process and are scraped over HTTP once a second
//! for `WARDEN_BENCH_SECONDS` (default 30; 3 under `cargo test`):
//!
//! - node_exporter as Debian starts it: the flags of `$ARGS` in
//!   `/etc/default/prometheus-node-exporter` (the systemd unit runs
//!   `prometheus-node-exporter $ARGS`), as the unit's `User=` when this runs
//!   as root; only the listen address is ours, a free loopback port. It
//!   collects when scraped, with its default collectors (listed in the
//!   output).
//! - `warden run` (the real binary, no policies) collecting every second
//!   (system metrics, and two watched processes: this benchmark and the
//!   exporter), batch files on, and serving `/metrics` from its API.
//!
//! Each side's cost is its whole process's CPU time over the measured
//! cycles, from /proc/PID/task/*/schedstat (nanoseconds; /proc/PID/stat's
//! 10 ms ticks when a thread exited meanwhile). Each scrape's sample lines
//! are the series it served. Goals: Warden's CPU per series at most half
//! of node_exporter's, and Warden under 1 % of one core.
//!
//! Run: `cargo bench -p warden --bench collector_cpu`.
//! `WARDEN_NODE_EXPORTER` overrides the exporter's path.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
const DEFAULTS: &str = "/etc/default/prometheus-node-exporter";
const UNITS: [&str; 2] = [
    "/lib/systemd/system/prometheus-node-exporter.service",
    "/usr/lib/systemd/system/prometheus-node-exporter.service",
];
const INTERVAL: Duration = Duration::from_secs(1);

/// One side's figures.
#[derive(Debug, Clone)]
struct Side {
    /// CPU per cycle (collection, encoding and serving).
    cpu_per_cycle: Duration,
    /// Sample lines of the last scrape.
    series: usize,
    /// Series by group (metric family prefix), for saying what is collected.
    groups: BTreeMap<String, usize>,
    /// How the CPU time was read.
    clock: &'static str,
}

impl Side {
    fn ns_per_series(&self) -> f64 {
        self.cpu_per_cycle.as_nanos() as f64 / self.series.max(1) as f64
    }
}

/// What one benchmark run measured.
struct Report {
    cycles: u32,
    warden: Side,
    exporter: Side,
    exporter_command: String,
    exporter_collectors: Vec<String>,
}

fn percent_of_core(cpu: Duration) -> f64 {
    cpu.as_secs_f64() / INTERVAL.as_secs_f64() * 100.0
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

impl Report {
    fn table(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let (w, e) = (&self.warden, &self.exporter);
        let per_series = w.ns_per_series() / e.ns_per_series();
        let raw = w.cpu_per_cycle.as_secs_f64() / e.cpu_per_cycle.as_secs_f64();
        let warden_pct = percent_of_core(w.cpu_per_cycle);
        let groups = |g: &BTreeMap<String, usize>| {
            let mut v: Vec<_> = g.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            v.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut t = String::new();
        t += &format!("node_exporter: {}\n", self.exporter_command);
        t += &format!(
            "node_exporter collectors: {}\n",
            self.exporter_collectors.join(", ")
        );
        t += &format!("node_exporter series by group: {}\n", groups(&e.groups));
        t += &format!("warden series by group: {}\n", groups(&w.groups));
        t += &format!(
            "\ncollector CPU, {} scrapes 1 s apart, each side's whole process\n\n",
            self.cycles
        );
        t += "| who | CPU ms / cycle | % of one core | series / scrape | CPU µs / series | read from |\n";
        t += "| --- | ---: | ---: | ---: | ---: | --- |\n";
        for (who, s) in [
            (
                "warden run (collect, ingest, batch files, serve /metrics)",
                w,
            ),
            ("node_exporter (collect and serve /metrics)", e),
        ] {
            t += &format!(
                "| {who} | {:.3} | {:.3} % | {} | {:.2} | {} |\n",
                ms(s.cpu_per_cycle),
                percent_of_core(s.cpu_per_cycle),
                s.series,
                s.ns_per_series() / 1e3,
                s.clock
            );
        }
        t += "\n| figure | measured | goal | |\n| --- | ---: | --- | --- |\n";
        t += &format!(
            "| CPU per series, warden / node_exporter | {per_series:.2}× | ≤ 0.5× | {} |\n",
            met(per_series <= 0.5)
        );
        t += &format!(
            "| CPU per cycle, warden / node_exporter (unequal work: not judged) | {raw:.2}× | | |\n"
        );
        t += &format!(
            "| warden's share of one core | {warden_pct:.3} % | < 1 % | {} |\n",
            met(warden_pct < 1.0)
        );
        t
    }
}

/// Kills a child when the benchmark ends, panics included.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process's CPU time two ways: the sum over its live threads of
/// schedstat's nanoseconds, with their ids, and /proc/PID/stat's utime +
/// stime, which also counts threads that exited but only in clock ticks.
struct Cpu {
    threads_ns: u64,
    tids: BTreeSet<u32>,
    stat: Duration,
}

fn cpu_of(pid: u32) -> Result<Cpu, String> {
    let mut threads_ns = 0;
    let mut tids = BTreeSet::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| e.to_string())?;
    for entry in tasks.flatten() {
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A thread may exit between the listing and the read.
        if let Ok(s) = std::fs::read_to_string(entry.path().join("schedstat")) {
            threads_ns += s
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            tids.insert(tid);
        }
    }
    Ok(Cpu {
        threads_ns,
        tids,
        stat: stat_cpu(pid)?,
    })
}

/// utime + stime of `pid`, from /proc/PID/stat.
fn stat_cpu(pid: u32) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // comm may hold spaces; the fields after it are plain.
    let after_comm = &stat[stat.rfind(')').ok_or("bad stat")? + 2..];
    let fields: Vec<&str> = after_comm.split_ascii_whitespace().collect();
    // Fields 14 and 15 of proc(5), counted from `state` (field 3).
    let ticks: u64 = fields[11].parse::<u64>().map_err(|e| e.to_string())?
        + fields[12].parse::<u64>().map_err(|e| e.to_string())?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_second <= 0 {
        return Err("sysconf(_SC_CLK_TCK) failed".into());
    }
    Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// The CPU spent between two readings, and how it was read.
fn spent(before: &Cpu, after: &Cpu) -> (Duration, &'static str) {
    if before.tids.is_subset(&after.tids) {
        (
            Duration::from_nanos(after.threads_ns - before.threads_ns),
            "schedstat, all threads",
        )
    } else {
        (after.stat - before.stat, "stat (a thread exited), ticks")
    }
}

/// `GET /metrics` over HTTP/1.0; returns the body.
fn scrape(port: u16) -> Result<String, String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    conn.read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("response has no header end")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "status {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    Ok(body.to_owned())
}

/// The sample lines of an exposition.
fn samples(body: &str) -> impl Iterator<Item = &str> {
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// Series by group: for node_exporter the collector's part of the name
/// (`node_cpu_…` → `cpu`), else the first word (`go`, `process`, `memory`…).
fn groups(body: &str) -> BTreeMap<String, usize> {
    let mut g = BTreeMap::new();
    for line in samples(body) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let mut words = name.split('_');
        let first = words.next().unwrap_or_default();
        let group = match first {
            "node" => words.next().unwrap_or("node"),
            other => other,
        };
        *g.entry(group.to_owned()).or_insert(0) += 1;
    }
    g
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Sleeps until `start + n * INTERVAL`.
fn sleep_until_tick(start: Instant, n: u32) {
    let due = start + INTERVAL * n;
    if let Some(wait) = due.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}

/// node_exporter's flags and user as Debian's unit starts it: `$ARGS` from
/// the defaults file, `User=` from the unit.
fn debian_defaults() -> Result<(Vec<String>, Option<String>), String> {
    let defaults = std::fs::read_to_string(DEFAULTS).map_err(|e| {
        format!(
            "cannot read {DEFAULTS} ({e}): the flags Debian starts node_exporter with come from there (package prometheus-node-exporter)"
        )
    })?;
    let unit_path = UNITS
        .iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| format!("no systemd unit of node_exporter at {}", UNITS.join(" or ")))?;
    let unit = std::fs::read_to_string(unit_path).map_err(|e| format!("{unit_path}: {e}"))?;
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .ok_or_else(|| format!("{unit_path} has no ExecStart="))?;
    if !exec.split_whitespace().any(|w| w == "$ARGS") {
        return Err(format!(
            "{unit_path} runs `{exec}`, not with `$ARGS`: update this benchmark to read its flags"
        ));
    }
    // systemd splits an unbraced `$ARGS` at whitespace; the last assignment wins.
    let args = defaults
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ARGS="))
        .next_back()
        .map(|v| v.trim().trim_matches('"').trim_matches('\''))
        .unwrap_or("")
        .split_whitespace()
        .filter(|a| !a.starts_with("--web.listen-address"))
        .map(str::to_owned)
        .collect();
    let user = unit
        .lines()
        .find_map(|l| l.strip_prefix("User="))
        .map(|u| u.trim().to_owned());
    Ok((args, user))
}

/// The uid and gid of `user`, from `id`.
fn ids(user: &str) -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .map_err(|e| e.to_string())?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| format!("no user `{user}` (the unit's User=)"))
    };
    Ok((id("-u")?, id("-g")?))
}

/// Waits until `port` answers a scrape.
fn wait_for(what: &str, port: u16, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while scrape(port).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited: {status}"));
        }
        if Instant::now() > deadline {
            return Err(format!("{what} did not answer on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn start_exporter(exporter: &Path) -> Result<(KillOnDrop, u16, String), String> {
    let (args, user) = debian_defaults()?;
    let port = free_port()?;
    let mut cmd = Command::new(exporter);
    cmd.args(&args)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let as_user = match &user {
        Some(u) if root => {
            let (uid, gid) = ids(u)?;
            cmd.uid(uid).gid(gid);
            format!(" as {u}")
        }
        _ => String::new(),
    };
    let mut shown = args.clone();
    shown.push(format!("--web.listen-address=127.0.0.1:{port}"));
    let described = format!(
        "{} {}{as_user} (ARGS=\"{}\" from {DEFAULTS})",
        exporter.display(),
        shown.join(" "),
        args.join(" ")
    );
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exporter.display()))?;
    wait_for("node_exporter", port, &mut child)?;
    Ok((KillOnDrop(child), port, described))
}

fn start_warden(exporter_pid: u32, dir: &Path) -> Result<(KillOnDrop, u16), String> {
    std::fs::create_dir_all(dir.join("policies")).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("warden.yaml"),
        format!(
            "metrics:\n  collect:\n    interval: 1s\n    processes:\n      - {{name: bench, pid: {}}}\n      - {{name: node_exporter, pid: {exporter_pid}}}\n",
            std::process::id()
        ),
    )
    .map_err(|e| e.to_string())?;
    let port = free_port()?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args([
            "run",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
            "warden.yaml",
        ])
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start warden: {e}"))?;
    wait_for("warden run", port, &mut child)?;
    Ok((KillOnDrop(child), port))
}

/// Scrapes `port` once per tick for `cycles` ticks from `start`, measuring
/// `pid`'s CPU over them; the scrape before the first tick is warm-up.
fn measure(
    name: &'static str,
    port: u16,
    pid: u32,
    start: Instant,
    cycles: u32,
) -> std::thread::JoinHandle<Result<Side, String>> {
    std::thread::spawn(move || {
        scrape(port).map_err(|e| format!("{name}: {e}"))?;
        let before = cpu_of(pid)?;
        let mut body = String::new();
        for n in 1..=cycles {
            sleep_until_tick(start, n);
            body = scrape(port).map_err(|e| format!("{name}: {e}"))?;
        }
        let after = cpu_of(pid)?;
        let (cpu, clock) = spent(&before, &after);
        Ok(Side {
            cpu_per_cycle: cpu / cycles,
            series: samples(&body).count(),
            groups: groups(&body),
            clock,
        })
    })
}

/// Runs the benchmark for `cycles` measured cycles.
fn run(exporter: &Path, cycles: u32) -> Result<Report, String> {
    let (exporter_child, exporter_port, exporter_command) = start_exporter(exporter)?;
    let exporter_pid = exporter_child.0.id();
    let data = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (warden_child, warden_port) = start_warden(exporter_pid, data.path())?;
    let warden_pid = warden_child.0.id();
    // Warm-up: Warden's first collection cycles, its first scrape.
    std::thread::sleep(INTERVAL * 2);

    let collectors: Vec<String> = samples(&scrape(exporter_port)?)
        .filter(|l| l.starts_with("node_scrape_collector_success{") && l.ends_with(" 1"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
        .collect();
    let start = Instant::now();
    let w = measure("warden", warden_port, warden_pid, start, cycles);
    let e = measure("node_exporter", exporter_port, exporter_pid, start, cycles);
    let warden = w.join().map_err(|_| "the warden scraper panicked")??;
    let exporter = e.join().map_err(|_| "the exporter scraper panicked")??;
    drop((warden_child, exporter_child));
    Ok(Report {
        cycles,
        warden,
        exporter,
        exporter_command,
        exporter_collectors: collectors,
    })
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let seconds = std::env::var("WARDEN_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&s: &u32| s > 0)
        .unwrap_or(if benchmarking { 30 } else { 3 });
    let exporter =
        std::env::var("WARDEN_NODE_EXPORTER").unwrap_or_else(|_| NODE_EXPORTER.to_owned());
    match run(Path::new(&exporter), seconds) {
        Ok(report) => print!("{}", report.table()),
        Err(e) => {
            eprintln!(
                "collector_cpu: {e} (node_exporter comes from `apt-get install prometheus-node-exporter`; .ci/run installs it)"
            );
            std::process::exit(1);
        }
    }
}
