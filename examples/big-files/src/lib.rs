//! Example: a cleanup strategy that deletes files larger than a limit.
//!
//! Build it: `cargo build --release --target wasm32-wasip2 -p example-big-files`,
//! then point a policy at `target/wasm32-wasip2/release/example_big_files.wasm`.
//! (Warden's own build also compiles it, and its tests run it.)

use serde::Deserialize;
use warden_sdk::cleanup::{CleanupContext, CleanupStrategy, Plan};

/// The policy's `config:` block.
#[derive(Deserialize)]
pub struct Config {
    /// Files larger than this are deleted.
    pub max_size_bytes: u64,
}

/// The strategy.
pub struct BigFiles(Config);

impl CleanupStrategy for BigFiles {
    type Config = Config;

    fn new(config: Config) -> warden_sdk::Result<Self> {
        Ok(BigFiles(config))
    }

    fn plan(&self, ctx: &CleanupContext) -> warden_sdk::Result<Plan> {
        let mut plan = Plan::new();
        for file in ctx.candidates().iter() {
            if file.size_bytes() > self.0.max_size_bytes {
                plan.delete(&file, "larger than max_size_bytes");
            }
        }
        Ok(plan)
    }
}

warden_sdk::register_cleanup!(BigFiles);
