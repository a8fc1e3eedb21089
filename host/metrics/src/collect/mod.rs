//! System and process metric collectors.
//!
//! A [`Collector`] reads host-wide figures (CPU, memory, swap, load,
//! filesystems, block devices, network interfaces, process counts, PSI) and
//! figures for the processes operators choose to watch ([`ProcessSelector`]),
//! and hands each value to a [`Sink`]. The daemon calls [`Collector::collect`]
//! every [`CollectConfig::interval`].
//!
//! # Metrics
//!
//! All values are in base units (bytes, seconds, ratios in `0..=1`); counters end
//! in `_total`.
//!
//! | metric | labels | kind |
//! | --- | --- | --- |
//! | `cpu_usage_ratio` | `cpu` (`total`, `0`, `1`, ...) | gauge, from the 2nd cycle |
//! | `memory_total_bytes`, `memory_available_bytes`, `memory_used_bytes`, `memory_used_ratio` | | gauge |
//! | `swap_total_bytes`, `swap_used_bytes`, `swap_used_ratio` | | gauge |
//! | `load1`, `load5`, `load15`, `load_per_core` | | gauge |
//! | `disk_total_bytes`, `disk_available_bytes`, `disk_used_ratio` | `mount`, `device`, `fstype` | gauge |
//! | `disk_read_bytes_total`, `disk_written_bytes_total`, `disk_reads_completed_total`, `disk_writes_completed_total`, `disk_io_time_seconds_total` | `device` | counter |
//! | `network_{received,transmitted}_{bytes,packets}_total`, `network_{receive,transmit}_errors_total` | `interface` | counter |
//! | `processes`, `procs_running`, `procs_blocked` | | gauge |
//! | `pressure_avg10_ratio` | `resource`, `kind` | gauge |
//! | `pressure_seconds_total` | `resource`, `kind` | counter |
//! | `process_up`, `process_count`, `process_resident_memory_bytes`, `process_threads`, `process_children` | `process` | gauge |
//! | `process_cpu_usage_ratio` | `process` | gauge, from the 2nd cycle |
//! | `process_cpu_seconds_total` | `process` | counter |
//! | `process_open_fds` | `process`, `type` | gauge |
//! | `process_tcp_connections` | `process`, `state` | gauge |
//!
//! Per-process values are summed over every pid a selector matches, so the
//! number of series depends only on the configuration, never on how many
//! processes match. TCP connections are looked up in the daemon's own network
//! namespace, so a watched process in another one (a container) shows none.
//!
//! # Cost
//!
//! A cycle reads only what its metrics need, into buffers kept across cycles:
//! it never walks every process through `sysinfo`; `/proc/*/comm` is read
//! only when a selector matches by name; TCP states are read only when a
//! watched process holds a socket, once per cycle, through one
//! `NETLINK_SOCK_DIAG` dump (/proc/net/tcp{,6} only where netlink is denied,
//! as they cost ten times more); interface counters come from one read of
//! /proc/net/dev. 1.6 to 2.3 ms of CPU a cycle on a 2-core VM with ~70
//! processes and two watched ones, a fifth of what node_exporter spends on a
//! scrape (`src/bin/collector_cpu.rs` measures both).
//!
//! # Failures
//!
//! Nothing here panics on a vanished process or an unreadable file: the value
//! is skipped and the reason logged once at debug level.

mod pressure;
mod process;
mod system;

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

use crate::Kind;
use warden_core::values::HumanDuration;

/// Every metric name the collectors write. Pushes may not write these
/// (`validate::pushed_metric_name`): a pushed `memory_used_ratio` would
/// feed every policy that reads it.
pub const COLLECTED: &[&str] = &[
    "cpu_usage_ratio",
    "memory_total_bytes",
    "memory_available_bytes",
    "memory_used_bytes",
    "memory_used_ratio",
    "swap_total_bytes",
    "swap_used_bytes",
    "swap_used_ratio",
    "load1",
    "load5",
    "load15",
    "load_per_core",
    "disk_total_bytes",
    "disk_available_bytes",
    "disk_used_ratio",
    "disk_read_bytes_total",
    "disk_written_bytes_total",
    "disk_reads_completed_total",
    "disk_writes_completed_total",
    "disk_io_time_seconds_total",
    "network_received_bytes_total",
    "network_transmitted_bytes_total",
    "network_received_packets_total",
    "network_transmitted_packets_total",
    "network_receive_errors_total",
    "network_transmit_errors_total",
    "processes",
    "procs_running",
    "procs_blocked",
    "pressure_avg10_ratio",
    "pressure_seconds_total",
    "process_up",
    "process_count",
    "process_resident_memory_bytes",
    "process_threads",
    "process_children",
    "process_cpu_usage_ratio",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_tcp_connections",
];

/// Where collected values go. The daemon implements it for its series store.
pub trait Sink {
    /// Records one value of `metric` for the series named by `labels`.
    fn put(&mut self, metric: &str, labels: &[(&str, &str)], kind: Kind, value: f64);
}

/// The `collect` section of the daemon's configuration.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CollectConfig {
    /// Whether the collectors run at all (default `true`).
    pub enabled: bool,
    /// Time between two collection cycles (default `10s`; more than zero).
    #[serde(deserialize_with = "positive_interval")]
    #[schemars(with = "HumanDuration")]
    pub interval: HumanDuration,
    /// Processes to watch (default none). Each `name` must be unique: it is the
    /// `process` label of the selector's series.
    #[serde(deserialize_with = "unique_selectors")]
    #[schemars(with = "Vec<ProcessSelector>")]
    pub processes: Vec<ProcessSelector>,
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: HumanDuration(std::time::Duration::from_secs(10)),
            processes: Vec::new(),
        }
    }
}

/// Rejects `0s`, which would have the daemon collect in a busy loop.
fn positive_interval<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    let interval = HumanDuration::deserialize(d)?;
    if interval.0.is_zero() {
        return Err(serde::de::Error::custom(
            "`interval` must be more than zero, such as `10s`",
        ));
    }
    Ok(interval)
}

/// Rejects two selectors with the same `name`: their series would collide.
fn unique_selectors<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ProcessSelector>, D::Error> {
    let selectors = Vec::<ProcessSelector>::deserialize(d)?;
    for (i, s) in selectors.iter().enumerate() {
        if selectors[..i].iter().any(|o| o.name == s.name) {
            return Err(serde::de::Error::custom(SelectorError::DuplicateName(
                s.name.clone(),
            )));
        }
    }
    Ok(selectors)
}

/// Selects watched processes. YAML examples:
///
/// ```yaml
/// - { name: db, pid: 1234 }
/// - { name: web, process_name: nginx }   # /proc/PID/comm exactly, or the basename of argv[0]
/// - { name: app, cgroup: /system.slice/app.service }   # every pid in that cgroup v2 and below
/// ```
///
/// Exactly one of `pid`, `process_name` and `cgroup` must be given; `name` is
/// the `process` label value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(try_from = "RawSelector")]
#[schemars(with = "RawSelector")]
pub struct ProcessSelector {
    /// The `process` label value of this selector's series.
    pub name: String,
    /// Which processes it matches.
    pub target: ProcessTarget,
}

/// What a [`ProcessSelector`] matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessTarget {
    /// One process id.
    Pid(u32),
    /// Every process whose `/proc/PID/comm` equals this, or whose `argv[0]`
    /// has this basename.
    ProcessName(String),
    /// Every process in this cgroup v2 or below it; a path relative to the
    /// cgroup2 mount, normalised to start with `/` and have no trailing `/`.
    Cgroup(String),
}

/// A process selector as written; checked into a [`ProcessSelector`].
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "ProcessSelector",
    description = "A watched process set: `name` plus exactly one of `pid`, `process_name`, `cgroup`.",
    // Says in the schema what the TryFrom check enforces, so editors flag it too.
    extend("oneOf" = [
        { "required": ["pid"] },
        { "required": ["process_name"] },
        { "required": ["cgroup"] }
    ])
)]
struct RawSelector {
    /// The `process` label value of this selector's series.
    name: String,
    /// A process id.
    #[schemars(range(min = 1))]
    pid: Option<u32>,
    /// Matches `/proc/PID/comm` exactly, or the basename of `argv[0]`.
    process_name: Option<String>,
    /// A cgroup v2 path relative to `/sys/fs/cgroup`, such as
    /// `/system.slice/app.service`; matches every pid in it and below it.
    cgroup: Option<String>,
}

/// Why a process selector (or the list of them) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// More than one of `pid`, `process_name`, `cgroup` was given.
    #[error(
        "process selector `{name}`: {fields} are set; give exactly one of `pid`, `process_name` or `cgroup`"
    )]
    TooManyTargets {
        /// The selector's name.
        name: String,
        /// The fields that were set, quoted and joined (`` `pid` and `cgroup` ``).
        fields: String,
    },
    /// None of `pid`, `process_name`, `cgroup` was given.
    #[error(
        "process selector `{0}`: none of `pid`, `process_name` or `cgroup` is set; give exactly one"
    )]
    NoTarget(String),
    /// `name` was empty.
    #[error("process selector: `name` is empty; it is the `process` label value and must be set")]
    EmptyName,
    /// `pid` was 0.
    #[error("process selector `{0}`: `pid` must be a process id above 0")]
    ZeroPid(String),
    /// `process_name` was empty.
    #[error("process selector `{0}`: `process_name` is empty")]
    EmptyProcessName(String),
    /// `cgroup` had a `.` or `..` component or a NUL byte.
    #[error(
        "process selector `{name}`: `cgroup` `{path}` must be a plain path below /sys/fs/cgroup, without `.` or `..`"
    )]
    BadCgroup {
        /// The selector's name.
        name: String,
        /// The path as written.
        path: String,
    },
    /// Two selectors had the same `name`.
    #[error("two process selectors are named `{0}`; `name` must be unique")]
    DuplicateName(String),
}

impl TryFrom<RawSelector> for ProcessSelector {
    type Error = SelectorError;

    fn try_from(raw: RawSelector) -> Result<Self, SelectorError> {
        let RawSelector {
            name,
            pid,
            process_name,
            cgroup,
        } = raw;
        if name.trim().is_empty() {
            return Err(SelectorError::EmptyName);
        }
        let set: Vec<&str> = [
            ("`pid`", pid.is_some()),
            ("`process_name`", process_name.is_some()),
            ("`cgroup`", cgroup.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, on)| on.then_some(f))
        .collect();
        if set.len() > 1 {
            let fields = match set.as_slice() {
                [a, b] => format!("both {a} and {b}"),
                _ => format!("all of {}", set.join(", ")),
            };
            return Err(SelectorError::TooManyTargets { name, fields });
        }
        let target = match (pid, process_name, cgroup) {
            (Some(0), _, _) => return Err(SelectorError::ZeroPid(name)),
            (Some(pid), _, _) => ProcessTarget::Pid(pid),
            (_, Some(p), _) if p.is_empty() => return Err(SelectorError::EmptyProcessName(name)),
            (_, Some(p), _) => ProcessTarget::ProcessName(p),
            (_, _, Some(path)) => match normalise_cgroup(&path) {
                Some(p) => ProcessTarget::Cgroup(p),
                None => return Err(SelectorError::BadCgroup { name, path }),
            },
            (None, None, None) => return Err(SelectorError::NoTarget(name)),
        };
        Ok(Self { name, target })
    }
}

/// `/a/b/` and `a/b` become `/a/b`; `.`/`..` are refused so a selector cannot
/// point outside the cgroup mount.
fn normalise_cgroup(path: &str) -> Option<String> {
    if path.contains('\0') {
        return None;
    }
    let mut out = String::with_capacity(path.len() + 1);
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." {
            return None;
        }
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// The pids each process selector matched at the collector's last cycle,
/// by selector name: what resource discovery reads, so both agree on which
/// processes are watched.
#[derive(Debug, Default)]
pub struct WatchedPids(std::sync::RwLock<Arc<Matched>>);

/// Each selector's name and the pids it matched.
pub type Matched = Vec<(String, Vec<u32>)>;

impl WatchedPids {
    /// Returns the last cycle's matches.
    pub fn current(&self) -> Arc<Matched> {
        Arc::clone(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn publish(&self, matched: Matched) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(matched);
    }
}

/// Collects system and watched-process metrics, keeping what one cycle needs
/// from the previous one (CPU readings) and its read buffers.
pub struct Collector {
    enabled: bool,
    system: system::SystemCollector,
    pressure: pressure::PressureCollector,
    process: process::ProcessCollector,
    scratch: Scratch,
    watched: Arc<WatchedPids>,
}

impl Collector {
    /// A collector for `config`. Nothing is read until the first [`collect`](Self::collect).
    pub fn new(config: &CollectConfig) -> Self {
        Self {
            enabled: config.enabled,
            system: system::SystemCollector::new(),
            pressure: pressure::PressureCollector::new(),
            process: process::ProcessCollector::new(&config.processes),
            scratch: Scratch::default(),
            watched: Arc::default(),
        }
    }

    /// Where each cycle publishes the pids its selectors matched.
    pub fn watched(&self) -> Arc<WatchedPids> {
        Arc::clone(&self.watched)
    }

    /// One collection cycle: emits every metric into `sink` (nothing when the
    /// config is disabled). Never panics on a vanished process or an
    /// unreadable `/proc` file: that value is skipped and the reason logged
    /// once at debug level. Rates (CPU usage) appear from the second cycle on.
    pub fn collect(&mut self, sink: &mut dyn Sink) {
        if !self.enabled {
            return;
        }
        // One /proc listing serves both the process count and name matching.
        self.scratch.scan_pids();
        self.system.collect(&mut self.scratch, sink);
        self.pressure.collect(&mut self.scratch, sink);
        self.process.collect(&mut self.scratch, sink);
        if self.process.len() > 0 {
            self.watched.publish(self.process.matched());
        }
    }
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector")
            .field("enabled", &self.enabled)
            .field("watched", &self.process.len())
            .finish_non_exhaustive()
    }
}

/// Buffers and state shared by the collectors, kept across cycles so a steady
/// cycle allocates little.
#[derive(Default)]
pub(crate) struct Scratch {
    /// File contents.
    pub(crate) buf: Vec<u8>,
    /// A path being built.
    pub(crate) path: String,
    /// The pids listed in /proc this cycle.
    pub(crate) pids: Vec<u32>,
    /// Whether listing /proc worked this cycle.
    pub(crate) pids_ok: bool,
    pub(crate) quiet: Quiet,
}

impl Scratch {
    fn scan_pids(&mut self) {
        self.pids.clear();
        self.pids_ok = false;
        let dir = match std::fs::read_dir("/proc") {
            Ok(d) => d,
            Err(e) => return self.quiet.skip("proc.list", 0, &e),
        };
        for entry in dir.flatten() {
            if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                self.pids.push(pid);
            }
        }
        self.pids_ok = true;
    }

    /// Reads `path` whole into `self.buf`.
    pub(crate) fn read(&mut self, path: &str) -> io::Result<()> {
        read_into(path, &mut self.buf)
    }
}

/// Reads `path` whole into `buf`, replacing what was there; the buffer keeps
/// its capacity for the next file.
pub(crate) fn read_into(path: &str, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    // Through `take` so std skips File's size probe (an fstat and an lseek per
    // file), useless here: /proc and sysfs files all report size 0.
    File::open(path)?.take(u64::MAX).read_to_end(buf)?;
    Ok(())
}

/// Remembers which failures were already logged, so a lasting problem (no
/// permission, no such file) logs once rather than every cycle.
#[derive(Default)]
pub(crate) struct Quiet {
    seen: Vec<(&'static str, usize)>,
}

impl Quiet {
    /// Logs at debug level, once per `(what, index)`, why a value was skipped.
    pub(crate) fn skip(&mut self, what: &'static str, index: usize, why: &dyn fmt::Display) {
        if !self.seen.contains(&(what, index)) {
            self.seen.push((what, index));
            tracing::debug!(what, index, %why, "metric skipped");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One value as a test sink saw it.
    #[derive(Debug, Clone)]
    pub(crate) struct Put {
        pub(crate) metric: String,
        pub(crate) labels: Vec<(String, String)>,
        pub(crate) kind: Kind,
        pub(crate) value: f64,
    }

    /// Collects every value into a Vec.
    #[derive(Default)]
    pub(crate) struct VecSink(pub(crate) Vec<Put>);

    impl Sink for VecSink {
        fn put(&mut self, metric: &str, labels: &[(&str, &str)], kind: Kind, value: f64) {
            self.0.push(Put {
                metric: metric.to_owned(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                kind,
                value,
            });
        }
    }

    impl VecSink {
        /// Every value of `metric` whose labels include all of `labels`.
        pub(crate) fn find(&self, metric: &str, labels: &[(&str, &str)]) -> Vec<&Put> {
            self.0
                .iter()
                .filter(|p| {
                    p.metric == metric
                        && labels
                            .iter()
                            .all(|(k, v)| p.labels.iter().any(|(pk, pv)| pk == k && pv == v))
                })
                .collect()
        }

        /// The one value of `metric` with these labels; panics if absent or repeated.
        pub(crate) fn one(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
            let found = self.find(metric, labels);
            assert_eq!(
                found.len(),
                1,
                "expected one {metric}{labels:?}, found {found:?}"
            );
            found[0].value
        }
    }

    /// Two cycles, far enough apart for rates, returning the second cycle's values.
    pub(crate) fn two_cycles(collector: &mut Collector) -> VecSink {
        collector.collect(&mut VecSink::default());
        std::thread::sleep(
            sysinfo::MINIMUM_CPU_UPDATE_INTERVAL + std::time::Duration::from_millis(50),
        );
        let mut sink = VecSink::default();
        collector.collect(&mut sink);
        sink
    }

    fn parse(yaml: &str) -> Result<CollectConfig, String> {
        serde_norway::from_str::<CollectConfig>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn config_defaults_and_interval_parse() {
        let c = parse("interval: 1s").unwrap();
        assert_eq!(c.interval.0, std::time::Duration::from_secs(1));
        assert!(c.enabled);
        assert!(c.processes.is_empty());
        let d = parse("{}").unwrap();
        assert_eq!(d.interval.0, std::time::Duration::from_secs(10));
    }

    #[test]
    fn config_selectors_parse_each_target() {
        let c = parse(
            "processes:\n\
             - { name: db, pid: 1234 }\n\
             - { name: web, process_name: nginx }\n\
             - { name: app, cgroup: system.slice/app.service/ }\n",
        )
        .unwrap();
        let targets: Vec<_> = c.processes.iter().map(|s| s.target.clone()).collect();
        assert_eq!(
            targets,
            [
                ProcessTarget::Pid(1234),
                ProcessTarget::ProcessName("nginx".into()),
                ProcessTarget::Cgroup("/system.slice/app.service".into()),
            ]
        );
        assert_eq!(c.processes[1].name, "web");
    }

    #[test]
    fn config_selector_with_two_targets_names_them() {
        let e = parse("processes: [{ name: db, pid: 1, cgroup: /x }]").unwrap_err();
        assert!(e.contains("both `pid` and `cgroup` are set"), "{e}");
        let e =
            parse("processes: [{ name: db, pid: 1, cgroup: /x, process_name: y }]").unwrap_err();
        assert!(
            e.contains("all of `pid`, `process_name`, `cgroup` are set"),
            "{e}"
        );
        assert!(e.contains("selector `db`"), "{e}");
    }

    #[test]
    fn config_selector_without_target_says_which_fields() {
        let e = parse("processes: [{ name: db }]").unwrap_err();
        assert!(
            e.contains("none of `pid`, `process_name` or `cgroup` is set"),
            "{e}"
        );
    }

    #[test]
    fn config_rejects_unknown_fields_bad_values_and_duplicates() {
        let e = parse("intervall: 1s").unwrap_err();
        assert!(e.contains("intervall"), "{e}");
        let e = parse("processes: [{ name: db, pid: 1, user: root }]").unwrap_err();
        assert!(e.contains("user"), "{e}");
        let e = parse("processes: [{ name: db, pid: 0 }]").unwrap_err();
        assert!(e.contains("`pid` must be"), "{e}");
        let e = parse("processes: [{ name: db, cgroup: /a/../b }]").unwrap_err();
        assert!(e.contains("`cgroup`"), "{e}");
        let e = parse("processes: [{ name: '', pid: 3 }]").unwrap_err();
        assert!(e.contains("`name` is empty"), "{e}");
        let e = parse("processes: [{ name: a, pid: 3 }, { name: a, pid: 4 }]").unwrap_err();
        assert!(e.contains("two process selectors are named `a`"), "{e}");
        let e = parse("interval: 0s").unwrap_err();
        assert!(e.contains("`interval` must be more than zero"), "{e}");
        let e = parse("interval: soon").unwrap_err();
        assert!(e.contains("not a duration"), "{e}");
    }

    #[test]
    fn schema_requires_exactly_one_target() {
        let schema = schemars::schema_for!(CollectConfig);
        let text = serde_json::to_string(&schema).unwrap();
        assert!(text.contains("\"oneOf\""), "{text}");
        assert!(text.contains("process_name"), "{text}");
    }

    #[test]
    fn disabled_collector_emits_nothing() {
        let config = CollectConfig {
            enabled: false,
            ..CollectConfig::default()
        };
        let mut sink = VecSink::default();
        Collector::new(&config).collect(&mut sink);
        assert!(sink.0.is_empty());
    }

    /// Every name a full cycle writes (system-wide, and for a watched
    /// process: this one) is on the reserved list.
    #[test]
    fn every_collected_name_is_reserved() {
        let config = CollectConfig {
            processes: vec![ProcessSelector {
                name: "me".into(),
                target: ProcessTarget::Pid(std::process::id()),
            }],
            ..CollectConfig::default()
        };
        let sink = two_cycles(&mut Collector::new(&config));
        assert!(!sink.0.is_empty());
        for p in &sink.0 {
            assert!(
                COLLECTED.contains(&p.metric.as_str()),
                "`{}` is collected but not in COLLECTED",
                p.metric
            );
        }
    }
}
