//! Errors of the plugin runtime, typed where callers branch on them: loading
//! (what is wrong with a `.wasm` file) and evaluation (how a call failed).

use std::fmt;
use std::time::Duration;

/// A plugin that could not be loaded, with the file or built-in name it came from.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {kind}")]
pub struct LoadError {
    /// The file path or built-in name.
    pub source_name: String,
    /// What is wrong.
    pub kind: LoadErrorKind,
}

/// What is wrong with a plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// The file could not be read.
    #[error("cannot read the plugin: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not one Warden reads: not a regular file, or too large.
    #[error("{0}")]
    Read(String),
    /// Not WebAssembly at all.
    #[error(
        "not a WebAssembly file ({0}); a plugin is a `.wasm` component built for `wasm32-wasip2`"
    )]
    NotWasm(String),
    /// A core module, not a component.
    #[error(
        "a core WebAssembly module, not a component; build the plugin for `wasm32-wasip2` (cargo build --target wasm32-wasip2) with warden-sdk, or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    /// Wasmtime rejected it.
    #[error("not a valid component: {0}")]
    Invalid(String),
    /// It exports no policy interface.
    #[error(
        "exports no Warden policy interface (it exports {exports}); a plugin exports one of `warden:policy/cleanup`, `recovery`, `alerting` or `detection`"
    )]
    NotAPolicy {
        /// What it exports.
        exports: String,
    },
    /// Built for a WIT version this host does not have.
    #[error(
        "built against `warden:policy@{found}`, which this warden does not support (it supports {supported}); rebuild the plugin with a warden-sdk for one of those"
    )]
    UnsupportedVersion {
        /// The version it was built for.
        found: String,
        /// Versions this host supports.
        supported: String,
    },
    /// More than one policy interface exported.
    #[error("exports more than one policy interface ({0}); a plugin implements exactly one kind")]
    Ambiguous(String),
    /// A plugin of one kind where another was needed.
    #[error("is a {found} plugin (world `{found_world}`), but the policy is of kind `{expected}`")]
    WrongKind {
        /// The kind the policy needs.
        expected: super::Kind,
        /// The kind of the plugin.
        found: super::Kind,
        /// The world of the plugin.
        found_world: &'static str,
    },
    /// It imports something the host does not provide.
    #[error(
        "imports `{import}`, which Warden does not provide; plugins may import only `warden:policy/host` and WASI 0.2 (where nothing is granted)"
    )]
    UnknownImport {
        /// The import's name.
        import: String,
    },
    /// Linking failed for another reason.
    #[error("cannot be linked: {0}")]
    Link(String),
    /// The sha256 in the policy does not match.
    #[error("sha256 is {actual}, but the policy pins {expected}")]
    HashMismatch {
        /// The pinned hash.
        expected: String,
        /// The file's hash.
        actual: String,
    },
    /// No built-in plugin of that name.
    #[error("no plugin of that name is shipped with warden (shipped: {0})")]
    UnknownBuiltin(String),
}

impl LoadError {
    /// Returns the message with the source named first, as in
    /// "`builtin:x`: not a valid component".
    pub fn kind_message(&self) -> String {
        format!("`{}`: {}", self.source_name, self.kind)
    }

    /// Returns an error loading `source_name` (a path, or `builtin:<name>`).
    pub fn new(source_name: impl Into<String>, kind: LoadErrorKind) -> Self {
        LoadError {
            source_name: source_name.into(),
            kind,
        }
    }
}

/// An evaluation that failed, naming the policy and the plugin.
#[derive(Debug, Clone, thiserror::Error)]
#[error("policy `{policy}` (plugin `{plugin}`): {failure}")]
pub struct EvalError {
    /// The policy.
    pub policy: String,
    /// The plugin.
    pub plugin: String,
    /// How it failed.
    pub failure: EvalFailure,
}

/// How an evaluation failed. None of these takes the host down.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvalFailure {
    /// It ran past its deadline and was interrupted.
    Timeout {
        /// The deadline.
        limit: Duration,
    },
    /// It tried to grow its memory past the cap.
    OutOfMemory {
        /// The cap in bytes.
        limit: u64,
    },
    /// It exhausted its call stack.
    StackOverflow,
    /// It trapped (a panic, an out-of-bounds access, `unreachable`).
    Trap {
        /// The trap.
        message: String,
        /// The last line the plugin wrote to stderr, such as its panic message.
        stderr: Option<String>,
    },
    /// It returned an error of its own.
    Plugin(String),
    /// It returned something the host refuses (an index out of range, too many items).
    InvalidOutput(String),
    /// Its result takes more of the host's memory than the policy allows.
    OutputTooLarge {
        /// What it would take, in bytes (at least).
        bytes: u64,
        /// The cap (`output_limit`).
        limit: u64,
        /// What made it large.
        what: String,
    },
    /// Creating its instance failed.
    Instantiate(String),
    /// Its `init` refused the policy's `config:` block.
    InvalidConfig(Vec<ConfigError>),
}

/// One thing a plugin's `init` found wrong with the policy's `config:` block.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigError {
    /// Where in the config (`rules[3].condition`); empty for the whole block.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl EvalFailure {
    /// Returns a short stable name for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            EvalFailure::Timeout { .. } => "timeout",
            EvalFailure::OutOfMemory { .. } => "out_of_memory",
            EvalFailure::StackOverflow => "stack_overflow",
            EvalFailure::Trap { .. } => "trap",
            EvalFailure::Plugin(_) => "plugin_error",
            EvalFailure::InvalidOutput(_) => "invalid_output",
            EvalFailure::OutputTooLarge { .. } => "output_too_large",
            EvalFailure::Instantiate(_) => "instantiate",
            EvalFailure::InvalidConfig(_) => "invalid_config",
        }
    }
}

impl fmt::Display for EvalFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalFailure::Timeout { limit } => {
                write!(
                    f,
                    "did not finish within its {limit:?} timeout and was stopped; raise `timeout` or make the plugin cheaper"
                )
            }
            EvalFailure::OutOfMemory { limit } => write!(
                f,
                "tried to use more than its {} MiB memory limit and was stopped; raise `memory_limit` if it needs more",
                limit / (1024 * 1024)
            ),
            EvalFailure::StackOverflow => {
                f.write_str("exhausted its call stack (unbounded recursion?) and was stopped")
            }
            EvalFailure::Trap { message, stderr } => {
                write!(f, "trapped: {message}")?;
                if let Some(line) = stderr {
                    write!(f, "; the plugin said: {line}")?;
                }
                Ok(())
            }
            EvalFailure::Plugin(m) => write!(f, "reported an error: {m}"),
            EvalFailure::InvalidOutput(m) => write!(f, "returned a result the host refuses: {m}"),
            EvalFailure::OutputTooLarge { bytes, limit, what } => write!(
                f,
                "returned a result too large to take (output_too_large): {what} takes at least {bytes} bytes, over the policy's `output_limit` of {limit}; return less, or raise `output_limit`"
            ),
            EvalFailure::Instantiate(m) => write!(f, "could not be instantiated: {m}"),
            EvalFailure::InvalidConfig(errors) => {
                f.write_str("refused its config: ")?;
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
        }
    }
}
