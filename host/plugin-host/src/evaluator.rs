//! Evaluating a plugin for one policy: a fresh store per call with the policy's
//! deadline and memory cap, a `tracing` span per evaluation, output checks
//! (indexes in range, counts, and the size of the result as the host holds
//! it), and every way a call can fail turned into an [`EvalError`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use wasmtime::{Store, Trap};

use super::data::DataSource;
use super::error::{EvalError, EvalFailure};
use super::limits::{ACTION_BYTES, Limits, MAX_NOTICES};
use super::store::{CallInfo, StoreState};
use super::{Kind, Plugin};
use warden_core::records::{
    Alert, Attempt, CleanupAction, CleanupPlan, Failure, Finding, Invocation, RecoveryDecision,
    ResourceSet,
};

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
    /// reason in the returned plan is checked to be in range, and the plan's
    /// size as the host will hold it against the output cap.
    pub fn plan(&self, dry_run: bool, candidates: ResourceSet) -> Result<CleanupPlan, EvalError> {
        let mut candidates = candidates;
        self.plan_over(dry_run, &mut candidates)
    }

    /// Like [`Evaluator::plan`], lending `candidates` to the call instead of
    /// taking them: they are moved into the plugin's context and back, never
    /// copied, so the host keeps one copy of a large candidate set.
    pub fn plan_over(
        &self,
        dry_run: bool,
        candidates: &mut ResourceSet,
    ) -> Result<CleanupPlan, EvalError> {
        let plan = self.run(Kind::Cleanup, dry_run, |instance, store, inv| {
            instance.plan(store, inv, candidates)
        })?;
        self.check_count(plan.actions.len())?;
        let n = candidates.len();
        let mut notices = 0usize;
        let mut bytes: u64 = plan.reasons.iter().map(|r| r.len() as u64).sum();
        for (i, (action, reason)) in plan.actions.iter().enumerate() {
            if let Some(t) = action.target() {
                let Some(name) = candidates.name(t as usize) else {
                    return Err(self.fail(EvalFailure::InvalidOutput(format!(
                        "action {i} targets candidate {t}, but only {n} candidates were offered"
                    ))));
                };
                // A run records each action with its target's name.
                bytes += name.len() as u64;
            }
            if let CleanupAction::Notify(message) = action {
                notices += 1;
                bytes += message.len() as u64;
            }
            if *reason as usize >= plan.reasons.len() {
                return Err(self.fail(EvalFailure::InvalidOutput(format!(
                    "action {i} gives reason {reason}, but only {} reasons were returned",
                    plan.reasons.len()
                ))));
            }
            bytes += ACTION_BYTES;
        }
        if notices > MAX_NOTICES {
            return Err(self.too_large(
                bytes,
                format!("a plan of {notices} notices (at most {MAX_NOTICES} are logged per plan)"),
            ));
        }
        self.check_size(bytes, || {
            format!("a plan of {} actions", plan.actions.len())
        })?;
        Ok(plan)
    }

    /// Asks a recovery plugin what to do about `failure`.
    pub fn decide(
        &self,
        failure: &Failure,
        history: &[Attempt],
    ) -> Result<RecoveryDecision, EvalError> {
        self.run(Kind::Recovery, false, |instance, store, inv| {
            instance.decide(store, inv, failure, history)
        })
    }

    /// Asks an alert-rule plugin which alert conditions hold.
    pub fn evaluate_alerts(&self) -> Result<Vec<Alert>, EvalError> {
        let alerts = self.run(Kind::Alert, false, |instance, store, inv| {
            instance.evaluate(store, inv)
        })?;
        self.check_count(alerts.len())?;
        let bytes = alerts.iter().map(alert_bytes).sum();
        self.check_size(bytes, || format!("{} alerts", alerts.len()))?;
        Ok(alerts)
    }

    /// Asks a detector plugin what it finds.
    pub fn detect(&self) -> Result<Vec<Finding>, EvalError> {
        let found = self.run(Kind::Detector, false, |instance, store, inv| {
            instance.detect(store, inv)
        })?;
        self.check_count(found.len())?;
        let bytes = found.iter().map(finding_bytes).sum();
        self.check_size(bytes, || format!("{} findings", found.len()))?;
        Ok(found)
    }

    /// Returns the state of a store for one call of this policy at `now_ms`,
    /// its deadline starting now.
    fn store_state(&self, now_ms: i64) -> StoreState {
        StoreState::new(
            CallInfo {
                policy: Arc::clone(&self.policy),
                plugin: self.plugin.info.name.as_str().into(),
                config_json: Arc::clone(&self.config_json),
                data: Arc::clone(&self.data),
                now_ms,
            },
            &self.limits,
        )
    }

    /// Returns an instance kept across calls. Warden never evaluates this way
    /// (a trap poisons a store, so each evaluation gets a fresh one); it exists
    /// so benchmarks can measure a call apart from its instantiation.
    #[doc(hidden)]
    pub fn warm(&self) -> anyhow::Result<WarmInstance> {
        let state = self.store_state(warden_core::clock::now_ms());
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

    /// Fails if a result that takes `bytes` in the host is over the cap;
    /// `what` says what it is.
    fn check_size(&self, bytes: u64, what: impl FnOnce() -> String) -> Result<(), EvalError> {
        if bytes > self.limits.max_output_bytes {
            return Err(self.too_large(bytes, what()));
        }
        Ok(())
    }

    fn too_large(&self, bytes: u64, what: String) -> EvalError {
        self.fail(EvalFailure::OutputTooLarge {
            bytes,
            limit: self.limits.max_output_bytes,
            what,
        })
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
        let now_ms = warden_core::clock::now_ms();
        let state = self.store_state(now_ms);
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
                    let limit = super::engine::transfer_bytes(&self.limits) as u64;
                    EvalFailure::OutputTooLarge {
                        bytes: limit,
                        limit: self.limits.max_output_bytes,
                        what: format!(
                            "what it returned in one call (more than {} MiB crossed into the host)",
                            limit / (1024 * 1024)
                        ),
                    }
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

/// What an alert takes in the host: its strings, plus a fixed record.
fn alert_bytes(a: &Alert) -> u64 {
    let labels = |l: &warden_core::records::Labels| {
        l.iter()
            .map(|(k, v)| (k.len() + v.len()) as u64 + 48)
            .sum::<u64>()
    };
    ACTION_BYTES + a.name.len() as u64 + labels(&a.labels) + labels(&a.annotations)
}

/// What a finding takes in the host: its strings, plus a fixed record.
fn finding_bytes(f: &Finding) -> u64 {
    ACTION_BYTES
        + (f.pattern.len() + f.subject.len() + f.recommendation.len()) as u64
        + f.labels
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64 + 48)
            .sum::<u64>()
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
        let mut candidates = candidates;
        match self.instance.plan(&mut self.store, inv, &mut candidates) {
            Ok(Ok(plan)) => Ok(plan),
            Ok(Err(e)) => Err(anyhow::anyhow!("the plugin reported: {e}")),
            Err(e) => Err(anyhow::Error::from(e)),
        }
    }
}
