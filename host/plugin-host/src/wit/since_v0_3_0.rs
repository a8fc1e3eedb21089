//! Bindings for `warden:policy@0.3.0` (`wit/since_v0.3.0/`) and the
//! conversions between its generated types and the host's records, as `From`
//! impls at this edge. What changed since 0.2.0: the `query-reduced` import,
//! which reduces a window where its samples are; the rest is 0.2.0's
//! (`since_v0_2_common.rs`).

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::{CallResult, Refused};
use crate::error::ConfigError;
use crate::kind::Kind;
use crate::store::{LogLevel, StoreState};
use warden_core::records as rec;

/// The WIT package version these bindings implement.
pub(crate) const VERSION: &str = "0.3.0";

mod cleanup {
    wasmtime::component::bindgen!({
        world: "cleanup-strategy",
        path: "../../wit/since_v0.3.0",
    });
}

mod recovery {
    wasmtime::component::bindgen!({
        world: "recovery-strategy",
        path: "../../wit/since_v0.3.0",
        with: {
            "warden:policy/types": super::cleanup::warden::policy::types,
            "warden:policy/host": super::cleanup::warden::policy::host,
            "warden:policy/state": super::cleanup::warden::policy::state,
        },
    });
}

mod alert {
    wasmtime::component::bindgen!({
        world: "alert-rule",
        path: "../../wit/since_v0.3.0",
        with: {
            "warden:policy/types": super::cleanup::warden::policy::types,
            "warden:policy/host": super::cleanup::warden::policy::host,
            "warden:policy/state": super::cleanup::warden::policy::state,
        },
    });
}

mod detector {
    wasmtime::component::bindgen!({
        world: "detector",
        path: "../../wit/since_v0.3.0",
        with: {
            "warden:policy/types": super::cleanup::warden::policy::types,
            "warden:policy/host": super::cleanup::warden::policy::host,
            "warden:policy/state": super::cleanup::warden::policy::state,
        },
    });
}

include!("since_v0_2_common.rs");

impl host::Host for StoreState {
    fn log(&mut self, level: types::Level, message: String) {
        StoreState::log(self, level.into(), message);
    }

    fn now(&mut self) -> types::TimestampMs {
        self.now_ms()
    }

    fn query_series(
        &mut self,
        s: types::SeriesSelector,
        window_ms: u64,
    ) -> Result<Vec<types::Series>, String> {
        let series = StoreState::query_series(self, &selector(s), window_ms)?;
        Ok(series.into_iter().map(types::Series::from).collect())
    }

    fn list_resources(
        &mut self,
        filter: types::ResourceFilter,
    ) -> Result<types::ResourceSet, String> {
        StoreState::list_resources(self, &resource_filter(filter)).map(types::ResourceSet::from)
    }

    fn query_reduced(
        &mut self,
        s: types::SeriesSelector,
        window_ms: u64,
        how: types::Reduce,
    ) -> Result<Vec<types::Reduced>, String> {
        let how = rec::Reduce {
            over: how.over.into(),
            quantile: how.quantile,
            by: how.by,
            aggregate: how.aggregate.into(),
        };
        let values = StoreState::query_reduced(self, &selector(s), window_ms, &how)?;
        Ok(values
            .into_iter()
            .map(|r| types::Reduced {
                labels: label_pairs(r.labels),
                value: r.value,
            })
            .collect())
    }
}

impl From<types::Reduction> for rec::Over {
    fn from(r: types::Reduction) -> Self {
        use rec::Over as R;
        use types::Reduction as W;
        match r {
            W::Latest => R::Latest,
            W::Avg => R::Avg,
            W::Min => R::Min,
            W::Max => R::Max,
            W::Sum => R::Sum,
            W::Count => R::Count,
            W::Rate => R::Rate,
            W::Increase => R::Increase,
            W::Quantile => R::Quantile,
        }
    }
}

impl From<types::Aggregation> for rec::Aggregate {
    fn from(a: types::Aggregation) -> Self {
        use rec::Aggregate as R;
        use types::Aggregation as W;
        match a {
            W::Sum => R::Sum,
            W::Max => R::Max,
            W::Min => R::Min,
            W::Avg => R::Avg,
            W::Count => R::Count,
        }
    }
}
