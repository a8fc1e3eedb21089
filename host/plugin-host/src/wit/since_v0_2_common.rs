// The bindings of every version since 0.2.0 past their `bindgen!`s: what
// turns the generated types into the host's records and back, and the calls
// into a plugin. Each version module includes this file after generating its
// bindings, so the same code serves each version's own types; a version that
// changes what is here stops including it and takes a copy.

use alert::exports::warden::policy::alerting as wa;
use cleanup::exports::warden::policy::cleanup as wc;
use cleanup::warden::policy::{host, state, types};
use detector::exports::warden::policy::detection as wd;
use recovery::exports::warden::policy::recovery as wr;

pub(crate) fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    cleanup::CleanupStrategy::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |s| s)
}

/// A plugin of this version, typed by kind, ready to instantiate.
pub(crate) enum Pre {
    Cleanup(cleanup::CleanupStrategyPre<StoreState>),
    Recovery(recovery::RecoveryStrategyPre<StoreState>),
    Alert(alert::AlertRulePre<StoreState>),
    Detector(detector::DetectorPre<StoreState>),
}

fn wrong_kind(expected: &str) -> wasmtime::Error {
    wasmtime::format_err!("the plugin is not a {expected} plugin")
}

impl Pre {
    pub(crate) fn new(kind: Kind, pre: InstancePre<StoreState>) -> wasmtime::Result<Pre> {
        Ok(match kind {
            Kind::Cleanup => Pre::Cleanup(cleanup::CleanupStrategyPre::new(pre)?),
            Kind::Recovery => Pre::Recovery(recovery::RecoveryStrategyPre::new(pre)?),
            Kind::Alert => Pre::Alert(alert::AlertRulePre::new(pre)?),
            Kind::Detector => Pre::Detector(detector::DetectorPre::new(pre)?),
        })
    }

    /// Instantiates in `store`. Binding the exports checks their types.
    pub(crate) fn instantiate(&self, store: &mut Store<StoreState>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::Cleanup(p) => Instance::Cleanup(p.instantiate(store)?),
            Pre::Recovery(p) => Instance::Recovery(p.instantiate(store)?),
            Pre::Alert(p) => Instance::Alert(p.instantiate(store)?),
            Pre::Detector(p) => Instance::Detector(p.instantiate(store)?),
        })
    }
}

/// An instance of a plugin of this version, typed by kind.
pub(crate) enum Instance {
    Cleanup(cleanup::CleanupStrategy),
    Recovery(recovery::RecoveryStrategy),
    Alert(alert::AlertRule),
    Detector(detector::Detector),
}

/// The generated `config-error` of every interface is the one of `types`.
fn config_errors(errors: Vec<types::ConfigError>) -> Vec<ConfigError> {
    errors.into_iter().map(ConfigError::from).collect()
}

impl From<types::ConfigError> for ConfigError {
    fn from(e: types::ConfigError) -> Self {
        ConfigError {
            path: e.path,
            message: e.message,
        }
    }
}

impl Instance {
    pub(crate) fn init(
        &self,
        store: &mut Store<StoreState>,
        config_json: &str,
    ) -> wasmtime::Result<Result<(), Vec<ConfigError>>> {
        let out = match self {
            Instance::Cleanup(b) => b
                .warden_policy_cleanup()
                .call_init(&mut *store, config_json)?,
            Instance::Recovery(b) => b
                .warden_policy_recovery()
                .call_init(&mut *store, config_json)?,
            Instance::Alert(b) => b
                .warden_policy_alerting()
                .call_init(&mut *store, config_json)?,
            Instance::Detector(b) => b
                .warden_policy_detection()
                .call_init(&mut *store, config_json)?,
        };
        Ok(out.map_err(config_errors))
    }

    pub(crate) fn plan(
        &self,
        store: &mut Store<StoreState>,
        inv: rec::Invocation,
        candidates: &mut rec::ResourceSet,
    ) -> CallResult<rec::CleanupPlan> {
        let Instance::Cleanup(bindings) = self else {
            return Err(wrong_kind("cleanup"));
        };
        // Lent, not copied: the columns move across and back after the call,
        // so the host holds one copy of a large candidate set.
        let ctx = wc::CleanupContext {
            invocation: inv.into(),
            candidates: std::mem::take(candidates).into(),
        };
        let out = bindings
            .warden_policy_cleanup()
            .call_plan(&mut *store, &ctx);
        *candidates = ctx.candidates.into();
        match out? {
            Ok(plan) => Ok(Ok(rec::CleanupPlan::try_from(plan).map_err(Refused)?)),
            Err(message) => Ok(Err(message)),
        }
    }

    pub(crate) fn decide(
        &self,
        store: &mut Store<StoreState>,
        inv: rec::Invocation,
        failure: &rec::Failure,
        history: &[rec::Attempt],
    ) -> CallResult<rec::RecoveryDecision> {
        let Instance::Recovery(bindings) = self else {
            return Err(wrong_kind("recovery"));
        };
        let history: Vec<wr::Attempt> = history.iter().map(wr::Attempt::from).collect();
        let out = bindings.warden_policy_recovery().call_decide(
            &mut *store,
            &inv.into(),
            &failure.into(),
            &history,
        )?;
        Ok(out.map(rec::RecoveryDecision::from))
    }

    pub(crate) fn evaluate(
        &self,
        store: &mut Store<StoreState>,
        inv: rec::Invocation,
    ) -> CallResult<Vec<rec::Alert>> {
        let Instance::Alert(bindings) = self else {
            return Err(wrong_kind("alert"));
        };
        let out = bindings
            .warden_policy_alerting()
            .call_evaluate(&mut *store, &inv.into())?;
        Ok(out.map(|alerts| alerts.into_iter().map(rec::Alert::from).collect()))
    }

    pub(crate) fn detect(
        &self,
        store: &mut Store<StoreState>,
        inv: rec::Invocation,
    ) -> CallResult<Vec<rec::Finding>> {
        let Instance::Detector(bindings) = self else {
            return Err(wrong_kind("detector"));
        };
        let out = bindings
            .warden_policy_detection()
            .call_detect(&mut *store, &inv.into())?;
        Ok(out.map(|found| found.into_iter().map(rec::Finding::from).collect()))
    }
}

impl From<rec::Invocation> for types::Invocation {
    fn from(i: rec::Invocation) -> Self {
        types::Invocation {
            policy: i.policy,
            now_ms: i.now_ms,
            dry_run: i.dry_run,
        }
    }
}

impl From<types::ResourceKind> for rec::ResourceKind {
    fn from(k: types::ResourceKind) -> Self {
        use rec::ResourceKind as R;
        use types::ResourceKind as W;
        match k {
            W::TempFile => R::TempFile,
            W::File => R::File,
            W::Directory => R::Directory,
            W::FileDescriptor => R::FileDescriptor,
            W::Socket => R::Socket,
            W::Thread => R::Thread,
            W::Process => R::Process,
            W::AppObject => R::AppObject,
        }
    }
}

/// Moves the columns across; only the kinds are rewritten, to their WIT ordinals.
impl From<rec::ResourceSet> for types::ResourceSet {
    fn from(s: rec::ResourceSet) -> Self {
        let s = s.into_columns();
        types::ResourceSet {
            strings: s.strings,
            handles: s.handles,
            kinds: s.kinds.into_iter().map(|k| k as u8).collect(),
            names: s.names,
            owners: s.owners,
            sizes: s.sizes,
            created: s.created,
            modified: s.modified,
            accessed: s.accessed,
            pids: s.pids,
            label_ranges: s.label_ranges,
            labels: s.labels,
        }
    }
}

/// Moves the columns back after a call; the kinds return from their ordinals.
impl From<types::ResourceSet> for rec::ResourceSet {
    fn from(s: types::ResourceSet) -> Self {
        rec::ResourceSet::from_columns(rec::Columns {
            strings: s.strings,
            handles: s.handles,
            kinds: s
                .kinds
                .into_iter()
                .map(|k| {
                    rec::ResourceKind::ALL
                        .get(usize::from(k))
                        .copied()
                        .unwrap_or(rec::ResourceKind::TempFile)
                })
                .collect(),
            names: s.names,
            owners: s.owners,
            sizes: s.sizes,
            created: s.created,
            modified: s.modified,
            accessed: s.accessed,
            pids: s.pids,
            label_ranges: s.label_ranges,
            labels: s.labels,
        })
    }
}

/// Rebuilds the plan's rows from its columns, refusing columns of unequal
/// length, unknown action codes and `notify` texts that are not there.
/// Targets and reasons are checked against the candidates by the evaluator.
impl TryFrom<wc::CleanupPlan> for rec::CleanupPlan {
    type Error = String;

    fn try_from(p: wc::CleanupPlan) -> Result<Self, String> {
        let n = p.kinds.len();
        if p.targets.len() != n || p.signals.len() != n || p.because.len() != n {
            return Err(format!(
                "the plan's columns differ in length (kinds {n}, targets {}, signals {}, because {}); each needs one entry per action",
                p.targets.len(),
                p.signals.len(),
                p.because.len()
            ));
        }
        let mut messages: Vec<Option<String>> = p.messages.into_iter().map(Some).collect();
        let mut actions = Vec::with_capacity(n);
        for i in 0..n {
            let target = p.targets[i];
            let action = match p.kinds[i] {
                0 => rec::CleanupAction::DeletePath(target),
                1 => rec::CleanupAction::CloseResource(target),
                2 => rec::CleanupAction::KillProcess {
                    target,
                    signal: p.signals[i],
                },
                3 => rec::CleanupAction::Release(target),
                4 => rec::CleanupAction::EvictCache(target),
                5 => {
                    let text = messages.get_mut(target as usize).and_then(Option::take);
                    rec::CleanupAction::Notify(text.ok_or_else(|| {
                        format!("action {i} notifies with message {target}, which is missing or already used")
                    })?)
                }
                code => {
                    return Err(format!(
                        "action {i} has code {code}; action codes are 0 to 5"
                    ));
                }
            };
            actions.push((action, p.because[i]));
        }
        Ok(rec::CleanupPlan {
            reasons: p.reasons.into_iter().map(Into::into).collect(),
            actions,
        })
    }
}

impl From<&rec::Failure> for wr::Failure {
    fn from(f: &rec::Failure) -> Self {
        wr::Failure {
            operation: f.operation.clone(),
            class: f.class.into(),
            message: f.message.clone(),
            attempt: f.attempt,
            first_failed_ms: f.first_failed_ms,
            seed: f.seed,
        }
    }
}

impl From<&rec::Attempt> for wr::Attempt {
    fn from(a: &rec::Attempt) -> Self {
        wr::Attempt {
            at_ms: a.at_ms,
            outcome: match a.outcome {
                rec::Outcome::Success => wr::Outcome::Success,
                rec::Outcome::Failure => wr::Outcome::Failure,
                rec::Outcome::Timeout => wr::Outcome::Timeout,
                rec::Outcome::Rejected => wr::Outcome::Rejected,
            },
            duration_ms: a.duration_ms,
        }
    }
}

impl From<wr::Decision> for rec::RecoveryDecision {
    fn from(d: wr::Decision) -> Self {
        match d {
            wr::Decision::RetryAfter(ms) => rec::RecoveryDecision::RetryAfter(ms),
            wr::Decision::Fallback(name) => rec::RecoveryDecision::Fallback(name),
            wr::Decision::OpenCircuit(ms) => rec::RecoveryDecision::OpenCircuit(ms),
            wr::Decision::GiveUp(why) => rec::RecoveryDecision::GiveUp(why),
        }
    }
}

impl From<rec::ErrorClass> for wr::ErrorClass {
    fn from(c: rec::ErrorClass) -> Self {
        use rec::ErrorClass as R;
        use wr::ErrorClass as W;
        match c {
            R::RateLimited => W::RateLimited,
            R::Timeout => W::Timeout,
            R::Connection => W::Connection,
            R::Authentication => W::Authentication,
            R::Permission => W::Permission,
            R::Database => W::Database,
            R::ResourceExhausted => W::ResourceExhausted,
            R::DependencyUnavailable => W::DependencyUnavailable,
            R::InvalidInput => W::InvalidInput,
            R::Internal => W::Internal,
            R::Unknown => W::Unknown,
        }
    }
}

impl From<types::Severity> for rec::Severity {
    fn from(s: types::Severity) -> Self {
        match s {
            types::Severity::Info => rec::Severity::Info,
            types::Severity::Warning => rec::Severity::Warning,
            types::Severity::Critical => rec::Severity::Critical,
        }
    }
}

impl From<wa::Alert> for rec::Alert {
    fn from(a: wa::Alert) -> Self {
        rec::Alert {
            name: a.name,
            condition: match a.condition {
                wa::Condition::Firing => rec::AlertCondition::Firing,
                wa::Condition::Holding => rec::AlertCondition::Holding,
            },
            severity: a.severity.into(),
            labels: labels(a.labels),
            annotations: labels(a.annotations),
            value: a.value,
            for_ms: a.for_ms,
        }
    }
}

impl From<wd::Finding> for rec::Finding {
    fn from(f: wd::Finding) -> Self {
        rec::Finding {
            pattern: f.pattern,
            subject: f.subject,
            labels: labels(f.labels),
            confidence: f.confidence,
            severity: f.severity.into(),
            exhaustion_in_ms: f.exhaustion_in_ms,
            recommendation: f.recommendation,
            // Split off the evidence labels by the evaluator, which checks
            // them.
            evidence: Vec::new(),
        }
    }
}

fn labels(l: Vec<types::LabelPair>) -> rec::Labels {
    l.into_iter().map(|p| (p.key, p.value)).collect()
}

fn label_pairs(l: rec::Labels) -> Vec<types::LabelPair> {
    l.into_iter()
        .map(|(key, value)| types::LabelPair { key, value })
        .collect()
}

impl From<types::Level> for LogLevel {
    fn from(level: types::Level) -> Self {
        match level {
            types::Level::Trace => LogLevel::Trace,
            types::Level::Debug => LogLevel::Debug,
            types::Level::Info => LogLevel::Info,
            types::Level::Warn => LogLevel::Warn,
            types::Level::Error => LogLevel::Error,
        }
    }
}

impl From<rec::Series> for types::Series {
    fn from(s: rec::Series) -> Self {
        types::Series {
            metric: s.metric,
            labels: label_pairs(s.labels),
            times: s.samples.iter().map(|p| p.at_ms).collect(),
            values: s.samples.iter().map(|p| p.value).collect(),
        }
    }
}

impl types::Host for StoreState {}

impl state::Host for StoreState {
    fn get(&mut self) -> Option<Vec<u8>> {
        self.state_get()
    }

    fn set(&mut self, value: Vec<u8>) -> Result<(), String> {
        self.state_set(value)
    }

    fn clear(&mut self) {
        self.state_clear();
    }
}

fn selector(s: types::SeriesSelector) -> rec::SeriesSelector {
    rec::SeriesSelector {
        metric: s.metric,
        matchers: labels(s.matchers),
    }
}

fn resource_filter(f: types::ResourceFilter) -> rec::ResourceFilter {
    rec::ResourceFilter {
        kinds: f.kinds.into_iter().map(rec::ResourceKind::from).collect(),
        name_prefix: f.name_prefix,
        limit: f.limit,
    }
}
