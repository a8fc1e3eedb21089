//! Host-wide metrics: CPU, memory, swap, load, filesystems, block devices,
//! network interfaces and process counts.

use std::time::Instant;

use procfs::net::InterfaceDeviceStatus;
use procfs::{DiskStats, FromBufRead, FromBufReadSI, KernelStats};
use sysinfo::{DiskRefreshKind, Disks, System};

use super::{Scratch, Sink};
use crate::Kind::{Counter, Gauge};

/// Filesystem types that hold no user data; their sizes mean nothing.
const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "autofs",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "binfmt_misc",
    "nsfs",
    "rpc_pipefs",
    "squashfs",
];

fn is_pseudo_fs(fstype: &str) -> bool {
    fstype.starts_with("cgroup") || PSEUDO_FS.contains(&fstype)
}

/// /proc/diskstats counts 512-byte sectors whatever the device's block size.
const SECTOR_BYTES: f64 = 512.0;

pub(super) struct SystemCollector {
    system: Option<System>,
    disks: Option<Disks>,
    /// `"0"`, `"1"`, ... built once, not per cycle.
    cpu_labels: Vec<String>,
    /// When sysinfo took its first CPU reading; usage is a delta, so it is
    /// only meaningful once a second reading is at least sysinfo's minimum
    /// interval later.
    first_cpu_reading: Option<Instant>,
    /// Indexes into the disk list already emitted this cycle (dedupe by mount).
    emitted_mounts: Vec<usize>,
}

impl SystemCollector {
    pub(super) fn new() -> Self {
        // These constructors cannot fail on Linux today; if they ever do, the
        // metrics they feed are skipped (and logged) rather than the daemon failing.
        Self {
            system: System::new().ok(),
            disks: Disks::new().ok(),
            cpu_labels: Vec::new(),
            first_cpu_reading: None,
            emitted_mounts: Vec::new(),
        }
    }

    pub(super) fn collect(&mut self, s: &mut Scratch, sink: &mut dyn Sink) {
        self.cpu_memory_load(s, sink);
        self.filesystems(s, sink);
        networks(s, sink);
        block_devices(s, sink);
        process_counts(s, sink);
    }

    fn cpu_memory_load(&mut self, s: &mut Scratch, sink: &mut dyn Sink) {
        let Some(system) = &mut self.system else {
            return s
                .quiet
                .skip("sysinfo.system", 0, &"sysinfo::System::new failed");
        };
        // Taken before the refresh, and the first reading's time after it, so
        // passing the check below implies sysinfo did take a new reading
        // (it skips refreshes closer than its minimum interval).
        let before = Instant::now();
        system.refresh_cpu_usage();
        system.refresh_memory();

        let cpus = system.cpus();
        match self.first_cpu_reading {
            None => self.first_cpu_reading = Some(Instant::now()),
            Some(first)
                if before.saturating_duration_since(first)
                    >= sysinfo::MINIMUM_CPU_UPDATE_INTERVAL =>
            {
                let total = f64::from(system.global_cpu_usage()) / 100.0;
                sink.put(
                    "cpu_usage_ratio",
                    &[("cpu", "total")],
                    Gauge,
                    total.clamp(0.0, 1.0),
                );
                if self.cpu_labels.len() != cpus.len() {
                    self.cpu_labels = (0..cpus.len()).map(|i| i.to_string()).collect();
                }
                for (cpu, label) in cpus.iter().zip(&self.cpu_labels) {
                    let ratio = f64::from(cpu.usage()) / 100.0;
                    sink.put(
                        "cpu_usage_ratio",
                        &[("cpu", label)],
                        Gauge,
                        ratio.clamp(0.0, 1.0),
                    );
                }
            }
            Some(_) => {}
        }

        let total = system.total_memory() as f64;
        let used = system.used_memory() as f64;
        sink.put("memory_total_bytes", &[], Gauge, total);
        sink.put(
            "memory_available_bytes",
            &[],
            Gauge,
            system.available_memory() as f64,
        );
        sink.put("memory_used_bytes", &[], Gauge, used);
        sink.put("memory_used_ratio", &[], Gauge, ratio(used, total));

        let swap_total = system.total_swap() as f64;
        let swap_used = system.used_swap() as f64;
        sink.put("swap_total_bytes", &[], Gauge, swap_total);
        sink.put("swap_used_bytes", &[], Gauge, swap_used);
        sink.put("swap_used_ratio", &[], Gauge, ratio(swap_used, swap_total));

        match System::load_average() {
            Ok(load) => {
                sink.put("load1", &[], Gauge, load.one);
                sink.put("load5", &[], Gauge, load.five);
                sink.put("load15", &[], Gauge, load.fifteen);
                let cores = cpus.len().max(1) as f64;
                sink.put("load_per_core", &[], Gauge, load.one / cores);
            }
            Err(e) => s.quiet.skip("loadavg", 0, &e),
        }
    }

    fn filesystems(&mut self, s: &mut Scratch, sink: &mut dyn Sink) {
        let Some(disks) = &mut self.disks else {
            return s
                .quiet
                .skip("sysinfo.disks", 0, &"sysinfo::Disks::new failed");
        };
        // sysinfo already leaves out mounts under /proc, /sys and /run (bar
        // /run/media); PSEUDO_FS covers the rest.
        // Storage only: the disk kind and I/O figures cost extra reads, and
        // I/O comes from /proc/diskstats below anyway.
        disks.refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
        self.emitted_mounts.clear();
        // Newest entries last: walking backwards keeps the mount that is
        // on top when several share a mount point.
        for (i, disk) in disks.iter().enumerate().rev() {
            let Some(fstype) = disk.file_system().to_str() else {
                continue;
            };
            let total = disk.total_space();
            if is_pseudo_fs(fstype) || total == 0 {
                continue;
            }
            let mount = disk.mount_point();
            if self
                .emitted_mounts
                .iter()
                .any(|&j| disks[j].mount_point() == mount)
            {
                continue;
            }
            self.emitted_mounts.push(i);
            let mount = mount.to_string_lossy();
            let device = disk.name().to_string_lossy();
            let labels = [("mount", &*mount), ("device", &*device), ("fstype", fstype)];
            let total = total as f64;
            let available = disk.available_space() as f64;
            sink.put("disk_total_bytes", &labels, Gauge, total);
            sink.put("disk_available_bytes", &labels, Gauge, available);
            sink.put(
                "disk_used_ratio",
                &labels,
                Gauge,
                ratio(total - available, total),
            );
        }
    }
}

/// Interface counters from /proc/net/dev, not sysinfo's `Networks`: that
/// opens nine sysfs files per interface and re-lists every address through
/// getifaddrs on each refresh (~0.55 ms a cycle for 4 interfaces here, a fifth
/// of the whole cycle), where this one read has the same counters (both come
/// from the kernel's dev_get_stats) for ~0.04 ms.
fn networks(s: &mut Scratch, sink: &mut dyn Sink) {
    if let Err(e) = s.read("/proc/net/dev") {
        return s.quiet.skip("net.dev", 0, &e);
    }
    let devices = match InterfaceDeviceStatus::from_buf_read(&s.buf[..]) {
        Ok(d) => d,
        Err(e) => return s.quiet.skip("net.dev.parse", 0, &e),
    };
    for d in devices.0.values() {
        let labels = [("interface", d.name.as_str())];
        let values = [
            ("network_received_bytes_total", d.recv_bytes),
            ("network_transmitted_bytes_total", d.sent_bytes),
            ("network_received_packets_total", d.recv_packets),
            ("network_transmitted_packets_total", d.sent_packets),
            ("network_receive_errors_total", d.recv_errs),
            ("network_transmit_errors_total", d.sent_errs),
        ];
        for (metric, value) in values {
            sink.put(metric, &labels, Counter, value as f64);
        }
    }
}

/// `part / whole`, or 0 when there is no whole (no swap, say).
fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        (part / whole).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

fn block_devices(s: &mut Scratch, sink: &mut dyn Sink) {
    if let Err(e) = s.read("/proc/diskstats") {
        return s.quiet.skip("diskstats", 0, &e);
    }
    let stats = match DiskStats::from_buf_read(&s.buf[..]) {
        Ok(stats) => stats,
        Err(e) => return s.quiet.skip("diskstats.parse", 0, &e),
    };
    for d in &stats.0 {
        // Loop and ram devices mirror files and memory already counted elsewhere;
        // never-used devices only add empty series.
        let idle = d.reads == 0 && d.writes == 0 && d.time_in_progress == 0;
        if d.name.starts_with("loop") || d.name.starts_with("ram") || idle {
            continue;
        }
        let labels = [("device", d.name.as_str())];
        let read = d.sectors_read as f64 * SECTOR_BYTES;
        let written = d.sectors_written as f64 * SECTOR_BYTES;
        sink.put("disk_read_bytes_total", &labels, Counter, read);
        sink.put("disk_written_bytes_total", &labels, Counter, written);
        sink.put(
            "disk_reads_completed_total",
            &labels,
            Counter,
            d.reads as f64,
        );
        sink.put(
            "disk_writes_completed_total",
            &labels,
            Counter,
            d.writes as f64,
        );
        let io_seconds = d.time_in_progress as f64 / 1000.0;
        sink.put("disk_io_time_seconds_total", &labels, Counter, io_seconds);
    }
}

fn process_counts(s: &mut Scratch, sink: &mut dyn Sink) {
    if s.pids_ok {
        sink.put("processes", &[], Gauge, s.pids.len() as f64);
    }
    if let Err(e) = s.read("/proc/stat") {
        return s.quiet.skip("stat", 0, &e);
    }
    match KernelStats::from_buf_read(&s.buf[..], procfs::current_system_info()) {
        Ok(k) => {
            if let Some(n) = k.procs_running {
                sink.put("procs_running", &[], Gauge, f64::from(n));
            }
            if let Some(n) = k.procs_blocked {
                sink.put("procs_blocked", &[], Gauge, f64::from(n));
            }
        }
        Err(e) => s.quiet.skip("stat.parse", 0, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{VecSink, two_cycles};
    use super::super::{CollectConfig, Collector};
    use crate::Kind;

    fn meminfo_kib(key: &str) -> u64 {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap();
        let line = text.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn logical_cpus() -> usize {
        let text = std::fs::read_to_string("/proc/stat").unwrap();
        text.lines()
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .count()
    }

    #[test]
    fn memory_matches_meminfo_and_ratios_are_ratios() {
        let mut sink = VecSink::default();
        Collector::new(&CollectConfig::default()).collect(&mut sink);
        let total = sink.one("memory_total_bytes", &[]);
        assert_eq!(total, (meminfo_kib("MemTotal:") * 1024) as f64);
        let used = sink.one("memory_used_bytes", &[]);
        let available = sink.one("memory_available_bytes", &[]);
        assert!(used > 0.0 && used <= total);
        assert!(available > 0.0 && available <= total);
        assert!((0.0..=1.0).contains(&sink.one("memory_used_ratio", &[])));
        let swap_total = sink.one("swap_total_bytes", &[]);
        assert_eq!(swap_total, (meminfo_kib("SwapTotal:") * 1024) as f64);
        let swap_ratio = sink.one("swap_used_ratio", &[]);
        assert!((0.0..=1.0).contains(&swap_ratio));
        if swap_total == 0.0 {
            assert_eq!(swap_ratio, 0.0);
        }
        assert_eq!(sink.find("memory_total_bytes", &[])[0].kind, Kind::Gauge);
    }

    #[test]
    fn cpu_usage_from_the_second_cycle_one_series_per_core() {
        let mut c = Collector::new(&CollectConfig::default());
        let mut first = VecSink::default();
        c.collect(&mut first);
        assert!(first.find("cpu_usage_ratio", &[]).is_empty());

        let second = two_cycles(&mut c);
        let total = second.one("cpu_usage_ratio", &[("cpu", "total")]);
        assert!((0.0..=1.0).contains(&total), "{total}");
        let per_core = second.find("cpu_usage_ratio", &[]);
        let cores = logical_cpus();
        assert_eq!(per_core.len(), cores + 1, "{per_core:?}");
        for i in 0..cores {
            let v = second.one("cpu_usage_ratio", &[("cpu", &i.to_string())]);
            assert!((0.0..=1.0).contains(&v), "cpu {i}: {v}");
        }
    }

    #[test]
    fn load_matches_proc_loadavg() {
        let mut sink = VecSink::default();
        Collector::new(&CollectConfig::default()).collect(&mut sink);
        let text = std::fs::read_to_string("/proc/loadavg").unwrap();
        let load1: f64 = text.split_whitespace().next().unwrap().parse().unwrap();
        let got = sink.one("load1", &[]);
        // The kernel updates it every 5 s, so allow a small drift between reads.
        assert!(
            (got - load1).abs() < 0.5,
            "load1 {got} vs /proc/loadavg {load1}"
        );
        let per_core = sink.one("load_per_core", &[]);
        assert!((per_core - got / logical_cpus() as f64).abs() < 1e-9);
        sink.one("load5", &[]);
        sink.one("load15", &[]);
    }

    #[test]
    fn filesystems_include_root_and_no_pseudo_fs() {
        let mut sink = VecSink::default();
        Collector::new(&CollectConfig::default()).collect(&mut sink);
        let fs = sink.find("disk_total_bytes", &[]);
        let label = |p: &super::super::tests::Put, k: &str| {
            p.labels.iter().find(|(lk, _)| lk == k).unwrap().1.clone()
        };
        assert!(
            fs.iter().any(|p| label(p, "mount") == "/"),
            "no / in {fs:?}"
        );
        let mut mounts: Vec<String> = fs.iter().map(|p| label(p, "mount")).collect();
        for p in &fs {
            let t = label(p, "fstype");
            assert!(!super::is_pseudo_fs(&t), "pseudo fs {t} in {p:?}");
            assert!(p.value > 0.0);
        }
        let n = mounts.len();
        mounts.sort();
        mounts.dedup();
        assert_eq!(n, mounts.len(), "a mount point twice");
        for p in sink.find("disk_used_ratio", &[]) {
            assert!((0.0..=1.0).contains(&p.value), "{p:?}");
        }
    }

    #[test]
    fn block_devices_networks_and_process_counts() {
        let mut sink = VecSink::default();
        Collector::new(&CollectConfig::default()).collect(&mut sink);
        for p in sink.find("disk_read_bytes_total", &[]) {
            let dev = &p.labels[0].1;
            assert!(!dev.starts_with("loop") && !dev.starts_with("ram"), "{dev}");
            assert_eq!(p.kind, Kind::Counter);
        }
        // Every interface in /sys/class/net, including lo, has all six counters.
        for entry in std::fs::read_dir("/sys/class/net").unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let labels = [("interface", name.as_str())];
            for m in [
                "network_received_bytes_total",
                "network_transmitted_bytes_total",
                "network_received_packets_total",
                "network_transmitted_packets_total",
                "network_receive_errors_total",
                "network_transmit_errors_total",
            ] {
                sink.one(m, &labels);
            }
        }
        let processes = sink.one("processes", &[]);
        assert!(processes >= 2.0, "{processes}");
        assert!(sink.one("procs_running", &[]) >= 1.0, "we are running");
        sink.one("procs_blocked", &[]);
    }

    #[test]
    fn pseudo_fs_list() {
        for t in ["proc", "sysfs", "cgroup", "cgroup2", "devpts", "nsfs"] {
            assert!(super::is_pseudo_fs(t), "{t}");
        }
        for t in ["ext4", "xfs", "btrfs", "overlay", "tmpfs"] {
            assert!(!super::is_pseudo_fs(t), "{t}");
        }
    }
}
