//! Reading a policy file: YAML into the schema, then every check that does not
//! need the plugin (names, durations, limits, cron schedules, scopes, quotas),
//! each error located at a line and column. The result is a list of
//! [`Policy`] with defaults filled in, ready to compile.
//!
//! YAML is read with `serde_norway`: `serde_yaml` is archived, and serde_norway
//! is its maintained fork with the same API (same `from_str`, same error
//! locations), so nothing here depends on a YAML library that stopped moving.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::locate::Locations;
use super::schema::IsolationMode;
use super::schema::{
    EventKind, PolicyFile, PolicyKind, PolicySpec, QuotaAmount, QuotaSpec, Retries, Scope, Trigger,
};
use warden_core::values::HumanDuration;
use warden_plugin_host::{
    DEFAULT_RECYCLE_AFTER, DEFAULT_STATE_LIMIT, Isolation, Limits, MAX_PLUGIN_MEMORY,
    MAX_STATE_LIMIT,
};

mod quota;
use quota::check_quota;
pub use quota::{
    DEFAULT_DISK_BUDGET, DEFAULT_SERIES_MAX_AGE_MS, DiskSource, MEMORY_METRIC, QuotaSource,
    SeriesSource,
};
/// A problem in a policy file, located where the file has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The policy concerned, when known.
    pub policy: Option<String>,
    /// What is wrong and, where it can say, how to fix it.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(p) = &self.policy {
            write!(f, "policy `{p}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl PolicyError {
    /// Returns an error about `policy` of `file`, at the line it starts on.
    pub fn at_policy(file: &Path, policy: &Policy, message: String) -> Self {
        PolicyError {
            file: file.to_path_buf(),
            line: Some(policy.line),
            column: None,
            policy: Some(policy.name().to_owned()),
            message,
        }
    }
}

/// Where a policy's plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum PluginSource {
    /// Shipped with Warden.
    Builtin(String),
    /// A `.wasm` file (resolved to an absolute path).
    File(PathBuf),
}

impl fmt::Display for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSource::Builtin(n) => write!(f, "builtin:{n}"),
            PluginSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

pub use crate::cleanup::{DEFAULT_MAX_CONCURRENT, DEFAULT_RUN_TIMEOUT};

/// A policy that passed every check that needs no plugin, with defaults filled.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// As written.
    pub spec: PolicySpec,
    /// The plugin, for every kind but quota.
    pub plugin: Option<PluginSource>,
    /// The trigger, defaulted by kind.
    pub trigger: Trigger,
    /// Scope paths with `${data_dir}` expanded.
    pub scope_paths: Vec<PathBuf>,
    /// The plugin's config as JSON (`{}` when absent).
    pub config: serde_json::Value,
    /// Evaluation limits.
    pub limits: Limits,
    /// How evaluations get their plugin instance.
    pub isolation: Isolation,
    /// The most the plugin may keep through its `state` import, in bytes.
    pub state_limit: u64,
    /// Where each node of the file is, for errors found later (a plugin's
    /// config errors) to point at a line and column.
    pub(crate) located: Arc<Locations>,
    /// The path of this policy in the file (`policies[2]`).
    pub(crate) path: String,
    /// Cleanup: the cap on actions per run.
    pub max_actions: Option<crate::cleanup::Cap>,
    /// Cleanup: actions at once.
    pub max_concurrent: usize,
    /// Cleanup: the longest a run may act.
    pub run_timeout: Duration,
    /// Recovery: the host's breaker, budget, classification and history.
    pub recovery: Option<crate::recovery::RecoveryOptions>,
    /// Cleanup: what the scope may not cover, checked again on the real
    /// path each time a scope root is opened (a root-owned symlink may lead
    /// elsewhere than the path says).
    pub protected: crate::cleanup::Protected,
    /// Quota: what the host enforces, checked.
    pub quota: Option<warden_quotas::QuotaDef>,
    /// Quota over series or disk usage: where its usage is read.
    pub quota_source: Option<QuotaSource>,
    /// 1-based line where the policy starts.
    pub line: usize,
}

impl Policy {
    /// Returns the 1-based line and column of `path` inside the policy's
    /// `config:` block (`rules[3].condition`), or of the nearest enclosing
    /// node the file has.
    pub fn locate_config(&self, path: &str) -> Option<(usize, usize)> {
        let full = if path.is_empty() {
            format!("{}.config", self.path)
        } else if path.starts_with('[') {
            format!("{}.config{path}", self.path)
        } else {
            format!("{}.config.{path}", self.path)
        };
        self.located.find(&full)
    }

    /// Returns its name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Returns its kind.
    pub fn kind(&self) -> PolicyKind {
        self.spec.kind
    }
}

/// What parsing needs to know about the machine.
#[derive(Debug, Clone)]
pub struct ParseContext {
    /// Warden's data directory, for `${data_dir}` in scopes.
    pub data_dir: PathBuf,
}

/// The largest policy file read: a file of a hundred policies is tens of
/// KiB; anything near this is a mistake, or an attack on the parser.
pub const MAX_POLICY_FILE_BYTES: u64 = 1 << 20;

/// The largest `config:` block, as the JSON handed to the plugin.
pub const MAX_CONFIG_BYTES: usize = 64 << 10;

/// Reads the policy file at `path`: a regular file of at most
/// [`MAX_POLICY_FILE_BYTES`], in UTF-8. Any other file is an error naming
/// it, never skipped and never shown.
pub fn read_policy_file(path: &Path) -> Result<String, PolicyError> {
    let err = |message: String| PolicyError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        policy: None,
        message,
    };
    let bytes = warden_core::files::read_regular(path, MAX_POLICY_FILE_BYTES)
        .map_err(|e| err(format!("the policy file {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        err(format!(
            "the policy file is not UTF-8 (an invalid byte at offset {}); policy files are UTF-8 YAML",
            e.utf8_error().valid_up_to()
        ))
    })
}

const SIGNALS: &[&str] = &[
    "TERM", "KILL", "HUP", "INT", "QUIT", "USR1", "USR2", "STOP", "CONT",
];
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
const MIN_MEMORY: u64 = 1 << 20;

/// Parses and checks the policy file `path` whose content is `text`.
pub fn parse(path: &Path, text: &str, cx: &ParseContext) -> Result<Vec<Policy>, Vec<PolicyError>> {
    let err_at = |line: Option<usize>,
                  column: Option<usize>,
                  policy: Option<&str>,
                  message: String| PolicyError {
        file: path.to_path_buf(),
        line,
        column,
        policy: policy.map(str::to_owned),
        message,
    };
    let mut file: PolicyFile = match serde_norway::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            if let (None, Some(line)) = (e.location(), super::locate::second_document(text)) {
                return Err(vec![err_at(
                    Some(line),
                    Some(1),
                    None,
                    "a second YAML document starts here (`---`); a policy file is one document: list every policy under its one `policies:`, or split the file".into(),
                )]);
            }
            let loc = e.location();
            return Err(vec![err_at(
                loc.as_ref().map(|l| l.line()),
                loc.as_ref().map(|l| l.column()),
                None,
                explain_serde(&e.to_string()),
            )]);
        }
    };
    // A receiver's `credentials_file` is relative to the policy file.
    let base = path.parent().unwrap_or(Path::new("."));
    for spec in &mut file.policies {
        for config in spec.notify.iter_mut().flatten() {
            config.resolve_paths(base);
        }
    }
    let locations = Arc::new(Locations::of(text));
    let mut errors = Vec::new();
    let mut policies = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for (i, spec) in file.policies.iter().enumerate() {
        let at = |field: &str| {
            locations.find(&format!(
                "policies[{i}]{}{field}",
                if field.is_empty() { "" } else { "." }
            ))
        };
        let mut fail = |field: &str, message: String| {
            let pos = at(field);
            errors.push(err_at(
                pos.map(|p| p.0),
                pos.map(|p| p.1),
                Some(&spec.name),
                message,
            ));
        };
        if !valid_name(&spec.name) {
            fail(
                "name",
                format!(
                    "`{}` is not a valid policy name; use letters, digits, `-`, `_` and `.`",
                    spec.name
                ),
            );
        } else if !seen.insert(&spec.name) {
            fail("name", "this name is used by another policy in the same file; names are unique across the directory".into());
        }
        let plugin = check_plugin(spec, path, &mut fail);
        let trigger = spec
            .trigger
            .clone()
            .unwrap_or_else(|| default_trigger(spec.kind));
        check_trigger(&trigger, &mut fail);
        let limits = check_limits(spec, &mut fail);
        let (isolation, state_limit) = check_instances(spec, &mut fail);
        if let Some(r) = &spec.retries {
            check_retries(r, &mut fail);
        }
        if let Some(sha) = &spec.sha256
            && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            fail(
                "sha256",
                "`sha256` must be 64 hex digits (the output of `sha256sum`)".into(),
            );
        }
        let protected = crate::cleanup::Protected {
            data_dir: cx.data_dir.clone(),
            policies_dir: std::path::absolute(
                path.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new(".")),
            )
            .unwrap_or_default(),
            allow_system_paths: spec.allow_system_paths,
        };
        let scope_paths = check_scope(&spec.scope, cx, &protected, &mut fail);
        check_processes(spec, &mut fail);
        let (mut quota, mut quota_source) = (None, None);
        match (spec.kind, &spec.quota) {
            (PolicyKind::Quota, Some(q)) => {
                if let Some((def, source)) = check_quota(&spec.name, q, cx, &mut fail) {
                    (quota, quota_source) = (Some(def), source);
                }
            }
            (PolicyKind::Quota, None) => fail(
                "kind",
                "a quota policy needs a `quota:` block (resource, soft or hard, action)".into(),
            ),
            (_, Some(_)) => fail(
                "quota",
                format!(
                    "`quota:` belongs to quota policies; this one is of kind `{}`",
                    spec.kind.name()
                ),
            ),
            _ => {}
        }
        if spec.kind == PolicyKind::Quota {
            // What a plugin or a cleanup run would use; a quota has neither.
            let unused = [
                (
                    "dry_run",
                    spec.dry_run,
                    "a quota measures and enforces; to only warn, give it `action: warn`, or switch it off with `enabled: false`",
                ),
                (
                    "cooldown",
                    spec.cooldown.is_some(),
                    "a quota acts once per crossing; its `quota.hysteresis` keeps it from flapping",
                ),
                (
                    "config",
                    spec.config.is_some(),
                    "a quota has no plugin to configure; its settings are under `quota:`",
                ),
                (
                    "retries",
                    spec.retries.is_some(),
                    "a quota's actions are not retried; a cleanup policy it runs has its own `retries`",
                ),
                (
                    "timeout",
                    spec.timeout.is_some(),
                    "a quota has no plugin to time out",
                ),
                (
                    "memory_limit",
                    spec.memory_limit.is_some(),
                    "a quota has no plugin",
                ),
                (
                    "output_limit",
                    spec.output_limit.is_some(),
                    "a quota has no plugin",
                ),
                (
                    "query_limit",
                    spec.query_limit.is_some(),
                    "a quota has no plugin",
                ),
                (
                    "sha256",
                    spec.sha256.is_some(),
                    "a quota has no plugin to pin",
                ),
                (
                    "scope",
                    spec.scope != Scope::default(),
                    "a policy's `scope` is what a plugin may act on; whom a quota covers is `quota.scope`",
                ),
            ];
            for (field, set, why) in unused {
                if set {
                    fail(
                        field,
                        format!("`{field}` has no meaning for a quota policy: {why}"),
                    );
                }
            }
        }
        if spec.severity.is_some()
            && !matches!(
                spec.kind,
                PolicyKind::Alert | PolicyKind::Detector | PolicyKind::Quota
            )
        {
            fail(
                "severity",
                format!(
                    "`severity` has no meaning for a {} policy",
                    spec.kind.name()
                ),
            );
        }
        crate::raises::check(spec, &mut fail);
        let max_actions = match &spec.max_actions {
            None => None,
            Some(_) if spec.kind != PolicyKind::Cleanup => {
                fail(
                    "max_actions",
                    "`max_actions` applies to cleanup policies only".into(),
                );
                None
            }
            Some(text) => match text.parse() {
                Ok(cap) => Some(cap),
                Err(e) => {
                    fail("max_actions", e);
                    None
                }
            },
        };
        let cleanup_only = [
            ("max_concurrent", spec.max_concurrent.is_some()),
            ("run_timeout", spec.run_timeout.is_some()),
            ("on_pressure", spec.on_pressure.is_some()),
            ("allow_system_paths", spec.allow_system_paths),
            ("on_dependents", spec.on_dependents.is_some()),
        ];
        for (field, set) in cleanup_only {
            if set && spec.kind != PolicyKind::Cleanup {
                fail(field, format!("`{field}` applies to cleanup policies only"));
            }
        }
        // Only registered resources have dependents: a policy shown none
        // could not act on the setting.
        if spec.kind == PolicyKind::Cleanup
            && spec.on_dependents.is_some()
            && spec.scope.kinds.is_empty()
        {
            fail(
                "on_dependents",
                "`on_dependents` applies to registered resources, and `scope.kinds` names no kind of them".into(),
            );
        }
        let max_concurrent = match spec.max_concurrent {
            None => DEFAULT_MAX_CONCURRENT,
            Some(n @ 1..=64) => n as usize,
            Some(n) => {
                fail(
                    "max_concurrent",
                    format!("`max_concurrent` is {n}; it must be between 1 and 64"),
                );
                DEFAULT_MAX_CONCURRENT
            }
        };
        let run_timeout = match spec.run_timeout {
            None => DEFAULT_RUN_TIMEOUT,
            Some(t) if t.0.is_zero() || t.0 > Duration::from_secs(24 * 3600) => {
                fail(
                    "run_timeout",
                    format!("`run_timeout` is {t}; it must be more than 0s and at most 24h"),
                );
                DEFAULT_RUN_TIMEOUT
            }
            Some(t) => t.0,
        };
        let recovery = crate::failures::check(spec, &trigger, &mut fail);
        let config = match &spec.config {
            None | Some(serde_json::Value::Null) => serde_json::json!({}),
            Some(v) => v.clone(),
        };
        let config_bytes = config.to_string().len();
        if config_bytes > MAX_CONFIG_BYTES {
            fail(
                "config",
                format!(
                    "`config` is {config_bytes} bytes as JSON, over the {MAX_CONFIG_BYTES} bytes a plugin is handed; keep bulk data out of the policy file"
                ),
            );
        }
        policies.push(Policy {
            spec: spec.clone(),
            plugin,
            trigger,
            scope_paths,
            config,
            limits,
            isolation,
            state_limit,
            located: Arc::clone(&locations),
            path: format!("policies[{i}]"),
            max_actions,
            max_concurrent,
            run_timeout,
            recovery,
            protected,
            quota,
            quota_source,
            line: at("").map_or(1, |p| p.0),
        });
    }
    if errors.is_empty() {
        Ok(policies)
    } else {
        Err(errors)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn default_trigger(kind: PolicyKind) -> Trigger {
    let every = |s| Trigger::Interval(HumanDuration(Duration::from_secs(s)));
    match kind {
        PolicyKind::Cleanup => every(3600),
        PolicyKind::Alert => every(30),
        PolicyKind::Detector | PolicyKind::Quota => every(60),
        PolicyKind::Recovery => Trigger::Event(EventKind::FailureReported),
    }
}

fn check_plugin(
    spec: &PolicySpec,
    file: &Path,
    fail: &mut impl FnMut(&str, String),
) -> Option<PluginSource> {
    match (spec.kind, &spec.plugin) {
        (PolicyKind::Quota, Some(_)) => {
            fail(
                "plugin",
                "quota policies are enforced by the host and take no `plugin`".into(),
            );
            None
        }
        (PolicyKind::Quota, None) => None,
        (kind, None) => {
            let shipped: Vec<&str> = warden_plugins::BUILTIN
                .iter()
                .filter(|b| b.kind == kind.name())
                .map(|b| b.name)
                .collect();
            fail(
                "kind",
                format!(
                    "a {} policy needs a `plugin` (shipped for this kind: {})",
                    kind.name(),
                    shipped.join(", ")
                ),
            );
            None
        }
        (_, Some(p)) if p.ends_with(".wasm") || p.contains('/') => {
            let base = file.parent().unwrap_or(Path::new("."));
            Some(PluginSource::File(base.join(p)))
        }
        (kind, Some(name)) => match warden_plugins::builtin(name) {
            Some(b) if b.kind == kind.name() => Some(PluginSource::Builtin(name.clone())),
            Some(b) => {
                fail(
                    "plugin",
                    format!(
                        "the shipped plugin `{name}` is a {} plugin; this policy is of kind `{}`",
                        b.kind,
                        kind.name()
                    ),
                );
                None
            }
            None => {
                let names: Vec<&str> = warden_plugins::BUILTIN.iter().map(|b| b.name).collect();
                let hint = nearest(name, &names)
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_default();
                fail(
                    "plugin",
                    format!(
                        "no plugin called `{name}` is shipped with warden (shipped: {}){hint}; for a file, give a path ending in `.wasm`",
                        names.join(", ")
                    ),
                );
                None
            }
        },
    }
}

fn check_trigger(trigger: &Trigger, fail: &mut impl FnMut(&str, String)) {
    match trigger {
        Trigger::Interval(d) if d.0 < Duration::from_millis(10) => {
            fail(
                "trigger.interval",
                format!("an interval of {d} is too short; the shortest is 10ms"),
            );
        }
        Trigger::Cron(expr) => {
            if let Err(m) = next_cron_fire(expr) {
                fail("trigger.cron", m);
            }
        }
        Trigger::Threshold(t) if !t.value.is_finite() => fail(
            "trigger.threshold.value",
            "the threshold must be a finite number".into(),
        ),
        _ => {}
    }
}

/// Returns when the cron expression next fires (UTC), or why it never will.
pub fn next_cron_fire(expr: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    next_cron_fire_after(expr, chrono::Utc::now())
}

/// Returns when the cron expression next fires after `after` (UTC), or why
/// it never will; a replay steps a cron policy through simulated time so.
pub fn next_cron_fire_after(
    expr: &str,
    after: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let cron: croner::Cron = expr
        .parse()
        .map_err(|e| format!("`{expr}` is not a cron expression: {e}"))?;
    cron.find_next_occurrence(&after, false)
        .map_err(|_| format!("the cron expression `{expr}` can never fire (no date matches it)"))
}

fn check_limits(spec: &PolicySpec, fail: &mut impl FnMut(&str, String)) -> Limits {
    let mut limits = Limits::default();
    if let Some(t) = spec.timeout {
        if t.0.is_zero() || t.0 > MAX_TIMEOUT {
            fail(
                "timeout",
                format!("`timeout` must be more than 0 and at most 60s, not {t}"),
            );
        }
        limits.timeout = t.0;
    }
    if let Some(m) = spec.memory_limit {
        if m.0 < MIN_MEMORY || m.0 > MAX_PLUGIN_MEMORY {
            fail(
                "memory_limit",
                format!("`memory_limit` must be between 1MiB and 4GiB, not {m}"),
            );
        }
        limits.memory_bytes = m.0;
    }
    let range = MIN_IO_LIMIT..=MAX_IO_LIMIT;
    if let Some(o) = spec.output_limit {
        if !range.contains(&o.0) {
            fail(
                "output_limit",
                format!("`output_limit` must be between 64KiB and 1GiB, not {o}"),
            );
        }
        limits.max_output_bytes = o.0;
    }
    if let Some(q) = spec.query_limit {
        if !range.contains(&q.0) {
            fail(
                "query_limit",
                format!("`query_limit` must be between 64KiB and 1GiB, not {q}"),
            );
        }
        limits.max_query_bytes = q.0;
    }
    limits
}

/// The most evaluations a warm instance may serve before it is replaced.
const MAX_RECYCLE_AFTER: u32 = 1_000_000;

fn check_instances(spec: &PolicySpec, fail: &mut impl FnMut(&str, String)) -> (Isolation, u64) {
    if spec.kind == PolicyKind::Quota {
        for (field, set) in [
            ("isolation", spec.isolation.is_some()),
            ("recycle_after", spec.recycle_after.is_some()),
            ("state_limit", spec.state_limit.is_some()),
        ] {
            if set {
                fail(
                    field,
                    format!("`{field}` applies to policies with a plugin; quotas have none"),
                );
            }
        }
    }
    let isolation = match (spec.isolation, spec.recycle_after) {
        (Some(IsolationMode::Fresh), Some(_)) => {
            fail(
                "recycle_after",
                "`recycle_after` applies to `isolation: warm`; a fresh policy gets a new instance every evaluation".into(),
            );
            Isolation::Fresh
        }
        (Some(IsolationMode::Fresh), None) => Isolation::Fresh,
        (_, Some(n)) if n == 0 || n > MAX_RECYCLE_AFTER => {
            fail(
                "recycle_after",
                format!("`recycle_after` is {n}; it must be between 1 and {MAX_RECYCLE_AFTER}"),
            );
            Isolation::default()
        }
        (_, n) => Isolation::Warm {
            recycle_after: n.unwrap_or(DEFAULT_RECYCLE_AFTER),
        },
    };
    let state_limit = match spec.state_limit {
        None => DEFAULT_STATE_LIMIT,
        Some(b) if b.0 > MAX_STATE_LIMIT => {
            fail(
                "state_limit",
                format!("`state_limit` is {b}; it must be at most 64MiB"),
            );
            DEFAULT_STATE_LIMIT
        }
        Some(b) => b.0,
    };
    (isolation, state_limit)
}
/// The smallest `output_limit` and `query_limit`.
const MIN_IO_LIMIT: u64 = 64 << 10;
/// The largest `output_limit` and `query_limit`.
const MAX_IO_LIMIT: u64 = 1 << 30;

fn check_retries(r: &Retries, fail: &mut impl FnMut(&str, String)) {
    if r.max > 100 {
        fail(
            "retries.max",
            format!("`retries.max` is {}; at most 100", r.max),
        );
    }
    if !(0.0..=1.0).contains(&r.jitter) {
        fail(
            "retries.jitter",
            format!("`retries.jitter` must be between 0 and 1, not {}", r.jitter),
        );
    }
}

fn check_scope(
    scope: &Scope,
    cx: &ParseContext,
    protected: &crate::cleanup::Protected,
    fail: &mut impl FnMut(&str, String),
) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for (i, p) in scope.paths.iter().enumerate() {
        let expanded = match p.strip_prefix("${data_dir}") {
            Some(rest) => cx.data_dir.join(rest.trim_start_matches('/')),
            None => PathBuf::from(p),
        };
        if !expanded.is_absolute() {
            fail(
                &format!("scope.paths[{i}]"),
                format!("scope path `{p}` must be absolute or start with `${{data_dir}}`"),
            );
        } else if expanded
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            fail(
                &format!("scope.paths[{i}]"),
                format!("scope path `{p}` must not contain `..`"),
            );
        } else if expanded == Path::new("/") {
            fail(
                &format!("scope.paths[{i}]"),
                "the whole filesystem cannot be a cleanup scope".into(),
            );
        } else if let Some(why) = protected.why(&expanded) {
            fail(&format!("scope.paths[{i}]"), why);
        }
        paths.push(expanded);
    }
    for (i, g) in scope.exclude.iter().enumerate() {
        if let Err(e) = crate::cleanup::exclude_set(std::slice::from_ref(g)) {
            fail(&format!("scope.exclude[{i}]"), e);
        }
    }
    for (i, s) in scope.signals.iter().enumerate() {
        let name = s.trim_start_matches("SIG");
        if !SIGNALS.contains(&name) {
            fail(
                &format!("scope.signals[{i}]"),
                format!(
                    "`{s}` is not a signal Warden sends; allowed: {}",
                    SIGNALS.join(", ")
                ),
            );
        }
    }
    paths
}

/// `scope.processes` and `scope.signals` go together, on cleanup policies:
/// the processes a policy may signal, and with what.
fn check_processes(spec: &PolicySpec, fail: &mut impl FnMut(&str, String)) {
    let scope = &spec.scope;
    // Recovery policies refuse both with their own reason.
    if spec.kind == PolicyKind::Recovery {
        return;
    }
    let set = scope.processes.is_some() || !scope.signals.is_empty();
    if set && spec.kind != PolicyKind::Cleanup {
        fail(
            "scope.processes",
            format!(
                "`scope.processes` and `scope.signals` say which processes a cleanup policy may signal; a {} policy sends none",
                spec.kind.name()
            ),
        );
        return;
    }
    match &scope.processes {
        Some(p) if p.names.is_empty() && p.users.is_empty() && p.cgroups.is_empty() => fail(
            "scope.processes",
            "name the processes it may signal: `names` (command or argv[0] basename), `users` and/or `cgroups`; an empty selector would match every process of Warden's user".into(),
        ),
        Some(_) if scope.signals.is_empty() => fail(
            "scope.signals",
            "`scope.processes` needs the signals the policy may send, such as `[TERM]`".into(),
        ),
        None if !scope.signals.is_empty() => fail(
            "scope.processes",
            "`scope.signals` needs `scope.processes`: which processes those signals may go to".into(),
        ),
        _ => {}
    }
    if let Some(p) = &scope.processes {
        for (i, c) in p.cgroups.iter().enumerate() {
            if !c.starts_with('/') || c.split('/').any(|part| part == "..") {
                fail(
                    &format!("scope.processes.cgroups[{i}]"),
                    format!(
                        "`{c}` must be an absolute cgroup path without `..`, such as `/system.slice/app.service`"
                    ),
                );
            }
        }
    }
}

/// Returns the candidate closest to `word`, if any is close enough to be a typo.
fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
}

/// Rewrites a deserializer message for people: drops the trailing position
/// (reported separately) and, for an unknown field or value, suggests the
/// nearest valid one.
fn explain_serde(message: &str) -> String {
    let mut m = message.to_owned();
    if let Some(i) = m.rfind(" at line ") {
        m.truncate(i);
    }
    for what in ["unknown field `", "unknown variant `"] {
        if let Some(start) = m.find(what) {
            let rest = &m[start + what.len()..];
            let Some(end) = rest.find('`') else { continue };
            let word = rest[..end].to_owned();
            let expected: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
            if let Some(n) = nearest(&word, &expected) {
                m.push_str(&format!("; did you mean `{n}`?"));
            }
        }
    }
    m
}

/// Returns a stable fingerprint of what a policy is: its spec and where its
/// plugin comes from. Equal fingerprints mean nothing needs recompiling or
/// resetting on reload.
pub fn fingerprint(policy: &Policy) -> String {
    use sha2::{Digest, Sha256};
    let spec = serde_json::to_string(&policy.spec).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(spec.as_bytes());
    h.update(format!("{:?}{:?}", policy.plugin, policy.scope_paths).as_bytes());
    hex::encode(&h.finalize()[..12])
}

#[cfg(test)]
mod tests;
