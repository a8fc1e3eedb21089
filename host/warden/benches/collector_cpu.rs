//! CPU cost of Warden's metrics collection against prometheus-node-exporter's,
//! side by side in one run.
//!
//! Starts node_exporter (default collectors) on a free loopback port, and
//! Warden's metrics pipeline with a 1 s collection interval (two watched
//! processes, batch files on). Then, for `WARDEN_BENCH_SECONDS` (default 30;
//! 3 under `cargo test`), node_exporter is scraped once a second and Warden's
//! store is encoded for `/metrics` once a second. Warden's cost is the CPU of
//! every pipeline thread (collector, ingest, writer, from
//! /proc/self/task/*/schedstat) plus the encoding; node_exporter's is its
//! utime + stime. Goals: Warden at most half of node_exporter's CPU, and under
//! 1 % of one core.
//!
//! Run: `cargo bench -p warden --bench collector_cpu`.
//! `WARDEN_NODE_EXPORTER` overrides the exporter's path.

#[path = "support/cpu.rs"]
mod cpu;
use cpu::thread_cpu;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warden::metrics::collect::{CollectConfig, ProcessSelector, ProcessTarget};
use warden::metrics::{MetricsConfig, Pipeline};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
const INTERVAL: Duration = Duration::from_secs(1);

/// What one benchmark run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Measured cycles (and scrapes), warm-up excluded.
    pub cycles: u32,
    /// Warden: CPU per collection cycle.
    pub warden_cpu_per_cycle: Duration,
    /// Warden: values emitted per cycle (last cycle).
    pub warden_series: usize,
    /// node_exporter: CPU per scrape, its idle time between scrapes included.
    pub exporter_cpu_per_scrape: Duration,
    /// node_exporter: sample lines in the last scrape.
    pub exporter_series: usize,
}

impl Report {
    /// Warden's CPU over node_exporter's.
    pub fn ratio(&self) -> f64 {
        self.warden_cpu_per_cycle.as_secs_f64() / self.exporter_cpu_per_scrape.as_secs_f64()
    }

    /// Share of one core at one cycle per [`INTERVAL`], in percent.
    fn percent(cpu: Duration) -> f64 {
        cpu.as_secs_f64() / INTERVAL.as_secs_f64() * 100.0
    }

    /// The table, with goals and whether they were met.
    pub fn table(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let met = |ok: bool| if ok { "met" } else { "MISSED" };
        let warden_pct = Self::percent(self.warden_cpu_per_cycle);
        let ratio = self.ratio();
        let mut t = String::new();
        t += &format!(
            "collector CPU, {} cycles at 1 s (warm-up excluded)\n",
            self.cycles
        );
        t += "| who | CPU ms / cycle | % of one core | series / cycle |\n";
        t += "| --- | ---: | ---: | ---: |\n";
        t += &format!(
            "| warden (collect + ingest + persist + encode) | {:.3} | {:.3} % | {} |\n",
            ms(self.warden_cpu_per_cycle),
            warden_pct,
            self.warden_series
        );
        t += &format!(
            "| node_exporter | {:.3} | {:.3} % | {} |\n",
            ms(self.exporter_cpu_per_scrape),
            Self::percent(self.exporter_cpu_per_scrape),
            self.exporter_series
        );
        t += &format!(
            "ratio warden / node_exporter: {ratio:.3} (goal <= 0.5: {})\n",
            met(ratio <= 0.5)
        );
        t += &format!(
            "warden share of one core: {warden_pct:.3} % (goal < 1 %: {})\n",
            met(warden_pct < 1.0)
        );
        t
    }
}

/// Kills the exporter when the benchmark ends, panics included.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU time of this process's threads whose names start with `warden-`
/// (nanoseconds, from schedstat).
fn pipeline_cpu() -> Duration {
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = entry.path();
        let is_pipeline =
            std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.starts_with("warden-"));
        if !is_pipeline {
            continue;
        }
        if let Ok(s) = std::fs::read_to_string(dir.join("schedstat")) {
            total += s
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

/// utime + stime of `pid`, from /proc/PID/stat.
fn process_cpu(pid: u32) -> Result<Duration, String> {
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

/// `GET /metrics` over HTTP/1.0; returns the number of sample lines.
fn scrape(port: u16) -> Result<usize, String> {
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
    Ok(body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count())
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

/// Runs the benchmark for `seconds` measured cycles against the exporter at `exporter`.
pub fn run(exporter: &Path, seconds: u32) -> Result<Report, String> {
    let port = free_port()?;
    let child = Command::new(exporter)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exporter.display()))?;
    let exporter_pid = child.id();
    let _guard = KillOnDrop(child);

    let deadline = Instant::now() + Duration::from_secs(15);
    while scrape(port).is_err() {
        if Instant::now() > deadline {
            return Err(format!("node_exporter did not answer on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let exporter_name = exporter
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("prometheus-node-exporter")
        .to_owned();
    let collect = CollectConfig {
        interval: warden::values::HumanDuration(INTERVAL),
        processes: vec![
            ProcessSelector {
                name: "bench".into(),
                target: ProcessTarget::Pid(std::process::id()),
            },
            ProcessSelector {
                name: "node_exporter".into(),
                target: ProcessTarget::ProcessName(exporter_name),
            },
        ],
        ..CollectConfig::default()
    };
    let data = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = MetricsConfig {
        collect,
        ..MetricsConfig::default()
    };
    let pipeline = Pipeline::start(&config, data.path()).map_err(|e| format!("{e:#}"))?;
    // Warm-up: the first cycle fills caches and has no CPU delta yet.
    std::thread::sleep(INTERVAL + INTERVAL / 2);

    let start = Instant::now();
    let store = std::sync::Arc::clone(pipeline.store());
    let warden = std::thread::spawn(move || {
        let mut encode = Duration::ZERO;
        let before = pipeline_cpu();
        let mut text = String::new();
        for n in 1..=seconds {
            sleep_until_tick(start, n);
            // What a scrape of Warden's /metrics costs for these series.
            let t = thread_cpu();
            text.clear();
            let mut registry = prometheus_client::registry::Registry::default();
            registry.register_collector(Box::new(warden::metrics::expose::StoreCollector(
                std::sync::Arc::clone(&store),
            )));
            prometheus_client::encoding::text::encode(&mut text, &registry)
                .expect("encoding to a String");
            encode += thread_cpu() - t;
        }
        let series = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        (pipeline_cpu() - before + encode, series)
    });
    let scraper = std::thread::spawn(move || -> Result<(Duration, usize), String> {
        scrape(port)?; // warm-up
        let first = process_cpu(exporter_pid)?;
        let mut series = 0;
        for n in 1..=seconds {
            sleep_until_tick(start, n);
            series = scrape(port)?;
        }
        Ok((process_cpu(exporter_pid)? - first, series))
    });

    let (warden_cpu, warden_series) = warden.join().map_err(|_| "collector thread panicked")?;
    let (exporter_cpu, exporter_series) =
        scraper.join().map_err(|_| "scraper thread panicked")??;
    Ok(Report {
        cycles: seconds,
        warden_cpu_per_cycle: warden_cpu / seconds,
        warden_series,
        exporter_cpu_per_scrape: exporter_cpu / seconds,
        exporter_series,
    })
    .inspect(|_| pipeline.shutdown())
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
