//! A recovery strategy whose config is always valid and whose every decision
//! fails: since contract 0.2 a bad config is refused at load, so this is how
//! a strategy that breaks while deciding is tested (the host answers by the
//! policy's `on_failure`).

use serde::Deserialize;
use warden_sdk::Invocation;
use warden_sdk::recovery::{Attempt, Decision, Failure, RecoveryStrategy};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// What every decision fails with.
    #[serde(default = "default_reason")]
    reason: String,
}

fn default_reason() -> String {
    "the refuser strategy refuses every failure".into()
}

struct Refuser(Config);

impl RecoveryStrategy for Refuser {
    type Config = Config;

    fn new(config: Config) -> warden_sdk::Result<Self> {
        Ok(Refuser(config))
    }

    fn decide(&self, _: &Invocation, f: &Failure, _: &[Attempt]) -> warden_sdk::Result<Decision> {
        Err(format!("{} (`{}`)", self.0.reason, f.operation).into())
    }
}

warden_sdk::register_recovery!(Refuser);
