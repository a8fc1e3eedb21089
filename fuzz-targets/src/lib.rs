//! # warden-fuzz-targets
//!
//! What each fuzz target under `fuzz/` (cargo-fuzz, outside the workspace:
//! `scripts/fuzz.sh` sets it up) runs on one input, here in the workspace so
//! that `cargo test` replays every corpus and crash reproducer
//! (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through the same
//! code on every run. Each function must never panic, whatever the bytes.
//!
//! - [`policy_file`]: a policy file parsed and checked, as a reload does.
//! - [`ingest_json`]: a `POST /api/v1/metrics` body checked and recorded.
//! - [`batch_refill`]: a batch file (plain or zstd) read back into a store.
//! - [`plugin_output`]: bytes a plugin returns, lifted by the host through
//!   the component model and then used: alerts through the alert state
//!   machine and its saved state, cleanup plans through a dry-run execution.

#![deny(missing_docs)]

mod plugin_output;

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

pub use plugin_output::{lift_alerts, plugin_output};

/// What a target runs on one input.
pub type Target = fn(&[u8]);

/// The targets, by the names of `fuzz/fuzz_targets/*.rs`.
pub const TARGETS: [(&str, Target); 4] = [
    ("policy_file", policy_file),
    ("ingest_json", ingest_json),
    ("batch_refill", batch_refill),
    ("plugin_output", plugin_output),
];

/// Inputs larger than this are skipped: the targets look for logic bugs,
/// not for how long a huge input takes.
pub const MAX_INPUT: usize = 256 * 1024;

/// Parses and checks `data` as a policy file.
pub fn policy_file(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cx = warden_policy::ParseContext {
        data_dir: "/var/lib/warden".into(),
    };
    let _ = warden_policy::parse::parse(Path::new("/etc/warden/policies/fuzz.yaml"), text, &cx);
}

fn metrics() -> &'static warden_metrics::Metrics {
    static METRICS: OnceLock<warden_metrics::Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let store = Arc::new(warden_metrics::SeriesStore::new(
            warden_metrics::StoreLimits {
                max_series: 4096,
                max_samples: 64,
                retention: Duration::from_secs(3600),
            },
            warden_metrics::validate::PiiKeys::default(),
        ));
        let config = warden_metrics::config::PersistConfig {
            max_queue_size: 4096,
            full_queue: warden_metrics::config::FullQueue::DropOldest,
            ..Default::default()
        };
        warden_metrics::Metrics::start(store, &config, None).expect("metrics start")
    })
}

/// Checks `data` as a pushed metrics batch and, if it passes, records it.
pub fn ingest_json(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let m = metrics();
    let limits = warden_metrics::push::PushLimits::default();
    if let Ok(checked) = warden_metrics::push::check(data, m, &limits, warden_core::clock::now_ms())
    {
        let _ = checked.enqueue(m);
    }
}

/// Reads `data[1..]` as a batch file (zstd if the first byte is odd) and
/// puts it back into a fresh store, as a refill does.
pub fn batch_refill(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    if rest.len() > MAX_INPUT {
        return;
    }
    let Ok(batch) = warden_metrics::persist::parse_batch(rest, first & 1 == 1) else {
        return;
    };
    let store = warden_metrics::SeriesStore::new(
        warden_metrics::StoreLimits {
            max_series: 1024,
            max_samples: 64,
            retention: Duration::from_secs(3600),
        },
        warden_metrics::validate::PiiKeys::default(),
    );
    let window =
        warden_metrics::persist::Window::new(&store, SystemTime::now(), Duration::from_secs(300));
    let mut report = warden_metrics::persist::Refill::default();
    warden_metrics::persist::put_back(batch, &store, &window, &mut report);
}
