//! Pressure stall information (PSI) from /proc/pressure.

use std::path::Path;

use super::{Scratch, Sink};
use crate::Kind::{Counter, Gauge};

const RESOURCES: [(&str, &str); 3] = [
    ("cpu", "/proc/pressure/cpu"),
    ("memory", "/proc/pressure/memory"),
    ("io", "/proc/pressure/io"),
];

pub(super) struct PressureCollector {
    /// Kernels without PSI (or booted with `psi=0`) have no /proc/pressure;
    /// checked once, since it cannot appear later.
    present: bool,
}

impl PressureCollector {
    pub(super) fn new() -> Self {
        Self {
            present: Path::new("/proc/pressure").is_dir(),
        }
    }

    pub(super) fn collect(&self, s: &mut Scratch, sink: &mut dyn Sink) {
        if !self.present {
            return;
        }
        for (i, (resource, path)) in RESOURCES.into_iter().enumerate() {
            if let Err(e) = s.read(path) {
                s.quiet.skip("pressure", i, &e);
                continue;
            }
            let Ok(text) = std::str::from_utf8(&s.buf) else {
                s.quiet.skip("pressure.utf8", i, &"not UTF-8");
                continue;
            };
            // Line by line rather than procfs's CpuPressure & co., which
            // reject a file without a `full` line (older kernels' cpu file).
            for line in text.lines() {
                let Some(kind @ ("some" | "full")) = line.split_ascii_whitespace().next() else {
                    continue;
                };
                match procfs::parse_pressure_record(line) {
                    Ok(r) => {
                        let labels = [("resource", resource), ("kind", kind)];
                        // The kernel gives percent and microseconds.
                        let avg10 = f64::from(r.avg10) / 100.0;
                        sink.put("pressure_avg10_ratio", &labels, Gauge, avg10);
                        let seconds = r.total as f64 / 1e6;
                        sink.put("pressure_seconds_total", &labels, Counter, seconds);
                    }
                    Err(e) => s.quiet.skip("pressure.parse", i, &e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::VecSink;
    use super::super::{CollectConfig, Collector};
    use crate::Kind;

    #[test]
    fn psi_is_a_ratio_and_a_counter_in_seconds() {
        assert!(
            std::path::Path::new("/proc/pressure/cpu").exists(),
            "this test needs PSI: /proc/pressure/cpu is missing (a kernel without CONFIG_PSI, or booted with psi=0)"
        );
        let mut sink = VecSink::default();
        Collector::new(&CollectConfig::default()).collect(&mut sink);
        let labels = [("resource", "cpu"), ("kind", "some")];
        let avg10 = sink.one("pressure_avg10_ratio", &labels);
        assert!((0.0..=1.0).contains(&avg10), "{avg10}");

        let text = std::fs::read_to_string("/proc/pressure/cpu").unwrap();
        let total_us: f64 = text
            .lines()
            .next()
            .unwrap()
            .split("total=")
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let seconds = sink.find("pressure_seconds_total", &labels);
        assert_eq!(seconds[0].kind, Kind::Counter);
        // Read a moment apart, and it only grows.
        assert!(seconds[0].value <= total_us / 1e6 + 1e-9);
        assert!(seconds[0].value > total_us / 1e6 - 5.0);

        for resource in ["memory", "io"] {
            assert!(
                std::path::Path::new("/proc/pressure")
                    .join(resource)
                    .exists(),
                "this test needs PSI: /proc/pressure/{resource} is missing"
            );
            sink.one(
                "pressure_avg10_ratio",
                &[("resource", resource), ("kind", "full")],
            );
        }
    }
}
