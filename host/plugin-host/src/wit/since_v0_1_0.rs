//! Bindings for `warden:policy@0.1.0` (`wit/since_v0.1.0/`, frozen) and the
//! conversions between its generated types and the host's records.

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::CallResult;
use crate::kind::Kind;
use crate::store::{LogLevel, StoreState};
use warden_core::records as rec;

/// The WIT package version these bindings implement.
pub(crate) const VERSION: &str = "0.1.0";

mod cleanup {
    wasmtime::component::bindgen!({
        world: "cleanup-strategy",
        path: "../../wit/since_v0.1.0",
    });
}

mod recovery {
    wasmtime::component::bindgen!({
        world: "recovery-strategy",
        path: "../../wit/since_v0.1.0",
        with: {
            "warden:policy/types": super::cleanup::warden::policy::types,
            "warden:policy/host": super::cleanup::warden::policy::host,
        },
    });
}

mod alert {
    wasmtime::component::bindgen!({
        world: "alert-rule",
        path: "../../wit/since_v0.1.0",
        with: {
            "warden:policy/types": super::cleanup::warden::policy::types,
            "warden:policy/host": super::cleanup::warden::policy::host,
        },
    });
}

mod detector {
    wasmtime::component::bindgen!({
        world: "detector",
        path: "../../wit/since_v0.1.0",
        with: {
            "warden:policy/types": super::cleanup::warden::policy::types,
            "warden:policy/host": super::cleanup::warden::policy::host,
        },
    });
}

use cleanup::exports::warden::policy::cleanup as wc;
use cleanup::warden::policy::{host, types};
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

    /// Instantiates in `store`. Binding the exports checks their types, which
    /// finding them by name when the plugin was loaded does not.
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

impl Instance {
    pub(crate) fn plan(
        &self,
        store: &mut Store<StoreState>,
        inv: rec::Invocation,
        candidates: &mut rec::ResourceSet,
    ) -> CallResult<rec::CleanupPlan> {
        let Instance::Cleanup(bindings) = self else {
            return Err(wrong_kind("cleanup"));
        };
        let ctx = wc::CleanupContext {
            invocation: invocation(inv),
            candidates: resource_set(std::mem::take(candidates)),
        };
        let out = bindings
            .warden_policy_cleanup()
            .call_plan(&mut *store, &ctx);
        *candidates = from_resource_set(ctx.candidates);
        let out = out?;
        Ok(out.map(|p| rec::CleanupPlan {
            reasons: p.reasons.into_iter().map(Into::into).collect(),
            actions: p
                .actions
                .into_iter()
                .map(|a| (cleanup_action(a.action), a.reason))
                .collect(),
        }))
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
        let f = wr::Failure {
            operation: failure.operation.clone(),
            class: error_class(failure.class),
            message: failure.message.clone(),
            attempt: failure.attempt,
            first_failed_ms: failure.first_failed_ms,
            seed: failure.seed,
        };
        let h: Vec<wr::Attempt> = history
            .iter()
            .map(|a| wr::Attempt {
                at_ms: a.at_ms,
                outcome: match a.outcome {
                    rec::Outcome::Success => wr::Outcome::Success,
                    rec::Outcome::Failure => wr::Outcome::Failure,
                    rec::Outcome::Timeout => wr::Outcome::Timeout,
                    rec::Outcome::Rejected => wr::Outcome::Rejected,
                },
                duration_ms: a.duration_ms,
            })
            .collect();
        let out =
            bindings
                .warden_policy_recovery()
                .call_decide(&mut *store, &invocation(inv), &f, &h)?;
        Ok(out.map(|d| match d {
            wr::Decision::RetryAfter(ms) => rec::RecoveryDecision::RetryAfter(ms),
            wr::Decision::Fallback(name) => rec::RecoveryDecision::Fallback(name),
            wr::Decision::OpenCircuit(ms) => rec::RecoveryDecision::OpenCircuit(ms),
            wr::Decision::GiveUp(why) => rec::RecoveryDecision::GiveUp(why),
        }))
    }

    pub(crate) fn evaluate(
        &self,
        store: &mut Store<StoreState>,
        inv: rec::Invocation,
    ) -> CallResult<Vec<rec::Alert>> {
        use alert::exports::warden::policy::alerting as wa;
        let Instance::Alert(bindings) = self else {
            return Err(wrong_kind("alert"));
        };
        let out = bindings
            .warden_policy_alerting()
            .call_evaluate(&mut *store, &invocation(inv))?;
        Ok(out.map(|alerts| {
            alerts
                .into_iter()
                .map(|a| rec::Alert {
                    name: a.name,
                    condition: match a.condition {
                        wa::Condition::Firing => rec::AlertCondition::Firing,
                        wa::Condition::Holding => rec::AlertCondition::Holding,
                    },
                    severity: severity(a.severity),
                    labels: labels(a.labels),
                    annotations: labels(a.annotations),
                    value: a.value,
                    for_ms: a.for_ms,
                })
                .collect()
        }))
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
            .call_detect(&mut *store, &invocation(inv))?;
        Ok(out.map(|found| {
            found
                .into_iter()
                .map(|f| rec::Finding {
                    pattern: f.pattern,
                    subject: f.subject,
                    labels: labels(f.labels),
                    confidence: f.confidence,
                    severity: severity(f.severity),
                    exhaustion_in_ms: f.exhaustion_in_ms,
                    recommendation: f.recommendation,
                    // Split off the evidence labels by the evaluator, which
                    // checks them.
                    evidence: Vec::new(),
                })
                .collect()
        }))
    }
}

fn invocation(i: rec::Invocation) -> types::Invocation {
    types::Invocation {
        policy: i.policy,
        now_ms: i.now_ms,
        dry_run: i.dry_run,
    }
}

fn from_resource_kind(k: types::ResourceKind) -> rec::ResourceKind {
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

/// Moves the columns across; only the kinds are rewritten, to their WIT ordinals.
fn resource_set(s: rec::ResourceSet) -> types::ResourceSet {
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

/// Moves the columns back after a call; the kinds return from their ordinals.
fn from_resource_set(s: types::ResourceSet) -> rec::ResourceSet {
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

fn cleanup_action(a: wc::Action) -> rec::CleanupAction {
    match a {
        wc::Action::DeletePath(i) => rec::CleanupAction::DeletePath(i),
        wc::Action::CloseResource(i) => rec::CleanupAction::CloseResource(i),
        wc::Action::KillProcess(k) => rec::CleanupAction::KillProcess {
            target: k.target,
            signal: k.signal,
        },
        wc::Action::Release(i) => rec::CleanupAction::Release(i),
        wc::Action::EvictCache(i) => rec::CleanupAction::EvictCache(i),
        wc::Action::Notify(m) => rec::CleanupAction::Notify(m),
    }
}

fn error_class(c: rec::ErrorClass) -> wr::ErrorClass {
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

fn severity(s: types::Severity) -> rec::Severity {
    match s {
        types::Severity::Info => rec::Severity::Info,
        types::Severity::Warning => rec::Severity::Warning,
        types::Severity::Critical => rec::Severity::Critical,
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

impl types::Host for StoreState {}

impl host::Host for StoreState {
    fn log(&mut self, level: types::Level, message: String) {
        let level = match level {
            types::Level::Trace => LogLevel::Trace,
            types::Level::Debug => LogLevel::Debug,
            types::Level::Info => LogLevel::Info,
            types::Level::Warn => LogLevel::Warn,
            types::Level::Error => LogLevel::Error,
        };
        StoreState::log(self, level, message);
    }

    fn now(&mut self) -> types::TimestampMs {
        self.now_ms()
    }

    fn config(&mut self) -> String {
        self.config_json()
    }

    fn query_series(
        &mut self,
        selector: types::SeriesSelector,
        window_ms: u64,
    ) -> Result<Vec<types::Series>, String> {
        let selector = rec::SeriesSelector {
            metric: selector.metric,
            matchers: labels(selector.matchers),
        };
        let series = StoreState::query_series(self, &selector, window_ms)?;
        Ok(series
            .into_iter()
            .map(|s| types::Series {
                metric: s.metric,
                labels: label_pairs(s.labels),
                times: s.samples.iter().map(|p| p.at_ms).collect(),
                values: s.samples.iter().map(|p| p.value).collect(),
            })
            .collect())
    }

    fn list_resources(
        &mut self,
        filter: types::ResourceFilter,
    ) -> Result<types::ResourceSet, String> {
        let filter = rec::ResourceFilter {
            kinds: filter.kinds.into_iter().map(from_resource_kind).collect(),
            name_prefix: filter.name_prefix,
            limit: filter.limit,
        };
        StoreState::list_resources(self, &filter).map(resource_set)
    }
}
