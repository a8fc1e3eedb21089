//! The data plugins read — the series store and the resource registry — behind
//! [`plugin::DataSource`](warden_plugin_host::DataSource).

use std::sync::Arc;
use std::time::Duration;

use warden_core::records::{ResourceFilter, ResourceSet, Series, SeriesSelector, TimestampMs};
use warden_metrics::SeriesStore;
use warden_plugin_host::DataSource;
use warden_resources::Registry;

/// Everything a plugin may query.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The series store.
    pub series: Arc<SeriesStore>,
    /// The resource registry.
    pub resources: Arc<Registry>,
}

impl DataSource for Sources {
    fn query_series(
        &self,
        selector: &SeriesSelector,
        window: Duration,
        now_ms: TimestampMs,
    ) -> Result<Vec<Series>, String> {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        Ok(self.series.query(selector, window_ms, now_ms))
    }

    fn list_resources(&self, filter: &ResourceFilter) -> Result<ResourceSet, String> {
        Ok(self.resources.list(filter))
    }
}
