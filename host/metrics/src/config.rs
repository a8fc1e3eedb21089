//! The `metrics:` section of the daemon's config file. Every field has a
//! default, so the section can be left out.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::collect::CollectConfig;
use super::store::StoreLimits;
use super::validate::{DEFAULT_PII_KEYS, PiiKeys};
use warden_core::values::HumanDuration;

/// Everything about metrics.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// The in-memory series store.
    pub store: StoreConfig,
    /// Batch files on disk.
    pub persist: PersistConfig,
    /// System and process collectors.
    pub collect: CollectConfig,
    /// What pushes over HTTP may do.
    pub push: PushConfig,
    /// Metadata keys, label names (of series and of registered resources)
    /// and `key=value` parts of resource names refused as personal data,
    /// compared ignoring case and separators; replaces the default list
    /// (`email`, `name`, `username`, `password`, `token`, `key`, `secret`,
    /// `api_key`, `user_id`, `client_id`, `session_id`).
    pub pii_keys: Option<Vec<String>>,
}

impl MetricsConfig {
    /// The refused keys.
    pub fn pii(&self) -> PiiKeys {
        match &self.pii_keys {
            Some(keys) => PiiKeys::new(keys.iter().map(String::as_str)),
            None => PiiKeys::new(DEFAULT_PII_KEYS.iter().copied()),
        }
    }
}

/// The `push:` section: limits on records pushed over HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// How far ahead of this machine's clock a pushed `timestamp_ms` may be
    /// (clock skew between the pusher and Warden). Older than the store's
    /// retention is refused too.
    pub max_future: HumanDuration,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            max_future: HumanDuration(super::push::PushLimits::default().max_future),
        }
    }
}

impl PushConfig {
    /// As the push check takes them.
    pub fn limits(&self) -> super::push::PushLimits {
        super::push::PushLimits {
            max_future: self.max_future.0,
        }
    }
}

/// The bounds of the in-memory store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The most series; a new series beyond it is refused and counted.
    pub max_series: usize,
    /// The most samples one series keeps.
    pub max_samples: usize,
    /// How long samples stay queryable.
    pub retention: HumanDuration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let d = StoreLimits::default();
        StoreConfig {
            max_series: d.max_series,
            max_samples: d.max_samples,
            retention: HumanDuration(d.retention),
        }
    }
}

impl StoreConfig {
    /// As the store takes it.
    pub fn limits(&self) -> StoreLimits {
        StoreLimits {
            max_series: self.max_series,
            max_samples: self.max_samples,
            retention: self.retention.0,
        }
    }
}

/// What a producer meets when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FullQueue {
    /// Wait up to `wait_timeout` for room, then refuse.
    Wait,
    /// Refuse at once with an error.
    Reject,
    /// Make room by dropping the oldest queued record.
    #[default]
    DropOldest,
}

/// Compression of batch files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Plain JSON (`.json`), readable with any tool.
    #[default]
    None,
    /// zstd (`.json.zst`).
    Zstd,
}

/// The batch writer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistConfig {
    /// Write batch files at all.
    pub enabled: bool,
    /// Where; default `<data_dir>/metrics`.
    pub dir: Option<PathBuf>,
    /// The longest a record waits before it is written.
    pub flush_interval: HumanDuration,
    /// A batch goes to the writer as soon as this many records are queued.
    /// A writer that is behind writes what piled up (up to 16 batches) as
    /// one file: group commit, one pair of fsyncs for all of it.
    pub max_batch_size: usize,
    /// Records held between producers and the writer.
    pub max_queue_size: usize,
    /// What a producer meets when the queue is full.
    pub full_queue: FullQueue,
    /// How long `full_queue: wait` waits.
    pub wait_timeout: HumanDuration,
    /// Batch files older than this are deleted.
    pub retention: HumanDuration,
    /// Compression of batch files.
    pub compression: Compression,
    /// zstd level, 1 (fast) to 19 (small).
    pub zstd_level: i32,
}

impl Default for PersistConfig {
    fn default() -> Self {
        PersistConfig {
            enabled: true,
            dir: None,
            flush_interval: HumanDuration(Duration::from_secs(5)),
            max_batch_size: 1000,
            max_queue_size: 10_000,
            full_queue: FullQueue::default(),
            wait_timeout: HumanDuration(Duration::from_millis(100)),
            retention: HumanDuration(Duration::from_secs(7 * 24 * 3600)),
            compression: Compression::None,
            zstd_level: 3,
        }
    }
}
