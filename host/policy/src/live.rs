//! The live policy set and how it changes. A reload rescans the directory,
//! re-reads only files whose content changed, parses, checks and compiles them
//! off to the side — each plugin reading its config (`init`) before its
//! policy is accepted — and swaps the new set in at once. Per file, the last good
//! version keeps running when a new one fails; a deleted file takes its
//! policies with it. Policies whose fingerprint did not change are carried
//! over as they are — not recompiled, not reset.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::compile::PluginCache;
use super::parse::{self, ParseContext, Policy, PolicyError};
use warden_plugin_host::{DataSource, Evaluator, MemoryStates, Plugin, PluginStateStore};

/// A policy as it runs.
#[derive(Debug)]
pub struct LivePolicy {
    /// The file that declares it.
    pub file: PathBuf,
    /// The checked policy.
    pub policy: Policy,
    /// Its compiled plugin (none for quotas).
    pub plugin: Option<Arc<Plugin>>,
    /// Its plugin bound to its name, config and limits.
    pub evaluator: Option<Evaluator>,
    /// Changes when anything about the policy changes.
    pub fingerprint: String,
    /// When this version was loaded, ms since the epoch.
    pub loaded_at_ms: i64,
    /// A cleanup policy made more dangerous by this version acts only from
    /// this time on (ms since the epoch); its runs before are dry runs. See
    /// [`SETTLE`](super::watch::SETTLE).
    pub hold_until_ms: Option<i64>,
}

impl LivePolicy {
    /// Returns its name.
    pub fn name(&self) -> &str {
        self.policy.name()
    }

    /// Returns true if and only if this version may not act yet at `now_ms`.
    pub fn held(&self, now_ms: i64) -> bool {
        self.hold_until_ms.is_some_and(|t| now_ms < t)
    }
}

/// Why `after`, a new version of a cleanup policy, may do more than
/// `before` (none: the policy is new): it goes from dry-run or disabled to
/// acting, or its scope gets wider. `None` if it may not.
pub fn escalation(before: Option<&Policy>, after: &Policy) -> Option<String> {
    use super::schema::PolicyKind;
    let s = &after.spec;
    if after.kind() != PolicyKind::Cleanup || !s.enabled || s.dry_run {
        return None;
    }
    let Some(b) = before else {
        return Some("is new and not a dry run".into());
    };
    let mut why = Vec::new();
    if b.spec.dry_run || !b.spec.enabled {
        why.push("goes from dry-run to acting".to_owned());
    }
    let added: Vec<String> = after
        .scope_paths
        .iter()
        .filter(|p| !b.scope_paths.iter().any(|q| p.starts_with(q)))
        .map(|p| format!("`{}`", p.display()))
        .collect();
    if !added.is_empty() {
        why.push(format!("widens its scope to {}", added.join(", ")));
    }
    let dropped: Vec<String> = b
        .spec
        .scope
        .exclude
        .iter()
        .filter(|e| !s.scope.exclude.contains(e))
        .map(|e| format!("`{e}`"))
        .collect();
    if !dropped.is_empty() {
        why.push(format!("no longer excludes {}", dropped.join(", ")));
    }
    let kinds: Vec<&str> = s
        .scope
        .kinds
        .iter()
        .filter(|k| !b.spec.scope.kinds.contains(k))
        .map(|k| k.name())
        .collect();
    if !kinds.is_empty() {
        why.push(format!("now acts on {}", kinds.join(", ")));
    }
    let signals: Vec<&str> = s
        .scope
        .signals
        .iter()
        .filter(|g| !b.spec.scope.signals.contains(g))
        .map(String::as_str)
        .collect();
    if !signals.is_empty()
        || (s.scope.processes.is_some() && s.scope.processes != b.spec.scope.processes)
    {
        why.push("may signal more processes".to_owned());
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// The latest failed attempt to load a file.
#[derive(Debug, Clone, Serialize)]
pub struct FileFailure {
    /// sha256 of the content that failed.
    pub hash: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// What was wrong.
    pub errors: Vec<PolicyError>,
}

/// One policy file as the daemon holds it.
#[derive(Debug, Clone)]
pub struct FileState {
    /// The file.
    pub path: PathBuf,
    /// sha256 of the content that is running, if any version loaded.
    pub hash: Option<String>,
    /// When that content was loaded.
    pub loaded_at_ms: Option<i64>,
    /// The policies of the running version.
    pub policies: Vec<Arc<LivePolicy>>,
    /// Set while the file's current content fails to load.
    pub error: Option<FileFailure>,
}

/// Every policy file and policy, at one moment.
#[derive(Debug, Default)]
pub struct LiveSet {
    /// Files by path.
    pub files: BTreeMap<PathBuf, FileState>,
    /// Increases with each reload that changed something.
    pub generation: u64,
}

impl LiveSet {
    /// Returns every running policy.
    pub fn policies(&self) -> impl Iterator<Item = &Arc<LivePolicy>> {
        self.files.values().flat_map(|f| f.policies.iter())
    }

    /// Returns the running policy called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<LivePolicy>> {
        self.policies().find(|p| p.name() == name)
    }
}

/// What a reload did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    /// Files (re)loaded successfully.
    pub loaded: Vec<PathBuf>,
    /// Files that failed, with their errors; their last good version runs on.
    pub failed: Vec<(PathBuf, Vec<PolicyError>)>,
    /// Files removed.
    pub removed: Vec<PathBuf>,
    /// Files unchanged.
    pub unchanged: usize,
    /// How long the reload took, in microseconds.
    pub micros: u64,
}

impl ReloadReport {
    /// Returns true if and only if the reload changed the running set.
    pub fn changed(&self) -> bool {
        !self.loaded.is_empty() || !self.removed.is_empty()
    }
}

/// Counters of reloads, for status and metrics.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct ReloadStats {
    /// Reloads run.
    pub reloads: u64,
    /// Files that loaded.
    pub files_loaded: u64,
    /// Files that failed to load.
    pub files_failed: u64,
    /// Duration of the last reload, microseconds.
    pub last_micros: u64,
}

/// A policies directory and its live set.
pub struct PolicyDir {
    dir: PathBuf,
    cx: ParseContext,
    plugins: PluginCache,
    data: Arc<dyn DataSource>,
    states: Arc<dyn PluginStateStore>,
    live: ArcSwap<LiveSet>,
    lock: Mutex<ReloadStats>,
    changed: tokio::sync::watch::Sender<Arc<LiveSet>>,
    telemetry: Arc<warden_core::telemetry::Telemetry>,
}

impl std::fmt::Debug for PolicyDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyDir")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Returns true if and only if `path` names a policy file: `*.yaml` or `*.yml`,
/// not hidden, not an editor's backup or swap file.
pub fn is_policy_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.')
        && !name.starts_with('#')
        && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// Returns the policy files in `dir`, sorted: every entry named like one
/// but a directory. One that is not a regular file (a FIFO, a device, a
/// dangling symlink) is listed, so that reading it fails and says why
/// instead of the file being skipped in silence.
pub fn policy_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_policy_file(p) && !p.is_dir())
        .collect();
    files.sort();
    Ok(files)
}

impl PolicyDir {
    /// Opens `dir` with an empty live set; call [`reload`](Self::reload) to load it.
    pub fn new(
        dir: &Path,
        cx: ParseContext,
        plugins: PluginCache,
        data: Arc<dyn DataSource>,
        telemetry: Arc<warden_core::telemetry::Telemetry>,
    ) -> Self {
        let empty = Arc::new(LiveSet::default());
        PolicyDir {
            dir: dir.to_path_buf(),
            cx,
            plugins,
            data,
            states: Arc::new(MemoryStates::default()),
            live: ArcSwap::new(Arc::clone(&empty)),
            lock: Mutex::new(ReloadStats::default()),
            changed: tokio::sync::watch::channel(empty).0,
            telemetry,
        }
    }

    /// Returns it keeping plugins' state (the `state` import) in `states`
    /// instead of in memory; the daemon persists it there.
    pub fn with_plugin_states(mut self, states: Arc<dyn PluginStateStore>) -> Self {
        self.states = states;
        self
    }

    /// Returns the directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the live set now.
    pub fn current(&self) -> Arc<LiveSet> {
        self.live.load_full()
    }

    /// Returns a receiver that sees every new live set.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<LiveSet>> {
        self.changed.subscribe()
    }

    /// Returns the reload counters.
    pub fn stats(&self) -> ReloadStats {
        *self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rescans the directory and applies what changed. Reloads are serialized;
    /// evaluations keep running on whatever set they started with.
    pub fn reload(&self) -> ReloadReport {
        let mut stats = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let old = self.live.load_full();
        let mut report = ReloadReport::default();
        let listed = match policy_files(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot read the policies directory; keeping every loaded policy");
                return report;
            }
        };

        // Unchanged files first, so a changed file that takes a name already
        // used elsewhere is the one refused.
        let mut files: BTreeMap<PathBuf, FileState> = BTreeMap::new();
        let mut changed: Vec<(PathBuf, Result<String, PolicyError>, String)> = Vec::new();
        for path in &listed {
            // A file that cannot be read is a failed file like one that does
            // not parse: reported, its last good version kept.
            let text = parse::read_policy_file(path);
            let hash = match &text {
                Ok(text) => hex::encode(Sha256::digest(text.as_bytes())),
                Err(e) => hex::encode(Sha256::digest(format!("unreadable\0{}", e.message))),
            };
            match old.files.get(path) {
                // Unchanged: the content running without error, or the content
                // whose failure is already reported.
                Some(f)
                    if f.error
                        .as_ref()
                        .map_or(f.hash.as_deref() == Some(&hash), |e| e.hash == hash) =>
                {
                    files.insert(path.clone(), f.clone());
                    report.unchanged += 1;
                }
                _ => changed.push((path.clone(), text, hash)),
            }
        }
        for path in old.files.keys().filter(|p| !listed.contains(p)) {
            report.removed.push(path.clone());
        }

        let now = warden_core::clock::now_ms();
        // The first load is the daemon starting with what is on disk; a
        // policy loaded after that is a change to it.
        let first_load = stats.reloads == 0;
        for (path, text, hash) in changed {
            let previous = old.files.get(&path);
            let taken: HashMap<&str, &Path> = files
                .values()
                .flat_map(|f| f.policies.iter().map(|p| (p.name(), f.path.as_path())))
                .collect();
            let result = text
                .map_err(|e| vec![e])
                .and_then(|text| self.load_file(&path, &text, previous, &taken, now, first_load));
            let state = match result {
                Ok(policies) => {
                    report.loaded.push(path.clone());
                    stats.files_loaded += 1;
                    FileState {
                        path: path.clone(),
                        hash: Some(hash),
                        loaded_at_ms: Some(now),
                        policies,
                        error: None,
                    }
                }
                Err(errors) => {
                    for e in &errors {
                        tracing::error!(file = %path.display(), "policy file rejected, previous version keeps running: {e}");
                    }
                    report.failed.push((path.clone(), errors.clone()));
                    stats.files_failed += 1;
                    let mut kept = previous.cloned().unwrap_or(FileState {
                        path: path.clone(),
                        hash: None,
                        loaded_at_ms: None,
                        policies: Vec::new(),
                        error: None,
                    });
                    kept.error = Some(FileFailure {
                        hash,
                        at_ms: now,
                        errors,
                    });
                    kept
                }
            };
            files.insert(path, state);
        }

        report.micros = started.elapsed().as_micros() as u64;
        stats.reloads += 1;
        let t = &self.telemetry;
        t.reloads
            .get_or_create(&warden_core::telemetry::ReloadLabels { result: "success" })
            .inc_by(report.loaded.len() as u64);
        t.reloads
            .get_or_create(&warden_core::telemetry::ReloadLabels { result: "failure" })
            .inc_by(report.failed.len() as u64);
        if report.changed() || !report.failed.is_empty() {
            t.reload_seconds.observe(started.elapsed().as_secs_f64());
        }
        stats.last_micros = report.micros;
        if report.changed() || !report.failed.is_empty() {
            let next = Arc::new(LiveSet {
                files,
                generation: old.generation + 1,
            });
            self.live.store(Arc::clone(&next));
            self.changed.send_replace(next);
        }
        for p in &report.loaded {
            tracing::info!(file = %p.display(), micros = report.micros, "policy file loaded");
        }
        for p in &report.removed {
            tracing::info!(file = %p.display(), "policy file removed; its policies stopped");
        }
        report
    }

    fn load_file(
        &self,
        path: &Path,
        text: &str,
        previous: Option<&FileState>,
        taken: &HashMap<&str, &Path>,
        now: i64,
        first_load: bool,
    ) -> Result<Vec<Arc<LivePolicy>>, Vec<PolicyError>> {
        let policies = parse::parse(path, text, &self.cx)?;
        let mut errors = Vec::new();
        let mut live = Vec::new();
        for policy in policies {
            let at = |message: String| PolicyError::at_policy(path, &policy, message);
            if let Some(other) = taken.get(policy.name()) {
                errors.push(at(format!("the name is already used by a policy in `{}`; names are unique across the directory", other.display())));
                continue;
            }
            let fingerprint = parse::fingerprint(&policy);
            if let Some(same) = previous.and_then(|f| {
                f.policies
                    .iter()
                    .find(|p| p.name() == policy.name() && p.fingerprint == fingerprint)
            }) {
                live.push(Arc::clone(same));
                continue;
            }
            let before =
                previous.and_then(|f| f.policies.iter().find(|p| p.name() == policy.name()));
            let hold_until_ms = if first_load {
                None
            } else {
                hold(path, before.map(|b| &**b), &policy, now)
            };
            match self.compile(path, policy, fingerprint, now) {
                Ok(mut p) => {
                    p.hold_until_ms = hold_until_ms;
                    live.push(Arc::new(p));
                }
                Err(e) => errors.extend(e),
            }
        }
        if errors.is_empty() {
            Ok(live)
        } else {
            Err(errors)
        }
    }

    fn compile(
        &self,
        path: &Path,
        policy: Policy,
        fingerprint: String,
        now: i64,
    ) -> Result<LivePolicy, Vec<PolicyError>> {
        let (plugin, evaluator) = match (&policy.plugin, policy.kind().plugin_kind()) {
            (Some(source), Some(kind)) => {
                let plugin = self
                    .plugins
                    .resolve(source, kind, policy.spec.sha256.as_deref())
                    .map_err(|e| {
                        vec![PolicyError::at_policy(
                            path,
                            &policy,
                            format!("plugin {}", e.kind_message()),
                        )]
                    })?;
                let evaluator = super::bind::bind(
                    path,
                    &policy,
                    &plugin,
                    Arc::clone(&self.data),
                    Arc::clone(&self.states),
                )?;
                (Some(plugin), Some(evaluator))
            }
            _ => (None, None),
        };
        Ok(LivePolicy {
            file: path.to_path_buf(),
            policy,
            plugin,
            evaluator,
            fingerprint,
            loaded_at_ms: now,
            hold_until_ms: None,
        })
    }
}

/// When a new version `after` of a policy may act: later than now if it
/// escalates (see [`escalation`]), or if the version it replaces was itself
/// still held (its file is still being changed). Logged either way.
fn hold(path: &Path, before: Option<&LivePolicy>, after: &Policy, now: i64) -> Option<i64> {
    let settle = i64::try_from(super::watch::SETTLE.as_millis()).unwrap_or(i64::MAX);
    let until = now.saturating_add(settle);
    if let Some(why) = escalation(before.map(|b| &b.policy), after) {
        tracing::warn!(
            file = %path.display(),
            policy = after.name(),
            settle_ms = settle,
            "cleanup policy {why}; it acts only once its file has been unchanged for the settle time, and runs as a dry run until then"
        );
        return Some(until);
    }
    let acts = after.spec.enabled && !after.spec.dry_run;
    if acts && before.is_some_and(|b| b.held(now)) {
        tracing::warn!(
            file = %path.display(),
            policy = after.name(),
            "cleanup policy changed again before it settled; waiting for its file to be unchanged for the settle time"
        );
        return Some(until);
    }
    None
}
