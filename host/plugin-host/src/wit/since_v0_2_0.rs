//! Bindings for `warden:policy@0.2.0` (`wit/since_v0.2.0/`) and the
//! conversions between its generated types and the host's records, as `From`
//! impls at this edge. What changed since 0.1.0: `init(config)` with located
//! config errors instead of the `config` import, the `state` import, and
//! cleanup plans in columns.

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::{CallResult, Refused};
use crate::error::ConfigError;
use crate::kind::Kind;
use crate::store::{LogLevel, StoreState};
use warden_core::records as rec;

/// The WIT package version these bindings implement.
pub(crate) const VERSION: &str = "0.2.0";

mod cleanup {
    wasmtime::component::bindgen!({
        world: "cleanup-strategy",
        path: "../../wit/since_v0.2.0",
    });
}

mod recovery {
    wasmtime::component::bindgen!({
        world: "recovery-strategy",
        path: "../../wit/since_v0.2.0",
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
        path: "../../wit/since_v0.2.0",
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
        path: "../../wit/since_v0.2.0",
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
}
