//! Warden's own metrics in Prometheus' registry and text format
//! (`prometheus-client`): reloads and policy evaluations.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The outcome of a reload of one file.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `success` or `failure`.
    pub result: &'static str,
}

/// A policy.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    /// Its name.
    pub policy: String,
    /// Its kind.
    pub kind: &'static str,
}

/// A failed evaluation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The policy.
    pub policy: String,
    /// Its kind.
    pub kind: &'static str,
    /// Why: `timeout`, `out_of_memory`, `trap`, `plugin_error`, …
    pub cause: &'static str,
}

/// The metrics and their registry.
pub struct Telemetry {
    registry: Registry,
    /// Policy files (re)loaded, by result.
    pub reloads: Family<ReloadLabels, Counter>,
    /// Time a reload took, file written to new version active.
    pub reload_seconds: Histogram,
    /// Evaluations, by policy.
    pub evaluations: Family<PolicyLabels, Counter>,
    /// Failed evaluations, by policy and cause.
    pub failures: Family<FailureLabels, Counter>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("warden");
        let reloads = Family::<ReloadLabels, Counter>::default();
        // 100 µs to ~3 s.
        let reload_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let evaluations = Family::<PolicyLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register(
            "policy_file_reloads",
            "Policy files loaded, by result",
            reloads.clone(),
        );
        registry.register(
            "policy_reload_duration_seconds",
            "Time a reload of the policies directory took",
            reload_seconds.clone(),
        );
        registry.register(
            "policy_evaluations",
            "Policy evaluations",
            evaluations.clone(),
        );
        registry.register(
            "policy_evaluation_failures",
            "Policy evaluations that failed, by cause",
            failures.clone(),
        );
        Telemetry {
            registry,
            reloads,
            reload_seconds,
            evaluations,
            failures,
        }
    }
}

impl Telemetry {
    /// Returns every metric in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Writes Warden's own metrics, then `more` (the metrics pipeline), then
    /// the closing `# EOF`.
    pub fn encode_with(&self, more: impl FnOnce(&mut String) -> std::fmt::Result) -> String {
        let mut out = String::with_capacity(64 * 1024);
        let written = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry)
            .and_then(|()| more(&mut out))
            .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut out));
        written.expect("writing to a String cannot fail");
        out
    }
}
