//! The host's imports served by the [`mock`](crate::mock) host: what a native
//! test of a plugin installed on its thread. Stands in for `host.rs` in
//! native builds with the `mock` feature.

use crate::__bindings::types;
use crate::mock::with_host;

pub(crate) fn log(level: types::Level, message: &str) {
    with_host(|h| h.logs.push((level, message.to_owned())));
}

pub(crate) fn now_ms() -> i64 {
    with_host(|h| h.now_ms)
}

pub(crate) fn query_series(
    selector: &types::SeriesSelector,
    window_ms: u64,
) -> Result<Vec<types::Series>, String> {
    with_host(|h| {
        h.queried.push((
            selector.metric.clone(),
            selector
                .matchers
                .iter()
                .map(|m| (m.key.clone(), m.value.clone()))
                .collect(),
            window_ms,
        ));
        if let Some(e) = &h.series_error {
            return Err(e.clone());
        }
        let since = h
            .now_ms
            .saturating_sub(i64::try_from(window_ms).unwrap_or(i64::MAX));
        Ok(h.series
            .iter()
            .filter(|s| s.metric == selector.metric)
            .filter(|s| selector.matchers.iter().all(|m| s.labels.contains(m)))
            .map(|s| {
                // The host's window: `(now - window, now]`.
                let keep: Vec<usize> = (0..s.times.len())
                    .filter(|i| s.times[*i] > since && s.times[*i] <= h.now_ms)
                    .collect();
                types::Series {
                    metric: s.metric.clone(),
                    labels: s.labels.clone(),
                    times: keep.iter().map(|i| s.times[*i]).collect(),
                    values: keep.iter().map(|i| s.values[*i]).collect(),
                }
            })
            .collect())
    })
}

/// Served from the mock's series as the host serves it: the series
/// `query_series` returns (the query is recorded the same way), reduced.
pub(crate) fn query_reduced(
    selector: &types::SeriesSelector,
    window_ms: u64,
    how: &types::Reduce,
) -> Result<Vec<types::Reduced>, String> {
    let series = query_series(selector, window_ms)?;
    let how = crate::series::Reduce {
        over: how.over.into(),
        quantile: how.quantile,
        by: how.by.as_deref(),
        aggregate: how.aggregate.into(),
    };
    Ok(crate::series::reduce_series(&series, &how))
}

pub(crate) fn list_resources(filter: &types::ResourceFilter) -> Result<types::ResourceSet, String> {
    with_host(|h| {
        let mut b = crate::resources::ResourceSet::builder();
        let matching = h
            .iter_resources()
            .filter(|r| filter.kinds.is_empty() || filter.kinds.contains(&r.kind()))
            .filter(|r| {
                filter
                    .name_prefix
                    .as_deref()
                    .is_none_or(|p| r.name().starts_with(p))
            })
            .take(filter.limit.map_or(usize::MAX, |l| l as usize));
        for r in matching {
            let labels: Vec<(&str, &str)> = r.labels().collect();
            b.push(crate::resources::NewResource {
                kind: Some(r.kind()),
                name: r.name(),
                owner: r.owner(),
                size_bytes: r.size_bytes(),
                created_ms: r.created_ms(),
                modified_ms: r.modified_ms(),
                accessed_ms: r.accessed_ms(),
                pid: r.pid(),
                labels: &labels,
            });
        }
        Ok(b.build().raw().clone())
    })
}

pub(crate) fn state_get() -> Option<Vec<u8>> {
    with_host(|h| h.state.clone())
}

pub(crate) fn state_set(value: &[u8]) -> Result<(), String> {
    with_host(|h| {
        if value.len() > h.state_limit {
            return Err(format!(
                "state of {} bytes refused: the policy's `state_limit` is {} bytes",
                value.len(),
                h.state_limit
            ));
        }
        h.state = Some(value.to_vec());
        Ok(())
    })
}

pub(crate) fn state_clear() {
    with_host(|h| h.state = None);
}
