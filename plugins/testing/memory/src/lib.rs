//! An alert rule that reports what survives between evaluations, so the
//! host's warm instances and plugin state can be tested: each evaluation
//! returns `Served` (evaluations this instance served, from its memory),
//! `Inits` (times `init` ran in this instance) and `Stored` (a counter kept
//! in the host's plugin state, incremented each evaluation).

use std::sync::atomic::{AtomicU32, Ordering};

use serde::Deserialize;
use warden_sdk::alert::{Alert, AlertRule};
use warden_sdk::{Invocation, Severity};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Panics (after storing its counter) at this evaluation of an instance.
    #[serde(default)]
    panic_on: Option<u32>,
    /// Also stores a string of this many bytes, to meet the state limit.
    #[serde(default)]
    state_bytes: Option<usize>,
    /// Forgets the stored counter instead of incrementing it.
    #[serde(default)]
    clear: bool,
}

static SERVED: AtomicU32 = AtomicU32::new(0);
static INITS: AtomicU32 = AtomicU32::new(0);

struct Memory(Config);

impl AlertRule for Memory {
    type Config = Config;

    fn new(config: Config) -> warden_sdk::Result<Self> {
        INITS.fetch_add(1, Ordering::Relaxed);
        Ok(Memory(config))
    }

    fn evaluate(&self, _: &Invocation) -> warden_sdk::Result<Vec<Alert>> {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let stored: u64 = warden_sdk::state::load()?.unwrap_or(0) + 1;
        if self.0.clear {
            warden_sdk::state::clear();
        } else if let Some(n) = self.0.state_bytes {
            warden_sdk::state::save(&"x".repeat(n))?;
        } else {
            warden_sdk::state::save(&stored)?;
        }
        if self.0.panic_on == Some(served) {
            panic!("memory guest panics at evaluation {served}");
        }
        let alert = |name: &str, v: f64| Alert::firing(name, Severity::Info, v);
        Ok(vec![
            alert("Served", f64::from(served)),
            alert("Inits", f64::from(INITS.load(Ordering::Relaxed))),
            alert("Stored", stored as f64),
        ])
    }
}

warden_sdk::register_alert_rule!(Memory);
