//! The data plugins read — the series store and the resource registry — behind
//! [`plugin::DataSource`](warden_plugin_host::DataSource).

use std::sync::Arc;
use std::time::Duration;

use warden_core::records::{ResourceFilter, ResourceSet, Series, SeriesSelector, TimestampMs};
use warden_metrics::SeriesStore;
use warden_plugin_host::{Budget, DataSource};
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
        budget: &mut Budget,
    ) -> Result<Vec<Series>, String> {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        match self
            .series
            .query_bounded(selector, window_ms, now_ms, budget.left())
        {
            Ok((series, bytes)) => {
                budget.charge(bytes);
                Ok(series)
            }
            Err(needed) => Err(budget.exceeded("query-series", needed)),
        }
    }

    fn list_resources(
        &self,
        filter: &ResourceFilter,
        budget: &mut Budget,
    ) -> Result<ResourceSet, String> {
        match self.resources.list_bounded(filter, budget.left()) {
            Ok(set) => {
                budget.charge(set.bytes());
                Ok(set)
            }
            Err(partial) => Err(budget.exceeded("list-resources", partial.1)),
        }
    }
}
