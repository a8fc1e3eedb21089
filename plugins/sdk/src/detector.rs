//! Detectors: find patterns in series and resources — trends, leaks,
//! predicted exhaustion — and recommend what to do.

use crate::__bindings::detector::exports::warden::policy::detection as wit;

pub use wit::Finding;

use crate::{LabelPair, Severity};

/// Label keys of a finding that start with this carry evidence (see
/// [`Finding::evidence`]). Contracts 0.1 and 0.2 have no field for it; the
/// host moves these labels into the finding's evidence.
pub const EVIDENCE_PREFIX: &str = "evidence:";

impl Finding {
    /// Returns a finding of `pattern` in `subject` (a series or resource
    /// name), of severity warning and confidence 1, with no labels.
    pub fn new(pattern: impl Into<String>, subject: impl Into<String>) -> Self {
        Finding {
            pattern: pattern.into(),
            subject: subject.into(),
            labels: Vec::new(),
            confidence: 1.0,
            severity: Severity::Warning,
            exhaustion_in_ms: None,
            recommendation: String::new(),
        }
    }

    /// Adds every label of `labels`; labels are part of the finding's identity.
    pub fn labels(mut self, labels: &[LabelPair]) -> Self {
        self.labels.extend_from_slice(labels);
        self
    }

    /// Sets how sure the detector is, clamped to 0..=1 (NaN counts as 0).
    pub fn confidence(mut self, confidence: f64) -> Self {
        self.confidence = if confidence.is_nan() {
            0.0
        } else {
            confidence.clamp(0.0, 1.0)
        };
        self
    }

    /// Sets how urgent it is.
    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Sets the predicted time until the subject is exhausted.
    pub fn exhaustion_in(mut self, duration: std::time::Duration) -> Self {
        self.exhaustion_in_ms = Some(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Sets what a person should do.
    pub fn recommend(mut self, text: impl Into<String>) -> Self {
        self.recommendation = text.into();
        self
    }

    /// Attaches a number a person or a policy can check the finding by (a
    /// score, a baseline, a slope). Not part of the finding's identity: a
    /// finding reported again with new evidence is the same finding. A
    /// non-finite value is not attached.
    pub fn evidence(mut self, name: &str, value: f64) -> Self {
        if value.is_finite() {
            self.labels.push(LabelPair::new(
                format!("{EVIDENCE_PREFIX}{name}"),
                value.to_string(),
            ));
        }
        self
    }

    /// Returns the evidence attached with [`evidence`](Self::evidence), by name.
    pub fn evidence_of(&self, name: &str) -> Option<f64> {
        self.labels
            .iter()
            .find(|l| l.key.strip_prefix(EVIDENCE_PREFIX) == Some(name))
            .and_then(|l| l.value.parse().ok())
    }

    /// Returns the labels that identify the finding (its evidence left out).
    pub fn identity_labels(&self) -> impl Iterator<Item = &LabelPair> {
        self.labels
            .iter()
            .filter(|l| !l.key.starts_with(EVIDENCE_PREFIX))
    }
}

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
