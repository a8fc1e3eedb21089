//! Memory pressure levels. The daemon measures memory pressure every
//! `every` and maps it to a level — below all, `standard`, `critical` or
//! `emergency` — by the configured thresholds. Each change of level is
//! logged, published as a `pressure-changed` event, and set as the current
//! level, whose rise to a cleanup policy's `on_pressure` level runs it.
//!
//! Two measures are offered:
//! - `memory` (default): the share of memory in use, `1 - MemAvailable /
//!   MemTotal`, in percent; thresholds 70/85/95.
//! - `psi`: the kernel's pressure stall information, the percentage of the
//!   last 10 s in which some task waited for memory (`/proc/pressure/memory`,
//!   `some avg10`); thresholds 10/25/50. It sees thrashing that a fill level
//!   cannot, but needs a kernel with PSI.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use warden_core::values::HumanDuration;
use warden_policy::schema::PressureLevel;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Share of memory in use, percent.
    #[default]
    Memory,
    /// `some avg10` of `/proc/pressure/memory`, percent.
    Psi,
}

/// The `pressure:` section of the daemon's config.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PressureConfig {
    /// What is measured.
    #[serde(default)]
    pub source: Source,
    /// From this percentage on, the level is `standard` (default 70, or 10 for psi).
    #[serde(default)]
    pub standard: Option<f64>,
    /// From this percentage on, `critical` (default 85, or 25 for psi).
    #[serde(default)]
    pub critical: Option<f64>,
    /// From this percentage on, `emergency` (default 95, or 50 for psi).
    #[serde(default)]
    pub emergency: Option<f64>,
    /// How often it is measured.
    #[serde(default = "default_every")]
    pub every: HumanDuration,
}

fn default_every() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}

impl Default for PressureConfig {
    fn default() -> Self {
        PressureConfig {
            source: Source::Memory,
            standard: None,
            critical: None,
            emergency: None,
            every: default_every(),
        }
    }
}

/// Checked thresholds, in percent, rising.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// What is measured.
    pub source: Source,
    /// `standard`, `critical`, `emergency`.
    pub levels: [f64; 3],
}

impl PressureConfig {
    /// Fills the defaults and checks that the thresholds rise within 0–100;
    /// the error names the field.
    pub fn thresholds(&self) -> Result<Thresholds, String> {
        let defaults = match self.source {
            Source::Memory => [70.0, 85.0, 95.0],
            Source::Psi => [10.0, 25.0, 50.0],
        };
        let levels = [
            self.standard.unwrap_or(defaults[0]),
            self.critical.unwrap_or(defaults[1]),
            self.emergency.unwrap_or(defaults[2]),
        ];
        for (name, v) in ["standard", "critical", "emergency"].iter().zip(levels) {
            if !(0.0..=100.0).contains(&v) {
                return Err(format!(
                    "pressure.{name}: {v} is not a percentage between 0 and 100"
                ));
            }
        }
        if !(levels[0] < levels[1] && levels[1] < levels[2]) {
            return Err(format!(
                "pressure: the thresholds must rise, standard < critical < emergency; they are {} / {} / {}",
                levels[0], levels[1], levels[2]
            ));
        }
        if self.every.0.is_zero() {
            return Err("pressure.every: must be longer than 0s".into());
        }
        Ok(Thresholds {
            source: self.source,
            levels,
        })
    }
}

impl Thresholds {
    /// The level of a measured percentage.
    pub fn level(&self, percent: f64) -> Option<PressureLevel> {
        let [s, c, e] = self.levels;
        if percent >= e {
            Some(PressureLevel::Emergency)
        } else if percent >= c {
            Some(PressureLevel::Critical)
        } else if percent >= s {
            Some(PressureLevel::Standard)
        } else {
            None
        }
    }

    /// Measures now, in percent.
    pub fn measure(&self) -> std::io::Result<f64> {
        match self.source {
            Source::Memory => {
                let m = procfs::Current::current()
                    .map_err(std::io::Error::other)
                    .and_then(|m: procfs::Meminfo| {
                        let available = m.mem_available.ok_or_else(|| {
                            std::io::Error::other("/proc/meminfo has no MemAvailable")
                        })?;
                        Ok((m.mem_total, available))
                    })?;
                let (total, available) = m;
                if total == 0 {
                    return Err(std::io::Error::other("/proc/meminfo says MemTotal is 0"));
                }
                Ok(100.0 * (1.0 - available as f64 / total as f64))
            }
            Source::Psi => {
                let p: procfs::MemoryPressure =
                    procfs::Current::current().map_err(std::io::Error::other)?;
                Ok(f64::from(p.some.avg10))
            }
        }
    }
}

/// The current level, as the monitor last measured it.
#[derive(Debug, Default)]
pub struct Monitor {
    state: std::sync::Mutex<Reading>,
}

/// One measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Reading {
    /// The percentage measured.
    pub percent: f64,
    /// Its level.
    pub level: Option<PressureLevel>,
    /// When, ms since the epoch; 0 before the first.
    pub at_ms: i64,
}

impl Monitor {
    /// The latest reading.
    pub fn reading(&self) -> Reading {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Measures every `every` and publishes changes of level. Runs forever.
    pub async fn run(
        self: std::sync::Arc<Self>,
        thresholds: Thresholds,
        every: std::time::Duration,
        cx: super::scheduler::Context,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut previous: Option<Option<PressureLevel>> = None;
        loop {
            tick.tick().await;
            match thresholds.measure() {
                Ok(percent) => self.observe(&thresholds, percent, &mut previous, &cx),
                Err(e) => {
                    tracing::warn!(error = %e, source = ?thresholds.source, "cannot measure memory pressure");
                }
            }
        }
    }

    /// Records one measurement; on a change of level (or the first
    /// measurement) sets the current level and publishes `pressure-changed`.
    /// `previous` is the level of the measurement before, `None` before the
    /// first.
    fn observe(
        &self,
        thresholds: &Thresholds,
        percent: f64,
        previous: &mut Option<Option<PressureLevel>>,
        cx: &super::scheduler::Context,
    ) {
        let level = thresholds.level(percent);
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Reading {
            percent,
            level,
            at_ms: warden_core::clock::now_ms(),
        };
        if *previous == Some(level) {
            return;
        }
        if previous.is_some() || level.is_some() {
            tracing::warn!(?level, percent, source = ?thresholds.source, "memory pressure level changed");
        }
        *previous = Some(level);
        cx.pressure.send_replace(level);
        cx.publish(super::scheduler::Event {
            kind: warden_policy::schema::EventKind::PressureChanged,
            pressure: level,
            failure: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_by_threshold_and_defaults_by_source() {
        let t = PressureConfig::default().thresholds().unwrap();
        assert_eq!(t.levels, [70.0, 85.0, 95.0]);
        assert_eq!(t.level(69.9), None);
        assert_eq!(t.level(70.0), Some(PressureLevel::Standard));
        assert_eq!(t.level(90.0), Some(PressureLevel::Critical));
        assert_eq!(t.level(99.0), Some(PressureLevel::Emergency));
        let psi = PressureConfig {
            source: Source::Psi,
            ..PressureConfig::default()
        };
        assert_eq!(psi.thresholds().unwrap().levels, [10.0, 25.0, 50.0]);
    }

    #[test]
    fn thresholds_must_rise_and_be_percentages() {
        let bad = PressureConfig {
            critical: Some(60.0),
            ..PressureConfig::default()
        };
        assert!(bad.thresholds().unwrap_err().contains("must rise"));
        let bad = PressureConfig {
            emergency: Some(120.0),
            ..PressureConfig::default()
        };
        assert!(
            bad.thresholds()
                .unwrap_err()
                .starts_with("pressure.emergency")
        );
    }

    #[test]
    fn memory_is_measured_from_proc() {
        let t = PressureConfig::default().thresholds().unwrap();
        let p = t.measure().unwrap();
        assert!(p > 0.0 && p < 100.0, "{p}");
    }

    /// `some avg10` of /proc/pressure/memory, as the kernel prints it.
    fn psi_some_avg10() -> f64 {
        let text = std::fs::read_to_string("/proc/pressure/memory").unwrap_or_else(|e| {
            panic!("this test needs PSI (a kernel with CONFIG_PSI, not booted with psi=0): /proc/pressure/memory: {e}")
        });
        text.lines()
            .find_map(|l| l.strip_prefix("some "))
            .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("avg10=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `some avg10=` in /proc/pressure/memory: {text}"))
    }

    #[test]
    fn psi_is_measured_as_the_kernels_some_avg10() {
        let t = PressureConfig {
            source: Source::Psi,
            ..PressureConfig::default()
        }
        .thresholds()
        .unwrap();
        // The kernel updates avg10 every 2 s: read it on both sides of the
        // measurement, which must equal one of the two.
        let before = psi_some_avg10();
        let measured = t.measure().unwrap();
        let after = psi_some_avg10();
        assert!(
            [before, after].iter().any(|k| (k - measured).abs() < 1e-3),
            "measured {measured}, the kernel said {before} then {after}"
        );
    }

    #[test]
    fn pressure_changed_is_published_once_per_change_of_level() {
        let cx =
            crate::scheduler::Context::new(std::sync::Arc::default(), std::sync::Arc::default());
        let mut events = cx.events.subscribe();
        let t = PressureConfig::default().thresholds().unwrap();
        let monitor = Monitor::default();
        let mut previous = None;
        // 70/85/95: below, below, standard, standard, critical, emergency,
        // emergency, below.
        for percent in [10.0, 20.0, 75.0, 80.0, 90.0, 96.0, 99.0, 5.0] {
            monitor.observe(&t, percent, &mut previous, &cx);
        }
        let mut published = Vec::new();
        while let Ok(e) = events.try_recv() {
            assert_eq!(e.kind, warden_policy::schema::EventKind::PressureChanged);
            published.push(e.pressure);
        }
        use PressureLevel::*;
        // The first measurement counts as a change: a policy learns the
        // level it starts under.
        assert_eq!(
            published,
            [None, Some(Standard), Some(Critical), Some(Emergency), None]
        );
        assert_eq!(*cx.pressure.borrow(), None);
        assert_eq!(monitor.reading().percent, 5.0);
    }
}
