//! Detectors: find patterns in series and resources — trends, leaks,
//! predicted exhaustion — and recommend what to do.

use crate::__bindings::detector::exports::warden::policy::detection as wit;

pub use wit::Finding;

/// A detector. Implement it and export it with [`register_detector!`](crate::register_detector).
pub trait Detector: Sized + Send + Sync + 'static {
    /// The plugin's `config:` block, deserialized from the policy's YAML.
    type Config: serde::de::DeserializeOwned;

    /// Returns the detector for this configuration, or why it cannot work
    /// (refusing the policy at `warden check` and reload). Runs once per
    /// instance, which serves many evaluations.
    fn new(config: Self::Config) -> crate::Result<Self>;

    /// Returns what it finds now.
    fn detect(&self, invocation: &crate::Invocation) -> crate::Result<Vec<Finding>>;
}

/// Exports `$ty`, which implements [`Detector`], as this component's detector.
#[macro_export]
macro_rules! register_detector {
    ($ty:ty) => {
        const _: () = {
            $crate::__instance!($ty);
            // Exported only in the component; native builds (tests, benchmarks)
            // call the trait directly and must not export `wasm-name#func` symbols.
            #[allow(dead_code, reason = "only the wasm export constructs it")]
            struct __WardenDetector;
            impl $crate::__bindings::detector::exports::warden::policy::detection::Guest for __WardenDetector {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::vec::Vec<$crate::__private::WitConfigError>> {
                    __warden_init(config)
                }
                fn detect(
                    invocation: $crate::Invocation,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::detector::Finding>, ::std::string::String> {
                    let detector = __warden_instance()?;
                    <$ty as $crate::detector::Detector>::detect(detector, &invocation).map_err(|e| e.to_string())
                }
            }
            #[cfg(target_arch = "wasm32")]
            $crate::__export_detector_impl!(__WardenDetector with_types_in $crate::__bindings::detector);
        };
    };
}
