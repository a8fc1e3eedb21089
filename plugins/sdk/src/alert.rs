//! Alert rules: say which alert conditions hold now. The host keeps the
//! pending → firing → resolved state machine and sends the notifications.

use crate::__bindings::alert::exports::warden::policy::alerting as wit;
use crate::{LabelPair, Severity};

pub use wit::{Alert, Condition};

impl Alert {
    /// Returns a firing alert named `name`.
    pub fn firing(name: impl Into<String>, severity: Severity, value: f64) -> Self {
        Alert {
            name: name.into(),
            condition: Condition::Firing,
            severity,
            labels: Vec::new(),
            annotations: Vec::new(),
            value,
            for_ms: None,
        }
    }

    /// Sets how long the condition must hold before the alert fires.
    pub fn hold_for(mut self, duration: std::time::Duration) -> Self {
        self.for_ms = Some(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Returns an alert whose clearing condition does not hold yet (hysteresis):
    /// it stays active if it is, and does not start if it is not.
    pub fn holding(name: impl Into<String>, severity: Severity, value: f64) -> Self {
        Alert {
            condition: Condition::Holding,
            ..Alert::firing(name, severity, value)
        }
    }

    /// Adds a label; labels make up the alert's identity.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push(LabelPair::new(key, value));
        self
    }

    /// Adds every label of `labels`.
    pub fn labels(mut self, labels: &[LabelPair]) -> Self {
        self.labels.extend_from_slice(labels);
        self
    }

    /// Adds an annotation (summary, description, runbook).
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.push(LabelPair::new(key, value));
        self
    }
}

/// An alert rule. Implement it and export it with [`register_alert_rule!`](crate::register_alert_rule).
pub trait AlertRule: Sized + Send + Sync + 'static {
    /// The plugin's `config:` block, deserialized from the policy's YAML.
    type Config: serde::de::DeserializeOwned;

    /// Returns the rule for this configuration, or why it cannot work
    /// (refusing the policy at `warden check` and reload). Runs once per
    /// instance, which serves many evaluations.
    fn new(config: Self::Config) -> crate::Result<Self>;

    /// Returns every alert whose condition holds now.
    fn evaluate(&self, invocation: &crate::Invocation) -> crate::Result<Vec<Alert>>;
}

/// Exports `$ty`, which implements [`AlertRule`], as this component's alert rule.
#[macro_export]
macro_rules! register_alert_rule {
    ($ty:ty) => {
        const _: () = {
            $crate::__instance!($ty);
            // Exported only in the component; native builds (tests, benchmarks)
            // call the trait directly and must not export `wasm-name#func` symbols.
            #[allow(dead_code, reason = "only the wasm export constructs it")]
            struct __WardenAlert;
            impl $crate::__bindings::alert::exports::warden::policy::alerting::Guest for __WardenAlert {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::vec::Vec<$crate::__private::WitConfigError>> {
                    __warden_init(config)
                }
                fn evaluate(
                    invocation: $crate::Invocation,
                ) -> ::core::result::Result<::std::vec::Vec<$crate::alert::Alert>, ::std::string::String> {
                    let rule = __warden_instance()?;
                    <$ty as $crate::alert::AlertRule>::evaluate(rule, &invocation).map_err(|e| e.to_string())
                }
            }
            #[cfg(target_arch = "wasm32")]
            $crate::__export_alert_rule_impl!(__WardenAlert with_types_in $crate::__bindings::alert);
        };
    };
}
