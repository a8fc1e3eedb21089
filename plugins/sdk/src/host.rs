//! The host's imports as the component calls them. In a native test build
//! with the `mock` feature, `host_mock.rs` stands in for this module.

use crate::__bindings::{host, state, types};

pub(crate) fn log(level: types::Level, message: &str) {
    host::log(level, message);
}

pub(crate) fn now_ms() -> i64 {
    host::now()
}

pub(crate) fn query_series(
    selector: &types::SeriesSelector,
    window_ms: u64,
) -> Result<Vec<types::Series>, String> {
    host::query_series(selector, window_ms)
}

pub(crate) fn query_reduced(
    selector: &types::SeriesSelector,
    window_ms: u64,
    how: &types::Reduce,
) -> Result<Vec<types::Reduced>, String> {
    host::query_reduced(selector, window_ms, how)
}

pub(crate) fn list_resources(filter: &types::ResourceFilter) -> Result<types::ResourceSet, String> {
    host::list_resources(filter)
}

pub(crate) fn state_get() -> Option<Vec<u8>> {
    state::get()
}

pub(crate) fn state_set(value: &[u8]) -> Result<(), String> {
    state::set(value)
}

pub(crate) fn state_clear() {
    state::clear();
}
