//! The records exchanged with plugins, as host types: what a plugin is given
//! (invocation, resources, series, failures) and what it decides (cleanup plans,
//! recovery decisions, alerts, findings). The WIT-generated types stay inside
//! `plugin::wit`; everything else in Warden speaks these.

use std::fmt;

/// Milliseconds since the Unix epoch, UTC.
pub type TimestampMs = i64;

/// Facts about one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The policy's name.
    pub policy: String,
    /// The host's clock at the start of the evaluation.
    pub now_ms: TimestampMs,
    /// True if and only if the host will not act on the decisions.
    pub dry_run: bool,
}

/// What kind of thing a resource is. The discriminants are the positions of
/// the cases of WIT's `resource-kind`, which is how a resource set carries them.
/// Policy scopes, the API and the registry name them in kebab case
/// (`temp-file`, `app-object`), as [`ResourceKind::name`] writes them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum ResourceKind {
    /// A file in a temporary or scratch directory.
    TempFile = 0,
    /// Any other regular file.
    File = 1,
    /// A directory.
    Directory = 2,
    /// An open file descriptor.
    FileDescriptor = 3,
    /// A network or unix socket.
    Socket = 4,
    /// A thread.
    Thread = 5,
    /// A process.
    Process = 6,
    /// An object an application registered.
    AppObject = 7,
}

impl ResourceKind {
    /// Every kind, in WIT order.
    pub const ALL: [ResourceKind; 8] = [
        ResourceKind::TempFile,
        ResourceKind::File,
        ResourceKind::Directory,
        ResourceKind::FileDescriptor,
        ResourceKind::Socket,
        ResourceKind::Thread,
        ResourceKind::Process,
        ResourceKind::AppObject,
    ];

    /// Returns its name in policy scopes and the API, such as `app-object`.
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::TempFile => "temp-file",
            ResourceKind::File => "file",
            ResourceKind::Directory => "directory",
            ResourceKind::FileDescriptor => "file-descriptor",
            ResourceKind::Socket => "socket",
            ResourceKind::Thread => "thread",
            ResourceKind::Process => "process",
            ResourceKind::AppObject => "app-object",
        }
    }

    /// Returns the kind [`ResourceKind::name`] calls `name`.
    pub fn from_name(name: &str) -> Option<ResourceKind> {
        ResourceKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The value a resource set uses for a time it does not know.
pub const UNKNOWN_TIME: TimestampMs = i64::MIN;

/// A batch of resources in columns, the layout in which it crosses into a
/// plugin: row `i` of every column is resource `i`, and all strings share one
/// table. Build it with [`ResourceSet::push`]; read it with the accessors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceSet {
    strings: String,
    handles: Vec<u64>,
    kinds: Vec<ResourceKind>,
    names: Vec<u32>,
    owners: Vec<u32>,
    sizes: Vec<u64>,
    created: Vec<TimestampMs>,
    modified: Vec<TimestampMs>,
    accessed: Vec<TimestampMs>,
    pids: Vec<u32>,
    label_ranges: Vec<u32>,
    labels: Vec<u32>,
}

/// The columns of a [`ResourceSet`], as the plugin host moves them across the
/// WIT boundary: row `i` of every column is resource `i`; names, owners and
/// labels are `(offset, length)` pairs into `strings`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(
    missing_docs,
    reason = "each column is the field of WIT's `resource-set` of the same name, documented there"
)]
pub struct Columns {
    pub strings: String,
    pub handles: Vec<u64>,
    pub kinds: Vec<ResourceKind>,
    pub names: Vec<u32>,
    pub owners: Vec<u32>,
    pub sizes: Vec<u64>,
    pub created: Vec<TimestampMs>,
    pub modified: Vec<TimestampMs>,
    pub accessed: Vec<TimestampMs>,
    pub pids: Vec<u32>,
    pub label_ranges: Vec<u32>,
    pub labels: Vec<u32>,
}

/// Fields of a resource to add to a [`ResourceSet`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NewResource<'a> {
    /// The host's handle.
    pub handle: u64,
    /// Its kind; [`ResourceKind::TempFile`] when `None`.
    pub kind: Option<ResourceKind>,
    /// Path or name.
    pub name: &'a str,
    /// Owner.
    pub owner: &'a str,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Creation time.
    pub created_ms: Option<TimestampMs>,
    /// Modification time.
    pub modified_ms: Option<TimestampMs>,
    /// Access time.
    pub accessed_ms: Option<TimestampMs>,
    /// Owning process.
    pub pid: Option<u32>,
    /// Labels.
    pub labels: &'a [(&'a str, &'a str)],
}

/// The most bytes a [`ResourceSet`]'s string table may hold: offsets and
/// lengths are `u32`, as WIT's `resource-set` carries them.
pub const MAX_STRING_TABLE: usize = u32::MAX as usize;

impl ResourceSet {
    fn intern(&mut self, s: &str) -> [u32; 2] {
        // `try_push` checked that everything fits.
        let offset = self.strings.len() as u32;
        self.strings.push_str(s);
        [offset, s.len() as u32]
    }

    fn span(&self, column: &[u32], pair: usize) -> &str {
        match column.get(2 * pair..2 * pair + 2) {
            Some([offset, len]) => {
                let start = *offset as usize;
                self.strings
                    .get(start..start + *len as usize)
                    .unwrap_or_default()
            }
            _ => "",
        }
    }

    /// Adds a resource and returns its index.
    ///
    /// # Panics
    ///
    /// If the string table would pass [`MAX_STRING_TABLE`] or the set would
    /// hold more than `u32::MAX` resources; where the input is not bounded,
    /// use [`ResourceSet::try_push`].
    pub fn push(&mut self, r: NewResource<'_>) -> u32 {
        self.try_push(r)
            .expect("a resource set holds at most 4 GiB of strings and 2^32 resources")
    }

    /// Adds a resource and returns its index, or `None` (adding nothing) if
    /// its strings would take the table past [`MAX_STRING_TABLE`] or the set
    /// already holds `u32::MAX` resources.
    pub fn try_push(&mut self, r: NewResource<'_>) -> Option<u32> {
        let index = u32::try_from(self.handles.len())
            .ok()
            .filter(|i| *i < u32::MAX)?;
        let adding = r
            .labels
            .iter()
            .try_fold(r.name.len() + r.owner.len(), |n, (k, v)| {
                n.checked_add(k.len())?.checked_add(v.len())
            })?;
        if self.strings.len().checked_add(adding)? > MAX_STRING_TABLE {
            return None;
        }
        let labels = u32::try_from(self.labels.len() / 4 + r.labels.len()).ok()?;
        let name = self.intern(r.name);
        let owner = self.intern(r.owner);
        let first_label = labels - r.labels.len() as u32;
        for (k, v) in r.labels {
            let key = self.intern(k);
            let value = self.intern(v);
            self.labels
                .extend_from_slice(&[key[0], key[1], value[0], value[1]]);
        }
        self.handles.push(r.handle);
        self.kinds.push(r.kind.unwrap_or(ResourceKind::TempFile));
        self.names.extend_from_slice(&name);
        self.owners.extend_from_slice(&owner);
        self.sizes.push(r.size_bytes);
        self.created.push(r.created_ms.unwrap_or(UNKNOWN_TIME));
        self.modified.push(r.modified_ms.unwrap_or(UNKNOWN_TIME));
        self.accessed.push(r.accessed_ms.unwrap_or(UNKNOWN_TIME));
        self.pids.push(r.pid.unwrap_or(0));
        self.label_ranges
            .extend_from_slice(&[first_label, r.labels.len() as u32]);
        Some(index)
    }

    /// Puts a set back together from the columns [`ResourceSet::into_columns`]
    /// took apart, without copying them. The columns must be of one set:
    /// this is for the plugin host handing a set back after a call.
    pub fn from_columns(c: Columns) -> ResourceSet {
        ResourceSet {
            strings: c.strings,
            handles: c.handles,
            kinds: c.kinds,
            names: c.names,
            owners: c.owners,
            sizes: c.sizes,
            created: c.created,
            modified: c.modified,
            accessed: c.accessed,
            pids: c.pids,
            label_ranges: c.label_ranges,
            labels: c.labels,
        }
    }

    /// Returns how many bytes its string table holds.
    pub fn strings_len(&self) -> usize {
        self.strings.len()
    }

    /// Returns roughly how many bytes the set takes: its strings and columns.
    pub fn bytes(&self) -> usize {
        self.strings.len()
            + self.handles.len() * (8 + 1 + 8 + 8 * 3 + 4)
            + (self.names.len() + self.owners.len() + self.label_ranges.len() + self.labels.len())
                * 4
    }

    /// Takes the set apart into its columns, without copying them.
    pub fn into_columns(self) -> Columns {
        Columns {
            strings: self.strings,
            handles: self.handles,
            kinds: self.kinds,
            names: self.names,
            owners: self.owners,
            sizes: self.sizes,
            created: self.created,
            modified: self.modified,
            accessed: self.accessed,
            pids: self.pids,
            label_ranges: self.label_ranges,
            labels: self.labels,
        }
    }

    /// Returns the number of resources.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Returns true if and only if the set is empty.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Returns the path or name of the resource at `index`.
    pub fn name(&self, index: usize) -> Option<&str> {
        (index < self.len()).then(|| self.span(&self.names, index))
    }

    /// Returns the owner of the resource at `index`.
    pub fn owner(&self, index: usize) -> Option<&str> {
        (index < self.len()).then(|| self.span(&self.owners, index))
    }

    /// Returns the handle of the resource at `index`.
    pub fn handle(&self, index: usize) -> Option<u64> {
        self.handles.get(index).copied()
    }

    /// Returns the kind of the resource at `index`.
    pub fn kind(&self, index: usize) -> Option<ResourceKind> {
        self.kinds.get(index).copied()
    }

    /// Returns the size of the resource at `index`.
    pub fn size_bytes(&self, index: usize) -> Option<u64> {
        self.sizes.get(index).copied()
    }

    /// Returns the access time of the resource at `index`, if known.
    pub fn accessed_ms(&self, index: usize) -> Option<TimestampMs> {
        self.accessed
            .get(index)
            .copied()
            .filter(|t| *t != UNKNOWN_TIME)
    }

    /// Returns the modification time of the resource at `index`, if known.
    pub fn modified_ms(&self, index: usize) -> Option<TimestampMs> {
        self.modified
            .get(index)
            .copied()
            .filter(|t| *t != UNKNOWN_TIME)
    }

    /// Returns the labels of the resource at `index` (none if out of range).
    pub fn labels(&self, index: usize) -> impl Iterator<Item = (&str, &str)> {
        let (first, count) = match self.label_ranges.get(2 * index..2 * index + 2) {
            Some([first, count]) => (*first as usize, *count as usize),
            _ => (0, 0),
        };
        (first..first + count).map(move |l| {
            (
                self.span(&self.labels, 2 * l),
                self.span(&self.labels, 2 * l + 1),
            )
        })
    }
}

/// Which resources `list-resources` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceFilter {
    /// Only these kinds; all when empty.
    pub kinds: Vec<ResourceKind>,
    /// Only names starting with this.
    pub name_prefix: Option<String>,
    /// At most this many.
    pub limit: Option<u32>,
}

/// A set of labels, ordered by key: a series' or an alert's identity.
pub type Labels = Vec<(String, String)>;

/// Which series `query-series` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesSelector {
    /// The metric name.
    pub metric: String,
    /// Labels the series must carry.
    pub matchers: Labels,
}

/// One observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When.
    pub at_ms: TimestampMs,
    /// The value.
    pub value: f64,
}

/// A series and its samples in a window, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The metric name.
    pub metric: String,
    /// The full label set.
    pub labels: Labels,
    /// Samples, oldest first.
    pub samples: Vec<Sample>,
}

use warden_reduce::Of;
pub use warden_reduce::{Aggregate, Over};

/// What `query-reduced` computes from each window (WIT 0.3.0).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reduce {
    /// Each series' window to one value.
    pub over: Over,
    /// For [`Over::Quantile`]: which one.
    pub quantile: Option<f64>,
    /// Group the series by these labels.
    pub by: Option<Vec<String>>,
    /// How a group's values combine.
    pub aggregate: Aggregate,
}

/// One value `query-reduced` returns: a series' (its full label set) or a
/// group's (its `by` labels, in `by`'s order).
#[derive(Debug, Clone, PartialEq)]
pub struct Reduced {
    /// The labels the value stands for.
    pub labels: Labels,
    /// The value.
    pub value: f64,
}

/// Labels borrowed while computing, owned.
pub fn owned(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Reduces series already copied out of a store as `how` says, in their
/// order, skipping those with no sample: what a source without a faster way
/// answers `query-reduced` with.
pub fn reduce_series(series: &[Series], how: &Reduce) -> Vec<Reduced> {
    let values = series
        .iter()
        .filter(|s| !s.samples.is_empty())
        .filter_map(|s| {
            let points = s.samples.iter().map(|p| (p.at_ms, p.value));
            Some((s, warden_reduce::reduce(how.over, how.quantile, points)?))
        });
    fn label<'a>(s: &'a Series, k: &str) -> Option<&'a str> {
        let found = s.labels.iter().find(|(lk, _)| lk == k);
        found.map(|(_, lv)| lv.as_str())
    }
    warden_reduce::each_or_grouped(values, how.by.as_deref(), how.aggregate, label)
        .into_iter()
        .map(|(of, value)| Reduced {
            labels: match of {
                Of::Series(s) => s.labels.clone(),
                Of::Group(key) => owned(&key),
            },
            value,
        })
        .collect()
}

/// Why a cleanup action is taken, by index into [`CleanupPlan::reasons`].
pub type ReasonIndex = u32;

/// One cleanup action. Targets are indexes into the candidates given to the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanupAction {
    /// Delete the file or directory.
    DeletePath(u32),
    /// Close the descriptor or socket.
    CloseResource(u32),
    /// Send `signal` to the process.
    KillProcess {
        /// Candidate index.
        target: u32,
        /// Signal number.
        signal: i32,
    },
    /// Release an application object.
    Release(u32),
    /// Evict an application cache entry.
    EvictCache(u32),
    /// Tell whoever watches the policy.
    Notify(String),
}

impl CleanupAction {
    /// Returns the candidate the action is aimed at, if any.
    pub fn target(&self) -> Option<u32> {
        match self {
            CleanupAction::DeletePath(i)
            | CleanupAction::CloseResource(i)
            | CleanupAction::Release(i)
            | CleanupAction::EvictCache(i)
            | CleanupAction::KillProcess { target: i, .. } => Some(*i),
            CleanupAction::Notify(_) => None,
        }
    }
}

/// A cleanup plugin's plan, checked: every target and reason index is in range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupPlan {
    /// Distinct reasons, each held once: everything that records an action
    /// shares its reason instead of copying it, so one long reason given to
    /// many actions costs its length once.
    pub reasons: Vec<std::sync::Arc<str>>,
    /// Actions with the index of their reason.
    pub actions: Vec<(CleanupAction, ReasonIndex)>,
}

impl CleanupPlan {
    /// Returns the reason of the action at `i`.
    pub fn reason(&self, i: usize) -> &str {
        self.shared_reason(i).map_or("", |r| r.as_ref())
    }

    /// Returns the reason of the action at `i`, shared.
    pub fn shared_reason(&self, i: usize) -> Option<&std::sync::Arc<str>> {
        self.actions
            .get(i)
            .and_then(|(_, r)| self.reasons.get(*r as usize))
    }
}

/// How a service classified a failure.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorClass {
    /// The peer asked to slow down.
    RateLimited,
    /// No answer in time.
    Timeout,
    /// Connection failed or dropped.
    Connection,
    /// Credentials refused.
    Authentication,
    /// Not allowed.
    Permission,
    /// A database failed.
    Database,
    /// A resource ran out.
    ResourceExhausted,
    /// A dependency is down.
    DependencyUnavailable,
    /// The request was wrong.
    InvalidInput,
    /// A bug.
    Internal,
    /// Unclassified.
    Unknown,
}

impl ErrorClass {
    /// Every class, in the WIT enum's order.
    pub const ALL: [ErrorClass; 11] = [
        ErrorClass::RateLimited,
        ErrorClass::Timeout,
        ErrorClass::Connection,
        ErrorClass::Authentication,
        ErrorClass::Permission,
        ErrorClass::Database,
        ErrorClass::ResourceExhausted,
        ErrorClass::DependencyUnavailable,
        ErrorClass::InvalidInput,
        ErrorClass::Internal,
        ErrorClass::Unknown,
    ];

    /// Returns its name as policy files and the API write it (`rate-limited`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::RateLimited => "rate-limited",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Connection => "connection",
            ErrorClass::Authentication => "authentication",
            ErrorClass::Permission => "permission",
            ErrorClass::Database => "database",
            ErrorClass::ResourceExhausted => "resource-exhausted",
            ErrorClass::DependencyUnavailable => "dependency-unavailable",
            ErrorClass::InvalidInput => "invalid-input",
            ErrorClass::Internal => "internal",
            ErrorClass::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ErrorClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ErrorClass::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.name()).collect();
                format!(
                    "`{}` is not an error class; the classes are {}",
                    s.chars().take(64).collect::<String>(),
                    names.join(", ")
                )
            })
    }
}

/// A failure reported by a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The operation.
    pub operation: String,
    /// Its class.
    pub class: ErrorClass,
    /// The message.
    pub message: String,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// When the first attempt failed.
    pub first_failed_ms: TimestampMs,
    /// A random value for jitter.
    pub seed: u64,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Worked.
    Success,
    /// Failed.
    Failure,
    /// Timed out.
    Timeout,
    /// Rejected by an open circuit.
    Rejected,
}

/// An earlier attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attempt {
    /// When it started.
    pub at_ms: TimestampMs,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took.
    pub duration_ms: u32,
}

/// What a recovery strategy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryDecision {
    /// Retry after this many ms.
    RetryAfter(u64),
    /// Use this fallback.
    Fallback(String),
    /// Open the circuit for this many ms.
    OpenCircuit(u64),
    /// Stop, for this reason.
    GiveUp(String),
}

/// How urgent an alert or finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}

/// Whether an alert's condition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertCondition {
    /// Firing condition holds.
    Firing,
    /// Between firing and clearing thresholds.
    Holding,
}

/// An alert whose condition holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Its name.
    pub name: String,
    /// Firing or holding.
    pub condition: AlertCondition,
    /// Its severity.
    pub severity: Severity,
    /// Identity labels.
    pub labels: Labels,
    /// Text for people.
    pub annotations: Labels,
    /// The value that made it hold.
    pub value: f64,
    /// How long it must hold before firing.
    pub for_ms: Option<u64>,
}

/// Something a detector found.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What was found.
    pub pattern: String,
    /// Where.
    pub subject: String,
    /// The subject's labels.
    pub labels: Labels,
    /// How sure, 0 to 1.
    pub confidence: f64,
    /// How urgent.
    pub severity: Severity,
    /// Predicted ms until exhaustion.
    pub exhaustion_in_ms: Option<u64>,
    /// What to do.
    pub recommendation: String,
    /// Numbers the detector chose to attach (a score, a slope, a baseline),
    /// by name. Contracts 0.1 and 0.2 have no field for them and carry them
    /// as labels named
    /// [`EVIDENCE_PREFIX`]`<name>`; the host moves them here.
    pub evidence: Vec<(String, f64)>,
}

/// Labels of a contract-0.1 finding whose key starts with this carry
/// evidence: `evidence:score = "4.2"` is the number 4.2 named `score`. A
/// colon is not allowed in a series label name, so no series label is ever
/// mistaken for one.
pub const EVIDENCE_PREFIX: &str = "evidence:";
