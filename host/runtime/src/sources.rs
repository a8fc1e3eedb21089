//! The data plugins read — the series store, the resource registry and what
//! discovery found in watched processes — behind
//! [`plugin::DataSource`](warden_plugin_host::DataSource).

use std::sync::Arc;
use std::time::Duration;

use warden_core::records::{
    Reduce, Reduced, ResourceFilter, ResourceSet, Series, SeriesSelector, TimestampMs,
};
use warden_metrics::SeriesStore;
use warden_plugin_host::{Budget, DataSource};
use warden_resources::Registry;
use warden_resources::discover::{Discovered, rows};

/// Everything a plugin may query.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The series store.
    pub series: Arc<SeriesStore>,
    /// The resource registry.
    pub resources: Arc<Registry>,
    /// The latest inventories of watched processes.
    pub discovered: Arc<Discovered>,
}

impl DataSource for Sources {
    fn query_series(
        &self,
        selector: &SeriesSelector,
        window: Duration,
        now_ms: TimestampMs,
        budget: &mut Budget,
    ) -> Result<Vec<Series>, String> {
        let read = self
            .series
            .query_bounded(selector, ms(window), now_ms, budget.left());
        budget.settle("query-series", read)
    }

    fn query_reduced(
        &self,
        selector: &SeriesSelector,
        window: Duration,
        now_ms: TimestampMs,
        how: &Reduce,
        budget: &mut Budget,
    ) -> Result<Vec<Reduced>, String> {
        let read = self
            .series
            .reduce_bounded(selector, ms(window), now_ms, how, budget.left());
        budget.settle("query-reduced", read)
    }

    fn list_resources(
        &self,
        filter: &ResourceFilter,
        budget: &mut Budget,
    ) -> Result<ResourceSet, String> {
        // Registered resources first, then discovered ones of the kinds the
        // filter names, within one budget and one limit.
        let mut set = match self.resources.list_bounded(filter, budget.left()) {
            Ok(set) => set,
            Err(partial) => return Err(budget.exceeded("list-resources", partial.1)),
        };
        let snap = self.discovered.current();
        if let Err(needed) = rows::append(&mut set, &snap, filter, budget.left()) {
            return Err(budget.exceeded("list-resources", needed));
        }
        budget.charge(set.bytes());
        Ok(set)
    }
}

/// A window in whole milliseconds, as the store takes it.
fn ms(window: Duration) -> u64 {
    u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
}
