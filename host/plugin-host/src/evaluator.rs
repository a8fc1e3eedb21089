//! Evaluating a plugin for one policy: an instance per call or a warm one
//! kept across calls (see [`warm`](crate::warm)), the policy's deadline and
//! memory cap on every call, `init` once per instance, plugin state read
//! before and kept after each call, a `tracing` span per evaluation, output
//! checks (indexes in range, counts, and the size of the result as the host
//! holds it), and every way a call can fail turned into an [`EvalError`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::{Store, Trap};

use super::data::DataSource;
use super::error::{EvalError, EvalFailure};
use super::limits::{ACTION_BYTES, Limits, MAX_NOTICES};
use super::plugin_state::{
    DEFAULT_STATE_LIMIT, MemoryStates, PluginStateStore, PolicyId, StateBinding,
};
use super::store::{CallInfo, StoreState};
use super::warm::{Isolation, Recycle, Warm};
use super::wit::Refused;
use super::{Kind, Plugin};
use warden_core::records::{
    Alert, Attempt, CleanupAction, CleanupPlan, Failure, Finding, Invocation, RecoveryDecision,
    ResourceSet,
};

/// Which time an evaluation runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The wall clock, as the daemon runs.
    Wall,
    /// This time, in ms since the epoch, as a replay of recorded series runs.
    Simulated(i64),
}

impl Clock {
    /// Returns the time now on this clock, and whether it is simulated.
    fn read(self) -> (i64, bool) {
        match self {
            Clock::Wall => (warden_core::clock::now_ms(), false),
            Clock::Simulated(t) => (t, true),
        }
    }
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
            // Finite only: the findings are saved as JSON, which has no NaN.
            Ok(n) if !name.is_empty() && n.is_finite() => evidence.push((name.to_owned(), n)),
            _ => {
                error.get_or_insert_with(|| {
                    format!(
                        "pattern `{}`: evidence `{k}` = `{v}` is not a named finite number",
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

/// A plugin bound to a policy: its name, `config:` block, limits, data,
/// isolation and plugin state. Clones share the policy's warm instance.
#[derive(Clone)]
pub struct Evaluator {
    plugin: Arc<Plugin>,
    policy: Arc<str>,
    config_json: Arc<str>,
    limits: Limits,
    data: Arc<dyn DataSource>,
    isolation: Isolation,
    state: StateBinding,
    /// The warm instance between evaluations; empty while one runs (a
    /// concurrent evaluation then gets an instance of its own).
    slot: Arc<Mutex<Option<Warm>>>,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("policy", &self.policy)
            .field("plugin", &self.plugin.info.name)
            .field("limits", &self.limits)
            .field("isolation", &self.isolation)
            .finish_non_exhaustive()
    }
}

impl Evaluator {
    /// Binds `plugin` to the policy `policy` with its `config` block. It is
    /// evaluated warm (see [`Isolation`]) with its plugin state in memory;
    /// [`with_isolation`](Self::with_isolation) and
    /// [`with_state`](Self::with_state) change that.
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
            isolation: Isolation::default(),
            state: StateBinding {
                store: Arc::new(MemoryStates::default()),
                id: PolicyId {
                    file: Default::default(),
                    name: policy.to_owned(),
                },
                limit: DEFAULT_STATE_LIMIT,
            },
            slot: Arc::default(),
        }
    }

    /// Returns it evaluated with `isolation`.
    pub fn with_isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self.slot = Arc::default();
        self
    }

    /// Returns it keeping its plugin state in `store` under `id`, refusing
    /// blobs larger than `limit` bytes.
    pub fn with_state(
        mut self,
        store: Arc<dyn PluginStateStore>,
        id: PolicyId,
        limit: u64,
    ) -> Self {
        self.state = StateBinding { store, id, limit };
        self
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

    /// Returns how its evaluations get their instance.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// Returns true if and only if its evaluations share a warm instance:
    /// the policy asks for it and the plugin's contract (0.2.0 on) allows it.
    pub fn is_warm(&self) -> bool {
        matches!(self.isolation, Isolation::Warm { .. }) && self.plugin.pre.reusable()
    }

    /// Instantiates the plugin and runs its `init` with the policy's config,
    /// as `warden check` and a reload do before a policy goes live. A warm
    /// policy keeps the instance for its first evaluation.
    pub fn prepare(&self) -> Result<(), EvalError> {
        let _entered = tracing::info_span!(
            "policy.init",
            policy = %self.policy,
            plugin = %self.plugin.info.name,
        )
        .entered();
        let _running = self.plugin.engine.running();
        let warm = self.create(warden_core::clock::now_ms(), false)?;
        if self.is_warm() {
            self.check_in(warm);
        }
        Ok(())
    }

    /// Asks a cleanup plugin what to do with `candidates`. Every target and
    /// reason in the returned plan is checked to be in range.
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
        let plan = self.run(
            Kind::Cleanup,
            dry_run,
            Clock::Wall,
            |instance, store, inv| instance.plan(store, inv, candidates),
        )?;
        self.check_plan(&plan, candidates)?;
        Ok(plan)
    }

    /// Checks every target and reason of `plan` against `candidates`, and the
    /// plan's size as the host will hold it against the output cap.
    fn check_plan(&self, plan: &CleanupPlan, candidates: &ResourceSet) -> Result<(), EvalError> {
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
        })
    }

    /// Asks a recovery plugin what to do about `failure`.
    pub fn decide(
        &self,
        failure: &Failure,
        history: &[Attempt],
    ) -> Result<RecoveryDecision, EvalError> {
        self.decide_at(Clock::Wall, failure, history)
    }

    /// [`decide`](Self::decide) at a time of the caller's choosing, as a
    /// replay of recorded failures asks (see [`detect_at`](Self::detect_at)).
    pub fn decide_at(
        &self,
        clock: Clock,
        failure: &Failure,
        history: &[Attempt],
    ) -> Result<RecoveryDecision, EvalError> {
        self.run(Kind::Recovery, false, clock, |instance, store, inv| {
            instance.decide(store, inv, failure, history)
        })
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
        let bytes = alerts.iter().map(alert_bytes).sum();
        self.check_size(bytes, || format!("{} alerts", alerts.len()))?;
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
        let bytes = found.iter().map(finding_bytes).sum();
        self.check_size(bytes, || format!("{} findings", found.len()))?;
        for (i, f) in found.iter_mut().enumerate() {
            check_finding(f)
                .map_err(|m| self.fail(EvalFailure::InvalidOutput(format!("finding {i}: {m}"))))?;
        }
        Ok(found)
    }

    /// Returns the state of a store for calls of this policy.
    fn store_state(&self, now_ms: i64) -> StoreState {
        StoreState::new(
            CallInfo {
                policy: Arc::clone(&self.policy),
                plugin: self.plugin.info.name.as_str().into(),
                config_json: Arc::clone(&self.config_json),
                data: Arc::clone(&self.data),
                now_ms,
                // Set for each call by `begin_call`.
                simulated: false,
            },
            &self.limits,
        )
    }

    /// Starts a call on `store`: the whole deadline (for the epoch and for
    /// blocking host calls), transfer and read budgets again, the clock, and
    /// the plugin state as it is now.
    fn begin_call(&self, store: &mut Store<StoreState>, now_ms: i64, simulated: bool) {
        store.set_epoch_deadline(super::engine::deadline_ticks(&self.limits));
        store.set_hostcall_fuel(super::engine::transfer_bytes(&self.limits));
        let current = self.state.store.load(&self.state.id);
        store
            .data_mut()
            .begin_call(now_ms, simulated, current, self.state.limit, &self.limits);
    }

    /// Keeps what a call that returned normally wrote to the plugin state.
    fn commit_state(&self, store: &mut Store<StoreState>) {
        if let Some(written) = store.data_mut().plugin_state.take_written() {
            self.state.store.save(&self.state.id, written);
        }
    }

    /// Creates a store and an instance and runs `init` in it. The caller
    /// holds the engine's running guard.
    fn create(&self, now_ms: i64, simulated: bool) -> Result<Warm, EvalError> {
        let engine = &self.plugin.engine;
        let mut store = engine.store(self.store_state(now_ms), &self.limits);
        self.begin_call(&mut store, now_ms, simulated);
        let instance = match self.plugin.pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) => {
                let failure = self.trap_failure(&e, &store);
                return Err(self.fail(failure));
            }
        };
        engine
            .counters()
            .instantiations
            .fetch_add(1, Ordering::Relaxed);
        match instance.init(&mut store, &self.config_json) {
            Ok(Ok(())) => {
                store.data().flush_output();
                self.commit_state(&mut store);
                Ok(Warm {
                    store,
                    instance,
                    served: 0,
                })
            }
            Ok(Err(errors)) => {
                store.data().flush_output();
                Err(self.fail(EvalFailure::InvalidConfig(errors)))
            }
            Err(e) => {
                let failure = self.trap_failure(&e, &store);
                Err(self.fail(failure))
            }
        }
    }

    /// Takes the warm instance, if the policy has one idle.
    fn check_out(&self) -> Option<Warm> {
        if !self.is_warm() {
            return None;
        }
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Puts a warm instance back, unless another evaluation already did.
    fn check_in(&self, warm: Warm) {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(warm);
        }
    }

    /// Returns why `warm` is not to be kept after a call that ended so.
    fn recycle<T>(&self, warm: &Warm, result: &super::wit::CallResult<T>) -> Option<Recycle> {
        match result {
            Err(e) if !e.is::<Refused>() => Some(Recycle::Trapped),
            _ if warm.store.data().cap.hit => Some(Recycle::MemoryLimit),
            _ => match self.isolation {
                Isolation::Warm { recycle_after } if self.plugin.pre.reusable() => {
                    (warm.served >= recycle_after).then_some(Recycle::Served)
                }
                _ => Some(Recycle::Fresh),
            },
        }
    }

    /// Returns an instance kept across calls, apart from the policy's own
    /// warm instance, so benchmarks can measure a call apart from everything
    /// around it.
    #[doc(hidden)]
    pub fn warm(&self) -> anyhow::Result<WarmInstance> {
        let _running = self.plugin.engine.running();
        let warm = self
            .create(warden_core::clock::now_ms(), false)
            .map_err(anyhow::Error::from)?;
        Ok(WarmInstance {
            warm,
            evaluator: self.clone(),
        })
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
            instance = tracing::field::Empty,
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
        let (now_ms, simulated) = clock.read();
        let started = Instant::now();
        let result = {
            let _running = engine.running();
            let mut warm = match self.check_out() {
                Some(w) => {
                    span.record("instance", "warm");
                    w
                }
                None => {
                    span.record("instance", "new");
                    match self.create(now_ms, simulated) {
                        Ok(w) => w,
                        Err(e) => {
                            span.record("outcome", "failed");
                            return Err(e);
                        }
                    }
                }
            };
            self.begin_call(&mut warm.store, now_ms, simulated);
            let inv = Invocation {
                policy: self.policy.to_string(),
                now_ms,
                dry_run,
            };
            let result = call(&warm.instance, &mut warm.store, inv);
            warm.served += 1;
            let stderr = warm.store.data().flush_output();
            let memory_cap_hit = warm.store.data().cap.hit;
            // The export returned (with a value or the plugin's own error):
            // what it stored is kept. A trap forgets it.
            let returned = match &result {
                Ok(_) => true,
                Err(e) => e.is::<Refused>(),
            };
            if returned {
                self.commit_state(&mut warm.store);
            }
            let recycle = self.recycle(&warm, &result);
            let outcome = match result {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(message)) => Err(EvalFailure::Plugin(message)),
                Err(e) => Err(self.classify_error(&e, memory_cap_hit, stderr)),
            };
            match recycle {
                None => self.check_in(warm),
                Some(why) => {
                    if why != Recycle::Fresh {
                        engine.counters().recycles.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(
                            reason = why.label(),
                            served = warm.served,
                            "warm instance replaced"
                        );
                    }
                }
            }
            outcome.map_err(|f| self.fail(f))
        };
        span.record("micros", started.elapsed().as_micros() as u64);
        span.record("outcome", if result.is_ok() { "ok" } else { "failed" });
        result
    }

    /// Returns the failure of a call that did not return: a trap, a
    /// timeout, the memory cap, or a result the host refuses.
    fn trap_failure(&self, e: &wasmtime::Error, store: &Store<StoreState>) -> EvalFailure {
        let stderr = store.data().flush_output();
        self.classify_error(e, store.data().cap.hit, stderr)
    }

    fn classify_error(
        &self,
        e: &wasmtime::Error,
        memory_cap_hit: bool,
        stderr: Option<String>,
    ) -> EvalFailure {
        let stats = self.plugin.engine.counters();
        if let Some(Refused(why)) = e.downcast_ref::<Refused>() {
            return EvalFailure::InvalidOutput(why.clone());
        }
        match e.downcast_ref::<Trap>() {
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
        }
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

/// A plugin instance kept across calls, outside the policy's own warm slot;
/// see [`Evaluator::warm`].
#[doc(hidden)]
pub struct WarmInstance {
    warm: Warm,
    evaluator: Evaluator,
}

impl WarmInstance {
    /// Calls `plan` on the kept instance.
    pub fn plan(&mut self, dry_run: bool, candidates: ResourceSet) -> anyhow::Result<CleanupPlan> {
        let now_ms = warden_core::clock::now_ms();
        let inv = Invocation {
            policy: self.evaluator.policy.to_string(),
            now_ms,
            dry_run,
        };
        let _running = self.evaluator.plugin.engine.running();
        self.evaluator
            .begin_call(&mut self.warm.store, now_ms, false);
        let mut candidates = candidates;
        match self
            .warm
            .instance
            .plan(&mut self.warm.store, inv, &mut candidates)
        {
            Ok(Ok(plan)) => Ok(plan),
            Ok(Err(e)) => Err(anyhow::anyhow!("the plugin reported: {e}")),
            Err(e) => Err(anyhow::Error::from(e)),
        }
    }
}
