//! A host for native unit tests (feature `mock`): a plugin that calls
//! [`series::query`](crate::series::query), [`resources::list`],
//! [`log`](crate::log) or [`state`](crate::state) runs as a plain Rust test,
//! served from fixtures instead of a real Warden.
//!
//! ```ignore
//! use warden_sdk::mock::MockHost;
//! use warden_sdk::series::Series;
//!
//! MockHost::new()
//!     .now_ms(600_000)
//!     .series(Series::new("queue_depth", &[("queue", "jobs")], &[(540_000, 3.0), (599_000, 9.0)]))
//!     .install();
//! let alerts = my_rule.evaluate(&warden_sdk::mock::invocation("test"))?;
//! assert_eq!(warden_sdk::mock::logs().len(), 0);
//! ```
//!
//! The host is per thread (tests run on their own threads), and `install`
//! replaces whatever an earlier test on the thread installed. Without an
//! installed host, calls see an empty one at time 0.

use std::cell::RefCell;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::log::Level;
use crate::resources::{Resource, ResourceSet};
use crate::series::Series;

/// A `query-series` the plugin asked: the metric, its matchers, the window
/// in ms.
pub type Query = (String, Vec<(String, String)>, u64);

/// The fixtures a test serves to the plugin, and what the plugin did.
#[derive(Debug, Clone)]
pub struct MockHost {
    pub(crate) now_ms: i64,
    pub(crate) series: Vec<Series>,
    pub(crate) series_error: Option<String>,
    resources_set: ResourceSet,
    pub(crate) state: Option<Vec<u8>>,
    pub(crate) state_limit: usize,
    pub(crate) logs: Vec<(Level, String)>,
    pub(crate) queried: Vec<Query>,
}

impl Default for MockHost {
    fn default() -> Self {
        MockHost {
            now_ms: 0,
            series: Vec::new(),
            series_error: None,
            resources_set: ResourceSet::builder().build(),
            state: None,
            state_limit: 1 << 20,
            logs: Vec::new(),
            queried: Vec::new(),
        }
    }
}

thread_local! {
    static HOST: RefCell<MockHost> = RefCell::new(MockHost::default());
}

/// Runs `f` on this thread's host.
pub(crate) fn with_host<R>(f: impl FnOnce(&mut MockHost) -> R) -> R {
    HOST.with(|h| f(&mut h.borrow_mut()))
}

impl MockHost {
    /// Returns an empty host at time 0.
    pub fn new() -> Self {
        MockHost::default()
    }

    /// Sets the host's clock, ms since the epoch: `now` and the end of every
    /// `query-series` window.
    pub fn now_ms(mut self, now_ms: i64) -> Self {
        self.now_ms = now_ms;
        self
    }

    /// Adds a series `query-series` can return (the samples inside the window
    /// asked for, as the host would).
    pub fn series(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    /// Makes every `query-series` fail with `message`.
    pub fn series_error(mut self, message: &str) -> Self {
        self.series_error = Some(message.to_owned());
        self
    }

    /// Sets the resources `list-resources` filters.
    pub fn resources(mut self, set: ResourceSet) -> Self {
        self.resources_set = set;
        self
    }

    /// Sets the stored state, as an earlier evaluation would have left it.
    pub fn state<T: Serialize>(mut self, value: &T) -> Self {
        self.state = Some(serde_json::to_vec(value).expect("the state serializes to JSON"));
        self
    }

    /// Sets the policy's `state_limit` in bytes (1 MiB by default).
    pub fn state_limit(mut self, bytes: usize) -> Self {
        self.state_limit = bytes;
        self
    }

    /// Makes this the host of the current thread.
    pub fn install(self) {
        with_host(|h| *h = self);
    }

    pub(crate) fn iter_resources(&self) -> impl Iterator<Item = Resource<'_>> + '_ {
        self.resources_set.iter()
    }
}

/// Returns what the plugin logged on this thread since the host was installed.
pub fn logs() -> Vec<(Level, String)> {
    with_host(|h| h.logs.clone())
}

/// Returns each series query the plugin made on this thread since the host
/// was installed: metric, matchers and window in ms, in the order asked.
pub fn queries() -> Vec<Query> {
    with_host(|h| h.queried.clone())
}

/// Returns the state the plugin stored on this thread, read as `T`.
pub fn stored_state<T: DeserializeOwned>() -> Option<T> {
    with_host(|h| h.state.clone())
        .map(|b| serde_json::from_slice(&b).expect("the stored state reads back as the type asked"))
}

/// Returns an invocation of `policy` at the host's time, not a dry run.
pub fn invocation(policy: &str) -> crate::Invocation {
    crate::Invocation {
        policy: policy.to_owned(),
        now_ms: with_host(|h| h.now_ms),
        dry_run: false,
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::resources::{Filter, NewResource, ResourceKind};

    #[test]
    fn serves_series_in_the_window_resources_by_filter_and_state() {
        let mut set = ResourceSet::builder();
        set.push(NewResource {
            name: "/tmp/a",
            ..Default::default()
        });
        set.push(NewResource {
            name: "conn-1",
            kind: Some(ResourceKind::Socket),
            ..Default::default()
        });
        MockHost::new()
            .now_ms(10_000)
            .series(Series::new(
                "m",
                &[("k", "a")],
                &[(1_000, 1.0), (9_000, 2.0)],
            ))
            .series(Series::new("m", &[("k", "b")], &[(9_500, 3.0)]))
            .resources(set.build())
            .state(&7u32)
            .state_limit(8)
            .install();
        let s =
            crate::series::query("m", &[("k", "a")], std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].values, vec![2.0], "only the window's samples");
        let sockets = crate::resources::list(Filter {
            kinds: vec![ResourceKind::Socket],
            ..Filter::default()
        })
        .unwrap();
        assert_eq!(
            sockets.iter().map(|r| r.name()).collect::<Vec<_>>(),
            ["conn-1"]
        );
        assert_eq!(crate::state::load::<u32>().unwrap(), Some(7));
        crate::state::save(&8u32).unwrap();
        assert_eq!(stored_state::<u32>(), Some(8));
        let e = crate::state::save(&"too long for the limit").unwrap_err();
        assert!(e.to_string().contains("state_limit"), "{e}");
        crate::info!("hello {}", 1);
        assert_eq!(logs(), vec![(Level::Info, "hello 1".to_owned())]);
        assert_eq!(crate::now_ms(), 10_000);
    }
}
