//! The policy file format: what operators write. One file holds one or more
//! policies under `policies:`. Every struct rejects unknown fields, so a typo is
//! an error with a suggestion, never a silently ignored option.
//!
//! `warden schema` prints this format as JSON Schema for editors.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use warden_core::records::ResourceKind;
use warden_core::values::{ByteSize, HumanDuration};

/// A policy file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Warden policy file")]
pub struct PolicyFile {
    /// The policies this file switches on. Names are unique across the directory.
    pub policies: Vec<PolicySpec>,
}

/// One policy.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// Unique across the policies directory: letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// What the policy decides.
    pub kind: PolicyKind,
    /// The plugin: the name of one shipped with Warden (`temp-files`, `backoff`,
    /// `threshold`, `linear-trend`) or a `.wasm` path relative to this file.
    /// Not used by quotas.
    #[serde(default)]
    pub plugin: Option<String>,
    /// If set, the plugin's sha256 must be this (hex); anything else is refused.
    #[serde(default)]
    pub sha256: Option<String>,
    /// When the policy runs. Defaults: cleanup every hour, alert every 30s,
    /// detector every minute, recovery when a failure is reported.
    #[serde(default)]
    pub trigger: Option<Trigger>,
    /// What the host may act on for this policy.
    #[serde(default)]
    pub scope: Scope,
    /// Free-form settings handed to the plugin as JSON.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// Off switch that keeps the file valid.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Decide and report, but act on nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// How long one evaluation may run (default 100ms, at most 60s).
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// The plugin's memory cap, its linear memory and tables together
    /// (default 64MiB, at most 4GiB).
    #[serde(default)]
    pub memory_limit: Option<ByteSize>,
    /// How evaluations get their plugin instance: `warm` (default: one
    /// instance kept across evaluations, initialized once per config) or
    /// `fresh` (a new instance, and `init`, for every evaluation). Plugins
    /// built against WIT 0.1.0 are always fresh.
    #[serde(default)]
    pub isolation: Option<IsolationMode>,
    /// Warm isolation: evaluations one instance serves before it is replaced
    /// by a fresh one (default 1000, at most 1,000,000).
    #[serde(default)]
    pub recycle_after: Option<u32>,
    /// The most the plugin may keep through its `state` import (default
    /// 1MiB, at most 64MiB). Needs a plugin built against WIT 0.2.0 or later.
    #[serde(default)]
    pub state_limit: Option<ByteSize>,
    /// How much of the host's memory one evaluation's result may take once
    /// the host holds it: a plan's reasons, notices and a record per action
    /// with its target's name; alerts and findings with their strings
    /// (default 64MiB, from 64KiB to 1GiB). A plugin over it fails with
    /// `output_too_large`.
    #[serde(default)]
    pub output_limit: Option<ByteSize>,
    /// How much one evaluation may read through `query-series` and
    /// `list-resources`, over all its calls (default 32MiB, from 64KiB to
    /// 1GiB). Past it, the call returns an error the plugin sees.
    #[serde(default)]
    pub query_limit: Option<ByteSize>,
    /// Retries of failed actions.
    #[serde(default)]
    pub retries: Option<Retries>,
    /// Least time between two notifications or runs that act.
    #[serde(default)]
    pub cooldown: Option<HumanDuration>,
    /// Alerts: how long a condition must hold before firing (a rule may
    /// override). Detectors: how long a finding must be reported before it
    /// is raised.
    #[serde(default, rename = "for")]
    pub hold_for: Option<HumanDuration>,
    /// Alerts: how long an alert keeps firing after its condition clears.
    /// Detectors: how long a raised finding stays active after it was last
    /// reported.
    #[serde(default)]
    pub keep_firing_for: Option<HumanDuration>,
    /// Alerts and detectors: alerts and findings below this severity are
    /// kept and listed but never sent to receivers (nor, for findings,
    /// published as `finding-raised`).
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// Detectors: evaluations in a row that must not report a finding
    /// before it resolves (default 3).
    #[serde(default)]
    pub resolve_after: Option<u32>,
    /// Detectors: the most findings the policy keeps (default 1000); beyond
    /// it, resolved, then pending, then the least severe are dropped.
    #[serde(default)]
    pub max_findings: Option<u32>,
    /// Default severity of what the policy raises.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Labels added to everything the policy raises.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Recovery only: what the answer is when the strategy itself fails
    /// (trap, timeout, error): `fail-open` (default: retry after the host's
    /// own backoff, still within the retry budget and the breaker) or
    /// `fail-closed` (give up, naming the failure). Refused on other kinds.
    #[serde(default)]
    pub on_failure: Option<OnFailure>,
    /// Recovery only: the host's circuit breaker, retry budget,
    /// classification rules and attempt history for this policy.
    #[serde(default)]
    pub recovery: Option<crate::recovery::RecoverySpec>,
    /// Quotas only: the limit the host enforces.
    #[serde(default)]
    pub quota: Option<QuotaSpec>,
    /// Cleanup: the most actions one run may take, a number (`100`) or a
    /// share of the candidates (`10%`). A plan that asks for more acts on
    /// nothing and reports why.
    #[serde(default)]
    pub max_actions: Option<String>,
    /// Cleanup: how many actions run at once (default 4, at most 64).
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Cleanup: the longest one run may spend acting (default 5m). Actions
    /// not started by then are skipped and reported.
    #[serde(default)]
    pub run_timeout: Option<HumanDuration>,
    /// Cleanup: let `scope.paths` cover system directories (`/etc`, `/usr`,
    /// `/boot`, `/proc`, `/sys`, `/dev`, `/bin`, `/sbin`, `/lib*`), which
    /// are refused otherwise. Warden's own data and policies directories stay
    /// out of reach whatever this says.
    #[serde(default)]
    pub allow_system_paths: bool,
    /// Cleanup of registered resources: what a release does when others
    /// still depend on the resource. `refuse` (the default) leaves it, and
    /// the run reports it skipped; `cascade` releases its dependents first,
    /// transitively, whoever owns them, then it — at once, without asking
    /// owners that listen for requests.
    #[serde(default)]
    pub on_dependents: Option<OnDependents>,
    /// Cleanup: also run whenever memory pressure is at this level or above
    /// (`standard`, `critical`, `emergency`; the levels are set in the
    /// daemon's `pressure:` config).
    #[serde(default)]
    pub on_pressure: Option<PressureLevel>,
    /// Alerts and detectors: where this policy's alerts or findings go,
    /// instead of the daemon's `alerts.notifiers`. Each is `type: log`,
    /// `type: webhook` (`url`) or `type: alertmanager` (`url`).
    #[serde(default)]
    pub notify: Option<Vec<warden_notify::NotifierConfig>>,
}

/// What a cleanup policy's release does about resources that depend on the
/// one released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnDependents {
    /// Leave it while others depend on it.
    Refuse,
    /// Release its dependents first, then it.
    Cascade,
}

/// How a policy's evaluations get their plugin instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IsolationMode {
    /// One instance per policy, kept across evaluations: `init` runs once
    /// per config, and memory persists between evaluations until the
    /// instance is recycled.
    Warm,
    /// A fresh instance for every evaluation: nothing in memory survives
    /// from one evaluation to the next.
    Fresh,
}

/// Memory pressure levels, lowest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PressureLevel {
    /// Above the first threshold (default 70% memory used).
    Standard,
    /// Above the second (default 85%).
    Critical,
    /// Above the third (default 95%).
    Emergency,
}

fn yes() -> bool {
    true
}

/// What a policy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// Plans cleanup among resources in scope.
    Cleanup,
    /// Decides what to do about a reported failure.
    Recovery,
    /// Raises alerts.
    Alert,
    /// Finds patterns and predicts exhaustion.
    Detector,
    /// A limit the host enforces itself; no plugin.
    Quota,
}

impl PolicyKind {
    /// Returns the plugin kind it needs, if any.
    pub fn plugin_kind(self) -> Option<warden_plugin_host::Kind> {
        use warden_plugin_host::Kind;
        match self {
            PolicyKind::Cleanup => Some(Kind::Cleanup),
            PolicyKind::Recovery => Some(Kind::Recovery),
            PolicyKind::Alert => Some(Kind::Alert),
            PolicyKind::Detector => Some(Kind::Detector),
            PolicyKind::Quota => None,
        }
    }

    /// Returns its name in policy files.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Cleanup => "cleanup",
            PolicyKind::Recovery => "recovery",
            PolicyKind::Alert => "alert",
            PolicyKind::Detector => "detector",
            PolicyKind::Quota => "quota",
        }
    }
}

/// When a policy runs: `manual`, or a map with exactly one of `interval`,
/// `cron`, `threshold`, `event`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Trigger {
    /// Every so often: `interval: 30s`.
    Interval(HumanDuration),
    /// On a cron schedule (5 or 6 fields, UTC): `cron: "0 3 * * *"`.
    Cron(String),
    /// When a metric crosses a threshold.
    Threshold(ThresholdTrigger),
    /// When something happens.
    Event(EventKind),
    /// Only when asked (API or CLI).
    Manual,
}

const TRIGGERS: &[&str] = &["interval", "cron", "threshold", "event", "manual"];

// By hand: YAML libraries of the serde_yaml 0.9 line read enums only from tags
// (`!interval 30s`); operators write `interval: 30s`.
impl<'de> Deserialize<'de> for Trigger {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};

        struct TriggerVisitor;

        impl<'de> Visitor<'de> for TriggerVisitor {
            type Value = Trigger;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`manual`, or one of `interval: 30s`, `cron: \"0 3 * * *\"`, `threshold: {...}`, `event: failure-reported`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Trigger, E> {
                match v {
                    "manual" => Ok(Trigger::Manual),
                    other => Err(E::unknown_variant(other, TRIGGERS)),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Trigger, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::invalid_length(0, &self));
                };
                let trigger = match key.as_str() {
                    "interval" => Trigger::Interval(map.next_value()?),
                    "cron" => Trigger::Cron(map.next_value()?),
                    "threshold" => Trigger::Threshold(map.next_value()?),
                    "event" => Trigger::Event(map.next_value()?),
                    "manual" => {
                        map.next_value::<de::IgnoredAny>()?;
                        Trigger::Manual
                    }
                    other => return Err(de::Error::unknown_variant(other, TRIGGERS)),
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "a trigger is exactly one of {}; found both `{key}` and `{extra}`",
                        TRIGGERS.join(", ")
                    )));
                }
                Ok(trigger)
            }
        }

        d.deserialize_any(TriggerVisitor)
    }
}

/// A metric threshold that triggers a policy.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdTrigger {
    /// The metric.
    pub metric: String,
    /// Labels the series must carry.
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
    /// The comparison.
    pub condition: Comparison,
    /// The value compared against.
    pub value: f64,
    /// How long it must hold.
    #[serde(default, rename = "for")]
    pub hold_for: Option<HumanDuration>,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Comparison {
    /// Greater than.
    Gt,
    /// Less than.
    Lt,
    /// Greater or equal.
    Ge,
    /// Less or equal.
    Le,
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
}

impl Comparison {
    /// Whether `value` compares so with `threshold`.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Gt => value > threshold,
            Comparison::Lt => value < threshold,
            Comparison::Ge => value >= threshold,
            Comparison::Le => value <= threshold,
            Comparison::Eq => value == threshold,
            Comparison::Ne => value != threshold,
        }
    }
}

/// Events that can trigger a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// An application registered a resource.
    ResourceRegistered,
    /// An alert started firing.
    AlertFired,
    /// Memory pressure changed level.
    PressureChanged,
    /// A service reported a failure.
    FailureReported,
    /// A detector policy raised a finding (at or above its `min_severity`).
    FindingRaised,
}

/// What the host may act on.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Directories the policy may act under: absolute, or starting with
    /// `${data_dir}` for Warden's own data directory.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Globs of paths never touched, even inside `paths`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Resource kinds the policy may act on.
    #[serde(default)]
    pub kinds: Vec<ResourceKind>,
    /// Processes a cleanup policy may signal: it is shown the live ones
    /// these match, and may plan `kill-process` for them.
    #[serde(default)]
    pub processes: Option<ProcessScope>,
    /// Signals it may send them (`TERM`, `KILL`, `HUP`, `INT`, `QUIT`,
    /// `USR1`, `USR2`, `STOP`, `CONT`); needed with `processes`.
    #[serde(default)]
    pub signals: Vec<String>,
    /// Failures: globs of the operations covered (`db.*`). A recovery policy
    /// decides for these (none: it is the default policy, for operations no
    /// other covers); a policy triggered by `event: failure-reported` runs
    /// only for failures of these.
    #[serde(default)]
    pub operations: Vec<String>,
    /// Failures: labels the report must carry, by exact value.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Failures: for a policy triggered by `event: failure-reported`, only
    /// failures of these classes trigger it.
    #[serde(default)]
    pub classes: Vec<warden_core::records::ErrorClass>,
}

/// Which processes a policy may signal: every criterion given must hold.
/// Never pid 1, Warden itself or kernel threads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessScope {
    /// Owners (user names). None: only processes of Warden's own user;
    /// another user's processes only when named here.
    #[serde(default)]
    pub users: Vec<String>,
    /// Commands: `/proc/PID/comm`, or the basename of `argv[0]`.
    #[serde(default)]
    pub names: Vec<String>,
    /// cgroup v2 paths; a process at or under one matches.
    #[serde(default)]
    pub cgroups: Vec<String>,
}

/// Retries of failed actions.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// Attempts after the first (at most 100).
    pub max: u32,
    /// First delay; doubles each retry.
    #[serde(default = "default_backoff")]
    pub backoff: HumanDuration,
    /// Fraction of the delay added or removed at random, 0 to 1.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
}

fn default_backoff() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(1))
}

fn default_jitter() -> f64 {
    0.2
}

/// Severity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

/// What a recovery policy answers when its strategy fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Retry after the host's own backoff (within the budget and breaker).
    #[default]
    FailOpen,
    /// Give up.
    FailClosed,
}

/// A quota the host enforces. Limits are in the quota's unit: a number of
/// things for counts, a size (`10GiB`) or a number of bytes for bytes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    /// What is counted: registered resources of one kind (`temp-files`,
    /// `open-files`, `sockets`, `processes`, `threads`, `app-objects`) or of
    /// every kind (`registered`); the resident memory of watched processes
    /// (`memory-bytes`); stored series (`series`, with `quota.series`); or
    /// the space files take under paths (`disk-bytes`, with `quota.disk`).
    pub resource: QuotaResource,
    /// For `resource: series` (and to narrow `memory-bytes`): which series
    /// are read.
    #[serde(default)]
    pub series: Option<QuotaSeries>,
    /// For `resource: disk-bytes`: which paths are measured, and how much
    /// one evaluation may look at.
    #[serde(default)]
    pub disk: Option<QuotaDisk>,
    /// `count` (default) or `bytes` (the `size_bytes` registrations declare).
    #[serde(default)]
    pub unit: Option<QuotaUnit>,
    /// `level` (default: what is held now; a release gives it back) or
    /// `rate` (what was registered within `period`; releases do not).
    #[serde(default)]
    pub measure: Option<QuotaMeasure>,
    /// Only this owner's resources are counted (a shorthand for a scope
    /// matcher on `owner`).
    #[serde(default)]
    pub owner: Option<String>,
    /// Whom the quota covers and whether each owner has a counter of their own.
    #[serde(default)]
    pub scope: Option<QuotaScope>,
    /// Above this for `grace`, warn.
    #[serde(default)]
    pub soft: Option<QuotaAmount>,
    /// Above this, act at once (`actions`).
    #[serde(default)]
    pub hard: Option<QuotaAmount>,
    /// Usage may sit above `hard` up to this for at most `burst_allowance`
    /// within each `period`.
    #[serde(default)]
    pub burst: Option<QuotaAmount>,
    /// How long usage must stay above `soft` before it warns (default 0).
    #[serde(default)]
    pub grace: Option<HumanDuration>,
    /// The most time above `hard` within each period, with `burst`.
    #[serde(default)]
    pub burst_allowance: Option<HumanDuration>,
    /// A state clears once usage falls below limit × (1 − this); default 0.05.
    #[serde(default)]
    pub hysteresis: Option<f64>,
    /// The window of a rate and of the burst allowance: a duration (`1h`,
    /// rolling) or `hourly`, `daily`, `weekly`, `monthly` (UTC calendar
    /// periods that start again at their boundary).
    #[serde(default)]
    #[schemars(with = "String")]
    pub period: Option<String>,
    /// One action above the hard limit: `warn`, `deny` or `cleanup`.
    #[serde(default)]
    pub action: Option<QuotaAction>,
    /// Several actions above the hard limit.
    #[serde(default)]
    pub actions: Vec<QuotaAction>,
    /// For the `cleanup` action: the cleanup policies to run and the least
    /// they must reclaim, in the quota's unit.
    #[serde(default)]
    pub cleanup: Option<QuotaCleanup>,
}

/// The series an observed quota reads: at each evaluation, the latest
/// sample of every series named `metric` that carries `labels`, no older
/// than `max_age`, summed per owner (the value of `owner_label`) or over
/// all of them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaSeries {
    /// The metric name (`process_open_fds`, a gauge an application pushes).
    /// Fixed for `memory-bytes`.
    #[serde(default)]
    pub metric: Option<String>,
    /// Labels the series must carry.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The label whose value is the owner, with `scope.per_owner: true`
    /// (`process` for `memory-bytes`).
    #[serde(default)]
    pub owner_label: Option<String>,
    /// A sample older than this is not usage (default 5m): a series that
    /// stopped reporting counts as zero.
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
}

/// The paths a `disk-bytes` quota measures: the space allocated to
/// everything under each (blocks, not apparent length; a file with several
/// links once), walked without following symlinks or entering other mounts,
/// as `du -sx` does, a bounded number of entries per evaluation.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaDisk {
    /// Absolute paths, or under `${data_dir}`; with `scope.per_owner: true`
    /// each path is an owner, named as written. Summed (without it), none
    /// may lie inside another: its files would count twice.
    pub paths: Vec<String>,
    /// Entries looked at per evaluation (default 100,000). A larger tree is
    /// measured over several evaluations; usage is the last finished walk.
    #[serde(default)]
    pub budget: Option<u64>,
}

/// A limit as written: checked and converted when the file is parsed, so a
/// negative or malformed limit is an error naming its field.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum QuotaAmount {
    /// A whole number.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// A size such as `10GiB`.
    Text(String),
}

/// Whom a quota covers.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaScope {
    /// Each owner gets a counter of their own (default: everyone the
    /// matchers select shares one).
    #[serde(default)]
    pub per_owner: bool,
    /// All must match; none means every registration.
    #[serde(default)]
    pub matchers: Vec<QuotaMatcher>,
}

/// One test over a registration: `field` is `owner`, `kind` or
/// `labels.KEY`, with exactly one of `equals`, `one_of`, `prefix`, `exists`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaMatcher {
    /// `owner`, `kind` or `labels.KEY`.
    pub field: String,
    /// Exactly this value.
    #[serde(default)]
    pub equals: Option<String>,
    /// Any of these values.
    #[serde(default)]
    pub one_of: Option<Vec<String>>,
    /// A value starting with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The label is present (labels only).
    #[serde(default)]
    pub exists: Option<bool>,
}

/// What a `cleanup` action runs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaCleanup {
    /// Cleanup policies by name.
    pub policies: Vec<String>,
    /// The least each cleanup should reclaim, in the quota's unit; the run
    /// reports what was reclaimed against it.
    #[serde(default)]
    pub min_reclaim: Option<QuotaAmount>,
}

/// What is counted against a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum QuotaResource {
    /// Space allocated to the files under `quota.disk.paths`.
    DiskBytes,
    /// Resident memory of watched processes, as the collector records it
    /// (`process_resident_memory_bytes`; per owner, each `process`).
    MemoryBytes,
    /// The latest value of stored series (`quota.series`): a process's
    /// descriptors, a pushed gauge.
    Series,
    /// Registered open file descriptors (`file-descriptor`).
    OpenFiles,
    /// Registered temp files (`temp-file`).
    TempFiles,
    /// Registered processes (`process`).
    Processes,
    /// Registered threads (`thread`).
    Threads,
    /// Registered sockets (`socket`).
    Sockets,
    /// Registered application objects (`app-object`).
    AppObjects,
    /// Registered resources of every kind (narrow with a `kind` matcher).
    Registered,
}

impl QuotaResource {
    /// Returns the registered kind it counts; `None` for every kind.
    pub fn kind(self) -> Option<ResourceKind> {
        match self {
            QuotaResource::OpenFiles => Some(ResourceKind::FileDescriptor),
            QuotaResource::TempFiles => Some(ResourceKind::TempFile),
            QuotaResource::Processes => Some(ResourceKind::Process),
            QuotaResource::Threads => Some(ResourceKind::Thread),
            QuotaResource::Sockets => Some(ResourceKind::Socket),
            QuotaResource::AppObjects => Some(ResourceKind::AppObject),
            QuotaResource::DiskBytes
            | QuotaResource::MemoryBytes
            | QuotaResource::Series
            | QuotaResource::Registered => None,
        }
    }
}

/// The unit of a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum QuotaUnit {
    /// Things.
    Count,
    /// Bytes.
    Bytes,
}

/// How a quota measures usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum QuotaMeasure {
    /// What is held now.
    Level,
    /// What was added within the period.
    Rate,
}

/// What happens above a hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum QuotaAction {
    /// Refuse registrations (429) and checks that would go over.
    Deny,
    /// Send a warning to the alert receivers.
    Warn,
    /// Run the cleanup policies of `cleanup:`.
    Cleanup,
}

/// Returns the JSON Schema of the policy file format.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(PolicyFile)).expect("a schema is JSON")
}
