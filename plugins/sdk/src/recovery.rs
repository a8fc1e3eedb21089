//! Recovery strategies: given a failure and the attempts before it, decide
//! whether to retry, fall back, open a circuit or give up.

use crate::__bindings::recovery::exports::warden::policy::recovery as wit;

pub use wit::{Attempt, Decision, ErrorClass, Failure, Outcome};

/// A recovery strategy. Implement it and export it with [`register_recovery!`](crate::register_recovery).
pub trait RecoveryStrategy: Sized + Send + Sync + 'static {
    /// The plugin's `config:` block, deserialized from the policy's YAML.
    type Config: serde::de::DeserializeOwned;

    /// Returns the strategy for this configuration, or why it cannot work
    /// (refusing the policy at `warden check` and reload). Runs once per
    /// instance, which serves many evaluations.
    fn new(config: Self::Config) -> crate::Result<Self>;

    /// Returns what to do about `failure`, given earlier `history` (oldest first).
    fn decide(
        &self,
        invocation: &crate::Invocation,
        failure: &Failure,
        history: &[Attempt],
    ) -> crate::Result<Decision>;
}

/// Exports `$ty`, which implements [`RecoveryStrategy`], as this component's
/// recovery strategy.
#[macro_export]
macro_rules! register_recovery {
    ($ty:ty) => {
        const _: () = {
            $crate::__instance!($ty);
            // Exported only in the component; native builds (tests, benchmarks)
            // call the trait directly and must not export `wasm-name#func` symbols.
            #[allow(dead_code, reason = "only the wasm export constructs it")]
            struct __WardenRecovery;
            impl $crate::__bindings::recovery::exports::warden::policy::recovery::Guest for __WardenRecovery {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::vec::Vec<$crate::__private::WitConfigError>> {
                    __warden_init(config)
                }
                fn decide(
                    invocation: $crate::Invocation,
                    failure: $crate::recovery::Failure,
                    history: ::std::vec::Vec<$crate::recovery::Attempt>,
                ) -> ::core::result::Result<$crate::recovery::Decision, ::std::string::String> {
                    let strategy = __warden_instance()?;
                    <$ty as $crate::recovery::RecoveryStrategy>::decide(strategy, &invocation, &failure, &history)
                        .map_err(|e| e.to_string())
                }
            }
            #[cfg(target_arch = "wasm32")]
            $crate::__export_recovery_strategy_impl!(__WardenRecovery with_types_in $crate::__bindings::recovery);
        };
    };
}
