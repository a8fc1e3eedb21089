//! A cleanup strategy that blocks in a host call: `std::thread::sleep`,
//! which on `wasm32-wasip2` subscribes to the monotonic clock and blocks on
//! the pollable, on the host's side where epoch interruption cannot reach.
//! The host must still stop it at the evaluation's deadline.
//!
//! ```yaml
//! config:
//!   sleep_ms: 30000   # how long to sleep before planning nothing
//! ```

use serde::Deserialize;
use warden_sdk::cleanup::{CleanupContext, CleanupStrategy, Plan};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    sleep_ms: u64,
}

struct Sleeper(u64);

impl CleanupStrategy for Sleeper {
    type Config = Config;

    fn new(config: Config) -> warden_sdk::Result<Self> {
        Ok(Sleeper(config.sleep_ms))
    }

    fn plan(&self, _ctx: &CleanupContext) -> warden_sdk::Result<Plan> {
        std::thread::sleep(std::time::Duration::from_millis(self.0));
        let mut plan = Plan::new();
        plan.notify("awake", "slept as asked");
        Ok(plan)
    }
}

warden_sdk::register_cleanup!(Sleeper);
