//! Evaluating a plugin for one policy: a fresh store per call with the policy's
//! deadline and memory cap, a `tracing` span per evaluation, output checks, and
//! every way a call can fail turned into an [`EvalError`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use wasmtime::{Store, Trap};

use super::data::DataSource;
use super::error::{EvalError, EvalFailure};
use super::limits::Limits;
use super::store::{CallInfo, StoreState};
use super::{Kind, Plugin};
use warden_core::records::{
    Alert, Attempt, CleanupPlan, Failure, Finding, Invocation, RecoveryDecision, ResourceSet,
};

/// Which time an evaluation runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The wall clock, as the daemon runs.
    Wall,
    /// This time, in ms since the epoch, as a replay of recorded series runs.
    Simulated(i64),
}

/// Checks one finding and moves its evidence labels into `evidence`.
fn check_finding(f: &mut Finding) -> Result<(), String> {
    use warden_core::records::EVIDENCE_PREFIX;
    if f.pattern.is_empty() {
        return Err("the pattern is empty; name what was found".into());
    }
    if !(0.0..=1.0).contains(&f.confidence) {
        return Err(format!(
            "pattern `{}`: confidence {} is not between 0 and 1",
            f.pattern, f.confidence
        ));
    }
    if !f.labels.iter().any(|(k, _)| k.starts_with(EVIDENCE_PREFIX)) {
        return Ok(());
    }
    let mut evidence = Vec::new();
    let mut error = None;
    f.labels.retain(|(k, v)| {
        let Some(name) = k.strip_prefix(EVIDENCE_PREFIX) else {
            return true;
        };
        match v.parse::<f64>() {
            Ok(n) if !name.is_empty() => evidence.push((name.to_owned(), n)),
            _ => {
                error.get_or_insert_with(|| {
                    format!(
                        "pattern `{}`: evidence `{k}` = `{v}` is not a named number",
                        f.pattern
                    )
                });
            }
        }
        false
    });
    if let Some(e) = error {
        return Err(e);
    }
    f.evidence = evidence;
    Ok(())
}

/// A plugin bound to a policy: its name, `config:` block, limits and data.
#[derive(Clone)]
pub struct Evaluator {
    plugin: Arc<Plugin>,
    policy: Arc<str>,
    config_json: Arc<str>,
    limits: Limits,
    data: Arc<dyn DataSource>,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("policy", &self.policy)
            .field("plugin", &self.plugin.info.name)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Evaluator {
    /// Binds `plugin` to the policy `policy` with its `config` block.
    pub fn new(
        plugin: Arc<Plugin>,
        policy: &str,
        config: &serde_json::Value,
        limits: Limits,
        data: Arc<dyn DataSource>,
    ) -> Self {
        Evaluator {
            plugin,
            policy: policy.into(),
            config_json: config.to_string().into(),
            limits,
            data,
        }
    }

    /// Returns the plugin.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// Returns the policy's name.
    pub fn policy(&self) -> &str {
        &self.policy
    }

    /// Returns the limits each call runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Asks a cleanup plugin what to do with `candidates`. Every target and
    /// reason in the returned plan is checked to be in range.
    pub fn plan(&self, dry_run: bool, candidates: ResourceSet) -> Result<CleanupPlan, EvalError> {
        let n = candidates.len();
        let plan = self.run(
            Kind::Cleanup,
            dry_run,
            Clock::Wall,
            |instance, store, inv| instance.plan(store, inv, candidates),
        )?;
        self.check_count(plan.actions.len())?;
        for (i, (action, reason)) in plan.actions.iter().enumerate() {
            if let Some(t) = action.target()
                && t as usize >= n
            {
                return Err(self.fail(EvalFailure::InvalidOutput(format!(
                    "action {i} targets candidate {t}, but only {n} candidates were offered"
                ))));
            }
            if *reason as usize >= plan.reasons.len() {
                return Err(self.fail(EvalFailure::InvalidOutput(format!(
                    "action {i} gives reason {reason}, but only {} reasons were returned",
                    plan.reasons.len()
                ))));
            }
        }
        Ok(plan)
    }

    /// Asks a recovery plugin what to do about `failure`.
    pub fn decide(
        &self,
        failure: &Failure,
        history: &[Attempt],
    ) -> Result<RecoveryDecision, EvalError> {
        self.run(
            Kind::Recovery,
            false,
            Clock::Wall,
            |instance, store, inv| instance.decide(store, inv, failure, history),
        )
    }

    /// Asks an alert-rule plugin which alert conditions hold.
    pub fn evaluate_alerts(&self) -> Result<Vec<Alert>, EvalError> {
        self.evaluate_alerts_at(Clock::Wall)
    }

    /// [`evaluate_alerts`](Self::evaluate_alerts) at a time of the caller's
    /// choosing (see [`detect_at`](Self::detect_at)).
    pub fn evaluate_alerts_at(&self, clock: Clock) -> Result<Vec<Alert>, EvalError> {
        let alerts = self.run(Kind::Alert, false, clock, |instance, store, inv| {
            instance.evaluate(store, inv)
        })?;
        self.check_count(alerts.len())?;
        Ok(alerts)
    }

    /// Asks a detector plugin what it finds. Evidence labels
    /// ([`EVIDENCE_PREFIX`](warden_core::records::EVIDENCE_PREFIX)) are moved
    /// into [`Finding::evidence`]; a finding with a confidence outside 0..=1,
    /// an empty pattern or evidence that is not a number fails the call.
    pub fn detect(&self) -> Result<Vec<Finding>, EvalError> {
        self.detect_at(Clock::Wall)
    }

    /// [`detect`](Self::detect) at a time of the caller's choosing: with
    /// [`Clock::Simulated`], the plugin's invocation, its `now` import and
    /// the window its `query-series` calls end at are all that time, which is
    /// how `warden replay` runs a detector over recorded series.
    pub fn detect_at(&self, clock: Clock) -> Result<Vec<Finding>, EvalError> {
        let mut found = self.run(Kind::Detector, false, clock, |instance, store, inv| {
            instance.detect(store, inv)
        })?;
        self.check_count(found.len())?;
        for (i, f) in found.iter_mut().enumerate() {
            check_finding(f)
                .map_err(|m| self.fail(EvalFailure::InvalidOutput(format!("finding {i}: {m}"))))?;
        }
        Ok(found)
    }

    /// Returns the state of a store for one call of this policy at `now_ms`.
    fn store_state(&self, now_ms: i64, simulated: bool) -> StoreState {
        StoreState::new(
            CallInfo {
                policy: Arc::clone(&self.policy),
                plugin: self.plugin.info.name.as_str().into(),
                config_json: Arc::clone(&self.config_json),
                data: Arc::clone(&self.data),
                now_ms,
                simulated,
            },
            self.limits.memory_bytes,
        )
    }

    /// Returns an instance kept across calls. Warden never evaluates this way
    /// (a trap poisons a store, so each evaluation gets a fresh one); it exists
    /// so benchmarks can measure a call apart from its instantiation.
    #[doc(hidden)]
    pub fn warm(&self) -> anyhow::Result<WarmInstance> {
        let state = self.store_state(warden_core::clock::now_ms(), false);
        let mut store = self.plugin.engine.store(state, &self.limits);
        let instance = self
            .plugin
            .pre
            .instantiate(&mut store)
            .map_err(anyhow::Error::from)?;
        Ok(WarmInstance {
            store,
            instance,
            policy: self.policy.to_string(),
            limits: self.limits,
        })
    }

    fn check_count(&self, n: usize) -> Result<(), EvalError> {
        if n > self.limits.max_decisions {
            return Err(self.fail(EvalFailure::InvalidOutput(format!(
                "returned {n} items; a policy may return at most {}",
                self.limits.max_decisions
            ))));
        }
        Ok(())
    }

    fn fail(&self, failure: EvalFailure) -> EvalError {
        let stats = self.plugin.engine.counters();
        stats.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(policy = %self.policy, plugin = %self.plugin.info.name, failure = failure.label(), "{failure}");
        EvalError {
            policy: self.policy.to_string(),
            plugin: self.plugin.info.name.clone(),
            failure,
        }
    }

    fn run<T>(
        &self,
        kind: Kind,
        dry_run: bool,
        clock: Clock,
        call: impl FnOnce(
            &super::wit::Instance,
            &mut Store<StoreState>,
            Invocation,
        ) -> super::wit::CallResult<T>,
    ) -> Result<T, EvalError> {
        let span = tracing::info_span!(
            "policy.evaluate",
            policy = %self.policy,
            plugin = %self.plugin.info.name,
            kind = kind.name(),
            outcome = tracing::field::Empty,
            micros = tracing::field::Empty,
        );
        let _entered = span.enter();
        let engine = &self.plugin.engine;
        engine
            .counters()
            .evaluations
            .fetch_add(1, Ordering::Relaxed);
        if self.plugin.kind() != kind {
            return Err(self.fail(EvalFailure::Instantiate(format!(
                "the plugin is a {} plugin, not a {kind} plugin",
                self.plugin.kind()
            ))));
        }
        let (now_ms, simulated) = match clock {
            Clock::Wall => (warden_core::clock::now_ms(), false),
            Clock::Simulated(t) => (t, true),
        };
        let state = self.store_state(now_ms, simulated);
        let started = Instant::now();
        let result = {
            let _running = engine.running();
            let mut store = engine.store(state, &self.limits);
            let inv = Invocation {
                policy: self.policy.to_string(),
                now_ms,
                dry_run,
            };
            let result = self
                .plugin
                .pre
                .instantiate(&mut store)
                .and_then(|instance| call(&instance, &mut store, inv));
            let state = store.into_data();
            let stderr = state.flush_output();
            self.classify(result, state.cap.hit, stderr)
        };
        span.record("micros", started.elapsed().as_micros() as u64);
        span.record("outcome", if result.is_ok() { "ok" } else { "failed" });
        result
    }

    fn classify<T>(
        &self,
        result: super::wit::CallResult<T>,
        memory_cap_hit: bool,
        stderr: Option<String>,
    ) -> Result<T, EvalError> {
        let stats = self.plugin.engine.counters();
        let failure = match result {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(message)) => EvalFailure::Plugin(message),
            Err(e) => match e.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => {
                    stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    EvalFailure::Timeout {
                        limit: self.limits.timeout,
                    }
                }
                _ if memory_cap_hit => {
                    stats.out_of_memory.fetch_add(1, Ordering::Relaxed);
                    EvalFailure::OutOfMemory {
                        limit: self.limits.memory_bytes,
                    }
                }
                Some(Trap::StackOverflow) => {
                    stats.traps.fetch_add(1, Ordering::Relaxed);
                    EvalFailure::StackOverflow
                }
                Some(trap) => {
                    stats.traps.fetch_add(1, Ordering::Relaxed);
                    EvalFailure::Trap {
                        message: trap.to_string(),
                        stderr,
                    }
                }
                // Wasmtime's own guard against a guest pushing more data into the
                // host than `MAX_TRANSFER_BYTES`; its error type is private, so
                // it is recognised by its message.
                None if format!("{e:#}").contains("too much data is being copied") => {
                    EvalFailure::InvalidOutput(format!(
                        "returned more than {} MiB of data in one call; a policy's result must be smaller",
                        super::engine::MAX_TRANSFER_BYTES / (1024 * 1024)
                    ))
                }
                None => {
                    stats.traps.fetch_add(1, Ordering::Relaxed);
                    EvalFailure::Trap {
                        message: format!("{e:#}"),
                        stderr,
                    }
                }
            },
        };
        Err(self.fail(failure))
    }
}

/// A plugin instance kept across calls; see [`Evaluator::warm`].
#[doc(hidden)]
pub struct WarmInstance {
    store: Store<StoreState>,
    instance: super::wit::Instance,
    policy: String,
    limits: Limits,
}

impl WarmInstance {
    /// Calls `plan` on the kept instance.
    pub fn plan(&mut self, dry_run: bool, candidates: ResourceSet) -> anyhow::Result<CleanupPlan> {
        let inv = Invocation {
            policy: self.policy.clone(),
            now_ms: warden_core::clock::now_ms(),
            dry_run,
        };
        // Each call gets the policy's whole timeout.
        self.store
            .set_epoch_deadline(super::engine::deadline_ticks(&self.limits));
        match self.instance.plan(&mut self.store, inv, candidates) {
            Ok(Ok(plan)) => Ok(plan),
            Ok(Err(e)) => Err(anyhow::anyhow!("the plugin reported: {e}")),
            Err(e) => Err(anyhow::Error::from(e)),
        }
    }
}
