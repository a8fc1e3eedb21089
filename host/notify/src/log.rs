//! The `log` notifier: one `tracing` event per alert, `warn` when firing and
//! `info` when resolved.
//!
//! `tracing` field names are fixed at compile time, so the label and
//! annotation sets go into one field each, written like Prometheus label
//! sets (`{alertname="DiskFull", severity="critical"}`); `alertname` and
//! the policy also get fields of their own for filtering.

use std::collections::BTreeMap;
use std::fmt;

use super::{AlertStatus, Notification, Notifier, NotifyError, rfc3339};

/// Writes alerts to the daemon's log.
#[derive(Debug, Default)]
pub(crate) struct LogNotifier;

impl Notifier for LogNotifier {
    fn describe(&self) -> String {
        "log".to_owned()
    }

    fn send(&self, batch: &[Notification], _now_ms: i64) -> Result<(), NotifyError> {
        for n in batch {
            let alertname = n.labels.get("alertname").map_or("", String::as_str);
            let labels = LabelSet(&n.labels);
            let annotations = LabelSet(&n.annotations);
            let starts_at = rfc3339(n.starts_at_ms);
            match n.status {
                AlertStatus::Firing => tracing::warn!(
                    alertname,
                    policy = %n.policy,
                    %labels,
                    %annotations,
                    starts_at,
                    "alert firing"
                ),
                AlertStatus::Resolved => tracing::info!(
                    alertname,
                    policy = %n.policy,
                    %labels,
                    %annotations,
                    starts_at,
                    ends_at = n.ends_at_ms.map(rfc3339),
                    "alert resolved"
                ),
            }
        }
        Ok(())
    }
}

/// Shows a map as `{name="value", ...}`, quoting values so that spaces and
/// commas in them stay unambiguous.
struct LabelSet<'a>(&'a BTreeMap<String, String>);

impl fmt::Display for LabelSet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}={value:?}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    use super::*;

    /// Records each event's level and fields; small enough not to need
    /// tracing-subscriber.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<(Level, String)>>>);

    struct Fields(String);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.0.push_str(&format!("{}={value:?} ", field.name()));
        }
    }

    impl Subscriber for Collect {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0
                .lock()
                .unwrap()
                .push((*event.metadata().level(), fields.0));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    fn logs_one_event_per_alert() {
        let labels = BTreeMap::from([
            ("alertname".to_owned(), "DiskFull".to_owned()),
            ("mount".to_owned(), "/var, \"data\"".to_owned()),
        ]);
        let firing = Notification {
            status: AlertStatus::Firing,
            labels,
            annotations: BTreeMap::from([("summary".to_owned(), "full".to_owned())]),
            starts_at_ms: 1_700_000_000_000,
            ends_at_ms: None,
            policy: "disks".to_owned(),
        };
        let resolved = Notification {
            status: AlertStatus::Resolved,
            ends_at_ms: Some(1_700_000_060_000),
            ..firing.clone()
        };
        let collect = Collect::default();
        tracing::subscriber::with_default(collect.clone(), || {
            LogNotifier.send(&[firing, resolved], 0).unwrap();
        });
        let events = collect.0.lock().unwrap();
        let levels: Vec<Level> = events.iter().map(|(level, _)| *level).collect();
        assert_eq!(levels, [Level::WARN, Level::INFO], "{events:?}");
    }
}
