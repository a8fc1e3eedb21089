//! The metrics pipeline as the daemon runs it: a store refilled from recent
//! batch files, the recording queue with its writer, and the collectors on
//! their interval, all feeding the same store.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use super::collect::{Collector, Sink};
use super::config::MetricsConfig;
use super::ingest::Metrics;
use super::persist::{Refill, Writer, refill};
use super::series::Kind;
use super::store::{Op, SeriesStore};

/// The running pipeline.
#[derive(Debug)]
pub struct Pipeline {
    metrics: Metrics,
    push: super::push::PushLimits,
    refill: Refill,
    persist_dir: Option<PathBuf>,
    collector: Mutex<Option<JoinHandle<()>>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    exposition: prometheus_client::registry::Registry,
    watched: Arc<super::collect::WatchedPids>,
}

impl Pipeline {
    /// Starts everything `config` asks for; batch files go under
    /// `data_dir/metrics` unless the config names a directory.
    pub fn start(config: &MetricsConfig, data_dir: &Path) -> anyhow::Result<Pipeline> {
        let p = &config.persist;
        anyhow::ensure!(
            (1..=19).contains(&p.zstd_level),
            "metrics.persist.zstd_level: {} is not a level; use 1 (fast) to 19 (small)",
            p.zstd_level
        );
        anyhow::ensure!(
            config.store.max_series > 0 && config.store.max_series <= u32::MAX as usize,
            "metrics.store.max_series: {} is out of range; use 1 to {}",
            config.store.max_series,
            u32::MAX
        );
        let store = Arc::new(SeriesStore::new(config.store.limits(), config.pii()));
        let (writer, persist_dir, refilled) = if p.enabled {
            let dir = p.dir.clone().unwrap_or_else(|| data_dir.join("metrics"));
            let writer = Writer::open(&dir, p.compression, p.zstd_level, p.retention.0)
                .with_context(|| {
                    format!("failed to open the metrics directory `{}`", dir.display())
                })?;
            let refilled = refill(&dir, &store, SystemTime::now(), config.push.max_future.0)
                .with_context(|| {
                    format!("failed to read the metrics directory `{}`", dir.display())
                })?;
            if refilled.records > 0 || !refilled.skipped.is_empty() {
                tracing::info!(
                    files = refilled.files,
                    records = refilled.records,
                    skipped = refilled.skipped.len(),
                    "store refilled from batch files"
                );
            }
            (Some(writer), Some(dir), refilled)
        } else {
            (None, None, Refill::default())
        };
        let metrics =
            Metrics::start(store, p, writer).context("failed to start metrics recording")?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let mut watched = Arc::default();
        let collector = if config.collect.enabled {
            let mut collector = Collector::new(&config.collect);
            watched = collector.watched();
            let interval = config.collect.interval.0.max(Duration::from_millis(100));
            let metrics = metrics.clone();
            let stop = Arc::clone(&stop);
            Some(
                std::thread::Builder::new()
                    .name("warden-collector".into())
                    .spawn(move || collect_loop(&mut collector, &metrics, interval, &stop))
                    .context("failed to start the collector thread")?,
            )
        } else {
            None
        };
        Ok(Pipeline {
            exposition: super::expose::registry(&metrics),
            push: config.push.limits(),
            metrics,
            refill: refilled,
            persist_dir,
            collector: Mutex::new(collector),
            stop,
            watched,
        })
    }

    /// The recording handle.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// What pushes over HTTP may do.
    pub fn push_limits(&self) -> &super::push::PushLimits {
        &self.push
    }

    /// The pids the process selectors matched at the last collection
    /// (none when collection is off).
    pub fn watched(&self) -> &Arc<super::collect::WatchedPids> {
        &self.watched
    }

    /// The store.
    pub fn store(&self) -> &Arc<SeriesStore> {
        self.metrics.store()
    }

    /// What the start-up refill read.
    pub fn refilled(&self) -> &Refill {
        &self.refill
    }

    /// Where batch files go, if anywhere.
    pub fn persist_dir(&self) -> Option<&Path> {
        self.persist_dir.as_deref()
    }

    /// Appends the store and the pipeline's counters to a scrape, in
    /// Prometheus' text format (without the closing `# EOF`).
    pub fn encode(&self, out: &mut String) -> std::fmt::Result {
        prometheus_client::encoding::text::encode_registry(out, &self.exposition)
    }

    /// Stops the collectors, then writes everything recorded. Idempotent.
    pub fn shutdown(&self) {
        {
            let (lock, cv) = &*self.stop;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cv.notify_all();
        }
        if let Some(t) = self
            .collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = t.join();
        }
        self.metrics.shutdown();
    }
}

fn collect_loop(
    collector: &mut Collector,
    metrics: &Metrics,
    interval: Duration,
    stop: &(Mutex<bool>, Condvar),
) {
    let mut next = Instant::now();
    loop {
        let started = Instant::now();
        let span = tracing::debug_span!("metrics.collect");
        let _g = span.enter();
        let mut sink = RecordSink {
            metrics,
            at_ms: warden_core::clock::now_ms(),
            refused: 0,
        };
        collector.collect(&mut sink);
        if sink.refused > 0 {
            tracing::warn!(
                refused = sink.refused,
                "collected values were refused (series cap); `warden_metrics_series_refused` counts them"
            );
        }
        tracing::trace!(micros = started.elapsed().as_micros() as u64, "collected");
        drop(_g);
        next += interval;
        let now = Instant::now();
        if next < now {
            // Fell behind (a suspended machine): skip, do not burst.
            next = now + interval;
        }
        let (lock, cv) = stop;
        let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !*stopped {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            stopped = cv
                .wait_timeout(stopped, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if *stopped {
            return;
        }
    }
}

struct RecordSink<'a> {
    metrics: &'a Metrics,
    at_ms: i64,
    refused: u32,
}

impl Sink for RecordSink<'_> {
    fn put(&mut self, metric: &str, labels: &[(&str, &str)], kind: Kind, value: f64) {
        if !value.is_finite() {
            return;
        }
        let Ok(id) = self.metrics.store().interner().intern(metric, labels, kind) else {
            self.refused += 1;
            return;
        };
        // A collected counter is already a total.
        let op = if kind == Kind::Histogram {
            Op::Observe
        } else {
            Op::Set
        };
        if self.metrics.push_sample(id, op, self.at_ms, value).is_err() {
            self.refused += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_by_name_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = MetricsConfig::default();
        config.persist.zstd_level = 0;
        let e = Pipeline::start(&config, dir.path()).unwrap_err();
        assert!(e.to_string().contains("metrics.persist.zstd_level"), "{e}");
        let mut config = MetricsConfig::default();
        config.store.max_series = 0;
        let e = Pipeline::start(&config, dir.path()).unwrap_err();
        assert!(e.to_string().contains("metrics.store.max_series"), "{e}");
        assert!(!dir.path().join("metrics").exists(), "nothing was created");
    }

    #[test]
    fn a_pipeline_collects_records_and_writes_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = MetricsConfig::default();
        config.collect.interval = warden_core::values::HumanDuration(Duration::from_millis(100));
        let p = Pipeline::start(&config, dir.path()).unwrap();
        p.metrics()
            .record("app_queue_depth", &[("shard", "1")], 3.0)
            .unwrap();
        let t = Instant::now();
        while p
            .store()
            .interner()
            .lookup("memory_total_bytes", &[])
            .is_none()
        {
            assert!(t.elapsed() < Duration::from_secs(10), "nothing collected");
            std::thread::sleep(Duration::from_millis(20));
        }
        p.shutdown();
        let stats = p.metrics().stats();
        assert!(!stats.is_running);
        assert_eq!(stats.total_recorded, stats.total_persisted, "{stats:?}");
        let files = super::super::persist::batch_files(&dir.path().join("metrics")).unwrap();
        assert!(!files.is_empty());
    }
}
