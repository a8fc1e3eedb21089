//! Cleanup strategies: given the candidates inside a policy's scope, decide what
//! to delete, close, kill, release or evict. The host checks each decision
//! against the scope and acts; the strategy only plans.

use crate::__bindings::cleanup::exports::warden::policy::cleanup as wit;
use crate::Invocation;
use crate::resources::{Resource, ResourceSet};

pub use crate::resources::ResourceKind;

/// What a cleanup strategy sees.
#[derive(Debug, Clone)]
pub struct CleanupContext {
    invocation: Invocation,
    candidates: ResourceSet,
}

impl CleanupContext {
    /// Returns a context, for tests of a strategy as a pure function.
    pub fn new(invocation: Invocation, candidates: ResourceSet) -> Self {
        CleanupContext {
            invocation,
            candidates,
        }
    }

    #[doc(hidden)]
    pub fn from_raw(raw: wit::CleanupContext) -> Self {
        CleanupContext {
            invocation: raw.invocation,
            candidates: ResourceSet::from_raw(raw.candidates),
        }
    }

    /// Returns the policy's name.
    pub fn policy(&self) -> &str {
        &self.invocation.policy
    }

    /// Returns the host's clock at the start of the evaluation, ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.invocation.now_ms
    }

    /// Returns true if and only if the host will only report the plan.
    pub fn dry_run(&self) -> bool {
        self.invocation.dry_run
    }

    /// Returns the resources inside the policy's scope.
    pub fn candidates(&self) -> &ResourceSet {
        &self.candidates
    }
}

/// The decisions of one evaluation, kept in the columns the host reads
/// (one block copy per column, however many actions).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    reasons: Vec<String>,
    kinds: Vec<u8>,
    targets: Vec<u32>,
    signals: Vec<i32>,
    because: Vec<u32>,
    messages: Vec<String>,
}

/// One decision of a [`Plan`], as a test reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'p> {
    /// Delete candidate `.0`.
    Delete(u32, &'p str),
    /// Close candidate `.0`.
    Close(u32, &'p str),
    /// Send signal `.1` to candidate `.0`.
    Kill(u32, i32, &'p str),
    /// Release candidate `.0`.
    Release(u32, &'p str),
    /// Evict candidate `.0`.
    Evict(u32, &'p str),
    /// Notify with a message.
    Notify(&'p str, &'p str),
}

// Positions of the cases of `action-kind` in the WIT.
const DELETE: u8 = 0;
const CLOSE: u8 = 1;
const KILL: u8 = 2;
const RELEASE: u8 = 3;
const EVICT: u8 = 4;
const NOTIFY: u8 = 5;

impl Plan {
    /// Returns an empty plan.
    pub fn new() -> Self {
        Plan::default()
    }

    fn reason(&mut self, reason: &str) -> u32 {
        // Strategies use a handful of distinct reasons; a scan from the most
        // recent beats hashing for that size.
        if let Some(i) = self.reasons.iter().rposition(|r| r == reason) {
            return i as u32;
        }
        self.reasons.push(reason.to_owned());
        (self.reasons.len() - 1) as u32
    }

    fn push(&mut self, kind: u8, target: u32, signal: i32, reason: &str) -> &mut Self {
        let reason = self.reason(reason);
        self.kinds.push(kind);
        self.targets.push(target);
        self.signals.push(signal);
        self.because.push(reason);
        self
    }

    /// Deletes the file or directory.
    pub fn delete(&mut self, r: &Resource<'_>, reason: &str) -> &mut Self {
        self.push(DELETE, r.index(), 0, reason)
    }

    /// Closes the descriptor or socket.
    pub fn close(&mut self, r: &Resource<'_>, reason: &str) -> &mut Self {
        self.push(CLOSE, r.index(), 0, reason)
    }

    /// Sends `signal` to the process.
    pub fn kill(&mut self, r: &Resource<'_>, signal: i32, reason: &str) -> &mut Self {
        self.push(KILL, r.index(), signal, reason)
    }

    /// Releases an application-registered object.
    pub fn release(&mut self, r: &Resource<'_>, reason: &str) -> &mut Self {
        self.push(RELEASE, r.index(), 0, reason)
    }

    /// Evicts an application-registered cache entry.
    pub fn evict(&mut self, r: &Resource<'_>, reason: &str) -> &mut Self {
        self.push(EVICT, r.index(), 0, reason)
    }

    /// Sends `message` to whoever watches the policy.
    pub fn notify(&mut self, message: &str, reason: &str) -> &mut Self {
        self.messages.push(message.to_owned());
        let at = (self.messages.len() - 1) as u32;
        self.push(NOTIFY, at, 0, reason)
    }

    /// Returns the number of actions.
    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    /// Returns true if and only if the plan does nothing.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// Returns the decisions in order, for assertions in tests.
    pub fn decisions(&self) -> Vec<Decision<'_>> {
        (0..self.len())
            .map(|i| {
                let why = self.reasons[self.because[i] as usize].as_str();
                let t = self.targets[i];
                match self.kinds[i] {
                    DELETE => Decision::Delete(t, why),
                    CLOSE => Decision::Close(t, why),
                    KILL => Decision::Kill(t, self.signals[i], why),
                    RELEASE => Decision::Release(t, why),
                    EVICT => Decision::Evict(t, why),
                    _ => Decision::Notify(&self.messages[t as usize], why),
                }
            })
            .collect()
    }

    #[doc(hidden)]
    pub fn from_raw_unchecked(raw: wit::CleanupPlan) -> Self {
        Plan {
            reasons: raw.reasons,
            kinds: raw.kinds,
            targets: raw.targets,
            signals: raw.signals,
            because: raw.because,
            messages: raw.messages,
        }
    }

    #[doc(hidden)]
    pub fn into_raw(self) -> wit::CleanupPlan {
        wit::CleanupPlan {
            reasons: self.reasons,
            kinds: self.kinds,
            targets: self.targets,
            signals: self.signals,
            because: self.because,
            messages: self.messages,
        }
    }
}

/// A cleanup strategy. Implement it and export it with [`register_cleanup!`](crate::register_cleanup).
pub trait CleanupStrategy: Sized + Send + Sync + 'static {
    /// The plugin's `config:` block, deserialized from the policy's YAML.
    type Config: serde::de::DeserializeOwned;

    /// Returns the strategy for this configuration, or why the configuration
    /// cannot work (refusing the policy at `warden check` and reload). Runs
    /// once per instance, which serves many evaluations.
    fn new(config: Self::Config) -> crate::Result<Self>;

    /// Returns what to do with the candidates.
    fn plan(&self, ctx: &CleanupContext) -> crate::Result<Plan>;
}

/// Exports `$ty`, which implements [`CleanupStrategy`], as this component's
/// cleanup strategy.
#[macro_export]
macro_rules! register_cleanup {
    ($ty:ty) => {
        const _: () = {
            $crate::__instance!($ty);
            // Exported only in the component; native builds (tests, benchmarks)
            // call the trait directly and must not export `wasm-name#func` symbols.
            #[allow(dead_code, reason = "only the wasm export constructs it")]
            struct __WardenCleanup;
            impl $crate::__bindings::cleanup::exports::warden::policy::cleanup::Guest for __WardenCleanup {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::vec::Vec<$crate::__private::WitConfigError>> {
                    __warden_init(config)
                }
                fn plan(
                    ctx: $crate::__bindings::cleanup::exports::warden::policy::cleanup::CleanupContext,
                ) -> ::core::result::Result<
                    $crate::__bindings::cleanup::exports::warden::policy::cleanup::CleanupPlan,
                    ::std::string::String,
                > {
                    let strategy = __warden_instance()?;
                    let ctx = $crate::cleanup::CleanupContext::from_raw(ctx);
                    <$ty as $crate::cleanup::CleanupStrategy>::plan(strategy, &ctx)
                        .map($crate::cleanup::Plan::into_raw)
                        .map_err(|e| e.to_string())
                }
            }
            #[cfg(target_arch = "wasm32")]
            $crate::__export_cleanup_strategy_impl!(__WardenCleanup with_types_in $crate::__bindings::cleanup);
        };
    };
}
