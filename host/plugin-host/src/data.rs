//! What plugins can read through the host imports `query-series`,
//! `query-reduced` and `list-resources`, behind one trait so the runtime does not depend on where
//! the data lives, and the budget that bounds how much one evaluation reads.

use std::time::Duration;

use warden_core::records::{
    Reduce, Reduced, ResourceFilter, ResourceSet, Series, SeriesSelector, TimestampMs,
};

/// How many bytes one evaluation may still copy out of the host's stores
/// through `query-series`, `query-reduced` and `list-resources`, over all its calls. A source
/// charges what it copies and stops at the budget, so no call copies a whole
/// store; the call past it returns an error the plugin sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    limit: u64,
    spent: u64,
}

impl Budget {
    /// A budget of `limit` bytes, none spent.
    pub fn new(limit: u64) -> Self {
        Budget { limit, spent: 0 }
    }

    /// Returns the bytes still allowed.
    pub fn left(&self) -> usize {
        usize::try_from(self.limit.saturating_sub(self.spent)).unwrap_or(usize::MAX)
    }

    /// Returns the bytes spent.
    pub fn spent(&self) -> u64 {
        self.spent
    }

    /// Charges `bytes` that were copied.
    pub fn charge(&mut self, bytes: usize) {
        self.spent = self.spent.saturating_add(bytes as u64);
    }

    /// Settles a bounded read of `call`: an answer and the bytes it took
    /// are charged and passed on; `Err(needed)`, the bytes the answer would
    /// at least have taken, becomes the refusal the plugin sees.
    pub fn settle<T>(&mut self, call: &str, read: Result<(T, usize), usize>) -> Result<T, String> {
        match read {
            Ok((answer, bytes)) => {
                self.charge(bytes);
                Ok(answer)
            }
            Err(needed) => Err(self.exceeded(call, needed)),
        }
    }

    /// Returns the error a plugin sees when a `call` needing at least
    /// `needed` bytes is refused; nothing is charged for it.
    pub fn exceeded(&self, call: &str, needed: usize) -> String {
        format!(
            "`{call}` refused: its answer needs at least {needed} bytes and this evaluation may read {} more (of its {} bytes through `query-series`, `query-reduced` and `list-resources`); ask for less (a shorter window, a `limit`, a `name-prefix`), or raise the policy's `query_limit`",
            self.left(),
            self.limit
        )
    }
}

/// The read-only data a plugin may query. Errors are messages the plugin
/// sees. Implementations copy at most `budget.left()` bytes per call,
/// charge what they copy, and refuse past it with [`Budget::exceeded`].
pub trait DataSource: Send + Sync {
    /// Returns every series matching `selector` with its samples in
    /// `(now - window, now]`.
    fn query_series(
        &self,
        selector: &SeriesSelector,
        window: Duration,
        now_ms: TimestampMs,
        budget: &mut Budget,
    ) -> Result<Vec<Series>, String>;

    /// Returns the window `(now - window, now]` of every series matching
    /// `selector` reduced as `how` says (WIT 0.3.0's `query-reduced`). By
    /// default the series are copied as for `query_series` and reduced
    /// after; a source holding the samples reduces them in place.
    fn query_reduced(
        &self,
        selector: &SeriesSelector,
        window: Duration,
        now_ms: TimestampMs,
        how: &Reduce,
        budget: &mut Budget,
    ) -> Result<Vec<Reduced>, String> {
        let series = self.query_series(selector, window, now_ms, budget)?;
        Ok(warden_core::records::reduce_series(&series, how))
    }

    /// Returns the tracked resources matching `filter`.
    fn list_resources(
        &self,
        filter: &ResourceFilter,
        budget: &mut Budget,
    ) -> Result<ResourceSet, String>;
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
        _: &mut Budget,
    ) -> Result<Vec<Series>, String> {
        Ok(Vec::new())
    }
    fn list_resources(&self, _: &ResourceFilter, _: &mut Budget) -> Result<ResourceSet, String> {
        Ok(ResourceSet::default())
    }
}
