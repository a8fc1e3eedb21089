//! What plugins can read through the host imports `query-series` and
//! `list-resources`, behind one trait so the runtime does not depend on where
//! the data lives.

use std::time::Duration;

use warden_core::records::{ResourceFilter, ResourceSet, Series, SeriesSelector, TimestampMs};

/// The read-only data a plugin may query. Errors are messages the plugin sees.
pub trait DataSource: Send + Sync {
    /// Returns every series matching `selector` with its samples in
    /// `(now - window, now]`.
    fn query_series(
        &self,
        selector: &SeriesSelector,
        window: Duration,
        now_ms: TimestampMs,
    ) -> Result<Vec<Series>, String>;

    /// Returns the tracked resources matching `filter`.
    fn list_resources(&self, filter: &ResourceFilter) -> Result<ResourceSet, String>;
}

/// A source with nothing in it, for plugins that need no data.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoData;

impl DataSource for NoData {
    fn query_series(
        &self,
        _: &SeriesSelector,
        _: Duration,
        _: TimestampMs,
    ) -> Result<Vec<Series>, String> {
        Ok(Vec::new())
    }
    fn list_resources(&self, _: &ResourceFilter) -> Result<ResourceSet, String> {
        Ok(ResourceSet::default())
    }
}
