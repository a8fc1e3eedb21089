//! Example: a service asks Warden's shipped backoff strategy what to do after
//! each failure of an operation, in-process, with no daemon.
//!
//! Run: `cargo run --release -p example-embed`

use std::sync::Arc;

use warden::plugin::records::{Attempt, ErrorClass, Failure, Outcome, RecoveryDecision};
use warden::plugin::{Engine, EngineOptions, Evaluator, Kind, Limits, NoData};

fn main() -> anyhow::Result<()> {
    let engine = Engine::new(&EngineOptions::default())?;
    let plugin = Arc::new(engine.load_builtin("backoff", Some(Kind::Recovery))?);
    let config = serde_json::json!({ "base": "50ms", "max": "2s", "max_attempts": 5, "open_circuit_after": 4 });
    let policy = Evaluator::new(
        plugin,
        "db-retries",
        &config,
        Limits::default(),
        Arc::new(NoData),
    );

    let mut history = Vec::new();
    for attempt in 1..=6 {
        let failure = Failure {
            operation: "db.query".into(),
            class: ErrorClass::Timeout,
            message: "no answer in 1s".into(),
            attempt,
            first_failed_ms: 0,
            seed: u64::from(attempt) * 7919,
        };
        let decision = policy.decide(&failure, &history)?;
        println!("attempt {attempt}: {decision:?}");
        if !matches!(decision, RecoveryDecision::RetryAfter(_)) {
            break;
        }
        history.push(Attempt {
            at_ms: 0,
            outcome: Outcome::Timeout,
            duration_ms: 1000,
        });
    }
    Ok(())
}
